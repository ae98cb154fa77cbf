// Argument conversion and checks shared by the binding files.
#include "bindings/arrays.h"

#include "common/host_pool.h"
#include "common/shapes.h"

namespace fastcnn::bind {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

std::string shape_string(const py::array& a) { return shape_string(shape_of(a)); }

namespace {

[[noreturn]] void raise_memory_error(const std::string& message) {
  PyErr_SetString(PyExc_MemoryError, message.c_str());
  throw py::error_already_set();
}

}  // namespace

void copy_failed(const py::array& a, const char* name, const char* dtype) {
  raise_memory_error(std::string(name) + ": cannot make a C-contiguous " + dtype +
                     " copy of an array of shape " + shape_string(a) + " and dtype " +
                     std::string(py::str(a.dtype())));
}

namespace {

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

py::array as_array(py::handle obj, const char* name, const char* wanted) {
  if (obj.is_none())
    throw py::type_error(std::string(name) + ": expected " + wanted + ", got None");
  py::array a = py::array::ensure(obj);
  if (!a) {
    PyErr_Clear();
    throw py::type_error(std::string(name) + ": expected " + wanted + ", got " + type_name(obj));
  }
  return a;
}

}  // namespace

namespace {

// An exact numpy.ndarray of native float32, C-contiguous and aligned: what to_f32's conversions
// would hand back unchanged. Checked on the object's own fields, because the two PyArray_FromAny
// rounds of the general path cost ~0.25 us per argument (~20 array arguments in a batch-1
// forward of a small CNN).
bool plain_f32(py::handle obj) {
  const auto& api = py::detail::npy_api::get();
  if (Py_TYPE(obj.ptr()) != reinterpret_cast<PyTypeObject*>(api.PyArray_Type_)) return false;
  const auto* a = py::detail::array_proxy(obj.ptr());
  const auto* d = py::detail::array_descriptor_proxy(a->descr);
  constexpr int kFlags = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                         py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  return d->type_num == py::detail::npy_api::NPY_FLOAT_ && d->byteorder != '>' &&
         (a->flags & kFlags) == kFlags;
}

}  // namespace

F32 to_f32(py::handle obj, const char* name) {
  if (plain_f32(obj)) return py::reinterpret_borrow<F32>(obj);
  py::array a = as_array(obj, name, "a real-valued array");
  const char kind = a.dtype().kind();
  if (kind != 'b' && kind != 'i' && kind != 'u' && kind != 'f')
    throw py::type_error(std::string(name) + ": expected a real-valued array (bool, integer or float), got dtype " +
                         std::string(py::str(a.dtype())) + " from " + type_name(obj));
  return c_contiguous<float>(a, name);
}

std::optional<F32> to_f32_or_none(py::handle obj, const char* name) {
  if (obj.is_none()) return std::nullopt;
  return to_f32(obj, name);
}

I64 to_labels(py::handle obj, const char* name) {
  py::array a = as_array(obj, name, "an integer array of class ids");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error(std::string(name) + ": expected an integer array of class ids, got dtype " +
                         std::string(py::str(a.dtype())));
  return c_contiguous<int64_t>(a, name);
}

float* exact_f32(py::handle obj, const std::vector<int64_t>& shape, const char* name,
                 bool written) {
  const std::string why = written ? " (it is updated in place" : " (it is read in place";
  if (!py::isinstance<py::array_t<float>>(obj))
    throw py::type_error(
        std::string(name) + ": expected a float32 NumPy array" + why +
        ", so it cannot be converted), got " +
        (py::isinstance<py::array>(obj) ? "dtype " + std::string(py::str(obj.attr("dtype")))
                                        : type_name(obj)));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  require_shape(a, shape, name);
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array" + why +
                          "), got a strided view");
  if (written && !a.writeable())
    throw py::value_error(std::string(name) + ": expected a writeable array" + why +
                          "), got a read-only one");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + ": expected an aligned array" + why +
                          "), got a view at an odd byte offset");
  // mutable_data() itself would raise for a read-only array; data() is the same pointer.
  return static_cast<float*>(const_cast<void*>(a.data()));
}

void require_ndim(const py::array& a, int ndim, const char* name, const char* layout) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) + "-D array " +
                          layout + ", got shape " + shape_string(a));
}

void require_shape(const py::array& a, const std::vector<int64_t>& expected, const char* name) {
  if (shape_of(a) != expected)
    throw py::value_error(std::string(name) + ": expected shape " + shape_string(expected) +
                          ", got shape " + shape_string(a));
}

void require_at_least(int64_t value, int64_t minimum, const char* name) {
  if (value < minimum)
    throw py::value_error(std::string(name) + ": expected a value >= " + std::to_string(minimum) +
                          ", got " + std::to_string(value));
}

namespace {

void check_allocatable(const std::vector<int64_t>& shape, int64_t item_size, const char* what) {
  // Zero sizes are skipped: the strides of (0, C, P, Q) are products of the other sizes, and
  // they must fit in int64 as well (NumPy refuses such an empty array too).
  int64_t bytes = item_size;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0)
      throw py::value_error(std::string(what) + ": computed a negative size in shape " +
                            shape_string(shape));
    empty = empty || d == 0;
    bytes = d == 0 ? bytes : checked_mul(bytes, d);
    if (bytes < 0)
      throw py::value_error(std::string(what) + ": shape " + shape_string(shape) +
                            " has more elements than 64-bit index math can address");
  }
  // Beyond 2**47 bytes no real machine can hold the array; say so instead of failing in malloc.
  if (!empty && bytes > (int64_t{1} << 47))
    throw py::value_error(std::string(what) + ": shape " + shape_string(shape) + " needs " +
                          std::to_string(bytes) + " bytes, more than any machine can hold");
}

template <typename T>
py::array_t<T, kArrayFlags> new_array(const std::vector<int64_t>& shape, const char* what) {
  check_allocatable(shape, sizeof(T), what);
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  size_t bytes = sizeof(T);
  for (int64_t d : shape) bytes *= static_cast<size_t>(d);
  if (bytes < kHostPoolMinBytes || !host_pool_caching()) return py::array_t<T, kArrayFlags>(dims);
  // Large: a block from the caching pool (host_pool.h), already touched when reused. The array
  // does not own it; a capsule as its base gives it back to the pool when the last array or view
  // on it dies.
  void* data = host_pool_alloc(bytes);
  if (data == nullptr)
    raise_memory_error(std::string(what) + ": cannot allocate " + std::to_string(bytes) +
                       " bytes for shape " + shape_string(shape));
  py::capsule owner(data, [](void* p) { host_pool_free(p); });
  return py::array_t<T, kArrayFlags>(dims, static_cast<T*>(data), owner);
}

}  // namespace

F32 new_f32(const std::vector<int64_t>& shape, const char* what) { return new_array<float>(shape, what); }
I64 new_i64(const std::vector<int64_t>& shape, const char* what) { return new_array<int64_t>(shape, what); }
U8 new_u8(const std::vector<int64_t>& shape, const char* what) { return new_array<uint8_t>(shape, what); }

py::object optional_f32(bool needed, const std::vector<int64_t>& shape, const char* what,
                        float** data) {
  *data = nullptr;
  if (!needed) return py::none();
  F32 out = new_f32(shape, what);
  *data = out.mutable_data();
  return out;
}

namespace {

std::string index_range(int64_t plane) {
  return ": expected values in [0, " + std::to_string(plane) +
         "), the flat positions in an (H, W) plane of x";
}

}  // namespace

I64 index_array(py::handle obj, const std::vector<int64_t>& shape, int64_t plane,
                const char* name) {
  const std::string arg(name);
  if (obj.is_none()) throw py::type_error(arg + ": expected an integer array, got None");
  py::array a = py::array::ensure(obj);
  if (!a) {
    PyErr_Clear();
    throw py::type_error(arg + ": expected an integer array, got " + type_name(obj));
  }
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error(arg + ": expected an integer array, got dtype " +
                         std::string(py::str(a.dtype())));
  require_shape(a, shape, name);
  // uint64 values past int64's range would wrap in the cast below: check them first.
  if (kind == 'u' && a.itemsize() == 8 && a.size() > 0 &&
      py::int_(a.attr("max")()).cast<unsigned long long>() >= static_cast<unsigned long long>(plane))
    throw py::value_error(arg + index_range(plane));
  return c_contiguous<int64_t>(a, name);
}

void require_indices_in_plane(const I64& indices, int64_t plane, const char* name) {
  const int64_t n = indices.size();
  const int64_t* ip = indices.data();
  int64_t bad = -1;
  {
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n; ++i) {
      if (ip[i] < 0 || ip[i] >= plane) {
        bad = i;
        break;
      }
    }
  }
  if (bad >= 0)
    throw py::value_error(std::string(name) + index_range(plane) + ", got " +
                          std::to_string(ip[bad]) + " at flat position " + std::to_string(bad));
}

void ScratchFree::operator()(float* p) const { host_pool_free(p); }

Scratch new_scratch(int64_t floats) {
  if (floats <= 0) return Scratch(nullptr);
  const size_t bytes = static_cast<size_t>(floats) * sizeof(float);
  void* p = host_pool_alloc(bytes);
  if (!p)
    raise_memory_error("kernel workspace: cannot allocate " + std::to_string(bytes) + " bytes");
  return Scratch(static_cast<float*>(p));
}

}  // namespace fastcnn::bind
