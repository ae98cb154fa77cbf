// CUDA ReLU: a one-thread-per-element port of ref::relu_forward (cpu/ref/relu.cpp).
// x, y are flat float32 device arrays of length n.
#include "cuda/cuda_api.h"
#include "cuda/cuda_check.cuh"

namespace fastcnn::cuda {
namespace {

__global__ void relu_forward_kernel(int64_t n, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.0f || x[i] != x[i] ? x[i] : 0.0f;
}

// y = max(x, 0) on device pointers, queued on `stream`.
int relu_forward(int64_t n, const float* x, float* y, cudaStream_t stream) {
  if (n == 0) return 0;
  constexpr int kThreads = 256;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  relu_forward_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(n, x, y);
  FASTCNN_CUDA_TRY(cudaGetLastError());
  return 0;
}

}  // namespace

int relu_forward_host(int64_t n, const float* x, float* y) {
  if (n == 0) return 0;
  float* device = nullptr;
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  FASTCNN_CUDA_TRY(cudaMalloc(&device, bytes));
  int err = static_cast<int>(cudaMemcpy(device, x, bytes, cudaMemcpyHostToDevice));
  if (err == 0) err = relu_forward(n, device, device, nullptr);
  if (err == 0) err = static_cast<int>(cudaMemcpy(y, device, bytes, cudaMemcpyDeviceToHost));
  cudaFree(device);
  cudaGetLastError();
  return err;
}

}  // namespace fastcnn::cuda
