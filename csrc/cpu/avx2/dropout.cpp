// avx2 build of the fast dropout family (cpu/fast/dropout.inc); CMake puts the avx2 flags on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/dropout.inc"
