// avx512 build of the fast softmax / cross-entropy family (cpu/fast/softmax_xent.inc); CMake puts
// the avx512 flags on this folder.
#define FASTCNN_ISA avx512
#include "cpu/fast/softmax_xent.inc"
