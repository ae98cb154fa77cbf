// Device discovery. Nothing here runs at import: cudart loads the driver on the first call, and a
// machine without one must still import fastcnn.
#include "cuda/cuda_api.h"
#include "cuda/cuda_check.cuh"

namespace fastcnn::cuda {

int device_count(int* count) {
  *count = 0;
  FASTCNN_CUDA_TRY(cudaGetDeviceCount(count));
  return 0;
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace fastcnn::cuda
