// avx512 build of the fast sigmoid / tanh family (cpu/fast/sigmoid_tanh.inc); CMake puts the avx512
// flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/sigmoid_tanh.inc"
