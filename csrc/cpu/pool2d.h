// 2-D pooling (max, average, adaptive average): every variant's declarations and the op table.
// x, dx: (N, C, H, W); y, dy, indices: (N, C, P, Q); R x S window; all C-contiguous.
// indices hold the flat position h * W + w of each window's max inside its (n, c) plane.
#pragma once
#include <cstdint>

#include "common/dispatch.h"
#include "common/shapes.h"

namespace fastcnn {

// Average pooling's divisor choice, as torch.nn.functional.avg_pool2d takes it.
struct AvgPoolMode {
  bool count_include_pad;
  int64_t divisor_override;  // 0: none
};

#define FASTCNN_POOL2D_DECLARATIONS                                                              \
  /* indices null: only y is written. relu: y = relu(window max), as relu_forward computes it \
     (the indices still locate the maxima). */                                                   \
  void max_pool2d_forward(const Pool2dShape& s, bool relu, const float* x, float* y,             \
                          int64_t* indices);                                                     \
  /* False: some index lies outside its plane [0, H * W) (skipped; dx is then unspecified). */   \
  bool max_pool2d_backward(const Pool2dShape& s, const float* dy, const int64_t* indices,         \
                           float* dx);                                                           \
  void avg_pool2d_forward(const Pool2dShape& s, AvgPoolMode mode, const float* x, float* y);      \
  void avg_pool2d_backward(const Pool2dShape& s, AvgPoolMode mode, const float* dy, float* dx);   \
  void adaptive_avg_pool2d_forward(const Pool2dShape& s, const float* x, float* y);              \
  void adaptive_avg_pool2d_backward(const Pool2dShape& s, const float* dy, float* dx);

namespace ref { FASTCNN_POOL2D_DECLARATIONS }
namespace avx2 { FASTCNN_POOL2D_DECLARATIONS }
namespace avx512 { FASTCNN_POOL2D_DECLARATIONS }
#undef FASTCNN_POOL2D_DECLARATIONS

struct Pool2dOps {
  void (*max_pool2d_forward)(const Pool2dShape&, bool, const float*, float*, int64_t*);
  bool (*max_pool2d_backward)(const Pool2dShape&, const float*, const int64_t*, float*);
  void (*avg_pool2d_forward)(const Pool2dShape&, AvgPoolMode, const float*, float*);
  void (*avg_pool2d_backward)(const Pool2dShape&, AvgPoolMode, const float*, float*);
  void (*adaptive_avg_pool2d_forward)(const Pool2dShape&, const float*, float*);
  void (*adaptive_avg_pool2d_backward)(const Pool2dShape&, const float*, float*);
};

inline Pool2dOps pool2d_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2:
      return {avx2::max_pool2d_forward,          avx2::max_pool2d_backward,
              avx2::avg_pool2d_forward,          avx2::avg_pool2d_backward,
              avx2::adaptive_avg_pool2d_forward, avx2::adaptive_avg_pool2d_backward};
    case CpuVariant::avx512:
      return {avx512::max_pool2d_forward,          avx512::max_pool2d_backward,
              avx512::avg_pool2d_forward,          avx512::avg_pool2d_backward,
              avx512::adaptive_avg_pool2d_forward, avx512::adaptive_avg_pool2d_backward};
    default:
      return {ref::max_pool2d_forward,          ref::max_pool2d_backward,
              ref::avg_pool2d_forward,          ref::avg_pool2d_backward,
              ref::adaptive_avg_pool2d_forward, ref::adaptive_avg_pool2d_backward};
  }
}

// Adaptive pooling window [start, end) of output i of `out` along an input axis of length `in`:
// floor(i * in / out) and ceil((i + 1) * in / out), written so the products cannot overflow.
// Internal linkage, so each ISA build keeps its own copy (no merged inline definitions).
namespace {
constexpr int64_t adaptive_start(int64_t i, int64_t out, int64_t in) {
  return (i / out) * in + ((i % out) * in) / out;
}
constexpr int64_t adaptive_end(int64_t i, int64_t out, int64_t in) {
  return 1 + ((i + 1) * in - 1) / out;
}
}  // namespace

}  // namespace fastcnn
