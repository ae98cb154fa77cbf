// avx2 build of the fast sigmoid / tanh family (cpu/fast/sigmoid_tanh.inc); CMake puts the avx2
// flags on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/sigmoid_tanh.inc"
