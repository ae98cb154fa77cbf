// Negative log-likelihood loss (the loss after a log-softmax): every variant's declarations and the
// per-variant op table. Inputs x are log-probabilities viewed as (outer, C, inner) = (N, C, d...),
// element (o, c, i) at (o * C + c) * inner + i; labels are (N, d...) = (outer, inner) class ids.
#pragma once
#include <cstdint>

#include "common/dispatch.h"
#include "cpu/softmax_xent.h"

namespace fastcnn {

// Each label is ignore_index (the position counts for nothing) or lies in [0, C) (the binding
// checks). weight (C,) may be null (every class 1).
// forward: losses (outer * inner) = -weight[t] * x[o, t, i] for t = labels[o, i], 0 where t is
// ignore_index; total_loss = the sum of those terms and total_weight = the sum of weight[t] over
// the positions not ignored, both accumulated in double in position order.
// backward: dx = 0 except dx[o, t, i] = -weight[t] * g, g = grad[o * inner + i] when grad is
// given, else grad_scale. Overwrites dx.
#define FASTCNN_NLL_LOSS_DECLARATIONS                                                         \
  void nll_loss_forward(const SoftmaxShape& s, int64_t ignore_index, const float* x,          \
                        const int64_t* labels, const float* weight, float* losses,            \
                        double* total_loss, double* total_weight);                            \
  void nll_loss_backward(const SoftmaxShape& s, int64_t ignore_index, const int64_t* labels, \
                         const float* weight, const float* grad, float grad_scale, float* dx);

namespace ref {
FASTCNN_NLL_LOSS_DECLARATIONS
}
namespace avx2 {
FASTCNN_NLL_LOSS_DECLARATIONS
}
namespace avx512 {
FASTCNN_NLL_LOSS_DECLARATIONS
}
#undef FASTCNN_NLL_LOSS_DECLARATIONS

struct NllLossOps {
  void (*nll_loss_forward)(const SoftmaxShape&, int64_t, const float*, const int64_t*,
                           const float*, float*, double*, double*);
  void (*nll_loss_backward)(const SoftmaxShape&, int64_t, const int64_t*, const float*,
                            const float*, float, float*);
};

inline NllLossOps nll_loss_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2:
      return {avx2::nll_loss_forward, avx2::nll_loss_backward};
    case CpuVariant::avx512:
      return {avx512::nll_loss_forward, avx512::nll_loss_backward};
    default:
      return {ref::nll_loss_forward, ref::nll_loss_backward};
  }
}

}  // namespace fastcnn
