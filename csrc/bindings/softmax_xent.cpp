// Bindings for softmax / log-softmax over any dim of any rank, and the fused softmax +
// cross-entropy loss (mean over the batch and any extra dims, integer class labels, PyTorch's label
// smoothing). Arrays are viewed as (outer, C, inner) around the reduced dim; nothing is transposed.
#include <limits>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "cpu/softmax_xent.h"

namespace fastcnn::bind {
namespace {

// The (outer, C, inner) view of `x` around `dim` (negative counts from the end; a 0-d array is
// one row of one class).
SoftmaxShape softmax_shape(const F32& x, int64_t dim, const char* name) {
  const int64_t rank = x.ndim() > 0 ? x.ndim() : 1;
  if (dim < -rank || dim >= rank)
    throw py::value_error("dim: expected a dim in [" + std::to_string(-rank) + ", " +
                          std::to_string(rank - 1) + "] for " + name + " of shape " +
                          shape_string(x) + ", got " + std::to_string(dim));
  if (x.ndim() == 0) return {1, 1, 1};
  const int64_t d = dim < 0 ? dim + rank : dim;
  SoftmaxShape s{1, x.shape(d), 1};
  for (int64_t k = 0; k < d; ++k) s.outer *= x.shape(k);  // an existing array: no overflow
  for (int64_t k = d + 1; k < rank; ++k) s.inner *= x.shape(k);
  return s;
}

// logits (N, C, d...) as (outer, C, inner), after checking labels has shape (N, d...).
SoftmaxShape xent_shape(const F32& logits, const I64& labels, const char* logits_name) {
  if (logits.ndim() < 2)
    throw py::value_error(std::string(logits_name) +
                          ": expected an array (N, C) or (N, C, d1, ...), got shape " +
                          shape_string(logits));
  std::vector<int64_t> want = shape_of(logits);
  want.erase(want.begin() + 1);
  require_shape(labels, want, "labels");
  return softmax_shape(logits, 1, logits_name);
}

void require_labels_in_range(const I64& labels, int64_t C) {
  const int64_t* t = labels.data();
  for (int64_t r = 0; r < static_cast<int64_t>(labels.size()); ++r)
    if (t[r] < 0 || t[r] >= C)
      throw py::value_error("labels: expected class ids in [0, C) with C = " + std::to_string(C) +
                            ", got " + std::to_string(t[r]) + " at flat position " +
                            std::to_string(r));
}

void require_label_smoothing(float e) {
  if (!(e >= 0.0f && e <= 1.0f))
    throw py::value_error("label_smoothing: expected a value in [0, 1], got " + std::to_string(e));
}

using SoftmaxFn = void (*)(const SoftmaxShape&, const float*, float*);
using SoftmaxBackwardFn = void (*)(const SoftmaxShape&, const float*, const float*, float*);

void def_softmax(py::module_& m, const char* op, SoftmaxFn fn, const char* doc) {
  m.def(
      op,
      [fn, op](py::handle x_obj, int64_t dim) {
        F32 x = to_f32(x_obj, "input");
        const SoftmaxShape s = softmax_shape(x, dim, "input");
        F32 y = new_f32(shape_of(x), op);
        if (y.size() == 0) return y;
        const float* xp = x.data();
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release nogil;  // only raw pointers and ints in here
          fn(s, xp, yp);
        }
        return y;
      },
      py::arg("input"), py::arg("dim") = 1, doc);
}

void def_softmax_backward(py::module_& m, const char* op, SoftmaxBackwardFn fn, const char* doc) {
  m.def(
      op,
      [fn, op](py::handle dy_obj, py::handle y_obj, int64_t dim) {
        F32 dy = to_f32(dy_obj, "dy");
        F32 y = to_f32(y_obj, "y");
        require_shape(dy, shape_of(y), "dy");
        const SoftmaxShape s = softmax_shape(y, dim, "y");
        F32 dx = new_f32(shape_of(y), op);
        if (dx.size() == 0) return dx;
        const float *yp = y.data(), *dyp = dy.data();
        float* dxp = dx.mutable_data();
        {
          py::gil_scoped_release nogil;
          fn(s, yp, dyp, dxp);
        }
        return dx;
      },
      py::arg("dy"), py::arg("y"), py::arg("dim") = 1, doc);
}

}  // namespace

void register_softmax_xent(py::module_& m, CpuVariant v) {
  const SoftmaxXentOps ops = softmax_xent_ops(v);

  def_softmax(m, "softmax_forward", ops.softmax_forward,
              "y = exp(x) / sum(exp(x)) along dim (any rank, negative dims count from the end).");
  def_softmax(m, "log_softmax_forward", ops.log_softmax_forward,
              "y = x - log(sum(exp(x))) along dim, computed stably.");
  def_softmax_backward(m, "softmax_backward", ops.softmax_backward,
                       "dx = y * (dy - sum(dy * y)) along dim; y is softmax_forward's output.");
  def_softmax_backward(m, "log_softmax_backward", ops.log_softmax_backward,
                       "dx = dy - exp(y) * sum(dy) along dim; y is log_softmax_forward's output.");

  m.def(
      "softmax_xent_forward",
      [ops](py::handle logits_obj, py::handle labels_obj, float label_smoothing) {
        F32 logits = to_f32(logits_obj, "logits");
        I64 labels = to_labels(labels_obj, "labels");
        const SoftmaxShape s = xent_shape(logits, labels, "logits");
        require_label_smoothing(label_smoothing);
        require_labels_in_range(labels, s.C);
        F32 probs = new_f32(shape_of(logits), "softmax_xent_forward probabilities");
        const int64_t positions = s.outer * s.inner;
        // Mean over no positions: NaN, as PyTorch gives.
        double loss = std::numeric_limits<double>::quiet_NaN();
        if (positions == 0) return py::make_tuple(loss, probs);
        std::vector<double> row_loss(static_cast<size_t>(positions));
        const float* zp = logits.data();
        const int64_t* tp = labels.data();
        float* pp = probs.mutable_data();
        double* rp = row_loss.data();
        {
          py::gil_scoped_release nogil;
          ops.softmax_xent_forward(s, label_smoothing, zp, tp, pp, rp, &loss);
        }
        return py::make_tuple(loss, probs);
      },
      py::arg("logits"), py::arg("labels"), py::arg("label_smoothing") = 0.0f,
      "Fused log-softmax + cross-entropy -> (loss, probabilities). logits (N, C) or (N, C, d...),\n"
      "labels (N,) or (N, d...) integer class ids in [0, C); loss is the mean over the N * d...\n"
      "positions (NaN when there are none), accumulated in double.");

  m.def(
      "softmax_xent_backward",
      [ops](py::handle probs_obj, py::handle labels_obj, float label_smoothing,
            double grad_output) {
        F32 probs = to_f32(probs_obj, "probabilities");
        I64 labels = to_labels(labels_obj, "labels");
        const SoftmaxShape s = xent_shape(probs, labels, "probabilities");
        require_label_smoothing(label_smoothing);
        require_labels_in_range(labels, s.C);
        F32 dlogits = new_f32(shape_of(probs), "softmax_xent_backward output");
        const int64_t positions = s.outer * s.inner;
        if (dlogits.size() == 0) return dlogits;
        const float scale = static_cast<float>(grad_output / static_cast<double>(positions));
        const float* pp = probs.data();
        const int64_t* tp = labels.data();
        float* dp = dlogits.mutable_data();
        {
          py::gil_scoped_release nogil;
          ops.softmax_xent_backward(s, label_smoothing, scale, pp, tp, dp);
        }
        return dlogits;
      },
      py::arg("probabilities"), py::arg("labels"), py::arg("label_smoothing") = 0.0f,
      py::arg("grad_output") = 1.0,
      "dlogits = (probabilities - target) * grad_output / (N * d...), target = (1 - e) * onehot +\n"
      "e / C; probabilities is softmax_xent_forward's second output.");
}

}  // namespace fastcnn::bind
