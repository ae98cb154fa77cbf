// Batch normalization over channel dim 1: every variant's declarations and the per-variant op
// table. x, y, dy, dx are (N, C, L) views of (N, C), (N, C, L) or (N, C, H, W) arrays (L = H * W,
// or 1); per-channel vectors (weight, bias, running stats, save_mean, save_invstd, dweight, dbias)
// are (C,).
#pragma once
#include <cstdint>

#include "common/dispatch.h"

namespace fastcnn {

// N batch, C channels, L positions per channel and sample (the product of the dims after C).
struct BatchNormShape {
  int64_t N, C, L;
};

// A max pooling's planes: input H x W (H * W = L of the batch norm before it), output P x Q.
struct PooledShape {
  int64_t H, W, P, Q;
};

// weight and bias may be null (then 1 and 0). In forward_train, running_mean and running_var may be
// null (no update); when given they are updated in place, the one in-out argument of any kernel.
#define FASTCNN_BATCHNORM_DECLARATIONS                                                             \
  void batchnorm2d_forward_train(const BatchNormShape& s, float momentum, float eps,               \
                                 const float* x, const float* weight, const float* bias, float* y, \
                                 float* save_mean, float* save_invstd, float* running_mean,        \
                                 float* running_var);                                              \
  void batchnorm2d_forward_eval(const BatchNormShape& s, float eps, const float* x,                \
                                const float* weight, const float* bias, const float* running_mean, \
                                const float* running_var, float* y);                               \
  void batchnorm2d_backward(const BatchNormShape& s, bool training, const float* dy,               \
                            const float* x, const float* weight, const float* mean,                \
                            const float* invstd, float* dx, float* dweight, float* dbias);         \
  /* batchnorm2d_backward of a max pooling's input gradient: dy of plane (n, c) is the pooled    \
     gradient g (N, C, P, Q) scattered to indices (flat positions in [0, L)), added up where     \
     windows overlap, without building it. relu_out (g's shape, or null): the output of a ReLU   \
     after the pooling, g then zeroed where it is <= 0 as relu_backward does. False: some index \
     lies outside [0, L) (skipped; the outputs are then unspecified). */                         \
  bool batchnorm2d_backward_pooled(const BatchNormShape& s, const PooledShape& ps, bool training, \
                                   const float* g, const int64_t* indices, const float* relu_out, \
                                   const float* x,                                                \
                                   const float* weight, const float* mean, const float* invstd,   \
                                   float* dx, float* dweight, float* dbias);                      \
  /* forward_train (training) or forward_eval, then max pooling over 2x2 stride-2 windows (2P <=  \
     H, 2Q <= W, H * W < 2^31) into y and indices (N, C, P, Q; none when null), then ReLU when    \
     `relu`; the normalized x is never stored. Running stats and save_* as forward_train's        \
     (training). */                                                                               \
  void batchnorm2d_max_pool2d_forward(const BatchNormShape& s, const PooledShape& ps,             \
                                      bool training, bool relu, float momentum, float eps,        \
                                      const float* x, const float* weight, const float* bias,     \
                                      float* running_mean, float* running_var, float* y,          \
                                      int64_t* indices, float* save_mean, float* save_invstd);

namespace ref {
FASTCNN_BATCHNORM_DECLARATIONS
}
namespace avx2 {
FASTCNN_BATCHNORM_DECLARATIONS
}
namespace avx512 {
FASTCNN_BATCHNORM_DECLARATIONS
}
#undef FASTCNN_BATCHNORM_DECLARATIONS

struct BatchNormOps {
  void (*batchnorm2d_forward_train)(const BatchNormShape&, float, float, const float*, const float*,
                                    const float*, float*, float*, float*, float*, float*);
  void (*batchnorm2d_forward_eval)(const BatchNormShape&, float, const float*, const float*,
                                   const float*, const float*, const float*, float*);
  void (*batchnorm2d_backward)(const BatchNormShape&, bool, const float*, const float*,
                               const float*, const float*, const float*, float*, float*, float*);
  bool (*batchnorm2d_backward_pooled)(const BatchNormShape&, const PooledShape&, bool, const float*,
                                      const int64_t*, const float*, const float*, const float*,
                                      const float*, const float*, float*, float*, float*);
  void (*batchnorm2d_max_pool2d_forward)(const BatchNormShape&, const PooledShape&, bool, bool,
                                         float, float, const float*, const float*, const float*,
                                         float*, float*, float*, int64_t*, float*, float*);
};

inline BatchNormOps batchnorm_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2:
      return {avx2::batchnorm2d_forward_train, avx2::batchnorm2d_forward_eval,
              avx2::batchnorm2d_backward, avx2::batchnorm2d_backward_pooled,
              avx2::batchnorm2d_max_pool2d_forward};
    case CpuVariant::avx512:
      return {avx512::batchnorm2d_forward_train, avx512::batchnorm2d_forward_eval,
              avx512::batchnorm2d_backward, avx512::batchnorm2d_backward_pooled,
              avx512::batchnorm2d_max_pool2d_forward};
    default:
      return {ref::batchnorm2d_forward_train, ref::batchnorm2d_forward_eval,
              ref::batchnorm2d_backward, ref::batchnorm2d_backward_pooled,
              ref::batchnorm2d_max_pool2d_forward};
  }
}

}  // namespace fastcnn
