// avx512 build of the fast linear family (cpu/fast/linear.inc); CMake puts the avx512 flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/linear.inc"
