// avx512 build of the fast NLL loss family (cpu/fast/nll_loss.inc); CMake puts the avx512 flags on
// this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/nll_loss.inc"
