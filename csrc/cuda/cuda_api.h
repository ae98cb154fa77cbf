// Host-side entry points of the CUDA kernels, declared without any CUDA header so that the binding
// files (compiled by the C++ compiler) can call them. Every function returns a cudaError_t code
// (0 = success) and never throws; cuda_error_string turns a code into CUDA's message.
#pragma once
#include <cstdint>

namespace fastcnn::cuda {

// Number of usable devices in *count (0 on failure, with the reason as the return code).
int device_count(int* count);
const char* error_string(int code);

// ReLU on host arrays: copies x to the device, runs the kernel, copies y back. The round trip is
// the test hook for the toolchain until device-resident arrays exist.
int relu_forward_host(int64_t n, const float* x, float* y);

}  // namespace fastcnn::cuda
