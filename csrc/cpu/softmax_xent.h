// Softmax, log-softmax and the fused softmax + cross-entropy loss: every variant's declarations and
// the per-variant op table. Arrays are (outer, C, inner) views with the softmax taken over C, so
// any dim of any rank is handled without a transpose: element (o, c, i) is at (o * C + c) * inner +
// i. For the loss, logits are (N, C, d...) = (outer, C, inner) and labels are (N, d...) = (outer,
// inner).
#pragma once
#include <cstdint>

#include "common/dispatch.h"

namespace fastcnn {

struct SoftmaxShape {
  int64_t outer, C, inner;
};

// Every kernel needs C >= 1 (the bindings skip calls whose output is empty).
// softmax_xent_forward: row_loss is caller scratch of outer * inner doubles (the per-position
// losses, summed in a fixed order so that the loss does not depend on the thread count); labels
// must lie in [0, C) (the binding checks). grad_scale in backward is grad_output / (outer * inner).
#define FASTCNN_SOFTMAX_XENT_DECLARATIONS                                                         \
  void softmax_forward(const SoftmaxShape& s, const float* x, float* y);                          \
  void log_softmax_forward(const SoftmaxShape& s, const float* x, float* y);                      \
  void softmax_backward(const SoftmaxShape& s, const float* y, const float* dy, float* dx);       \
  void log_softmax_backward(const SoftmaxShape& s, const float* y, const float* dy, float* dx);   \
  void softmax_xent_forward(const SoftmaxShape& s, float label_smoothing, const float* logits,    \
                            const int64_t* labels, float* probs, double* row_loss, double* loss); \
  void softmax_xent_backward(const SoftmaxShape& s, float label_smoothing, float grad_scale,      \
                             const float* probs, const int64_t* labels, float* dlogits);

namespace ref {
FASTCNN_SOFTMAX_XENT_DECLARATIONS
}
namespace avx2 {
FASTCNN_SOFTMAX_XENT_DECLARATIONS
}
namespace avx512 {
FASTCNN_SOFTMAX_XENT_DECLARATIONS
}
#undef FASTCNN_SOFTMAX_XENT_DECLARATIONS

struct SoftmaxXentOps {
  void (*softmax_forward)(const SoftmaxShape&, const float*, float*);
  void (*log_softmax_forward)(const SoftmaxShape&, const float*, float*);
  void (*softmax_backward)(const SoftmaxShape&, const float*, const float*, float*);
  void (*log_softmax_backward)(const SoftmaxShape&, const float*, const float*, float*);
  void (*softmax_xent_forward)(const SoftmaxShape&, float, const float*, const int64_t*, float*,
                               double*, double*);
  void (*softmax_xent_backward)(const SoftmaxShape&, float, float, const float*, const int64_t*,
                                float*);
};

inline SoftmaxXentOps softmax_xent_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2:
      return {avx2::softmax_forward,      avx2::log_softmax_forward,  avx2::softmax_backward,
              avx2::log_softmax_backward, avx2::softmax_xent_forward, avx2::softmax_xent_backward};
    case CpuVariant::avx512:
      return {avx512::softmax_forward,      avx512::log_softmax_forward,
              avx512::softmax_backward,     avx512::log_softmax_backward,
              avx512::softmax_xent_forward, avx512::softmax_xent_backward};
    default:
      return {ref::softmax_forward,      ref::log_softmax_forward,  ref::softmax_backward,
              ref::log_softmax_backward, ref::softmax_xent_forward, ref::softmax_xent_backward};
  }
}

}  // namespace fastcnn
