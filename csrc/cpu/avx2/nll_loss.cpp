// avx2 build of the fast NLL loss family (cpu/fast/nll_loss.inc); CMake puts the avx2 flags on
// this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/nll_loss.inc"
