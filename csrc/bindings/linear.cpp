// Bindings for the linear family: argument checks, output allocation, workspace, GIL release.
// x (..., C), weight (K, C), bias (K,), y/dy (..., K); the leading dimensions are flattened into
// N rows for the kernels.
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "common/shapes.h"
#include "common/threads.h"
#include "cpu/linear.h"

namespace fastcnn::bind {
namespace {

void require_features(const py::array& a, const char* name, const char* layout) {
  if (a.ndim() < 1)
    throw py::value_error(std::string(name) + ": expected an array of shape " + layout +
                          " with at least 1 dimension, got shape " + shape_string(a));
}

// Rows: the product of every dimension but the last.
int64_t leading_rows(const py::array& a) {
  int64_t n = 1;
  for (py::ssize_t d = 0; d + 1 < a.ndim(); ++d) n = checked_mul(n, a.shape(d));
  return n;
}

std::vector<int64_t> with_last(const py::array& a, int64_t last) {
  std::vector<int64_t> shape = shape_of(a);
  shape.back() = last;
  return shape;
}

Scratch workspace(const LinearOps& ops, const LinearShape& s, Workspace* ws) {
  int threads = kernel_threads();
  const int64_t floats = ops.workspace_floats(s, threads);
  Scratch scratch = new_scratch(floats);
  *ws = Workspace{scratch.get(), threads, floats};
  return scratch;
}

}  // namespace

void register_linear(py::module_& m, CpuVariant v) {
  const LinearOps ops = linear_ops(v);

  m.def("linear_forward", [ops](py::handle x_obj, py::handle w_obj, py::handle b_obj) {
    F32 x = to_f32(x_obj, "input");
    F32 w = to_f32(w_obj, "weight");
    const std::optional<F32> b = to_f32_or_none(b_obj, "bias");
    const bool has_bias = b.has_value();
    require_features(x, "input", "(..., in_features)");
    require_ndim(w, 2, "weight", "(out_features, in_features)");
    const LinearShape s{leading_rows(x), w.shape(1), w.shape(0)};
    if (x.shape(x.ndim() - 1) != s.C)
      throw py::value_error("input: expected last dimension in_features = " + std::to_string(s.C) +
                            " (weight has shape " + shape_string(w) + "), got shape " +
                            shape_string(x));
    if (has_bias) require_shape(*b, {s.K}, "bias");
    F32 y = new_f32(with_last(x, s.K), "linear_forward output");
    Workspace scratch_ws;
    const Scratch scratch = workspace(ops, s, &scratch_ws);
    const float *xp = x.data(), *wp = w.data(), *bp = has_bias ? b->data() : nullptr;
    float* yp = y.mutable_data();
    {
      py::gil_scoped_release nogil;  // only raw pointers and ints in here
      ops.forward(s, xp, wp, bp, yp, scratch_ws);
    }
    return y;
  }, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(),
     "y = input @ weight.T + bias for input of shape (..., in_features).");

  m.def("linear_backward_input", [ops](py::handle dy_obj, py::handle w_obj) {
    F32 dy = to_f32(dy_obj, "dy");
    F32 w = to_f32(w_obj, "weight");
    require_features(dy, "dy", "(..., out_features)");
    require_ndim(w, 2, "weight", "(out_features, in_features)");
    const LinearShape s{leading_rows(dy), w.shape(1), w.shape(0)};
    if (dy.shape(dy.ndim() - 1) != s.K)
      throw py::value_error("dy: expected last dimension out_features = " + std::to_string(s.K) +
                            " (weight has shape " + shape_string(w) + "), got shape " +
                            shape_string(dy));
    F32 dx = new_f32(with_last(dy, s.C), "linear_backward_input output");
    Workspace scratch_ws;
    const Scratch scratch = workspace(ops, s, &scratch_ws);
    const float *dyp = dy.data(), *wp = w.data();
    float* dxp = dx.mutable_data();
    {
      py::gil_scoped_release nogil;
      ops.backward_input(s, dyp, wp, dxp, scratch_ws);
    }
    return dx;
  }, py::arg("dy"), py::arg("weight"), "dx = dy @ weight, the gradient of linear w.r.t. x.");

  m.def("linear_backward_weight", [ops](py::handle dy_obj, py::handle x_obj, bool need_weight,
                                        bool need_bias) {
    F32 dy = to_f32(dy_obj, "dy");
    F32 x = to_f32(x_obj, "x");
    require_features(dy, "dy", "(..., out_features)");
    require_features(x, "x", "(..., in_features)");
    std::vector<int64_t> lead = shape_of(x), dy_lead = shape_of(dy);
    lead.pop_back();
    dy_lead.pop_back();
    if (lead != dy_lead)
      throw py::value_error("dy: expected the leading dimensions of x " + shape_string(x) +
                            " followed by out_features, got shape " + shape_string(dy));
    const LinearShape s{leading_rows(x), x.shape(x.ndim() - 1), dy.shape(dy.ndim() - 1)};
    float *dwp, *dbp;
    py::object dw_obj = optional_f32(need_weight, {s.K, s.C}, "linear_backward_weight output", &dwp);
    py::object db_obj = optional_f32(need_bias, {s.K}, "linear_backward_weight bias output", &dbp);
    Workspace scratch_ws;
    const Scratch scratch = workspace(ops, s, &scratch_ws);
    const float *dyp = dy.data(), *xp = x.data();
    if (dwp || dbp) {
      py::gil_scoped_release nogil;
      ops.backward_weight(s, dyp, xp, dwp, dbp, scratch_ws);
    }
    return py::make_tuple(dw_obj, db_obj);
  }, py::arg("dy"), py::arg("x"), py::arg("need_weight") = true, py::arg("need_bias") = true,
     "(dw, db) = (dy^T @ x, dy summed over rows), flattening leading dims; None where not needed.");
}

}  // namespace fastcnn::bind
