// avx512 build of the fast dropout family (cpu/fast/dropout.inc); CMake sets the ISA flags.
#define FASTCNN_ISA avx512
#include "cpu/fast/dropout.inc"
