// Bindings for the conv2d family.
#include "bindings/arrays.h"
#include "bindings/registry.h"

namespace fastcnn::bind {

void register_conv2d(py::module_& m, CpuVariant v) {
  (void)m;
  (void)v;
}

}  // namespace fastcnn::bind
