// Scalar reference for 2-D pooling: the spec the fast variants must match. Semantics are
// PyTorch's CPU kernels: window scan order, tie and NaN rules, divisors, float accumulation.
// x, dx: (N, C, H, W); y, dy, indices: (N, C, P, Q); R x S window. Outputs are overwritten.
#include <limits>

#include "cpu/pool2d.h"

namespace fastcnn::ref {

// y = max of each dilated window (padding never wins); indices = its flat h * W + w in the plane.
// Ties keep the first max in row-major window order; a NaN always takes over (even from an earlier
// NaN). A window of only -inf reports its first in-bounds tap. Saved for backward: indices (null:
// not written, for inference). relu: y = relu(max), ref::relu_forward's formula (the ReLU that
// nn.Sequential runs after a MaxPool2d, in the same pass).
void max_pool2d_forward(const Pool2dShape& s, bool relu, const float* x, float* y,
                        int64_t* indices) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    const float* xp = x + plane * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      for (int64_t q = 0; q < s.Q; ++q) {
        int64_t h0 = p * s.stride_h - s.pad_h, w0 = q * s.stride_w - s.pad_w;
        const int64_t h1 = h0 + (s.R - 1) * s.dil_h + 1 < s.H ? h0 + (s.R - 1) * s.dil_h + 1 : s.H;
        const int64_t w1 = w0 + (s.S - 1) * s.dil_w + 1 < s.W ? w0 + (s.S - 1) * s.dil_w + 1 : s.W;
        while (h0 < 0) h0 += s.dil_h;
        while (w0 < 0) w0 += s.dil_w;
        float best = neg_inf;
        int64_t best_at = h0 * s.W + w0;
        for (int64_t h = h0; h < h1; h += s.dil_h) {
          for (int64_t w = w0; w < w1; w += s.dil_w) {
            const float v = xp[h * s.W + w];
            if (v > best || v != v) {
              best = v;
              best_at = h * s.W + w;
            }
          }
        }
        const int64_t o = plane * s.P * s.Q + p * s.Q + q;
        y[o] = !relu || best > 0.0f || best != best ? best : 0.0f;
        if (indices) indices[o] = best_at;
      }
    }
  }
}

// dx[indices] += dy within each plane (overlapping windows may share an argmax), in output order.
// Indices need not come from max_pool2d_forward: one outside [0, H * W) is skipped and makes the
// result false (the binding then raises; checking here saves the binding a pass over them).
bool max_pool2d_backward(const Pool2dShape& s, const float* dy, const int64_t* indices, float* dx) {
  const int64_t hw = s.H * s.W;
  for (int64_t i = 0; i < s.N * s.C * hw; ++i) dx[i] = 0.0f;
  bool in_planes = true;
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    float* dxp = dx + plane * hw;
    for (int64_t o = plane * s.P * s.Q; o < (plane + 1) * s.P * s.Q; ++o) {
      if (indices[o] < 0 || indices[o] >= hw) {
        in_planes = false;
        continue;
      }
      dxp[indices[o]] += dy[o];
    }
  }
  return in_planes;
}

namespace {

// One average-pooling window along an axis: [lo, hi) inside the input, and its length once
// clipped to the padded border only (what count_include_pad counts).
struct AvgSpan {
  int64_t lo, hi, padded_len;
};

AvgSpan avg_span(int64_t out_index, int64_t stride, int64_t pad, int64_t kernel, int64_t in) {
  const int64_t start = out_index * stride - pad;
  const int64_t end = start + kernel < in + pad ? start + kernel : in + pad;
  return {start > 0 ? start : 0, end < in ? end : in, end - start};
}

int64_t avg_divisor(AvgPoolMode mode, const AvgSpan& h, const AvgSpan& w) {
  if (mode.divisor_override != 0) return mode.divisor_override;
  if (mode.count_include_pad) return h.padded_len * w.padded_len;
  return (h.hi - h.lo) * (w.hi - w.lo);
}

}  // namespace

// y = (sum of the window's cells inside the input) / divisor; the divisor is divisor_override
// when set, else the window clipped to the padded border (count_include_pad) or to the input.
// A window with no input cell gives 0. The sum runs in float, row-major, as PyTorch's does.
void avg_pool2d_forward(const Pool2dShape& s, AvgPoolMode mode, const float* x, float* y) {
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    const float* xp = x + plane * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      const AvgSpan hs = avg_span(p, s.stride_h, s.pad_h, s.R, s.H);
      for (int64_t q = 0; q < s.Q; ++q) {
        const AvgSpan ws = avg_span(q, s.stride_w, s.pad_w, s.S, s.W);
        float sum = 0.0f;
        for (int64_t h = hs.lo; h < hs.hi; ++h)
          for (int64_t w = ws.lo; w < ws.hi; ++w) sum += xp[h * s.W + w];
        const bool empty = hs.lo >= hs.hi || ws.lo >= ws.hi;
        y[plane * s.P * s.Q + p * s.Q + q] =
            empty ? 0.0f : sum / static_cast<float>(avg_divisor(mode, hs, ws));
      }
    }
  }
}

// dx = each dy / divisor added to its window's cells inside the input.
void avg_pool2d_backward(const Pool2dShape& s, AvgPoolMode mode, const float* dy, float* dx) {
  for (int64_t i = 0; i < s.N * s.C * s.H * s.W; ++i) dx[i] = 0.0f;
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    float* dxp = dx + plane * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      const AvgSpan hs = avg_span(p, s.stride_h, s.pad_h, s.R, s.H);
      for (int64_t q = 0; q < s.Q; ++q) {
        const AvgSpan ws = avg_span(q, s.stride_w, s.pad_w, s.S, s.W);
        if (hs.lo >= hs.hi || ws.lo >= ws.hi) continue;
        const float share =
            dy[plane * s.P * s.Q + p * s.Q + q] / static_cast<float>(avg_divisor(mode, hs, ws));
        for (int64_t h = hs.lo; h < hs.hi; ++h)
          for (int64_t w = ws.lo; w < ws.hi; ++w) dxp[h * s.W + w] += share;
      }
    }
  }
}

// y = mean of x over adaptive window [adaptive_start, adaptive_end) on each axis; the float sum is
// divided by the height and then by the width, as PyTorch does (the rounding differs from one
// division by the area).
void adaptive_avg_pool2d_forward(const Pool2dShape& s, const float* x, float* y) {
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    const float* xp = x + plane * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t h0 = adaptive_start(p, s.P, s.H), h1 = adaptive_end(p, s.P, s.H);
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t w0 = adaptive_start(q, s.Q, s.W), w1 = adaptive_end(q, s.Q, s.W);
        float sum = 0.0f;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) sum += xp[h * s.W + w];
        y[plane * s.P * s.Q + p * s.Q + q] =
            sum / static_cast<float>(h1 - h0) / static_cast<float>(w1 - w0);
      }
    }
  }
}

// dx = each dy / height / width added to its adaptive window.
void adaptive_avg_pool2d_backward(const Pool2dShape& s, const float* dy, float* dx) {
  for (int64_t i = 0; i < s.N * s.C * s.H * s.W; ++i) dx[i] = 0.0f;
  for (int64_t plane = 0; plane < s.N * s.C; ++plane) {
    float* dxp = dx + plane * s.H * s.W;
    for (int64_t p = 0; p < s.P; ++p) {
      const int64_t h0 = adaptive_start(p, s.P, s.H), h1 = adaptive_end(p, s.P, s.H);
      for (int64_t q = 0; q < s.Q; ++q) {
        const int64_t w0 = adaptive_start(q, s.Q, s.W), w1 = adaptive_end(q, s.Q, s.W);
        const float share = dy[plane * s.P * s.Q + p * s.Q + q] / static_cast<float>(h1 - h0) /
                            static_cast<float>(w1 - w0);
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) dxp[h * s.W + w] += share;
      }
    }
  }
}

}  // namespace fastcnn::ref
