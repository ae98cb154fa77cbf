// Scalar reference for sigmoid and tanh: the spec the fast variants must match.
// x, y, dy, dx are flat float32 arrays of length n. Outputs are overwritten.
#include <cmath>

#include "cpu/sigmoid_tanh.h"

namespace fastcnn::ref {

// y = 1 / (1 + exp(-x)), from e = exp(-|x|) so that no exp overflows: 1 / (1 + e) for x >= 0 and
// e / (1 + e) below, which keeps the tiny outputs of large negative x. sigmoid(+-inf) = 1, 0;
// NaN stays NaN.
void sigmoid_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(-std::fabs(x[i]));
    const float s = 1.0f / (1.0f + e);
    y[i] = x[i] >= 0.0f ? s : e * s;
  }
}

// dx = dy * y * (1 - y).
void sigmoid_backward(int64_t n, const float* y, const float* dy, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * ((1.0f - y[i]) * y[i]);
}

// y = tanh(x); tanh(+-inf) = +-1, NaN stays NaN.
void tanh_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

// dx = dy * (1 - y^2), as (1 - y) * (1 + y): 1 - y is exact near |y| = 1, where 1 - y * y would
// cancel the rounding of y * y into a large relative error (and a fused multiply-add would round
// it differently from a separate one).
void tanh_backward(int64_t n, const float* y, const float* dy, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * ((1.0f - y[i]) * (1.0f + y[i]));
}

}  // namespace fastcnn::ref
