// avx512 build of the fast ReLU family (cpu/fast/relu.inc); CMake puts the avx512 flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/relu.inc"
