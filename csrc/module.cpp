// fastcnn._core: the compiled module. Binds every op with the active CPU variant, and every
// runnable variant again under _core._variants[name] so tests can compare them with the reference.
#include <pybind11/pybind11.h>

#include <stdexcept>

#include "bindings/registry.h"

namespace py = pybind11;
using fastcnn::CpuVariant;

namespace {

void register_ops(py::module_& m, CpuVariant v) {
  fastcnn::bind::register_relu(m, v);
  fastcnn::bind::register_sigmoid_tanh(m, v);
  fastcnn::bind::register_conv2d(m, v);
  fastcnn::bind::register_pool2d(m, v);
  fastcnn::bind::register_linear(m, v);
  fastcnn::bind::register_batchnorm(m, v);
  fastcnn::bind::register_softmax_xent(m, v);
  fastcnn::bind::register_nll_loss(m, v);
  fastcnn::bind::register_dropout(m, v);
  fastcnn::bind::register_optim(m, v);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastcnn's compiled kernels. Use fastcnn.functional; this module is internal.";
  m.attr("__version__") = FASTCNN_VERSION;

  CpuVariant active;
  try {
    active = fastcnn::active_cpu_variant();
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  fastcnn::bind::register_weight_cache(m);  // before the ops whose signatures name it
  register_ops(m, active);
  fastcnn::bind::register_runtime(m);

  py::dict variants;
  for (CpuVariant v : fastcnn::runnable_cpu_variants()) {
    const char* name = fastcnn::cpu_variant_name(v);
    py::module_ sub = m.def_submodule(name, "The same ops, pinned to one CPU variant (for tests).");
    register_ops(sub, v);
    variants[name] = sub;
  }
  m.attr("_variants") = variants;
}
