// Scalar reference for conv2d: direct loops, the spec the fast variants must match.
// x (N, C, H, W), w (K, Cg, R, S) with Cg = C / groups, b (K,), y (N, K, P, Q); the filters of
// group g (k in [g*Kg, (g+1)*Kg)) see the input channels [g*Cg, (g+1)*Cg). Outputs are overwritten.
#include "cpu/conv2d.h"

namespace fastcnn::ref {
namespace {

// Input row/column read by output (p, q) through filter tap (r, s); may fall in the padding.
int64_t in_row(const Conv2dShape& s, int64_t p, int64_t r) {
  return p * s.stride_h - s.pad_h + r * s.dil_h;
}
int64_t in_col(const Conv2dShape& s, int64_t q, int64_t t) {
  return q * s.stride_w - s.pad_w + t * s.dil_w;
}
bool inside(const Conv2dShape& s, int64_t h, int64_t w) {
  return h >= 0 && h < s.H && w >= 0 && w < s.W;
}

}  // namespace

int64_t conv2d_workspace_floats(const Conv2dShape&, Conv2dPass, int& threads) {
  threads = 1;
  return 0;
}

// The reference reads w as it is: nothing to pack.
int64_t conv2d_packed_weight_floats(const Conv2dShape&) { return 0; }
void conv2d_pack_weight(const Conv2dShape&, const float*, float*) {}

// y[n,k,p,q] = b[k] + sum_{c,r,s} x[n, g*Cg + c, in_row(p,r), in_col(q,s)] * w[k,c,r,s].
void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float*,
                    const float* b, float* y, Workspace) {
  const int64_t Cg = s.channels_per_group(), Kg = s.filters_per_group();
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k) {
      const int64_t c0 = k / Kg * Cg;
      for (int64_t p = 0; p < s.P; ++p)
        for (int64_t q = 0; q < s.Q; ++q) {
          float acc = b ? b[k] : 0.0f;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < s.R; ++r)
              for (int64_t t = 0; t < s.S; ++t) {
                const int64_t h = in_row(s, p, r), wi = in_col(s, q, t);
                if (!inside(s, h, wi)) continue;
                acc += x[((n * s.C + c0 + c) * s.H + h) * s.W + wi] *
                       w[((k * Cg + c) * s.R + r) * s.S + t];
              }
          y[((n * s.K + k) * s.P + p) * s.Q + q] = acc;
        }
    }
}

// dx[n, g*Cg + c, h, w] = sum over every (k, p, q, r, s) whose tap reads (h, w) of
// dy[n,k,p,q] * w[k,c,r,s]. Overwrites dx.
void conv2d_backward_input(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                           Workspace) {
  const int64_t Cg = s.channels_per_group(), Kg = s.filters_per_group();
  for (int64_t i = 0; i < s.N * s.C * s.H * s.W; ++i) dx[i] = 0.0f;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t k = 0; k < s.K; ++k) {
      const int64_t c0 = k / Kg * Cg;
      for (int64_t p = 0; p < s.P; ++p)
        for (int64_t q = 0; q < s.Q; ++q) {
          const float g = dy[((n * s.K + k) * s.P + p) * s.Q + q];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < s.R; ++r)
              for (int64_t t = 0; t < s.S; ++t) {
                const int64_t h = in_row(s, p, r), wi = in_col(s, q, t);
                if (!inside(s, h, wi)) continue;
                dx[((n * s.C + c0 + c) * s.H + h) * s.W + wi] +=
                    g * w[((k * Cg + c) * s.R + r) * s.S + t];
              }
        }
    }
}

// dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * x[n, g*Cg + c, in_row(p,r), in_col(q,s)];
// db[k] = sum_{n,p,q} dy[n,k,p,q]. Either output may be null (not wanted). Overwrites both.
void conv2d_backward_weight(const Conv2dShape& s, const float* dy, const float* x, float* dw,
                            float* db, Workspace) {
  const int64_t Cg = s.channels_per_group(), Kg = s.filters_per_group();
  for (int64_t k = 0; k < s.K; ++k) {
    const int64_t c0 = k / Kg * Cg;
    if (dw)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t) {
            float acc = 0.0f;
            for (int64_t n = 0; n < s.N; ++n)
              for (int64_t p = 0; p < s.P; ++p)
                for (int64_t q = 0; q < s.Q; ++q) {
                  const int64_t h = in_row(s, p, r), wi = in_col(s, q, t);
                  if (!inside(s, h, wi)) continue;
                  acc += dy[((n * s.K + k) * s.P + p) * s.Q + q] *
                         x[((n * s.C + c0 + c) * s.H + h) * s.W + wi];
                }
            dw[((k * Cg + c) * s.R + r) * s.S + t] = acc;
          }
    if (db) {
      float acc = 0.0f;
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t pq = 0; pq < s.P * s.Q; ++pq) acc += dy[(n * s.K + k) * s.P * s.Q + pq];
      db[k] = acc;
    }
  }
}

}  // namespace fastcnn::ref
