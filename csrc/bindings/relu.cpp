// Bindings for ReLU and leaky ReLU.
#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "cpu/relu.h"

namespace fastcnn::bind {

void register_relu(py::module_& m, CpuVariant v) {
  const ReluOps ops = relu_ops(v);

  m.def("relu_forward", [ops](py::handle x_obj) {
    F32 x = to_f32(x_obj, "input");
    F32 y = new_f32(shape_of(x), "relu_forward output");
    const int64_t n = x.size();
    const float* xp = x.data();
    float* yp = y.mutable_data();
    {
      py::gil_scoped_release nogil;  // only raw pointers and ints in here
      ops.relu_forward(n, xp, yp);
    }
    return y;
  }, py::arg("input"), "y = max(input, 0), any shape.");

  m.def("relu_backward", [ops](py::handle dy_obj, py::handle x_obj) {
    F32 dy = to_f32(dy_obj, "dy");
    F32 x = to_f32(x_obj, "x");
    require_shape(dy, shape_of(x), "dy");
    F32 dx = new_f32(shape_of(x), "relu_backward output");
    const int64_t n = x.size();
    const float *xp = x.data(), *dyp = dy.data();
    float* dxp = dx.mutable_data();
    {
      py::gil_scoped_release nogil;
      ops.relu_backward(n, xp, dyp, dxp);
    }
    return dx;
  }, py::arg("dy"), py::arg("x"), "dx = dy where x > 0, else 0.");

  m.def("leaky_relu_forward", [ops](py::handle x_obj, float negative_slope) {
    F32 x = to_f32(x_obj, "input");
    F32 y = new_f32(shape_of(x), "leaky_relu_forward output");
    const int64_t n = x.size();
    const float* xp = x.data();
    float* yp = y.mutable_data();
    {
      py::gil_scoped_release nogil;
      ops.leaky_relu_forward(n, negative_slope, xp, yp);
    }
    return y;
  }, py::arg("input"), py::arg("negative_slope") = 0.01f,
     "y = input where input > 0, else input * negative_slope.");

  m.def("leaky_relu_backward", [ops](py::handle dy_obj, py::handle x_obj, float negative_slope) {
    F32 dy = to_f32(dy_obj, "dy");
    F32 x = to_f32(x_obj, "x");
    require_shape(dy, shape_of(x), "dy");
    F32 dx = new_f32(shape_of(x), "leaky_relu_backward output");
    const int64_t n = x.size();
    const float *xp = x.data(), *dyp = dy.data();
    float* dxp = dx.mutable_data();
    {
      py::gil_scoped_release nogil;
      ops.leaky_relu_backward(n, negative_slope, xp, dyp, dxp);
    }
    return dx;
  }, py::arg("dy"), py::arg("x"), py::arg("negative_slope") = 0.01f,
     "dx = dy where x > 0, else dy * negative_slope.");
}

}  // namespace fastcnn::bind
