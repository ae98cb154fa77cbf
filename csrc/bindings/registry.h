// One register_<family> function per binding file. Each binds its ops into `m` using the kernels
// of variant `v`, so the same code fills the main module and every _core._variants entry.
#pragma once
#include <pybind11/pybind11.h>

#include "common/dispatch.h"

namespace fastcnn::bind {

void register_relu(pybind11::module_& m, CpuVariant v);
void register_sigmoid_tanh(pybind11::module_& m, CpuVariant v);
void register_conv2d(pybind11::module_& m, CpuVariant v);
void register_pool2d(pybind11::module_& m, CpuVariant v);
void register_linear(pybind11::module_& m, CpuVariant v);
void register_batchnorm(pybind11::module_& m, CpuVariant v);
void register_softmax_xent(pybind11::module_& m, CpuVariant v);
void register_nll_loss(pybind11::module_& m, CpuVariant v);
void register_dropout(pybind11::module_& m, CpuVariant v);
void register_optim(pybind11::module_& m, CpuVariant v);

// Ops that do not depend on the CPU variant: threads, build info, CUDA status.
void register_runtime(pybind11::module_& m);
// _core.WeightCache, the per-layer cache of packed weights that ops take as `weight_cache`.
void register_weight_cache(pybind11::module_& m);

}  // namespace fastcnn::bind
