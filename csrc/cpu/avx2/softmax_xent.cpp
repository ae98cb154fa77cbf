// avx2 build of the fast softmax / cross-entropy family (cpu/fast/softmax_xent.inc); CMake puts the
// avx2 flags on this folder.
#define FASTCNN_ISA avx2
#include "cpu/fast/softmax_xent.inc"
