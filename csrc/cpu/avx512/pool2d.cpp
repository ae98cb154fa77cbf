// avx512 build of the fast pool2d family (cpu/fast/pool2d.inc); CMake puts the avx512 flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/pool2d.inc"
