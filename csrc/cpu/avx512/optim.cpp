// avx512 build of the fast optimizer updates (cpu/fast/optim.inc); CMake puts the avx512 flags
// on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/optim.inc"
