// avx512 build of the fast dropout family (cpu/fast/dropout.inc); CMake puts the avx512 flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/dropout.inc"
