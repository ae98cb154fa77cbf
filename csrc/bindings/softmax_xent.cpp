// Bindings for the softmax_xent family.
#include "bindings/arrays.h"
#include "bindings/registry.h"

namespace fastcnn::bind {

void register_softmax_xent(py::module_& m, CpuVariant v) {
  (void)m;
  (void)v;
}

}  // namespace fastcnn::bind
