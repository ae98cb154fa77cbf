// avx2 build of the fast linear family (cpu/fast/linear.inc); CMake puts the avx2 flags on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/linear.inc"
