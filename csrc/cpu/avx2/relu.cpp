// avx2 build of the fast ReLU family (cpu/fast/relu.inc); CMake puts the avx2 flags on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/relu.inc"
