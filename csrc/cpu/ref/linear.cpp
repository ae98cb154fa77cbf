// Scalar reference for linear: plain loops, the spec the fast variants must match.
// x (N, C), w (K, C), b (K,), y (N, K). Outputs are overwritten.
#include "cpu/linear.h"

namespace fastcnn::ref {

int64_t linear_workspace_floats(const LinearShape&, int& threads) {
  threads = 1;
  return 0;
}

// y[n,k] = b[k] + sum_c x[n,c] * w[k,c]; b may be null.
void linear_forward(const LinearShape& s, const float* x, const float* w, const float* b, float* y,
                    Workspace) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k) {
      float acc = b ? b[k] : 0.0f;
      for (int64_t c = 0; c < s.C; ++c) acc += x[n * s.C + c] * w[k * s.C + c];
      y[n * s.K + k] = acc;
    }
}

// dx[n,c] = sum_k dy[n,k] * w[k,c].
void linear_backward_input(const LinearShape& s, const float* dy, const float* w, float* dx,
                           Workspace) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t c = 0; c < s.C; ++c) {
      float acc = 0.0f;
      for (int64_t k = 0; k < s.K; ++k) acc += dy[n * s.K + k] * w[k * s.C + c];
      dx[n * s.C + c] = acc;
    }
}

// dw[k,c] = sum_n dy[n,k] * x[n,c]; db[k] = sum_n dy[n,k]. Either output may be null.
void linear_backward_weight(const LinearShape& s, const float* dy, const float* x, float* dw,
                            float* db, Workspace) {
  for (int64_t k = 0; k < s.K; ++k) {
    if (dw)
      for (int64_t c = 0; c < s.C; ++c) {
        float acc = 0.0f;
        for (int64_t n = 0; n < s.N; ++n) acc += dy[n * s.K + k] * x[n * s.C + c];
        dw[k * s.C + c] = acc;
      }
    if (db) {
      float acc = 0.0f;
      for (int64_t n = 0; n < s.N; ++n) acc += dy[n * s.K + k];
      db[k] = acc;
    }
  }
}

}  // namespace fastcnn::ref
