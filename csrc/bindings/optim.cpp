// Bindings for the optimizer updates (SGD, Adam/AdamW, RMSprop). They are the one other documented
// exception (besides batch norm's running statistics) to "caller arrays are never modified": param
// and the state buffers are the caller's own float32 arrays, updated in place, never converted.
// The hyperparameters arrive as Python floats; the float32 coefficients are derived here in double
// precision, the way fastcnn.optim computed them for its NumPy passes.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/registry.h"
#include "cpu/optim.h"

namespace fastcnn::bind {
namespace {

// One array of an update: where its bytes are, to refuse overlaps.
struct Operand {
  const char* name;
  const float* data;
};

// The kernels read every input of element i before writing element i, but a partial overlap
// (one array a shifted view of another) would feed updated values back in, and depend on the
// thread split; the fast variants also promise the compiler no aliasing at all. So no two of the
// arrays may share a byte.
void require_disjoint(const std::vector<Operand>& ops, int64_t n) {
  const auto begin = [](const Operand& op) { return reinterpret_cast<uintptr_t>(op.data); };
  const uintptr_t bytes = static_cast<uintptr_t>(n) * sizeof(float);
  for (size_t i = 0; i < ops.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (begin(ops[i]) < begin(ops[j]) + bytes && begin(ops[j]) < begin(ops[i]) + bytes)
        throw py::value_error(std::string(ops[i].name) + ": shares memory with " + ops[j].name +
                              "; the update needs separate arrays");
}

// param, updated in place, fixes the shape every other array must have.
float* param_inout(py::handle obj, std::vector<int64_t>& shape, int64_t& n) {
  if (py::isinstance<py::array>(obj)) {
    const auto a = py::reinterpret_borrow<py::array>(obj);
    shape = shape_of(a);
    n = a.size();
  }
  return exact_f32(obj, shape, "param", /*written=*/true);  // TypeError for a non-array
}

// The momentum buffer, required (of param's shape) when momentum != 0; null otherwise, whatever
// was passed.
float* momentum_buffer_or_null(py::handle obj, const std::vector<int64_t>& shape,
                               double momentum) {
  if (momentum == 0.0) return nullptr;
  if (obj.is_none())
    throw py::value_error("momentum_buffer: expected an array of param's shape " +
                          shape_string(shape) + " when momentum != 0, got None");
  return exact_f32(obj, shape, "momentum_buffer", true);
}

}  // namespace

void register_optim(py::module_& m, CpuVariant v) {
  const OptimOps ops = optim_ops(v);

  m.def("sgd_step",
        [ops](py::handle param_obj, py::handle grad_obj, py::handle buf_obj, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov,
              bool init_buffer) {
          std::vector<int64_t> shape;
          int64_t n = 0;
          float* param = param_inout(param_obj, shape, n);
          const float* grad = exact_f32(grad_obj, shape, "grad", false);
          float* buf = momentum_buffer_or_null(buf_obj, shape, momentum);
          std::vector<Operand> operands{{"param", param}, {"grad", grad}};
          if (buf) operands.push_back({"momentum_buffer", buf});
          require_disjoint(operands, n);
          const SgdStep s{static_cast<float>(lr),
                          static_cast<float>(momentum),
                          static_cast<float>(1.0 - dampening),
                          static_cast<float>(weight_decay),
                          weight_decay != 0.0,
                          momentum != 0.0,
                          nesterov,
                          init_buffer};
          {
            py::gil_scoped_release nogil;  // only raw pointers and numbers in here
            ops.sgd_step(n, s, grad, param, buf);
          }
        },
        py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::arg("lr"),
        py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("weight_decay") = 0.0,
        py::arg("nesterov") = false, py::arg("init_buffer") = false,
        "One torch.optim.SGD step, in place: d = grad + weight_decay * param; with momentum, "
        "momentum_buffer = d when init_buffer (the first step), else momentum * "
        "momentum_buffer + (1 - dampening) * d, and d = d + momentum * momentum_buffer "
        "(nesterov) or momentum_buffer; "
        "param -= lr * d. momentum_buffer is ignored (may be None) when momentum == 0.");

  m.def("adam_step",
        [ops](py::handle param_obj, py::handle grad_obj, py::handle m_obj, py::handle v_obj,
              py::handle vmax_obj, int64_t step, double lr, double beta1, double beta2,
              double eps, double weight_decay, bool decoupled) {
          if (step < 1)
            throw py::value_error("step: expected the step count after this step, >= 1, got " +
                                  std::to_string(step));
          std::vector<int64_t> shape;
          int64_t n = 0;
          float* param = param_inout(param_obj, shape, n);
          const float* grad = exact_f32(grad_obj, shape, "grad", false);
          float* exp_avg = exact_f32(m_obj, shape, "exp_avg", true);
          float* exp_avg_sq = exact_f32(v_obj, shape, "exp_avg_sq", true);
          float* vmax = vmax_obj.is_none()
                             ? nullptr
                             : exact_f32(vmax_obj, shape, "max_exp_avg_sq", true);
          std::vector<Operand> operands{
              {"param", param}, {"grad", grad}, {"exp_avg", exp_avg}, {"exp_avg_sq", exp_avg_sq}};
          if (vmax) operands.push_back({"max_exp_avg_sq", vmax});
          require_disjoint(operands, n);
          const double t = static_cast<double>(step);
          AdamStep s;
          s.decay_scale = static_cast<float>(decoupled ? 1.0 - lr * weight_decay : 1.0);
          s.weight_decay = static_cast<float>(weight_decay);
          s.one_minus_beta1 = static_cast<float>(1.0 - beta1);
          s.beta1 = 1.0f - s.one_minus_beta1;  // torch's lerp takes 1 - weight in float
          s.lerp_from_end = !(std::fabs(s.one_minus_beta1) < 0.5f);
          s.beta2 = static_cast<float>(beta2);
          s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
          s.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, t)));
          s.eps = static_cast<float>(eps);
          s.neg_step_size = static_cast<float>(-(lr / (1.0 - std::pow(beta1, t))));
          s.decay = !decoupled && weight_decay != 0.0;
          {
            py::gil_scoped_release nogil;
            ops.adam_step(n, s, grad, param, exp_avg, exp_avg_sq, vmax);
          }
        },
        py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("max_exp_avg_sq"), py::arg("step"), py::arg("lr"), py::arg("beta1"),
        py::arg("beta2"), py::arg("eps"), py::arg("weight_decay") = 0.0,
        py::arg("decoupled") = false,
        "One torch.optim.Adam (decoupled=False) or AdamW step, in place, `step` counting this one: "
        "AdamW first scales param by 1 - lr * weight_decay, Adam adds weight_decay * param to "
        "grad; exp_avg += (1 - beta1) * (grad - exp_avg); exp_avg_sq = beta2 * exp_avg_sq + "
        "(1 - beta2) * grad^2; max_exp_avg_sq (amsgrad; None otherwise) = max(max_exp_avg_sq, "
        "exp_avg_sq) replaces exp_avg_sq below; param -= lr / (1 - beta1^step) * exp_avg / "
        "(sqrt(exp_avg_sq) / sqrt(1 - beta2^step) + eps).");

  m.def("rmsprop_step",
        [ops](py::handle param_obj, py::handle grad_obj, py::handle v_obj, py::handle ga_obj,
              py::handle buf_obj, double lr, double alpha, double eps, double weight_decay,
              double momentum) {
          std::vector<int64_t> shape;
          int64_t n = 0;
          float* param = param_inout(param_obj, shape, n);
          const float* grad = exact_f32(grad_obj, shape, "grad", false);
          float* square_avg = exact_f32(v_obj, shape, "square_avg", true);
          float* grad_avg = ga_obj.is_none() ? nullptr : exact_f32(ga_obj, shape, "grad_avg", true);
          float* buf = momentum_buffer_or_null(buf_obj, shape, momentum);
          std::vector<Operand> operands{
              {"param", param}, {"grad", grad}, {"square_avg", square_avg}};
          if (grad_avg) operands.push_back({"grad_avg", grad_avg});
          if (buf) operands.push_back({"momentum_buffer", buf});
          require_disjoint(operands, n);
          RmspropStep s;
          s.alpha = static_cast<float>(alpha);
          s.one_minus_alpha = static_cast<float>(1.0 - alpha);
          s.lerp_alpha = 1.0f - s.one_minus_alpha;  // torch's lerp takes 1 - weight in float
          s.lerp_from_end = !(std::fabs(s.one_minus_alpha) < 0.5f);
          s.eps = static_cast<float>(eps);
          s.weight_decay = static_cast<float>(weight_decay);
          s.momentum = static_cast<float>(momentum);
          s.neg_lr = static_cast<float>(-lr);
          s.decay = weight_decay != 0.0;
          s.centered = grad_avg != nullptr;
          s.with_momentum = buf != nullptr;
          {
            py::gil_scoped_release nogil;
            ops.rmsprop_step(n, s, grad, param, square_avg, grad_avg, buf);
          }
        },
        py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("grad_avg"),
        py::arg("momentum_buffer"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
        py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0,
        "One torch.optim.RMSprop step, in place: g = grad + weight_decay * param; square_avg = "
        "alpha * square_avg + (1 - alpha) * g^2; centered (grad_avg given; None otherwise): "
        "grad_avg += (1 - alpha) * (g - grad_avg) and avg = sqrt(square_avg - grad_avg^2) + eps, "
        "else avg = sqrt(square_avg) + eps; with momentum, momentum_buffer = momentum * "
        "momentum_buffer + g / avg and param -= lr * momentum_buffer, else param -= lr * g / avg. "
        "momentum_buffer is ignored (may be None) when momentum == 0.");
}

}  // namespace fastcnn::bind
