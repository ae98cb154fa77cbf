// avx512 build of the fast batch normalization family (cpu/fast/batchnorm.inc); CMake puts the
// avx512 flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/batchnorm.inc"
