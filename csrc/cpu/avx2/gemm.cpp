// avx2 build of the packed SGEMM (cpu/fast/gemm.inc); CMake puts the avx2 flags on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/gemm.inc"
