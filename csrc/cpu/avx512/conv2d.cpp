// avx512 build of the fast conv2d family (cpu/fast/conv2d.inc); CMake puts the avx512 flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/conv2d.inc"
