// avx2 build of the fast pool2d family (cpu/fast/pool2d.inc); CMake sets the ISA flags.
#define FASTCNN_ISA avx2
#include "cpu/fast/pool2d.inc"
