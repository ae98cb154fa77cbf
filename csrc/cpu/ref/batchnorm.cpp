// Scalar reference for batch normalization: the spec the fast variants must match.
// x, y, dy, dx are (N, C, L) float32 arrays, channel c of sample n at x[(n * C + c) * L + l];
// per-channel vectors are (C,). Statistics are accumulated in double, two passes per channel.
#include <cmath>
#include <vector>

#include "cpu/batchnorm.h"
#include "cpu/pool2d.h"
#include "cpu/relu.h"

namespace fastcnn::ref {

// save_mean = mean(x[:, c]), save_invstd = 1 / sqrt(var(x[:, c]) + eps) with the biased variance;
// y = (x - mean) * invstd * weight + bias; running = (1 - momentum) * running + momentum * stat,
// with the unbiased variance for running_var (PyTorch's convention). Overwrites y and save_*.
// An empty batch (N * L == 0) has no statistics: save_* = 0 and the running stats are untouched.
void batchnorm2d_forward_train(const BatchNormShape& s, float momentum, float eps, const float* x,
                               const float* weight, const float* bias, float* y, float* save_mean,
                               float* save_invstd, float* running_mean, float* running_var) {
  const int64_t count = s.N * s.L;
  for (int64_t c = 0; c < s.C; ++c) {
    if (count == 0) {
      save_mean[c] = 0.0f;
      save_invstd[c] = 0.0f;
      continue;
    }
    double sum = 0.0;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t l = 0; l < s.L; ++l) sum += x[(n * s.C + c) * s.L + l];
    const double mean = sum / static_cast<double>(count);
    double sq = 0.0;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t l = 0; l < s.L; ++l) {
        const double d = x[(n * s.C + c) * s.L + l] - mean;
        sq += d * d;
      }
    const double var = sq / static_cast<double>(count);
    const double invstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
    const double scale = invstd * (weight ? weight[c] : 1.0f);
    const double shift = bias ? bias[c] : 0.0f;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t l = 0; l < s.L; ++l) {
        const int64_t i = (n * s.C + c) * s.L + l;
        y[i] = static_cast<float>((x[i] - mean) * scale + shift);
      }
    save_mean[c] = static_cast<float>(mean);
    save_invstd[c] = static_cast<float>(invstd);
    // The running update needs the unbiased variance, undefined for a single value.
    if (count > 1) {
      const double m = momentum;
      if (running_mean)
        running_mean[c] = static_cast<float>((1.0 - m) * running_mean[c] + m * mean);
      if (running_var)
        running_var[c] = static_cast<float>((1.0 - m) * running_var[c] +
                                            m * var * count / static_cast<double>(count - 1));
    }
  }
}

// y = (x - running_mean) / sqrt(running_var + eps) * weight + bias. Overwrites y.
void batchnorm2d_forward_eval(const BatchNormShape& s, float eps, const float* x,
                              const float* weight, const float* bias, const float* running_mean,
                              const float* running_var, float* y) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t c = 0; c < s.C; ++c) {
      const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
      const double scale = invstd * (weight ? weight[c] : 1.0f);
      const double shift = bias ? bias[c] : 0.0f;
      for (int64_t l = 0; l < s.L; ++l) {
        const int64_t i = (n * s.C + c) * s.L + l;
        y[i] = static_cast<float>((x[i] - static_cast<double>(running_mean[c])) * scale + shift);
      }
    }
}

// Gradients of y = (x - mean) * invstd * weight + bias. dbias = sum(dy), dweight = sum(dy * xhat)
// with xhat = (x - mean) * invstd. Training (mean, invstd are the batch statistics, as saved by
// forward_train): dx = weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), the two means
// being the paths through the batch mean and variance; the batch mean is refined from x in double
// (the float32 save_mean is off by up to |mean| * 2^-24, which matters when |mean| >> std).
// Eval (mean, invstd from the running stats, constants): dx = dy * weight * invstd.
// Overwrites dx, dweight, dbias.
void batchnorm2d_backward(const BatchNormShape& s, bool training, const float* dy, const float* x,
                          const float* weight, const float* mean, const float* invstd, float* dx,
                          float* dweight, float* dbias) {
  const int64_t count = s.N * s.L;
  const bool batch_terms = training && count > 0;
  for (int64_t c = 0; c < s.C; ++c) {
    double mu = mean[c];
    if (batch_terms) {
      double sum = 0.0;
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t l = 0; l < s.L; ++l) sum += x[(n * s.C + c) * s.L + l];
      mu = sum / count;
    }
    const double is = invstd[c];
    double sum_dy = 0.0, sum_dy_xmu = 0.0;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t l = 0; l < s.L; ++l) {
        const int64_t i = (n * s.C + c) * s.L + l;
        sum_dy += dy[i];
        sum_dy_xmu += dy[i] * (x[i] - mu);
      }
    dbias[c] = static_cast<float>(sum_dy);
    dweight[c] = static_cast<float>(sum_dy_xmu * is);
    const double k = is * (weight ? weight[c] : 1.0f);
    // dx = k * (dy - a - (x - mean) * b); eval mode's dx = k * dy does not read x, so an Inf or
    // NaN input reaches only dweight, as in torch (a zero b would make it NaN through 0 * inf).
    const double a = batch_terms ? sum_dy / count : 0.0;
    const double b = batch_terms ? sum_dy_xmu * is * is / count : 0.0;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t l = 0; l < s.L; ++l) {
        const int64_t i = (n * s.C + c) * s.L + l;
        dx[i] = static_cast<float>(batch_terms ? k * (dy[i] - a - (x[i] - mu) * b) : k * dy[i]);
      }
  }
}

// The composition it replaces: relu_backward(g, relu_out) when relu_out is given, then
// dy = max_pool2d_backward(g, indices) (each plane summed in pooled order, in float, as
// ref::max_pool2d_backward does, an index outside the plane skipped), then batchnorm2d_backward.
bool batchnorm2d_backward_pooled(const BatchNormShape& s, const PooledShape& ps, bool training,
                                 const float* g, const int64_t* indices, const float* relu_out,
                                 const float* x, const float* weight, const float* mean,
                                 const float* invstd, float* dx, float* dweight, float* dbias) {
  const int64_t pooled = ps.P * ps.Q;
  std::vector<float> gated(g, g + s.N * s.C * pooled);
  if (relu_out) relu_backward(s.N * s.C * pooled, relu_out, g, gated.data());
  std::vector<float> dy(static_cast<size_t>(s.N * s.C * s.L), 0.0f);
  bool in_planes = true;
  for (int64_t plane = 0; plane < s.N * s.C; ++plane)
    for (int64_t o = 0; o < pooled; ++o) {
      const int64_t at = indices[plane * pooled + o];
      if (at < 0 || at >= s.L) {
        in_planes = false;
        continue;
      }
      dy[plane * s.L + at] += gated[plane * pooled + o];
    }
  batchnorm2d_backward(s, training, dy.data(), x, weight, mean, invstd, dx, dweight, dbias);
  return in_planes;
}

// The composition it fuses: the batch norm into a full-size y, ref::max_pool2d_forward with 2x2
// stride-2 windows, then ref::relu_forward.
void batchnorm2d_max_pool2d_forward(const BatchNormShape& s, const PooledShape& ps, bool training,
                                    bool relu, float momentum, float eps, const float* x,
                                    const float* weight, const float* bias, float* running_mean,
                                    float* running_var, float* y, int64_t* indices,
                                    float* save_mean, float* save_invstd) {
  std::vector<float> normalized(static_cast<size_t>(s.N * s.C * s.L));
  if (training)
    batchnorm2d_forward_train(s, momentum, eps, x, weight, bias, normalized.data(), save_mean,
                              save_invstd, running_mean, running_var);
  else
    batchnorm2d_forward_eval(s, eps, x, weight, bias, running_mean, running_var,
                             normalized.data());
  const Pool2dShape pool{s.N, s.C, ps.H, ps.W, 2, 2, ps.P, ps.Q, 2, 2, 0, 0, 1, 1};
  max_pool2d_forward(pool, false, normalized.data(), y, indices);
  if (relu) relu_forward(s.N * s.C * ps.P * ps.Q, y, y);
}

}  // namespace fastcnn::ref
