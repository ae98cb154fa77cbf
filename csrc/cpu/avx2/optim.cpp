// avx2 build of the fast optimizer updates (cpu/fast/optim.inc); CMake puts the avx2 flags
// on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/optim.inc"
