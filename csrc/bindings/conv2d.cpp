// Bindings for the conv2d family: argument checks, output allocation, workspace, GIL release.
// x (N, C, H, W), weight (K, C/groups, R, S), bias (K,), y/dy (N, K, P, Q).
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "bindings/weight_cache.h"
#include "common/threads.h"
#include "cpu/conv2d.h"

namespace fastcnn::bind {
namespace {

// Larger strides, paddings or dilations are certainly mistakes, and bounding them keeps every
// size computed below far from int64 overflow.
constexpr int64_t kMaxParam = int64_t{1} << 31;

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

int64_t as_int(py::handle obj, const char* name) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(std::string(name) + ": expected an int, got " + type_name(obj) + " " +
                         std::string(py::repr(obj)));
  py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!index) throw py::error_already_set();
  const long long v = PyLong_AsLongLong(index.ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + ": " + std::string(py::repr(obj)) +
                          " does not fit in 64 bits");
  }
  return v;
}

// An int (repeated n times) or a sequence of exactly n ints.
std::vector<int64_t> int_tuple(py::handle obj, size_t n, const char* name, const char* form) {
  if (PyIndex_Check(obj.ptr()) && !PyBool_Check(obj.ptr()))
    return std::vector<int64_t>(n, as_int(obj, name));
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj))
    throw py::type_error(std::string(name) + ": expected an int or " + form + ", got " +
                         type_name(obj));
  py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  if (seq.size() != n)
    throw py::value_error(std::string(name) + ": expected an int or " + form + ", got " +
                          std::string(py::repr(obj)));
  std::vector<int64_t> out;
  for (py::handle item : seq) out.push_back(as_int(item, name));
  return out;
}

void require_range(const std::vector<int64_t>& v, int64_t lo, const char* name) {
  for (int64_t e : v)
    if (e < lo || e > kMaxParam)
      throw py::value_error(std::string(name) + ": expected values in [" + std::to_string(lo) +
                            ", 2**31], got " + shape_string(v));
}

struct ConvParams {
  std::vector<int64_t> stride, pad, dilation;  // pad: top, left, bottom, right
  int64_t groups;
};

ConvParams parse_params(py::handle stride, py::handle padding, py::handle dilation,
                        py::handle groups) {
  ConvParams p;
  p.stride = int_tuple(stride, 2, "stride", "a pair (sh, sw)");
  require_range(p.stride, 1, "stride");
  if (PyIndex_Check(padding.ptr()) || !py::isinstance<py::sequence>(padding) ||
      py::len(padding) != 2) {
    p.pad = int_tuple(padding, 4, "padding", "(ph, pw) or (top, left, bottom, right)");
  } else {
    const std::vector<int64_t> hw = int_tuple(padding, 2, "padding", "(ph, pw)");
    p.pad = {hw[0], hw[1], hw[0], hw[1]};
  }
  require_range(p.pad, 0, "padding");
  p.dilation = int_tuple(dilation, 2, "dilation", "a pair (dh, dw)");
  require_range(p.dilation, 1, "dilation");
  p.groups = as_int(groups, "groups");
  require_range({p.groups}, 1, "groups");
  return p;
}

// Checks x (N, C, H, W) against weight (K, C/groups, R, S) and the parameters; returns the shape
// with the output size. x_name/w_name name the arguments the sizes came from.
Conv2dShape conv_shape(const std::vector<int64_t>& xs, const std::vector<int64_t>& ws,
                       const ConvParams& p, const char* x_name, const char* w_name) {
  Conv2dShape s{};
  s.N = xs[0], s.C = xs[1], s.H = xs[2], s.W = xs[3];
  s.K = ws[0], s.R = ws[2], s.S = ws[3];
  s.stride_h = p.stride[0], s.stride_w = p.stride[1];
  s.pad_h = p.pad[0], s.pad_w = p.pad[1];
  s.dil_h = p.dilation[0], s.dil_w = p.dilation[1];
  s.groups = p.groups;
  const std::string g = std::to_string(p.groups);
  if (s.C % s.groups != 0 || s.C < s.groups)
    throw py::value_error(std::string(x_name) + ": expected a channel count C that is a positive " +
                          "multiple of groups=" + g + ", got shape " + shape_string(xs));
  if (s.K % s.groups != 0)
    throw py::value_error(std::string(w_name) + ": expected out-channels K (shape[0]) divisible " +
                          "by groups=" + g + ", got shape " + shape_string(ws));
  if (ws[1] != s.C / s.groups)
    throw py::value_error(std::string(w_name) + ": expected shape[1] == C/groups = " +
                          std::to_string(s.C / s.groups) + " (" + x_name + " has shape " +
                          shape_string(xs) + ", groups=" + g + "), got shape " + shape_string(ws));
  if (s.R < 1 || s.S < 1)
    throw py::value_error(std::string(w_name) + ": expected a kernel of at least 1x1, got shape " +
                          shape_string(ws));
  const int64_t span_h = checked_mul(s.dil_h, s.R - 1), span_w = checked_mul(s.dil_w, s.S - 1);
  if (span_h < 0 || span_w < 0 || span_h > kMaxParam * kMaxParam || span_w > kMaxParam * kMaxParam)
    throw py::value_error(std::string(w_name) + ": the dilated kernel of shape " +
                          shape_string(ws) + " is too large");
  s.P = window_output_size(s.H, s.R, s.stride_h, p.pad[0], p.pad[2], s.dil_h);
  s.Q = window_output_size(s.W, s.S, s.stride_w, p.pad[1], p.pad[3], s.dil_w);
  if (s.P < 1 || s.Q < 1)
    throw py::value_error(
        std::string(w_name) + ": the kernel (R, S) = (" + std::to_string(s.R) + ", " +
        std::to_string(s.S) + ") with dilation " + shape_string(p.dilation) + " spans (" +
        std::to_string(span_h + 1) + ", " + std::to_string(span_w + 1) +
        "), larger than the padded input: " + x_name + " (H, W) = (" + std::to_string(s.H) +
        ", " + std::to_string(s.W) + ") plus padding (top, left, bottom, right) = " +
        shape_string(p.pad));
  return s;
}

std::vector<int64_t> output_shape(const Conv2dShape& s) { return {s.N, s.K, s.P, s.Q}; }

std::vector<int64_t> shape_arg(py::handle obj, const char* name, const char* layout) {
  std::vector<int64_t> v = int_tuple(obj, 4, name, layout);
  // Sizes past int32 would overflow the output-size math (size + padding); no real array has them.
  constexpr int64_t kLimit = std::numeric_limits<int32_t>::max();
  for (int64_t d : v)
    if (d < 0 || d > kLimit)
      throw py::value_error(std::string(name) + ": expected sizes " + layout + " in [0, " +
                            std::to_string(kLimit) + "], got " + shape_string(v));
  return v;
}

// Scratch for one kernel call of `pass`, allocated with the GIL held so a failure raises
// MemoryError; *ws describes it, with the kernel threads lowered to what the pass will use.
Scratch workspace(const Conv2dOps& ops, const Conv2dShape& s, Conv2dPass pass, Workspace* ws) {
  int threads = kernel_threads();
  const int64_t floats = ops.workspace_floats(s, pass, threads);
  Scratch scratch = new_scratch(floats);
  *ws = Workspace{scratch.get(), threads, floats};
  return scratch;
}

}  // namespace

void register_conv2d(py::module_& m, CpuVariant v) {
  const Conv2dOps ops = conv2d_ops(v);

  m.def("conv2d_forward", [ops, v](py::handle x_obj, py::handle w_obj, py::handle b_obj,
                                   py::handle stride, py::handle padding, py::handle dilation,
                                   py::handle groups, py::handle weight_cache) {
    F32 x = to_f32(x_obj, "input");
    F32 w = to_f32(w_obj, "weight");
    const std::optional<F32> b = to_f32_or_none(b_obj, "bias");
    const bool has_bias = b.has_value();
    require_ndim(x, 4, "input", "(N, C, H, W)");
    require_ndim(w, 4, "weight", "(K, C/groups, R, S)");
    const ConvParams p = parse_params(stride, padding, dilation, groups);
    const Conv2dShape s = conv_shape(shape_of(x), shape_of(w), p, "input", "weight");
    if (has_bias) require_shape(*b, {s.K}, "bias");
    F32 y = new_f32(output_shape(s), "conv2d_forward output");
    if (!weight_cache.is_none() && !py::isinstance<WeightCache>(weight_cache))
      throw py::type_error("weight_cache: expected a WeightCache or None, got " +
                           type_name(weight_cache));
    WeightCache* cache = weight_cache.is_none() ? nullptr : weight_cache.cast<WeightCache*>();
    const int64_t packed_floats = cache ? ops.packed_weight_floats(s) : 0;
    Workspace ws;
    const Scratch scratch = workspace(ops, s, {Conv2dPass::forward}, &ws);
    const float *xp = x.data(), *wp = w.data(), *bp = has_bias ? b->data() : nullptr;
    float* yp = y.mutable_data();
    {
      py::gil_scoped_release nogil;  // only raw pointers and ints in here
      std::unique_lock<std::mutex> hold;
      const float* packed = nullptr;
      if (packed_floats > 0) {
        const std::vector<int64_t> key = {static_cast<int64_t>(v), s.K, s.channels_per_group(),
                                          s.R, s.S, s.groups, s.stride_h, s.stride_w, s.dil_h,
                                          s.dil_w};
        packed = cache->packed(hold, key, wp, w.size(), packed_floats,
                               [&](float* out) { ops.pack_weight(s, wp, out); });
      }
      ops.forward(s, xp, wp, packed, bp, yp, ws);
    }
    return y;
  }, py::arg("input"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = 1,
     py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
     py::arg("weight_cache") = py::none(),
     "y = conv2d(input, weight) + bias. stride/dilation: int or (h, w); padding: int, (h, w) or "
     "(top, left, bottom, right). weight_cache: a WeightCache that keeps the packed weight "
     "between calls (one per layer), or None.");

  m.def("conv2d_backward_input", [ops](py::handle dy_obj, py::handle w_obj, py::handle x_shape,
                                       py::handle stride, py::handle padding,
                                       py::handle dilation, py::handle groups) {
    F32 dy = to_f32(dy_obj, "dy");
    F32 w = to_f32(w_obj, "weight");
    require_ndim(w, 4, "weight", "(K, C/groups, R, S)");
    const std::vector<int64_t> xs = shape_arg(x_shape, "x_shape", "(N, C, H, W)");
    const ConvParams p = parse_params(stride, padding, dilation, groups);
    const Conv2dShape s = conv_shape(xs, shape_of(w), p, "x_shape", "weight");
    require_shape(dy, output_shape(s), "dy");
    F32 dx = new_f32(xs, "conv2d_backward_input output");
    Workspace ws;
    const Scratch scratch = workspace(ops, s, {Conv2dPass::backward_input}, &ws);
    const float *dyp = dy.data(), *wp = w.data();
    float* dxp = dx.mutable_data();
    {
      py::gil_scoped_release nogil;
      ops.backward_input(s, dyp, wp, dxp, ws);
    }
    return dx;
  }, py::arg("dy"), py::arg("weight"), py::arg("x_shape"), py::arg("stride") = 1,
     py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
     "dx, the gradient of conv2d w.r.t. its input of shape x_shape.");

  m.def("conv2d_backward_weight", [ops](py::handle dy_obj, py::handle x_obj,
                                        py::handle weight_shape, py::handle stride,
                                        py::handle padding, py::handle dilation,
                                        py::handle groups, bool need_weight, bool need_bias) {
    F32 dy = to_f32(dy_obj, "dy");
    F32 x = to_f32(x_obj, "x");
    require_ndim(x, 4, "x", "(N, C, H, W)");
    const std::vector<int64_t> ws =
        shape_arg(weight_shape, "weight_shape", "(K, C/groups, R, S)");
    const ConvParams p = parse_params(stride, padding, dilation, groups);
    const Conv2dShape s = conv_shape(shape_of(x), ws, p, "x", "weight_shape");
    require_shape(dy, output_shape(s), "dy");
    float *dwp, *dbp;
    py::object dw_obj = optional_f32(need_weight, ws, "conv2d_backward_weight output", &dwp);
    py::object db_obj = optional_f32(need_bias, {s.K}, "conv2d_backward_weight bias output", &dbp);
    Workspace scratch_ws;
    const Scratch scratch = workspace(
        ops, s, {Conv2dPass::backward_weight, dwp != nullptr, dbp != nullptr}, &scratch_ws);
    const float *dyp = dy.data(), *xp = x.data();
    if (dwp || dbp) {
      py::gil_scoped_release nogil;
      ops.backward_weight(s, dyp, xp, dwp, dbp, scratch_ws);
    }
    return py::make_tuple(dw_obj, db_obj);
  }, py::arg("dy"), py::arg("x"), py::arg("weight_shape"), py::arg("stride") = 1,
     py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
     py::arg("need_weight") = true, py::arg("need_bias") = true,
     "(dw, db), the gradients of conv2d w.r.t. weight and bias; None where not needed.");
}

}  // namespace fastcnn::bind
