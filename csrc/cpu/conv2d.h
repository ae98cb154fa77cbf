// 2-D convolution (cross-correlation, as PyTorch): every variant's declarations and the op table.
// x (N, C, H, W), w (K, C/groups, R, S), b (K,), y (N, K, P, Q); shape in Conv2dShape, whose
// pad_h/pad_w are the top/left padding (bottom/right padding is implied by P and Q).
#pragma once
#include <cstdint>

#include "common/dispatch.h"
#include "common/shapes.h"
#include "cpu/gemm.h"

namespace fastcnn {

// The pass a workspace is for. The weight gradient's kernel also depends on which of dw and db it
// computes (backward_weight: dw and db are not null).
struct Conv2dPass {
  enum Kind : uint8_t { forward, backward_input, backward_weight } kind;
  bool dw = true, db = true;
};

#define FASTCNN_CONV2D_DECLARATIONS                                                            \
  /* Lowers `threads` to what the kernels below can use for this shape and returns the floats \
     of scratch that `pass` needs with that many threads (ref: 0). */                          \
  int64_t conv2d_workspace_floats(const Conv2dShape& s, Conv2dPass pass, int& threads);        \
  /* Floats of the packed form of w that conv2d_forward takes for this shape (0: none, as in   \
     ref). The packed form depends on w's values and on s only through its weight shape, groups, \
     stride and dilation, so it can be kept and reused while those stay the same. */           \
  int64_t conv2d_packed_weight_floats(const Conv2dShape& s);                                   \
  void conv2d_pack_weight(const Conv2dShape& s, const float* w, float* packed);                \
  /* packed_w: conv2d_pack_weight of this w, or null (the kernel then packs w itself). */      \
  void conv2d_forward(const Conv2dShape& s, const float* x, const float* w,                    \
                      const float* packed_w, const float* b, float* y, Workspace ws);          \
  void conv2d_backward_input(const Conv2dShape& s, const float* dy, const float* w, float* dx,  \
                             Workspace ws);                                                    \
  void conv2d_backward_weight(const Conv2dShape& s, const float* dy, const float* x, float* dw, \
                              float* db, Workspace ws);

namespace ref { FASTCNN_CONV2D_DECLARATIONS }
namespace avx2 { FASTCNN_CONV2D_DECLARATIONS }
namespace avx512 { FASTCNN_CONV2D_DECLARATIONS }
#undef FASTCNN_CONV2D_DECLARATIONS

struct Conv2dOps {
  int64_t (*workspace_floats)(const Conv2dShape&, Conv2dPass, int&);
  int64_t (*packed_weight_floats)(const Conv2dShape&);
  void (*pack_weight)(const Conv2dShape&, const float*, float*);
  void (*forward)(const Conv2dShape&, const float*, const float*, const float*, const float*,
                  float*, Workspace);
  void (*backward_input)(const Conv2dShape&, const float*, const float*, float*, Workspace);
  void (*backward_weight)(const Conv2dShape&, const float*, const float*, float*, float*,
                          Workspace);
};

inline Conv2dOps conv2d_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2:
      return {avx2::conv2d_workspace_floats, avx2::conv2d_packed_weight_floats,
              avx2::conv2d_pack_weight, avx2::conv2d_forward, avx2::conv2d_backward_input,
              avx2::conv2d_backward_weight};
    case CpuVariant::avx512:
      return {avx512::conv2d_workspace_floats, avx512::conv2d_packed_weight_floats,
              avx512::conv2d_pack_weight, avx512::conv2d_forward,
              avx512::conv2d_backward_input, avx512::conv2d_backward_weight};
    default:
      return {ref::conv2d_workspace_floats, ref::conv2d_packed_weight_floats,
              ref::conv2d_pack_weight, ref::conv2d_forward, ref::conv2d_backward_input,
              ref::conv2d_backward_weight};
  }
}

}  // namespace fastcnn
