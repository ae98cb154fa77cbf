// Scalar reference for ReLU and leaky ReLU: the spec the fast variants must match.
// x, y, dy, dx are flat float32 arrays of length n. Outputs are overwritten.
#include "cpu/relu.h"

namespace fastcnn::ref {

// y = max(x, 0); NaN stays NaN, as in PyTorch.
void relu_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f || x[i] != x[i] ? x[i] : 0.0f;
}

// dx = 0 where x <= 0, else dy: the gradient at exactly 0 is 0 and a NaN input passes dy
// through, the same test as PyTorch's threshold_backward.
void relu_backward(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] <= 0.0f ? 0.0f : dy[i];
}

// y = x where x > 0, else x * negative_slope.
void leaky_relu_forward(int64_t n, float negative_slope, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : x[i] * negative_slope;
}

// dx = dy where x > 0, else dy * negative_slope (PyTorch's choice at exactly 0).
void leaky_relu_backward(int64_t n, float negative_slope, const float* x, const float* dy,
                         float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * negative_slope;
}

}  // namespace fastcnn::ref
