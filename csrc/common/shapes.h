// Shape structs shared by every backend: sizes, output-size math and the overflow-checked products
// that bindings use before they allocate.
// Letters: N batch, C in-channels, H W input size, K out-channels, R S filter size, P Q output size.
#pragma once
#include <cstdint>
#include <limits>

namespace fastcnn {

// Convolution, NCHW input, KCRS weights (C is channels per group), NKPQ output. pad_h/pad_w are the
// top/left padding; bottom/right padding is implied by P and Q (reads past the input are zero).
struct Conv2dShape {
  int64_t N, C, H, W;  // input; C is the total input channels
  int64_t K, R, S;     // filters
  int64_t P, Q;        // output size
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t groups;
  int64_t channels_per_group() const { return C / groups; }
  int64_t filters_per_group() const { return K / groups; }
};

// Pooling over NCHW planes: R x S window, P x Q output; pad_h/pad_w top/left.
struct Pool2dShape {
  int64_t N, C, H, W;
  int64_t R, S;
  int64_t P, Q;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

// Output length of a sliding window along one axis, as PyTorch computes it (floor or ceil mode).
// Returns -1 when there is no window: in floor mode the window must fit the padded input; ceil
// mode rounds the room up, so like PyTorch it keeps one window that hangs up to stride - 1 past
// the padded input's end even when the input is shorter than the window.
inline int64_t window_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_lo,
                                  int64_t pad_hi, int64_t dilation, bool ceil_mode = false) {
  const int64_t span = dilation * (kernel - 1) + 1;
  const int64_t room = in + pad_lo + pad_hi - span + (ceil_mode ? stride - 1 : 0);
  if (room < 0) return -1;
  int64_t out = room / stride + 1;
  // In ceil mode the last window must start inside the input or the left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad_lo) --out;
  return out;
}

// a * b, or -1 when the product of non-negative sizes would overflow int64.
inline int64_t checked_mul(int64_t a, int64_t b) {
  if (a < 0 || b < 0) return -1;
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return -1;
  return a * b;
}

}  // namespace fastcnn
