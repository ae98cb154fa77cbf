// Bindings for the linear family.
#include "bindings/arrays.h"
#include "bindings/registry.h"

namespace fastcnn::bind {

void register_linear(py::module_& m, CpuVariant v) {
  (void)m;
  (void)v;
}

}  // namespace fastcnn::bind
