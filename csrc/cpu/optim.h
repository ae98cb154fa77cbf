// Optimizer updates (SGD, Adam/AdamW, RMSprop): every variant's declarations, the coefficient
// structs and the per-variant op table. Each update is one fused pass over flat float32 arrays of
// length n: grad is read, param and the optimizer state buffers are updated in place.
// Every variant rounds each operation to float32 in the order documented below, the order of the
// NumPy passes these kernels replaced, and the build turns FMA contraction off for these files:
// the variants then agree bit for bit, with each other and whatever the thread count.
#pragma once
#include <cstdint>

#include "common/dispatch.h"

namespace fastcnn {

// One SGD step's coefficients, rounded to float32 as the update uses them. Per element:
//   d = g;  if decay: d = param * weight_decay + g
//   if with_momentum: buf = d on the first step (init_buffer),
//                     else buf = buf * momentum + d * dampening_scale (that is 1 - dampening);
//                     d = nesterov ? d + buf * momentum : buf
//   param = param - d * lr
// The flags say whether the option is on (its double value != 0), as the NumPy code tested it: a
// weight decay of 1e-50 still adds param * 0.0f to g.
struct SgdStep {
  float lr, momentum, dampening_scale, weight_decay;
  bool decay, with_momentum, nesterov, init_buffer;
};

// One Adam/AdamW step's coefficients, at step t >= 1. Per element:
//   param = param * decay_scale                   (AdamW: 1 - lr * weight_decay; Adam: 1)
//   if decay: g = param * weight_decay + g        (Adam's L2 term; false for AdamW)
//   m = m + (g - m) * one_minus_beta1             (lerp_from_end: g - (g - m) * beta1)
//   v = v * beta2 + (g * one_minus_beta2) * g
//   with amsgrad: vmax = max(vmax, v) (NaN wins), and vmax replaces v below
//   param = param + (m * neg_step_size) / (sqrt(v) / bias_correction2_sqrt + eps)
// where neg_step_size = -lr / (1 - beta1^t) and bias_correction2_sqrt = sqrt(1 - beta2^t).
// m is torch's lerp (exp_avg.lerp_(grad, 1 - beta1)): from m for a weight one_minus_beta1 below
// 1/2, else from g with beta1 = 1 - one_minus_beta1 (in float), so that beta1 = 0 gives m = g
// exactly (from m, the sum cancels: m = 0.96, g = -0.0012 came out 5e-5 off).
struct AdamStep {
  float decay_scale, weight_decay, one_minus_beta1, beta1, beta2, one_minus_beta2;
  float bias_correction2_sqrt, eps, neg_step_size;
  bool decay, lerp_from_end;
};

// One RMSprop step's coefficients. Per element:
//   if decay: g = param * weight_decay + g
//   v = v * alpha + (g * one_minus_alpha) * g                 (square_avg)
//   if centered: ga = ga + (g - ga) * one_minus_alpha;  avg = sqrt(v - ga * ga) + eps
//                (lerp_from_end: ga = g - (g - ga) * lerp_alpha, as AdamStep's m)
//   else: avg = sqrt(v) + eps
//   if with_momentum: buf = buf * momentum + g / avg;  param = param + buf * neg_lr
//   else: param = param + (g * neg_lr) / avg
// with neg_lr = -lr; the order of torch.optim.RMSprop's tensor operations.
struct RmspropStep {
  float alpha, one_minus_alpha, lerp_alpha, eps, weight_decay, momentum, neg_lr;
  bool decay, centered, with_momentum, lerp_from_end;
};

// momentum_buffer may be null without momentum; max_exp_avg_sq is null unless amsgrad; grad_avg
// is null unless centered.
// No two arrays may overlap (the fast variants promise the compiler they do not).
#define FASTCNN_OPTIM_DECLARATIONS                                                             \
  void sgd_step(int64_t n, SgdStep s, const float* grad, float* param, float* momentum_buffer); \
  void adam_step(int64_t n, AdamStep s, const float* grad, float* param, float* exp_avg,        \
                 float* exp_avg_sq, float* max_exp_avg_sq);                                     \
  void rmsprop_step(int64_t n, RmspropStep s, const float* grad, float* param,                 \
                    float* square_avg, float* grad_avg, float* momentum_buffer);

namespace ref { FASTCNN_OPTIM_DECLARATIONS }
namespace avx2 { FASTCNN_OPTIM_DECLARATIONS }
namespace avx512 { FASTCNN_OPTIM_DECLARATIONS }
#undef FASTCNN_OPTIM_DECLARATIONS

struct OptimOps {
  void (*sgd_step)(int64_t, SgdStep, const float*, float*, float*);
  void (*adam_step)(int64_t, AdamStep, const float*, float*, float*, float*, float*);
  void (*rmsprop_step)(int64_t, RmspropStep, const float*, float*, float*, float*, float*);
};

inline OptimOps optim_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2: return {avx2::sgd_step, avx2::adam_step, avx2::rmsprop_step};
    case CpuVariant::avx512: return {avx512::sgd_step, avx512::adam_step, avx512::rmsprop_step};
    default: return {ref::sgd_step, ref::adam_step, ref::rmsprop_step};
  }
}

}  // namespace fastcnn
