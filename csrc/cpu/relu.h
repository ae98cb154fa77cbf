// ReLU and leaky ReLU: every variant's declarations and the per-variant op table.
// x, y, dy, dx are flat float32 arrays of length n.
#pragma once
#include <cstdint>

#include "common/dispatch.h"

namespace fastcnn {

#define FASTCNN_RELU_DECLARATIONS                                                              \
  void relu_forward(int64_t n, const float* x, float* y);                                      \
  void relu_backward(int64_t n, const float* x, const float* dy, float* dx);                   \
  void leaky_relu_forward(int64_t n, float negative_slope, const float* x, float* y);          \
  void leaky_relu_backward(int64_t n, float negative_slope, const float* x, const float* dy,   \
                           float* dx);

namespace ref { FASTCNN_RELU_DECLARATIONS }
namespace avx2 { FASTCNN_RELU_DECLARATIONS }
namespace avx512 { FASTCNN_RELU_DECLARATIONS }
#undef FASTCNN_RELU_DECLARATIONS

struct ReluOps {
  void (*relu_forward)(int64_t, const float*, float*);
  void (*relu_backward)(int64_t, const float*, const float*, float*);
  void (*leaky_relu_forward)(int64_t, float, const float*, float*);
  void (*leaky_relu_backward)(int64_t, float, const float*, const float*, float*);
};

inline ReluOps relu_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2:
      return {avx2::relu_forward, avx2::relu_backward, avx2::leaky_relu_forward,
              avx2::leaky_relu_backward};
    case CpuVariant::avx512:
      return {avx512::relu_forward, avx512::relu_backward, avx512::leaky_relu_forward,
              avx512::leaky_relu_backward};
    default:
      return {ref::relu_forward, ref::relu_backward, ref::leaky_relu_forward,
              ref::leaky_relu_backward};
  }
}

}  // namespace fastcnn
