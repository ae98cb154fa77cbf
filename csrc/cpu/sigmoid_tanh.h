// Sigmoid and tanh: every variant's declarations and the per-variant op table.
// x, y, dy, dx are flat float32 arrays of length n. Backward reads forward's output y, as
// PyTorch's sigmoid_backward and tanh_backward do.
#pragma once
#include <cstdint>

#include "common/dispatch.h"

namespace fastcnn {

#define FASTCNN_SIGMOID_TANH_DECLARATIONS                                       \
  void sigmoid_forward(int64_t n, const float* x, float* y);                    \
  void sigmoid_backward(int64_t n, const float* y, const float* dy, float* dx); \
  void tanh_forward(int64_t n, const float* x, float* y);                       \
  void tanh_backward(int64_t n, const float* y, const float* dy, float* dx);

namespace ref { FASTCNN_SIGMOID_TANH_DECLARATIONS }
namespace avx2 { FASTCNN_SIGMOID_TANH_DECLARATIONS }
namespace avx512 { FASTCNN_SIGMOID_TANH_DECLARATIONS }
#undef FASTCNN_SIGMOID_TANH_DECLARATIONS

struct SigmoidTanhOps {
  void (*sigmoid_forward)(int64_t, const float*, float*);
  void (*sigmoid_backward)(int64_t, const float*, const float*, float*);
  void (*tanh_forward)(int64_t, const float*, float*);
  void (*tanh_backward)(int64_t, const float*, const float*, float*);
};

inline SigmoidTanhOps sigmoid_tanh_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2:
      return {avx2::sigmoid_forward, avx2::sigmoid_backward, avx2::tanh_forward,
              avx2::tanh_backward};
    case CpuVariant::avx512:
      return {avx512::sigmoid_forward, avx512::sigmoid_backward, avx512::tanh_forward,
              avx512::tanh_backward};
    default:
      return {ref::sigmoid_forward, ref::sigmoid_backward, ref::tanh_forward,
              ref::tanh_backward};
  }
}

}  // namespace fastcnn
