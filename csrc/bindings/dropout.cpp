// Bindings for the dropout family. The mask comes from a counter-based hash of (seed, element
// index), so one seed reproduces one mask whatever the thread count.
#include <cmath>
#include <string>

#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "cpu/dropout.h"

namespace fastcnn::bind {
namespace {

double drop_probability(py::handle obj) {
  if (PyBool_Check(obj.ptr()) || !(PyFloat_Check(obj.ptr()) || PyIndex_Check(obj.ptr()) ||
                                   py::hasattr(obj, "__float__")))
    throw py::type_error("p: expected a float in [0, 1], got " + std::string(py::repr(obj)));
  const double p = py::float_(py::reinterpret_borrow<py::object>(obj));
  if (!(p >= 0.0 && p <= 1.0))
    throw py::value_error("p: expected a probability in [0, 1], got " + std::string(py::repr(obj)));
  return p;
}

uint64_t seed_value(py::handle obj) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    throw py::type_error("seed: expected an int in [0, 2**64), got " + std::string(py::repr(obj)));
  const auto value = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!value) throw py::error_already_set();
  const unsigned long long seed = PyLong_AsUnsignedLongLong(value.ptr());
  if (PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("seed: expected an int in [0, 2**64), got " + std::string(py::repr(obj)));
  }
  return seed;
}

// What forward and backward multiply kept elements by: float(1) / float(1 - p), as PyTorch's
// float32 dropout forms it; p == 1 keeps nothing, and scale 0 avoids dividing by zero.
float keep_scale(double p) { return p == 1.0 ? 0.0f : 1.0f / static_cast<float>(1.0 - p); }

// Element i is dropped when its 53 random bits fall below ceil(p * 2**53): probability p, exactly
// up to 2**-53; p == 0 drops nothing and p == 1 drops everything.
uint64_t drop_below(double p) { return static_cast<uint64_t>(std::ceil(std::ldexp(p, 53))); }

// A uint8 or bool mask of `shape`, each value 0 or 1.
U8 checked_mask(py::handle obj, const std::vector<int64_t>& shape) {
  if (obj.is_none()) throw py::type_error("mask: expected a uint8 or bool array, got None");
  py::array a = py::array::ensure(obj);
  if (!a) {
    PyErr_Clear();
    throw py::type_error("mask: expected a uint8 or bool array, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  const char kind = a.dtype().kind();
  if (!(kind == 'b' || (kind == 'u' && a.itemsize() == 1)))
    throw py::type_error("mask: expected a uint8 or bool array, got dtype " +
                         std::string(py::str(a.dtype())));
  require_shape(a, shape, "mask");
  U8 mask = c_contiguous<uint8_t>(a, "mask");
  const int64_t n = mask.size();
  const uint8_t* mp = mask.data();
  for (int64_t i = 0; i < n; ++i)
    if (mp[i] > 1)
      throw py::value_error("mask: expected values 0 or 1, got " + std::to_string(mp[i]) +
                            " at flat position " + std::to_string(i));
  return mask;
}

}  // namespace

void register_dropout(py::module_& m, CpuVariant v) {
  const DropoutOps ops = dropout_ops(v);

  m.def("dropout_forward",
        [ops](py::handle x_obj, py::handle p_obj, py::handle seed_obj) {
          F32 x = to_f32(x_obj, "input");
          const double p = drop_probability(p_obj);
          const uint64_t seed = seed_value(seed_obj);
          F32 y = new_f32(shape_of(x), "dropout_forward output");
          U8 mask = new_u8(shape_of(x), "dropout_forward mask");
          const int64_t n = x.size();
          const uint64_t below = drop_below(p);
          const float scale = keep_scale(p);
          const float* xp = x.data();
          float* yp = y.mutable_data();
          uint8_t* mp = mask.mutable_data();
          {
            py::gil_scoped_release nogil;  // only raw pointers and ints in here
            ops.dropout_forward(n, seed, below, scale, xp, yp, mp);
          }
          return py::make_tuple(y, mask);
        },
        py::arg("input"), py::arg("p"), py::arg("seed"),
        "(y, mask): mask (uint8, input's shape) is 1 where kept; y = input * mask / (1 - p). Any "
        "shape.");

  m.def("dropout_backward",
        [ops](py::handle dy_obj, py::handle mask_obj, py::handle p_obj) {
          F32 dy = to_f32(dy_obj, "dy");
          U8 mask = checked_mask(mask_obj, shape_of(dy));
          const float scale = keep_scale(drop_probability(p_obj));
          F32 dx = new_f32(shape_of(dy), "dropout_backward output");
          const int64_t n = dy.size();
          const float* dyp = dy.data();
          const uint8_t* mp = mask.data();
          float* dxp = dx.mutable_data();
          {
            py::gil_scoped_release nogil;
            ops.dropout_backward(n, scale, dyp, mp, dxp);
          }
          return dx;
        },
        py::arg("dy"), py::arg("mask"), py::arg("p"), "dx = dy * mask / (1 - p).");
}

}  // namespace fastcnn::bind
