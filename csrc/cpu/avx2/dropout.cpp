// avx2 build of the fast dropout family (cpu/fast/dropout.inc); CMake sets the ISA flags.
#define FASTCNN_ISA avx2
#include "cpu/fast/dropout.inc"
