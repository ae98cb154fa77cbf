// avx2 build of the fast batch normalization family (cpu/fast/batchnorm.inc); CMake puts the avx2
// flags on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/batchnorm.inc"
