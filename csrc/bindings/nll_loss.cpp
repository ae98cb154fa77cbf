// Bindings for the negative log-likelihood loss over log-probabilities x (N, C) or (N, C, d...)
// and labels (N,) or (N, d...): class weights, ignore_index; the reduction is the caller's (the
// per-position losses and both totals come back).
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "cpu/nll_loss.h"

namespace fastcnn::bind {
namespace {

// x (N, C, d...) as (outer, C, inner), after checking labels (N, d...), every label and weight.
SoftmaxShape nll_shape(const F32& x, const I64& labels, const std::optional<F32>& weight,
                       int64_t ignore_index) {
  if (x.ndim() < 2)
    throw py::value_error("input: expected an array (N, C) or (N, C, d1, ...), got shape " +
                          shape_string(x));
  std::vector<int64_t> want = shape_of(x);
  want.erase(want.begin() + 1);
  require_shape(labels, want, "target");
  SoftmaxShape s{x.shape(0), x.shape(1), 1};
  for (int64_t k = 2; k < x.ndim(); ++k) s.inner *= x.shape(k);
  if (weight) require_shape(*weight, {s.C}, "weight");
  const int64_t* t = labels.data();
  for (int64_t r = 0; r < static_cast<int64_t>(labels.size()); ++r)
    if (t[r] != ignore_index && (t[r] < 0 || t[r] >= s.C))
      throw py::value_error("target: expected class ids in [0, C) with C = " +
                            std::to_string(s.C) + " or ignore_index = " +
                            std::to_string(ignore_index) + ", got " + std::to_string(t[r]) +
                            " at flat position " + std::to_string(r));
  return s;
}

}  // namespace

void register_nll_loss(py::module_& m, CpuVariant v) {
  const NllLossOps ops = nll_loss_ops(v);

  m.def(
      "nll_loss_forward",
      [ops](py::handle x_obj, py::handle labels_obj, py::handle weight_obj, int64_t ignore_index) {
        F32 x = to_f32(x_obj, "input");
        I64 labels = to_labels(labels_obj, "target");
        std::optional<F32> weight = to_f32_or_none(weight_obj, "weight");
        const SoftmaxShape s = nll_shape(x, labels, weight, ignore_index);
        F32 losses = new_f32(shape_of(labels), "nll_loss_forward losses");
        double total_loss = 0.0, total_weight = 0.0;
        const float* xp = x.data();
        const int64_t* tp = labels.data();
        const float* wp = weight ? weight->data() : nullptr;
        float* lp = losses.mutable_data();
        {
          py::gil_scoped_release nogil;  // only raw pointers and ints in here
          ops.nll_loss_forward(s, ignore_index, xp, tp, wp, lp, &total_loss, &total_weight);
        }
        return py::make_tuple(losses, total_loss, total_weight);
      },
      py::arg("input"), py::arg("target"), py::arg("weight") = py::none(),
      py::arg("ignore_index") = -100,
      "-> (losses, total_loss, total_weight): losses (N, d...) = -weight[t] * input[n, t, d...]\n"
      "(0 where t == ignore_index), their sum and the sum of weight[t] over the positions not\n"
      "ignored, both in double. input (N, C) or (N, C, d...) holds log-probabilities.");

  m.def(
      "nll_loss_backward",
      [ops](py::handle grad_obj, py::handle x_obj, py::handle labels_obj, py::handle weight_obj,
            int64_t ignore_index, float grad_scale) {
        F32 x = to_f32(x_obj, "input");
        I64 labels = to_labels(labels_obj, "target");
        std::optional<F32> weight = to_f32_or_none(weight_obj, "weight");
        const SoftmaxShape s = nll_shape(x, labels, weight, ignore_index);
        std::optional<F32> grad = to_f32_or_none(grad_obj, "grad");
        if (grad) require_shape(*grad, shape_of(labels), "grad");
        F32 dx = new_f32(shape_of(x), "nll_loss_backward output");
        if (dx.size() == 0) return dx;
        const int64_t* tp = labels.data();
        const float* wp = weight ? weight->data() : nullptr;
        const float* gp = grad ? grad->data() : nullptr;
        float* dxp = dx.mutable_data();
        {
          py::gil_scoped_release nogil;
          ops.nll_loss_backward(s, ignore_index, tp, wp, gp, grad_scale, dxp);
        }
        return dx;
      },
      py::arg("grad"), py::arg("input"), py::arg("target"), py::arg("weight") = py::none(),
      py::arg("ignore_index") = -100, py::arg("grad_scale") = 1.0f,
      "dinput: zeros except -weight[t] * g at each position's label t (none where t ==\n"
      "ignore_index); g is grad (an array shaped like target) when given, else grad_scale.\n"
      "Only input's shape is read.");
}

}  // namespace fastcnn::bind
