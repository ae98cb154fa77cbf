// Scalar reference for the negative log-likelihood loss: the spec the fast variants must match.
// x is (outer, C, inner) log-probabilities, labels (outer, inner); see cpu/nll_loss.h.
#include "cpu/nll_loss.h"

namespace fastcnn::ref {

// losses[r] = -weight[t] * x[o, t, i] (0 for an ignored position); the totals in double. The
// product of two floats is exact in double, so each loss is the float product rounded once, as
// PyTorch's is. Overwrites losses and the totals.
void nll_loss_forward(const SoftmaxShape& s, int64_t ignore_index, const float* x,
                      const int64_t* labels, const float* weight, float* losses,
                      double* total_loss, double* total_weight) {
  double loss_sum = 0.0, weight_sum = 0.0;
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      const int64_t r = o * s.inner + i, t = labels[r];
      if (t == ignore_index) {
        losses[r] = 0.0f;
        continue;
      }
      const double w = weight ? weight[t] : 1.0;
      const double term = -w * static_cast<double>(x[(o * s.C + t) * s.inner + i]);
      losses[r] = static_cast<float>(term);
      loss_sum += term;
      weight_sum += w;
    }
  *total_loss = loss_sum;
  *total_weight = weight_sum;
}

// dx = 0, then dx[o, t, i] = -weight[t] * g at each position's label. Overwrites dx.
void nll_loss_backward(const SoftmaxShape& s, int64_t ignore_index, const int64_t* labels,
                       const float* weight, const float* grad, float grad_scale, float* dx) {
  for (int64_t k = 0; k < s.outer * s.C * s.inner; ++k) dx[k] = 0.0f;
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      const int64_t r = o * s.inner + i, t = labels[r];
      if (t == ignore_index) continue;
      const float w = weight ? weight[t] : 1.0f;
      dx[(o * s.C + t) * s.inner + i] = -w * (grad ? grad[r] : grad_scale);
    }
}

}  // namespace fastcnn::ref
