// Fully connected layer y = x w^T + b: every variant's declarations and the op table.
// x (N, C) rows of in-features (the binding flattens leading dims into N), w (K, C), b (K,),
// y (N, K).
#pragma once
#include <cstdint>

#include "common/dispatch.h"
#include "cpu/gemm.h"

namespace fastcnn {

struct LinearShape {
  int64_t N;  // rows: the product of x's leading dimensions
  int64_t C;  // in-features
  int64_t K;  // out-features
};

#define FASTCNN_LINEAR_DECLARATIONS                                                            \
  /* Lowers `threads` to what the kernels below can use for this shape and returns the floats \
     of scratch they need with that many threads (ref: 0). */                                  \
  int64_t linear_workspace_floats(const LinearShape& s, int& threads);                         \
  void linear_forward(const LinearShape& s, const float* x, const float* w, const float* b,    \
                      float* y, Workspace ws);                                                 \
  void linear_backward_input(const LinearShape& s, const float* dy, const float* w, float* dx,  \
                             Workspace ws);                                                    \
  void linear_backward_weight(const LinearShape& s, const float* dy, const float* x, float* dw, \
                              float* db, Workspace ws);

namespace ref { FASTCNN_LINEAR_DECLARATIONS }
namespace avx2 { FASTCNN_LINEAR_DECLARATIONS }
namespace avx512 { FASTCNN_LINEAR_DECLARATIONS }
#undef FASTCNN_LINEAR_DECLARATIONS

struct LinearOps {
  int64_t (*workspace_floats)(const LinearShape&, int&);
  void (*forward)(const LinearShape&, const float*, const float*, const float*, float*, Workspace);
  void (*backward_input)(const LinearShape&, const float*, const float*, float*, Workspace);
  void (*backward_weight)(const LinearShape&, const float*, const float*, float*, float*,
                          Workspace);
};

inline LinearOps linear_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2:
      return {avx2::linear_workspace_floats, avx2::linear_forward, avx2::linear_backward_input,
              avx2::linear_backward_weight};
    case CpuVariant::avx512:
      return {avx512::linear_workspace_floats, avx512::linear_forward,
              avx512::linear_backward_input, avx512::linear_backward_weight};
    default:
      return {ref::linear_workspace_floats, ref::linear_forward, ref::linear_backward_input,
              ref::linear_backward_weight};
  }
}

}  // namespace fastcnn
