// avx512 build of the packed SGEMM (cpu/fast/gemm.inc); CMake puts the avx512 flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/gemm.inc"
