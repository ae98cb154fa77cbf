// Bindings for sigmoid and tanh. Backward takes forward's output y, not x.
#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "cpu/sigmoid_tanh.h"

namespace fastcnn::bind {
namespace {

using ForwardFn = void (*)(int64_t, const float*, float*);
using BackwardFn = void (*)(int64_t, const float*, const float*, float*);

void def_forward(py::module_& m, const char* op, ForwardFn fn, const char* doc) {
  m.def(
      op,
      [fn, op](py::handle x_obj) {
        F32 x = to_f32(x_obj, "input");
        F32 y = new_f32(shape_of(x), op);
        const int64_t n = x.size();
        const float* xp = x.data();
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release nogil;  // only raw pointers and ints in here
          fn(n, xp, yp);
        }
        return y;
      },
      py::arg("input"), doc);
}

void def_backward(py::module_& m, const char* op, BackwardFn fn, const char* doc) {
  m.def(
      op,
      [fn, op](py::handle dy_obj, py::handle y_obj) {
        F32 dy = to_f32(dy_obj, "dy");
        F32 y = to_f32(y_obj, "y");
        require_shape(dy, shape_of(y), "dy");
        F32 dx = new_f32(shape_of(y), op);
        const int64_t n = y.size();
        const float *yp = y.data(), *dyp = dy.data();
        float* dxp = dx.mutable_data();
        {
          py::gil_scoped_release nogil;
          fn(n, yp, dyp, dxp);
        }
        return dx;
      },
      py::arg("dy"), py::arg("y"), doc);
}

}  // namespace

void register_sigmoid_tanh(py::module_& m, CpuVariant v) {
  const SigmoidTanhOps ops = sigmoid_tanh_ops(v);
  def_forward(m, "sigmoid_forward", ops.sigmoid_forward, "y = 1 / (1 + exp(-x)), any shape.");
  def_backward(m, "sigmoid_backward", ops.sigmoid_backward,
               "dx = dy * y * (1 - y); y is sigmoid_forward's output.");
  def_forward(m, "tanh_forward", ops.tanh_forward, "y = tanh(x), any shape.");
  def_backward(m, "tanh_backward", ops.tanh_backward,
               "dx = dy * (1 - y * y); y is tanh_forward's output.");
}

}  // namespace fastcnn::bind
