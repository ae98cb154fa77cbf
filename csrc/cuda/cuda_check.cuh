// Error plumbing for the CUDA launchers: return the first failing call's code, and clear the
// sticky error state so a later call starts clean.
#pragma once
#include <cuda_runtime.h>

#define FASTCNN_CUDA_TRY(call)                 \
  do {                                         \
    cudaError_t fastcnn_err_ = (call);         \
    if (fastcnn_err_ != cudaSuccess) {         \
      cudaGetLastError();                      \
      return static_cast<int>(fastcnn_err_);   \
    }                                          \
  } while (0)
