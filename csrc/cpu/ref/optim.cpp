// Scalar reference for the optimizer updates: the spec the fast variants must match bit for bit.
// grad, param and the state buffers are flat float32 arrays of length n; param and the state
// buffers are updated in place. The rules and their rounding order are in cpu/optim.h.
#include <cmath>

#include "cpu/optim.h"

namespace fastcnn::ref {

void sgd_step(int64_t n, SgdStep s, const float* grad, float* param, float* momentum_buffer) {
  for (int64_t i = 0; i < n; ++i) {
    float d = grad[i];
    if (s.decay) d = param[i] * s.weight_decay + grad[i];
    if (s.with_momentum) {
      float& buf = momentum_buffer[i];
      buf = s.init_buffer ? d : buf * s.momentum + d * s.dampening_scale;
      d = s.nesterov ? d + buf * s.momentum : buf;
    }
    param[i] = param[i] - d * s.lr;
  }
}

void adam_step(int64_t n, AdamStep s, const float* grad, float* param, float* exp_avg,
               float* exp_avg_sq, float* max_exp_avg_sq) {
  for (int64_t i = 0; i < n; ++i) {
    const float w = param[i] * s.decay_scale;
    const float g = s.decay ? w * s.weight_decay + grad[i] : grad[i];
    const float d = g - exp_avg[i];
    const float m = s.lerp_from_end ? g - d * s.beta1 : exp_avg[i] + d * s.one_minus_beta1;
    float v = exp_avg_sq[i] * s.beta2 + (g * s.one_minus_beta2) * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    if (max_exp_avg_sq) {
      // np.maximum / torch.maximum: a NaN in either wins
      const float vmax = max_exp_avg_sq[i];
      v = vmax > v || vmax != vmax ? vmax : v;
      max_exp_avg_sq[i] = v;
    }
    const float denom = std::sqrt(v) / s.bias_correction2_sqrt + s.eps;
    param[i] = w + (m * s.neg_step_size) / denom;
  }
}

void rmsprop_step(int64_t n, RmspropStep s, const float* grad, float* param, float* square_avg,
                  float* grad_avg, float* momentum_buffer) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = s.decay ? param[i] * s.weight_decay + grad[i] : grad[i];
    const float v = square_avg[i] * s.alpha + (g * s.one_minus_alpha) * g;
    square_avg[i] = v;
    float avg;
    if (s.centered) {
      // v - ga^2: the variance of the gradient, as the running averages estimate it
      const float d = g - grad_avg[i];
      const float ga = s.lerp_from_end ? g - d * s.lerp_alpha : grad_avg[i] + d * s.one_minus_alpha;
      grad_avg[i] = ga;
      avg = std::sqrt(v - ga * ga) + s.eps;
    } else {
      avg = std::sqrt(v) + s.eps;
    }
    if (s.with_momentum) {
      const float buf = momentum_buffer[i] * s.momentum + g / avg;
      momentum_buffer[i] = buf;
      param[i] = param[i] + buf * s.neg_lr;
    } else {
      param[i] = param[i] + (g * s.neg_lr) / avg;
    }
  }
}

}  // namespace fastcnn::ref
