// Bindings for the pool2d family.
#include "bindings/arrays.h"
#include "bindings/registry.h"

namespace fastcnn::bind {

void register_pool2d(py::module_& m, CpuVariant v) {
  (void)m;
  (void)v;
}

}  // namespace fastcnn::bind
