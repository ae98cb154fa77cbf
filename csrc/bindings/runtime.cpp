// Bindings that do not depend on the CPU variant: thread count, build facts, CUDA status.
#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "common/host_pool.h"
#include "common/threads.h"

#ifdef FASTCNN_WITH_CUDA
#include "cuda/cuda_api.h"
#endif
#ifdef FASTCNN_WITH_OPENMP
#include <omp.h>
#endif

namespace fastcnn::bind {

void register_runtime(py::module_& m) {
  m.def("get_num_threads", &kernel_threads, "Threads a parallel kernel may use.");
  m.def("set_num_threads", [](int n) {
    require_at_least(n, 1, "n");
    set_kernel_threads(n);
  }, py::arg("n"), "Sets the threads parallel kernels may use (n >= 1).");
  m.def("host_pool_stats", [] {
    const HostPoolStats s = host_pool_stats();
    py::dict d;
    d["cached_bytes"] = s.cached_bytes;
    d["limit_bytes"] = s.limit_bytes;
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    return d;
  }, "The caching allocator of returned arrays: bytes held for reuse, its limit, hits, misses.");
  m.def("host_pool_set_limit", [](int64_t bytes) {
    require_at_least(bytes, 0, "bytes");
    host_pool_set_limit(bytes);
  }, py::arg("bytes"), "Caps the bytes the allocator keeps for reuse (0: none); frees the excess.");
  m.def("host_pool_trim", &host_pool_trim, "Frees every block the allocator holds for reuse.");
  m.def("cpu_variant", [] { return std::string(cpu_variant_name(active_cpu_variant())); },
        "The CPU kernel variant in use: ref, avx2 or avx512.");
  m.def("has_openmp", [] {
#ifdef FASTCNN_WITH_OPENMP
    return true;
#else
    return false;
#endif
  });
  m.def("compiler", [] {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return std::string("unknown");
#endif
  });
  // Facts the preprocessor knows about this build, for `fastcnn info` and bug reports.
  m.def("build_info", [] {
    py::dict d;
#ifdef _OPENMP
    d["openmp_version"] = _OPENMP;  // yyyymm of the OpenMP spec the compiler implements
#else
    d["openmp_version"] = py::none();
#endif
#ifdef __SANITIZE_ADDRESS__
    d["sanitizers"] = "address,undefined";
#else
    d["sanitizers"] = "none";
#endif
#ifdef __OPTIMIZE__
    d["optimized"] = true;
#else
    d["optimized"] = false;
#endif
#ifdef NDEBUG
    d["debug_checks"] = false;
#else
    d["debug_checks"] = true;
#endif
    d["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                    std::to_string(PYBIND11_VERSION_MINOR) + "." +
                    std::to_string(PYBIND11_VERSION_PATCH);
    return d;
  }, "Build facts: OpenMP version, sanitizers, optimization, debug checks, pybind11 version.");
  m.def("has_cuda", [] {
#ifdef FASTCNN_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "Whether the CUDA kernels were compiled into this build.");

  // (device count, reason): the reason is empty when devices were found.
  m.def("cuda_device_count", []() -> std::pair<int, std::string> {
#ifdef FASTCNN_WITH_CUDA
    int count = 0;
    int code;
    {
      py::gil_scoped_release nogil;
      code = cuda::device_count(&count);
    }
    if (code != 0)
      return {0, std::string(cuda::error_string(code)) + " [cudaError " + std::to_string(code) + "]"};
    return {count, count == 0 ? "no CUDA device found" : ""};
#else
    return {0, "fastcnn was built without CUDA"};
#endif
  });

  m.def("cuda_relu_forward", [](py::handle x_obj) {
    F32 x = to_f32(x_obj, "x");
#ifdef FASTCNN_WITH_CUDA
    F32 y = new_f32(shape_of(x), "cuda_relu_forward output");
    const int64_t n = x.size();
    const float* xp = x.data();
    float* yp = y.mutable_data();
    int code;
    {
      py::gil_scoped_release nogil;
      code = cuda::relu_forward_host(n, xp, yp);
    }
    if (code != 0)
      throw std::runtime_error(std::string("CUDA error: ") + cuda::error_string(code) +
                               " [cudaError " + std::to_string(code) + "]");
    return y;
#else
    throw std::runtime_error("fastcnn was built without CUDA (FASTCNN_CUDA=OFF or no nvcc)");
#endif
  }, py::arg("x"), "ReLU on the GPU, host arrays in and out (a check of the CUDA build).");
}

}  // namespace fastcnn::bind
