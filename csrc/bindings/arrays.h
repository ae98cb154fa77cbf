// Argument conversion and checks shared by the binding files. Every message names the argument and
// gives the expected and the actual shape, dtype or value, so that fastcnn._core called directly is
// as safe as fastcnn.functional.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fastcnn::bind {

namespace py = pybind11;
// Aligned as well as C-contiguous: a view at an odd byte offset (np.frombuffer with an offset)
// would otherwise reach the kernels as a misaligned float*, which is undefined behaviour.
constexpr int kArrayFlags =
    py::array::c_style | py::array::forcecast | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
using F32 = py::array_t<float, kArrayFlags>;
using I64 = py::array_t<int64_t, kArrayFlags>;
using U8 = py::array_t<uint8_t, kArrayFlags>;

// "(2, 3, 4)"
std::string shape_string(const py::array& a);
std::string shape_string(const std::vector<int64_t>& shape);

// Raises MemoryError naming `name`: the C-contiguous `dtype` copy of `a` could not be made.
[[noreturn]] void copy_failed(const py::array& a, const char* name, const char* dtype);

// `a` (any real dtype, any layout) as a C-contiguous, aligned array of T; `a` itself when it is
// one already. array_t::ensure returns a null handle, the reason cleared, when NumPy cannot make
// the copy (a zero-strided broadcast view of 2**60 elements): that is raised here, by name.
template <typename T>
py::array_t<T, kArrayFlags> c_contiguous(const py::array& a, const char* name) {
  auto out = py::array_t<T, kArrayFlags>::ensure(a);
  if (!out) copy_failed(a, name, py::str(py::dtype::of<T>()).cast<std::string>().c_str());
  return out;
}

// Converts any real-valued array (bool, integer or floating) to C-contiguous float32; a float32
// C-contiguous array passes through without a copy. Raises TypeError naming `name` for anything
// else (complex, object, strings, None).
F32 to_f32(py::handle obj, const char* name);
// Like to_f32, but None gives std::nullopt (an absent optional argument).
std::optional<F32> to_f32_or_none(py::handle obj, const char* name);
// Integer class labels to int64; floating, complex or non-numeric labels raise TypeError.
I64 to_labels(py::handle obj, const char* name);

// The caller's own float32 array of `shape`, used without conversion: a kernel updates it in place
// (`written`), where a converted copy would take the update the caller never sees, or reads it
// on a hot path that must not copy. Raises TypeError for anything but a float32 NumPy array, and
// ValueError for another shape, a strided view, a misaligned view or, when written, a read-only
// array.
float* exact_f32(py::handle obj, const std::vector<int64_t>& shape, const char* name, bool written);

// Raises ValueError unless `a` has exactly `ndim` dimensions; `layout` spells them, e.g. "(N, C, H, W)".
void require_ndim(const py::array& a, int ndim, const char* name, const char* layout);
// Raises ValueError unless a.shape == expected; `layout` spells the expected dimensions.
void require_shape(const py::array& a, const std::vector<int64_t>& expected, const char* name);
// Raises ValueError unless value >= minimum.
void require_at_least(int64_t value, int64_t minimum, const char* name);

// A new float32 array of `shape`. Raises ValueError when the element count overflows int64 or is
// beyond what the address space can hold (the caller names what it was computing in `what`).
F32 new_f32(const std::vector<int64_t>& shape, const char* what);
I64 new_i64(const std::vector<int64_t>& shape, const char* what);
U8 new_u8(const std::vector<int64_t>& shape, const char* what);

// For a gradient the caller may skip: a new float32 array of `shape` with *data at its buffer when
// `needed`, else None with *data = nullptr.
py::object optional_f32(bool needed, const std::vector<int64_t>& shape, const char* what,
                        float** data);

std::vector<int64_t> shape_of(const py::array& a);

// Scratch for one kernel call (a workspace), from the caching host pool: reused blocks come back
// with their pages already touched, where a fresh `new float[]` of a few hundred KB was mapped
// and page-faulted on every call. Null for 0 floats; MemoryError when the system is out.
struct ScratchFree {
  void operator()(float* p) const;
};
using Scratch = std::unique_ptr<float, ScratchFree>;
Scratch new_scratch(int64_t floats);

// Max-pooling indices, checked in two steps for the kernels that take them, which check each
// value as they read it (in parallel; a serial pass here cost 0.12 ms per 400k indices) and report
// any outside its plane: index_array is the integer array of `shape` as int64 (uint64 values past
// int64's range refused, the rest unchecked); require_indices_in_plane, called when a kernel
// reported a bad one, raises the ValueError that names the first value outside [0, plane).
I64 index_array(py::handle obj, const std::vector<int64_t>& shape, int64_t plane,
                const char* name);
void require_indices_in_plane(const I64& indices, int64_t plane, const char* name);

}  // namespace fastcnn::bind
