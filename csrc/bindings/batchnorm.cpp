// Bindings for batch normalization over channel dim 1 of (N, C), (N, C, L) or (N, C, H, W) arrays
// (any rank >= 2: the dims after C are flattened into L). running_mean and running_var are the one
// documented exception to "caller arrays are never modified": forward_train updates them in place,
// as PyTorch does, so they must be float32 C-contiguous writable arrays and are never converted.
#include <cmath>
#include <optional>
#include <string>

#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "common/shapes.h"
#include "cpu/batchnorm.h"

namespace fastcnn::bind {
namespace {

// x (or dy) as an (N, C, L) view.
BatchNormShape batchnorm_shape(const F32& x, const char* name) {
  if (x.ndim() < 2)
    throw py::value_error(std::string(name) +
                          ": expected an array (N, C), (N, C, L) or (N, C, H, W), got shape " +
                          shape_string(x));
  int64_t L = 1;
  for (py::ssize_t d = 2; d < x.ndim(); ++d) L *= x.shape(d);  // an existing array: no overflow
  return {x.shape(0), x.shape(1), L};
}

// An optional per-channel vector, converted and checked to be (C,); data is null for None.
struct OptionalVector {
  F32 array;
  const float* data;
};

OptionalVector channel_vector_or_none(py::handle obj, int64_t C, const char* name) {
  if (obj.is_none()) return {F32(), nullptr};
  F32 a = to_f32(obj, name);
  require_shape(a, {C}, name);
  return {a, a.data()};
}

F32 channel_vector(py::handle obj, int64_t C, const char* name) {
  F32 a = to_f32(obj, name);
  require_shape(a, {C}, name);
  return a;
}

// A running statistic that forward_train updates in place (the caller's own array, never a copy).
float* running_stat_inout(py::handle obj, int64_t C, const char* name) {
  return obj.is_none() ? nullptr : exact_f32(obj, {C}, name, /*written=*/true);
}

// Training needs eps > 0, as torch: a constant channel's variance is 0, so eps = 0 would make its
// invstd infinite.
void require_eps(float eps, bool training = false) {
  if (training ? !(eps > 0.0f) : !(eps >= 0.0f))
    throw py::value_error(std::string("eps: expected a value ") +
                          (training ? "> 0 in training" : ">= 0") + ", got " +
                          std::to_string(eps));
}

// The backward kernels take invstd, as training saves it; in eval mode it comes from the running
// variance.
F32 eval_invstd(py::handle rv_obj, int64_t C, float eps, const char* what) {
  F32 rv = channel_vector(rv_obj, C, "running_var");
  require_eps(eps);
  F32 invstd = new_f32({C}, what);
  for (int64_t c = 0; c < C; ++c)
    invstd.mutable_data()[c] =
        static_cast<float>(1.0 / std::sqrt(static_cast<double>(rv.data()[c]) + eps));
  return invstd;
}

// The three outputs of every batch norm backward, allocated with the GIL held.
struct Grads {
  F32 dx, dweight, dbias;
  Grads(const F32& x, int64_t C, const char* what)
      : dx(new_f32(shape_of(x), what)), dweight(new_f32({C}, what)), dbias(new_f32({C}, what)) {}
  py::tuple tuple() const { return py::make_tuple(dx, dweight, dbias); }
};

// Max pooling's output gradient for a pooled backward: dy (N, C, P, Q) of x's N and C, and the
// window maxima `indices` in x's planes.
struct PooledGrad {
  F32 dy;
  I64 indices;
  PooledShape shape;
  F32 relu_out;  // valid only when has_relu
  bool has_relu;
};

PooledGrad pooled_grad(py::handle dy_obj, py::handle indices_obj, py::handle relu_obj,
                       const F32& x, const BatchNormShape& s) {
  F32 dy = to_f32(dy_obj, "dy");
  require_ndim(dy, 4, "dy", "(N, C, P, Q)");
  if (dy.shape(0) != s.N || dy.shape(1) != s.C)
    throw py::value_error("dy: expected (" + std::to_string(s.N) + ", " + std::to_string(s.C) +
                          ", P, Q), the pooled shape of x " + shape_string(x) + ", got " +
                          shape_string(dy));
  I64 indices = index_array(indices_obj, shape_of(dy), s.L, "indices");
  const PooledShape shape{x.shape(2), x.shape(3), dy.shape(2), dy.shape(3)};
  if (relu_obj.is_none()) return {dy, indices, shape, F32(), false};
  F32 relu_out = to_f32(relu_obj, "relu_output");
  require_shape(relu_out, shape_of(dy), "relu_output");
  return {dy, indices, shape, relu_out, true};
}

}  // namespace

void register_batchnorm(py::module_& m, CpuVariant v) {
  const BatchNormOps ops = batchnorm_ops(v);

  m.def(
      "batchnorm2d_forward_train",
      [ops](py::handle x_obj, py::handle weight_obj, py::handle bias_obj, py::handle rm_obj,
            py::handle rv_obj, float momentum, float eps) {
        F32 x = to_f32(x_obj, "input");
        const BatchNormShape s = batchnorm_shape(x, "input");
        const OptionalVector weight = channel_vector_or_none(weight_obj, s.C, "weight");
        const OptionalVector bias = channel_vector_or_none(bias_obj, s.C, "bias");
        float* rm = running_stat_inout(rm_obj, s.C, "running_mean");
        float* rv = running_stat_inout(rv_obj, s.C, "running_var");
        require_eps(eps, true);
        if (s.N * s.L == 1)
          throw py::value_error(
              "input: Expected more than 1 value per channel when training, got input shape " +
              shape_string(x));
        F32 y = new_f32(shape_of(x), "batchnorm2d_forward_train output");
        F32 save_mean = new_f32({s.C}, "batchnorm2d_forward_train save_mean");
        F32 save_invstd = new_f32({s.C}, "batchnorm2d_forward_train save_invstd");
        const float *xp = x.data(), *wp = weight.data, *bp = bias.data;
        float *yp = y.mutable_data(), *mp = save_mean.mutable_data(),
              *ip = save_invstd.mutable_data();
        {
          py::gil_scoped_release nogil;  // only raw pointers and ints in here
          ops.batchnorm2d_forward_train(s, momentum, eps, xp, wp, bp, yp, mp, ip, rm, rv);
        }
        return py::make_tuple(y, save_mean, save_invstd);
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("momentum") = 0.1f, py::arg("eps") = 1e-5f,
      "Training-mode batch norm with batch statistics -> (y, save_mean, save_invstd). weight, "
      "bias,\n"
      "running_mean, running_var may be None; the running stats (float32 C-contiguous (C,) "
      "arrays)\n"
      "are updated in place with momentum and the unbiased batch variance. An empty batch leaves\n"
      "them untouched and gives save_mean = save_invstd = 0.");

  m.def(
      "batchnorm2d_forward_eval",
      [ops](py::handle x_obj, py::handle weight_obj, py::handle bias_obj, py::handle rm_obj,
            py::handle rv_obj, float eps) {
        F32 x = to_f32(x_obj, "input");
        const BatchNormShape s = batchnorm_shape(x, "input");
        const OptionalVector weight = channel_vector_or_none(weight_obj, s.C, "weight");
        const OptionalVector bias = channel_vector_or_none(bias_obj, s.C, "bias");
        F32 rm = channel_vector(rm_obj, s.C, "running_mean");
        F32 rv = channel_vector(rv_obj, s.C, "running_var");
        require_eps(eps);
        F32 y = new_f32(shape_of(x), "batchnorm2d_forward_eval output");
        const float *xp = x.data(), *wp = weight.data, *bp = bias.data, *rmp = rm.data(),
                    *rvp = rv.data();
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release nogil;
          ops.batchnorm2d_forward_eval(s, eps, xp, wp, bp, rmp, rvp, yp);
        }
        return y;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("eps") = 1e-5f,
      "Eval-mode batch norm: y = (input - running_mean) / sqrt(running_var + eps) * weight + "
      "bias.");

  m.def(
      "batchnorm2d_max_pool2d_forward",
      [ops](py::handle x_obj, py::handle weight_obj, py::handle bias_obj, py::handle rm_obj,
            py::handle rv_obj, bool training, bool relu, float momentum, float eps,
            bool return_indices) {
        F32 x = to_f32(x_obj, "x");
        require_ndim(x, 4, "x", "(N, C, H, W)");
        const BatchNormShape s = batchnorm_shape(x, "x");
        if (s.L >= (int64_t{1} << 31))
          throw py::value_error("x: planes of 2^31 or more elements are not supported, got " +
                                shape_string(x));
        const OptionalVector weight = channel_vector_or_none(weight_obj, s.C, "weight");
        const OptionalVector bias = channel_vector_or_none(bias_obj, s.C, "bias");
        require_eps(eps, training);
        float *rm = nullptr, *rv = nullptr;
        F32 rm_eval, rv_eval;
        if (training) {
          rm = running_stat_inout(rm_obj, s.C, "running_mean");
          rv = running_stat_inout(rv_obj, s.C, "running_var");
          if (s.N * s.L == 1)
            throw py::value_error(
                "x: Expected more than 1 value per channel when training, got input shape " +
                shape_string(x));
        } else {
          // Read only: the kernel updates running stats in training alone.
          rm_eval = channel_vector(rm_obj, s.C, "running_mean");
          rv_eval = channel_vector(rv_obj, s.C, "running_var");
          rm = const_cast<float*>(rm_eval.data());
          rv = const_cast<float*>(rv_eval.data());
        }
        // As max_pool2d (and torch) refuse a window that does not fit: not an empty output.
        if (x.shape(2) < 2 || x.shape(3) < 2)
          throw py::value_error(
              "x: the 2x2 windows of the max pooling (kernel_size 2, stride 2) do not fit its "
              "height and width (" + std::to_string(x.shape(2)) + ", " +
              std::to_string(x.shape(3)) + "); expected both at least 2, got shape " +
              shape_string(x));
        const PooledShape ps{x.shape(2), x.shape(3), x.shape(2) / 2, x.shape(3) / 2};
        F32 y = new_f32({s.N, s.C, ps.P, ps.Q}, "batchnorm2d_max_pool2d_forward output");
        std::optional<I64> indices;
        if (return_indices)
          indices = new_i64({s.N, s.C, ps.P, ps.Q}, "batchnorm2d_max_pool2d_forward indices");
        std::optional<F32> save_mean, save_invstd;  // training only
        if (training) {
          save_mean = new_f32({s.C}, "batchnorm2d_max_pool2d_forward save_mean");
          save_invstd = new_f32({s.C}, "batchnorm2d_max_pool2d_forward save_invstd");
        }
        const float *xp = x.data(), *wp = weight.data, *bp = bias.data;
        float* yp = y.mutable_data();
        float* mp = save_mean ? save_mean->mutable_data() : nullptr;
        float* isp = save_invstd ? save_invstd->mutable_data() : nullptr;
        int64_t* ip = indices ? indices->mutable_data() : nullptr;
        {
          py::gil_scoped_release nogil;
          ops.batchnorm2d_max_pool2d_forward(s, ps, training, relu, momentum, eps, xp, wp, bp, rm,
                                             rv, yp, ip, mp, isp);
        }
        py::object idx = indices ? py::object(*indices) : py::none();
        if (!training) return py::tuple(py::make_tuple(y, idx, py::none(), py::none()));
        return py::tuple(py::make_tuple(y, idx, *save_mean, *save_invstd));
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("training"), py::arg("relu"), py::arg("momentum") = 0.1f,
      py::arg("eps") = 1e-5f, py::arg("return_indices") = true,
      "max_pool2d(batch_norm(x), 2) (then relu when relu=True) without the full-size normalized\n"
      "x -> (y, indices, save_mean, save_invstd), the save_* None in eval mode, indices None\n"
      "when return_indices=False (inference: no int64 stores). Training: as\n"
      "batchnorm2d_forward_train (running stats may be None); eval: as batchnorm2d_forward_eval.\n"
      "Windows 2x2 stride 2, floor mode: an odd height or width leaves its last row or column out.");

  m.def(
      "batchnorm2d_backward",
      [ops](py::handle dy_obj, py::handle x_obj, py::handle weight_obj, py::handle mean_obj,
            py::handle invstd_obj, bool training) {
        F32 dy = to_f32(dy_obj, "dy");
        F32 x = to_f32(x_obj, "x");
        const BatchNormShape s = batchnorm_shape(x, "x");
        require_shape(dy, shape_of(x), "dy");
        const OptionalVector weight = channel_vector_or_none(weight_obj, s.C, "weight");
        F32 mean = channel_vector(mean_obj, s.C, "mean");
        F32 invstd = channel_vector(invstd_obj, s.C, "invstd");
        Grads out(x, s.C, "batchnorm2d_backward output");
        const float *dyp = dy.data(), *xp = x.data(), *wp = weight.data, *mp = mean.data(),
                    *ip = invstd.data();
        float *dxp = out.dx.mutable_data(), *dwp = out.dweight.mutable_data(),
              *dbp = out.dbias.mutable_data();
        {
          py::gil_scoped_release nogil;
          ops.batchnorm2d_backward(s, training, dyp, xp, wp, mp, ip, dxp, dwp, dbp);
        }
        return out.tuple();
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("mean"), py::arg("invstd"),
      py::arg("training") = true,
      "Batch norm gradients -> (dx, dweight, dbias). training=True: mean/invstd are the batch\n"
      "statistics from forward_train (save_mean, save_invstd) and dx includes the paths through\n"
      "them; training=False: mean/invstd are constants (see batchnorm2d_backward_eval).");

  // Both pooled forms: mean/invstd (C,) given, or made from the running stats in eval mode.
  const auto backward_pooled = [ops](const PooledGrad& g, const F32& x, const BatchNormShape& s,
                                     const OptionalVector& weight, const F32& mean,
                                     const F32& invstd, bool training) {
    Grads out(x, s.C, "batchnorm2d_backward_pooled output");
    const float *gp = g.dy.data(), *xp = x.data(), *wp = weight.data, *mp = mean.data(),
                *isp = invstd.data();
    const int64_t* ip = g.indices.data();
    const float* rp = g.has_relu ? g.relu_out.data() : nullptr;
    float *dxp = out.dx.mutable_data(), *dwp = out.dweight.mutable_data(),
          *dbp = out.dbias.mutable_data();
    bool in_planes;
    {
      py::gil_scoped_release nogil;
      in_planes = ops.batchnorm2d_backward_pooled(s, g.shape, training, gp, ip, rp, xp, wp, mp,
                                                  isp, dxp, dwp, dbp);
    }
    // The kernel checked the indices as it read them; find the culprit for the message.
    if (!in_planes) require_indices_in_plane(g.indices, s.L, "indices");
    return out.tuple();
  };

  m.def(
      "batchnorm2d_backward_pooled",
      [backward_pooled](py::handle dy_obj, py::handle indices_obj, py::handle x_obj,
                        py::handle weight_obj, py::handle mean_obj, py::handle invstd_obj,
                        bool training, py::handle relu_obj) {
        F32 x = to_f32(x_obj, "x");
        require_ndim(x, 4, "x", "(N, C, H, W)");
        const BatchNormShape s = batchnorm_shape(x, "x");
        const PooledGrad g = pooled_grad(dy_obj, indices_obj, relu_obj, x, s);
        const OptionalVector weight = channel_vector_or_none(weight_obj, s.C, "weight");
        return backward_pooled(g, x, s, weight, channel_vector(mean_obj, s.C, "mean"),
                               channel_vector(invstd_obj, s.C, "invstd"), training);
      },
      py::arg("dy"), py::arg("indices"), py::arg("x"), py::arg("weight"), py::arg("mean"),
      py::arg("invstd"), py::arg("training") = true, py::arg("relu_output") = py::none(),
      "batchnorm2d_backward of max pooling's input gradient -> (dx, dweight, dbias): dy (N, C, P, "
      "Q)\n"
      "is the gradient of the pooling's output and indices (int, dy's shape) its window maxima in "
      "x's\n"
      "(H, W) planes, as max_pool2d_forward returned them; equal to max_pool2d_backward then\n"
      "batchnorm2d_backward, without the full-size gradient between them. relu_output (dy's\n"
      "shape): a ReLU after the pooling, dy then the gradient of its output (relu_backward first).");

  m.def(
      "batchnorm2d_backward_pooled_eval",
      [backward_pooled](py::handle dy_obj, py::handle indices_obj, py::handle x_obj,
                        py::handle weight_obj, py::handle rm_obj, py::handle rv_obj, float eps,
                        py::handle relu_obj) {
        F32 x = to_f32(x_obj, "x");
        require_ndim(x, 4, "x", "(N, C, H, W)");
        const BatchNormShape s = batchnorm_shape(x, "x");
        const PooledGrad g = pooled_grad(dy_obj, indices_obj, relu_obj, x, s);
        const OptionalVector weight = channel_vector_or_none(weight_obj, s.C, "weight");
        F32 rm = channel_vector(rm_obj, s.C, "running_mean");
        F32 invstd = eval_invstd(rv_obj, s.C, eps, "batchnorm2d_backward_pooled_eval invstd");
        return backward_pooled(g, x, s, weight, rm, invstd, false);
      },
      py::arg("dy"), py::arg("indices"), py::arg("x"), py::arg("weight"),
      py::arg("running_mean"), py::arg("running_var"), py::arg("eps") = 1e-5f,
      py::arg("relu_output") = py::none(),
      "batchnorm2d_backward_pooled of eval-mode batch norm (running stats are constants).");

  m.def(
      "batchnorm2d_backward_eval",
      [ops](py::handle dy_obj, py::handle x_obj, py::handle weight_obj, py::handle rm_obj,
            py::handle rv_obj, float eps) {
        F32 dy = to_f32(dy_obj, "dy");
        F32 x = to_f32(x_obj, "x");
        const BatchNormShape s = batchnorm_shape(x, "x");
        require_shape(dy, shape_of(x), "dy");
        const OptionalVector weight = channel_vector_or_none(weight_obj, s.C, "weight");
        F32 rm = channel_vector(rm_obj, s.C, "running_mean");
        F32 invstd = eval_invstd(rv_obj, s.C, eps, "batchnorm2d_backward_eval invstd");
        Grads out(x, s.C, "batchnorm2d_backward_eval output");
        const float *dyp = dy.data(), *xp = x.data(), *wp = weight.data, *mp = rm.data(),
                    *ip = invstd.data();
        float *dxp = out.dx.mutable_data(), *dwp = out.dweight.mutable_data(),
              *dbp = out.dbias.mutable_data();
        {
          py::gil_scoped_release nogil;
          ops.batchnorm2d_backward(s, false, dyp, xp, wp, mp, ip, dxp, dwp, dbp);
        }
        return out.tuple();
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("eps") = 1e-5f,
      "Gradients of eval-mode batch norm (running stats are constants) -> (dx, dweight, dbias):\n"
      "dx = dy * weight / sqrt(running_var + eps).");
}

}  // namespace fastcnn::bind
