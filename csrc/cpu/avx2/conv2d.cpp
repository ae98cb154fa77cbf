// avx2 build of the fast conv2d family (cpu/fast/conv2d.inc); CMake puts the avx2 flags on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/conv2d.inc"
