// WeightCache (bindings/weight_cache.h) and its Python class, _core.WeightCache.
#include "bindings/weight_cache.h"

#include <cstdint>
#include <cstring>
#include <memory>

#include "bindings/arrays.h"
#include "bindings/registry.h"

namespace fastcnn::bind {

float* WeightCache::start() {
  const uintptr_t at = reinterpret_cast<uintptr_t>(packed_.data());
  return packed_.data() + (64 - at % 64) % 64 / sizeof(float);
}

const float* WeightCache::packed(std::unique_lock<std::mutex>& hold,
                                 const std::vector<int64_t>& key, const float* w, int64_t n,
                                 int64_t packed_floats, const std::function<void(float*)>& pack) {
  hold = std::unique_lock<std::mutex>(m_, std::try_to_lock);
  if (!hold.owns_lock()) return nullptr;
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  if (key == key_ && std::memcmp(raw_.data(), w, bytes) == 0) return start();
  key_.clear();  // until the new packed form is complete (an allocation may throw)
  raw_.assign(w, w + n);
  packed_.resize(static_cast<size_t>(packed_floats) + 16);
  pack(start());
  key_ = key;
  return start();
}

void register_weight_cache(py::module_& m) {
  // Copies and unpickled caches start empty: the packed form is remade from the weights.
  py::class_<WeightCache>(m, "WeightCache",
                          "A layer's packed weights, remade whenever the weights change.")
      .def(py::init<>())
      .def("__copy__", [](const WeightCache&) { return std::make_unique<WeightCache>(); })
      .def("__deepcopy__",
           [](const WeightCache&, py::dict) { return std::make_unique<WeightCache>(); },
           py::arg("memo"))
      .def(py::pickle([](const WeightCache&) { return py::tuple(); },
                      [](const py::tuple&) { return std::make_unique<WeightCache>(); }));
}

}  // namespace fastcnn::bind
