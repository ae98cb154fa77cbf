// Scalar reference for dropout: the spec the fast variants must match.
// x, y, dy, dx are flat float32 arrays of length n; mask is flat uint8. Outputs are overwritten.
#include "cpu/dropout.h"

namespace fastcnn::ref {

// mask[i] = 1 unless dropout_bits(key(seed), i) < drop_below (element i is dropped with
// probability drop_below / 2**53); y = x * (mask ? scale : 0), the product PyTorch forms (so a
// NaN stays NaN even where dropped). Saved for backward: mask, or just the seed.
void dropout_forward(int64_t n, uint64_t seed, uint64_t drop_below, float scale, const float* x,
                     float* y, uint8_t* mask) {
  const uint64_t key = dropout_key(seed);
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = dropout_bits(key, static_cast<uint64_t>(i)) >= drop_below;
    mask[i] = keep ? 1 : 0;
    y[i] = x[i] * (keep ? scale : 0.0f);
  }
}

// dx = dy * (mask ? scale : 0), the same scaling as forward.
void dropout_backward(int64_t n, float scale, const float* dy, const uint8_t* mask, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (mask[i] ? scale : 0.0f);
}

}  // namespace fastcnn::ref
