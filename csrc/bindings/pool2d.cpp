// Bindings for the pool2d family: max, average and adaptive average pooling, forward and backward.
// Every size argument is checked here (the kernels trust their shape struct), so _core called
// directly raises the same ValueError/TypeError as fastcnn.functional.
#include <array>
#include <limits>
#include <string>

#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "cpu/pool2d.h"

namespace fastcnn::bind {
namespace {

using Pair = std::array<int64_t, 2>;

std::string pair_string(Pair v) {
  return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")";
}

// A Python int (numpy integers too, bool refused) within int32 range, so that no size product
// below can overflow.
int64_t small_int(py::handle obj, const char* name) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error(std::string(name) + ": expected an int or a pair of ints, got " +
                         std::string(py::repr(obj)));
  const auto value = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!value) throw py::error_already_set();
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  constexpr long long kLimit = std::numeric_limits<int32_t>::max();
  if (overflow != 0 || v > kLimit || v < -kLimit)
    throw py::value_error(std::string(name) + ": expected values of magnitude <= " +
                          std::to_string(kLimit) + ", got " + std::string(py::repr(obj)));
  return v;
}

// An int or a pair (h, w) of ints, each >= minimum.
Pair int_pair(py::handle obj, const char* name, int64_t minimum) {
  Pair out;
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    const auto seq = py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != 2)
      throw py::value_error(std::string(name) + ": expected an int or a pair (h, w), got " +
                            std::string(py::repr(obj)));
    out = {small_int(seq[0], name), small_int(seq[1], name)};
  } else {
    const int64_t v = small_int(obj, name);
    out = {v, v};
  }
  if (out[0] < minimum || out[1] < minimum)
    throw py::value_error(std::string(name) + ": expected values >= " + std::to_string(minimum) +
                          ", got " + pair_string(out));
  return out;
}

F32 nchw_input(py::handle obj, const char* name) {
  F32 x = to_f32(obj, name);
  require_ndim(x, 4, name, "(N, C, H, W)");
  if (x.shape(2) < 1 || x.shape(3) < 1)
    throw py::value_error(std::string(name) + ": expected H and W >= 1, got shape " +
                          shape_string(x));
  return x;
}

// The window geometry of max_pool2d (dilation > 1 allowed) or avg_pool2d (dilation 1), checked as
// PyTorch does: padding at most half the kernel, and a window that fits the padded input.
Pool2dShape window_shape(const F32& x, py::handle kernel_obj, py::handle stride_obj,
                         py::handle padding_obj, Pair dilation, bool ceil_mode) {
  const Pair kernel = int_pair(kernel_obj, "kernel_size", 1);
  const Pair stride = stride_obj.is_none() ? kernel : int_pair(stride_obj, "stride", 1);
  const Pair padding = int_pair(padding_obj, "padding", 0);
  if (padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2)
    throw py::value_error("padding: expected at most half of kernel_size " + pair_string(kernel) +
                          ", that is " + pair_string({kernel[0] / 2, kernel[1] / 2}) + ", got " +
                          pair_string(padding));
  Pool2dShape s{};
  s.N = x.shape(0), s.C = x.shape(1), s.H = x.shape(2), s.W = x.shape(3);
  s.R = kernel[0], s.S = kernel[1];
  s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_h = padding[0], s.pad_w = padding[1];
  s.dil_h = dilation[0], s.dil_w = dilation[1];
  s.P = window_output_size(s.H, s.R, s.stride_h, s.pad_h, s.pad_h, s.dil_h, ceil_mode);
  s.Q = window_output_size(s.W, s.S, s.stride_w, s.pad_w, s.pad_w, s.dil_w, ceil_mode);
  if (s.P < 1 || s.Q < 1)
    throw py::value_error(
        "kernel_size: the window " +
        pair_string({s.dil_h * (s.R - 1) + 1, s.dil_w * (s.S - 1) + 1}) +
        " (kernel_size " + pair_string(kernel) + ", dilation " + pair_string(dilation) +
        ") does not fit the padded input " +
        pair_string({s.H + 2 * s.pad_h, s.W + 2 * s.pad_w}) + " of x with shape " +
        shape_string(x));
  return s;
}

// With dilation, a window that starts in the padding can step over a small input entirely;
// PyTorch then reports an index outside the plane. Refuse such a geometry instead.
void require_windows_touch_input(const Pool2dShape& s) {
  const int64_t sizes[2][5] = {{s.P, s.stride_h, s.pad_h, s.dil_h, s.H},
                               {s.Q, s.stride_w, s.pad_w, s.dil_w, s.W}};
  for (const auto& a : sizes) {
    for (int64_t i = 0; i < a[0]; ++i) {
      const int64_t start = i * a[1] - a[2];
      const int64_t first_tap = start >= 0 ? start : start + a[3] * ((-start + a[3] - 1) / a[3]);
      if (first_tap >= a[4])
        throw py::value_error("dilation: with dilation " + pair_string({s.dil_h, s.dil_w}) +
                              " and padding " + pair_string({s.pad_h, s.pad_w}) +
                              " a pooling window covers no element of the input (" +
                              std::to_string(s.H) + ", " + std::to_string(s.W) + ")");
    }
  }
}

Pool2dShape max_pool_shape(const F32& x, py::handle kernel, py::handle stride, py::handle padding,
                           py::handle dilation, bool ceil_mode) {
  const Pool2dShape s =
      window_shape(x, kernel, stride, padding, int_pair(dilation, "dilation", 1), ceil_mode);
  require_windows_touch_input(s);
  return s;
}

AvgPoolMode avg_mode(bool count_include_pad, py::handle divisor_override) {
  AvgPoolMode mode{count_include_pad, 0};
  if (!divisor_override.is_none()) {
    mode.divisor_override = small_int(divisor_override, "divisor_override");
    if (mode.divisor_override == 0)
      throw py::value_error("divisor_override: expected a nonzero int or None, got 0");
  }
  return mode;
}

std::vector<int64_t> output_shape(const Pool2dShape& s) { return {s.N, s.C, s.P, s.Q}; }

// output_size: an int, or a pair whose entries are ints or None (None keeps that input size).
Pair adaptive_output(py::handle obj, const F32& x) {
  py::object parts[2] = {py::reinterpret_borrow<py::object>(obj),
                         py::reinterpret_borrow<py::object>(obj)};
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    const auto seq = py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != 2)
      throw py::value_error("output_size: expected an int or a pair (h, w), got " +
                            std::string(py::repr(obj)));
    parts[0] = seq[0];
    parts[1] = seq[1];
  }
  Pair out;
  for (int i = 0; i < 2; ++i) {
    out[i] = parts[i].is_none() ? x.shape(2 + i) : small_int(parts[i], "output_size");
  }
  if (out[0] < 1 || out[1] < 1)
    throw py::value_error("output_size: expected values >= 1, got " + pair_string(out));
  return out;
}

}  // namespace

void register_pool2d(py::module_& m, CpuVariant v) {
  const Pool2dOps ops = pool2d_ops(v);

  m.def("max_pool2d_forward",
        [ops](py::handle x_obj, py::handle kernel_size, py::handle stride, py::handle padding,
              py::handle dilation, bool ceil_mode, bool need_indices, bool relu) {
          F32 x = nchw_input(x_obj, "input");
          const Pool2dShape s =
              max_pool_shape(x, kernel_size, stride, padding, dilation, ceil_mode);
          F32 y = new_f32(output_shape(s), "max_pool2d_forward output");
          py::object indices = py::none();
          int64_t* ip = nullptr;
          if (need_indices) {
            I64 i = new_i64(output_shape(s), "max_pool2d_forward indices");
            ip = i.mutable_data();
            indices = std::move(i);
          }
          const float* xp = x.data();
          float* yp = y.mutable_data();
          {
            py::gil_scoped_release nogil;  // only raw pointers and ints in here
            ops.max_pool2d_forward(s, relu, xp, yp, ip);
          }
          return py::make_tuple(y, indices);
        },
        py::arg("input"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("ceil_mode") = false,
        py::arg("need_indices") = true, py::arg("relu") = false,
        "(y, indices): window maxima of input (N, C, H, W) (relu: passed through relu_forward) and "
        "their int64 flat h * W + w positions (None unless need_indices).");

  m.def("max_pool2d_backward",
        [ops](py::handle dy_obj, py::handle x_obj, py::handle kernel_size, py::handle stride,
              py::handle padding, py::handle dilation, bool ceil_mode, py::handle indices_obj) {
          F32 x = nchw_input(x_obj, "x");
          const Pool2dShape s =
              max_pool_shape(x, kernel_size, stride, padding, dilation, ceil_mode);
          F32 dy = to_f32(dy_obj, "dy");
          require_shape(dy, output_shape(s), "dy");
          I64 indices;
          if (indices_obj.is_none()) {
            indices = new_i64(output_shape(s), "max_pool2d_backward indices");
            F32 y = new_f32(output_shape(s), "max_pool2d_backward scratch");
            const float* xp = x.data();
            float* yp = y.mutable_data();
            int64_t* ip = indices.mutable_data();
            py::gil_scoped_release nogil;
            ops.max_pool2d_forward(s, false, xp, yp, ip);
          } else {
            indices = index_array(indices_obj, output_shape(s), s.H * s.W, "indices");
          }
          F32 dx = new_f32(shape_of(x), "max_pool2d_backward output");
          const float* dyp = dy.data();
          const int64_t* ip = indices.data();
          float* dxp = dx.mutable_data();
          bool in_planes;
          {
            py::gil_scoped_release nogil;
            in_planes = ops.max_pool2d_backward(s, dyp, ip, dxp);
          }
          // The kernel checked the indices as it read them; find the culprit for the message.
          if (!in_planes) require_indices_in_plane(indices, s.H * s.W, "indices");
          return dx;
        },
        py::arg("dy"), py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("ceil_mode") = false,
        py::arg("indices") = py::none(),
        "dx: dy added at each window's argmax; reuses forward's indices, recomputes them if None.");

  m.def("avg_pool2d_forward",
        [ops](py::handle x_obj, py::handle kernel_size, py::handle stride, py::handle padding,
              bool ceil_mode, bool count_include_pad, py::handle divisor_override) {
          F32 x = nchw_input(x_obj, "input");
          const Pool2dShape s = window_shape(x, kernel_size, stride, padding, {1, 1}, ceil_mode);
          const AvgPoolMode mode = avg_mode(count_include_pad, divisor_override);
          F32 y = new_f32(output_shape(s), "avg_pool2d_forward output");
          const float* xp = x.data();
          float* yp = y.mutable_data();
          {
            py::gil_scoped_release nogil;
            ops.avg_pool2d_forward(s, mode, xp, yp);
          }
          return y;
        },
        py::arg("input"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
        py::arg("divisor_override") = py::none(), "Window averages of input (N, C, H, W).");

  m.def("avg_pool2d_backward",
        [ops](py::handle dy_obj, py::handle x_obj, py::handle kernel_size, py::handle stride,
              py::handle padding, bool ceil_mode, bool count_include_pad,
              py::handle divisor_override) {
          F32 x = nchw_input(x_obj, "x");
          const Pool2dShape s = window_shape(x, kernel_size, stride, padding, {1, 1}, ceil_mode);
          const AvgPoolMode mode = avg_mode(count_include_pad, divisor_override);
          F32 dy = to_f32(dy_obj, "dy");
          require_shape(dy, output_shape(s), "dy");
          F32 dx = new_f32(shape_of(x), "avg_pool2d_backward output");
          const float* dyp = dy.data();
          float* dxp = dx.mutable_data();
          {
            py::gil_scoped_release nogil;
            ops.avg_pool2d_backward(s, mode, dyp, dxp);
          }
          return dx;
        },
        py::arg("dy"), py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
        py::arg("divisor_override") = py::none(),
        "dx: each dy / divisor spread over its window's input cells.");

  m.def("adaptive_avg_pool2d_forward",
        [ops](py::handle x_obj, py::handle output_size) {
          F32 x = nchw_input(x_obj, "input");
          const Pair out = adaptive_output(output_size, x);
          Pool2dShape s{};
          s.N = x.shape(0), s.C = x.shape(1), s.H = x.shape(2), s.W = x.shape(3);
          s.P = out[0], s.Q = out[1];
          F32 y = new_f32(output_shape(s), "adaptive_avg_pool2d_forward output");
          const float* xp = x.data();
          float* yp = y.mutable_data();
          {
            py::gil_scoped_release nogil;
            ops.adaptive_avg_pool2d_forward(s, xp, yp);
          }
          return y;
        },
        py::arg("input"), py::arg("output_size"),
        "Averages of input (N, C, H, W) over PyTorch's adaptive windows, to (N, C, P, Q).");

  m.def("adaptive_avg_pool2d_backward",
        [ops](py::handle dy_obj, py::handle x_obj, py::handle output_size) {
          F32 x = nchw_input(x_obj, "x");
          const Pair out = adaptive_output(output_size, x);
          Pool2dShape s{};
          s.N = x.shape(0), s.C = x.shape(1), s.H = x.shape(2), s.W = x.shape(3);
          s.P = out[0], s.Q = out[1];
          F32 dy = to_f32(dy_obj, "dy");
          require_shape(dy, output_shape(s), "dy");
          F32 dx = new_f32(shape_of(x), "adaptive_avg_pool2d_backward output");
          const float* dyp = dy.data();
          float* dxp = dx.mutable_data();
          {
            py::gil_scoped_release nogil;
            ops.adaptive_avg_pool2d_backward(s, dyp, dxp);
          }
          return dx;
        },
        py::arg("dy"), py::arg("x"), py::arg("output_size"),
        "dx: each dy / window area spread over its adaptive window.");
}

}  // namespace fastcnn::bind
