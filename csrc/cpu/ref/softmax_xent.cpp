// Scalar reference for softmax, log-softmax and softmax + cross-entropy: the spec the fast variants
// must match. Arrays are (outer, C, inner) views, reduced over C: element (o, c, i) is at
// (o * C + c) * inner + i; labels are (outer, inner). Sums are accumulated in double.
#include <cmath>
#include <limits>

#include "cpu/softmax_xent.h"

namespace fastcnn::ref {
namespace {

// max over C and log(sum(exp(x - max))) of the row at (o, i); the max shift keeps exp finite.
void row_max_logsum(const SoftmaxShape& s, const float* x, int64_t o, int64_t i, float* max,
                    double* logsum) {
  const float* row = x + o * s.C * s.inner + i;
  float m = row[0];
  for (int64_t c = 1; c < s.C; ++c) m = row[c * s.inner] > m ? row[c * s.inner] : m;
  double sum = 0.0;
  for (int64_t c = 0; c < s.C; ++c) sum += std::exp(static_cast<double>(row[c * s.inner]) - m);
  *max = m;
  *logsum = std::log(sum);
}

}  // namespace

// y = exp(x - max) / sum(exp(x - max)) over C. Overwrites y.
void softmax_forward(const SoftmaxShape& s, const float* x, float* y) {
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      float m;
      double logsum;
      row_max_logsum(s, x, o, i, &m, &logsum);
      for (int64_t c = 0; c < s.C; ++c) {
        const int64_t k = (o * s.C + c) * s.inner + i;
        y[k] = static_cast<float>(std::exp(static_cast<double>(x[k]) - m - logsum));
      }
    }
}

// y = x - max - log(sum(exp(x - max))) over C. Overwrites y.
void log_softmax_forward(const SoftmaxShape& s, const float* x, float* y) {
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      float m;
      double logsum;
      row_max_logsum(s, x, o, i, &m, &logsum);
      for (int64_t c = 0; c < s.C; ++c) {
        const int64_t k = (o * s.C + c) * s.inner + i;
        y[k] = static_cast<float>(static_cast<double>(x[k]) - m - logsum);
      }
    }
}

// y is softmax's output: dx = y * (dy - sum(dy * y)) over C. Overwrites dx.
void softmax_backward(const SoftmaxShape& s, const float* y, const float* dy, float* dx) {
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      const int64_t base = o * s.C * s.inner + i;
      double dot = 0.0;
      for (int64_t c = 0; c < s.C; ++c)
        dot += static_cast<double>(dy[base + c * s.inner]) * y[base + c * s.inner];
      for (int64_t c = 0; c < s.C; ++c) {
        const int64_t k = base + c * s.inner;
        dx[k] = static_cast<float>(y[k] * (dy[k] - dot));
      }
    }
}

// y is log_softmax's output: dx = dy - exp(y) * sum(dy) over C. Overwrites dx.
void log_softmax_backward(const SoftmaxShape& s, const float* y, const float* dy, float* dx) {
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      const int64_t base = o * s.C * s.inner + i;
      double sum = 0.0;
      for (int64_t c = 0; c < s.C; ++c) sum += dy[base + c * s.inner];
      for (int64_t c = 0; c < s.C; ++c) {
        const int64_t k = base + c * s.inner;
        dx[k] = static_cast<float>(dy[k] - std::exp(static_cast<double>(y[k])) * sum);
      }
    }
}

// probs = softmax(logits) over C; with e = label_smoothing, the loss at each position is
// (1 - e) * -logp[label] + e * mean_c(-logp[c]) (PyTorch's label smoothing), and *loss is its mean
// over the outer * inner positions (NaN when there are none, as in PyTorch). Overwrites probs,
// row_loss and *loss.
void softmax_xent_forward(const SoftmaxShape& s, float label_smoothing, const float* logits,
                          const int64_t* labels, float* probs, double* row_loss, double* loss) {
  const double e = label_smoothing;
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      float m;
      double logsum;
      row_max_logsum(s, logits, o, i, &m, &logsum);
      const int64_t base = o * s.C * s.inner + i;
      double sum_gap = 0.0;
      for (int64_t c = 0; c < s.C; ++c) {
        const int64_t k = base + c * s.inner;
        sum_gap += static_cast<double>(m) - logits[k];
        probs[k] = static_cast<float>(std::exp(static_cast<double>(logits[k]) - m - logsum));
      }
      // -logp[c] = (max - z[c]) + logsum. The gap max - z[c] comes first, as in PyTorch's
      // log_softmax: folding max + logsum first rounds logsum away when |max| is large (all
      // logits 1e17: loss 0 instead of log C), and summing the z[c] themselves cancels
      // catastrophically in the mean term (a common offset of 1e6: 1e-4 relative error).
      const float z_label = logits[base + labels[o * s.inner + i] * s.inner];
      const double nll = (static_cast<double>(m) - z_label) + logsum;
      // Without smoothing the mean term is left out, not multiplied by 0: a -inf logit makes it
      // inf, and PyTorch's loss (which never forms it) stays finite.
      const double smooth = sum_gap / static_cast<double>(s.C) + logsum;
      row_loss[o * s.inner + i] = e == 0.0 ? nll : (1.0 - e) * nll + e * smooth;
    }
  const int64_t positions = s.outer * s.inner;
  double total = 0.0;
  for (int64_t r = 0; r < positions; ++r) total += row_loss[r];
  *loss = positions > 0 ? total / static_cast<double>(positions)
                        : std::numeric_limits<double>::quiet_NaN();
}

// dlogits = (probs - target) * grad_scale with target = (1 - e) * onehot(label) + e / C.
// Overwrites dlogits.
void softmax_xent_backward(const SoftmaxShape& s, float label_smoothing, float grad_scale,
                           const float* probs, const int64_t* labels, float* dlogits) {
  const float off = label_smoothing / static_cast<float>(s.C);
  const float on = 1.0f - label_smoothing + off;
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t k = (o * s.C + c) * s.inner + i;
        const float target = labels[o * s.inner + i] == c ? on : off;
        dlogits[k] = (probs[k] - target) * grad_scale;
      }
}

}  // namespace fastcnn::ref
