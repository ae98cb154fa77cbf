"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedulers (StepLR, MultiStepLR,
ExponentialLR, LinearLR, CosineAnnealingLR, OneCycleLR, ReduceLROnPlateau).

Arguments, defaults and update rules are those of torch.optim (single-tensor CPU path), so a run
configured the same way follows the same trajectory up to float32 rounding. Each step updates every
`Parameter.data` and its state buffers in place, in one fused pass of a compiled kernel per
parameter (`_core.sgd_step`, `_core.adam_step`, `_core.rmsprop_step`), threaded for large
parameters; the kernels round like step-by-step float32 NumPy arithmetic (the SGD and Adam ones
replaced such NumPy passes), the same bits on every CPU variant and thread count.
`state_dict()` holds only NumPy arrays and plain Python scalars, lists and dicts, so a checkpoint
needs no pickle.
"""

from __future__ import annotations

import bisect
import math
import numbers
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np

from fastcnn import _core
from fastcnn._args import as_bool, as_float, as_int
from fastcnn.parameter import Parameter

ParamsArg = Union[Iterable[Parameter], Iterable[tuple[str, Parameter]], Iterable[dict]]

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "Optimizer",
    "RMSprop",
    "ReduceLROnPlateau",
    "StepLR",
]

# --- argument checks -----------------------------------------------------------------------------


def _real(value: object, name: str, *, minimum: float | None = None) -> float:
    """A finite real number, optionally >= minimum; messages name the argument."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.ndarray)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, np.ndarray) and value.shape != ():
        raise TypeError(f"{name}: expected a real number, got an array of shape {value.shape}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name}: expected a finite number, got {result}")
    if minimum is not None and result < minimum:
        raise ValueError(f"{name}: expected a value >= {minimum}, got {result}")
    return result


def _positive_int(value: object, name: str) -> int:
    result = as_int(value, name)
    if result < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {result}")
    return result


def _per_group(value: object, name: str, n: int) -> list[float]:
    """One real per parameter group: a list or tuple of n, or one value for all."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: expected {n} values (one per group), got {len(value)}")
        return [_real(v, name) for v in value]
    return [_real(value, name)] * n


def _nonnegative_int(value: object, name: str) -> int:
    result = as_int(value, name)
    if result < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {result}")
    return result


def _implementation_switches(
    foreach: object = None,
    fused: object = None,
    differentiable: object = False,
    capturable: object = False,
) -> None:
    """torch's arguments that pick how a step runs, not what it computes, so that code written
    for torch.optim runs unchanged: foreach and fused choose among torch's loops (here every step
    is one fused kernel already) and are ignored; differentiable (autograd through the step) and
    capturable (CUDA graphs) need what fastcnn does not have, so True is refused."""
    for name, value in (("foreach", foreach), ("fused", fused)):
        if value is not None:
            as_bool(value, name)
    missing = {
        "differentiable": (differentiable, "autograd to differentiate a step with"),
        "capturable": (capturable, "CUDA graphs to capture a step in"),
    }
    for name, (value, what) in missing.items():
        if as_bool(value, name):
            raise ValueError(f"{name}=True: fastcnn's optimizers have no {what}")


def _choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


# --- optimizers ----------------------------------------------------------------------------------


def _is_named(entry: object) -> bool:
    """Whether entry is a (name, Parameter) pair, as Module.named_parameters() yields them."""
    return (
        isinstance(entry, tuple)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], Parameter)
    )


def _refuse_unordered(params: object) -> None:
    """A set's order follows memory addresses, so it changes from run to run, and with it which
    parameter each entry of a saved state_dict goes to (torch refuses one as a group's params)."""
    if isinstance(params, (set, frozenset)):
        raise TypeError(
            "params: expected an ordered collection (a list), got a set, whose order changes "
            "from run to run"
        )


class Optimizer:
    """Base class: parameter groups with per-group options, per-parameter state, checkpointing.

    `params` is an iterable of `Parameter`s (or of (name, Parameter) pairs, as named_parameters()
    gives them: the group then lists them under "param_names"), or of dicts `{"params": [...],
    <option>: value}` whose options override the constructor's for that group (as in torch).
    `param_groups` is the list of group dicts; a scheduler or the user may change an option (such
    as "lr") between steps.
    """

    #: per-parameter state entries that are integers rather than parameter-shaped arrays
    _scalar_state: tuple[str, ...] = ()

    def __init__(self, params: ParamsArg, defaults: dict[str, Any]) -> None:
        self.defaults: dict[str, Any] = self._check_options(dict(defaults))
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Parameter, dict[str, Any]] = {}
        if isinstance(params, (Parameter, np.ndarray)) or not isinstance(params, Iterable):
            raise TypeError(
                "params: expected an iterable of Parameters or of dicts, "
                f"got {type(params).__name__}"
            )
        _refuse_unordered(params)
        groups = list(params)
        if not groups:
            raise ValueError("params: got an empty list of parameters")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _check_options(self, options: dict[str, Any], *, saved: bool = False) -> dict[str, Any]:
        """Validates and normalizes a group's options (subclasses check their own). saved: they
        come from a checkpoint, where a scheduler may have left values the constructor refuses
        (OneCycleLR's linear anneal, at its last step, overshoots to an lr below 0 and an Adam
        beta1 of 1 or more); torch loads them, it refuses them only as arguments."""
        return options

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        """Names of the state entries a parameter of `group` has once it has been stepped."""
        return ()

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Adds a group `{"params": [...], <option>: value}`; unset options take the defaults."""
        if not isinstance(group, dict):
            raise TypeError(
                f"params: expected a dict for a parameter group, got {type(group).__name__}"
            )
        if "params" not in group:
            raise ValueError("params: a parameter group needs a 'params' entry")
        params = group["params"]
        _refuse_unordered(params)
        params = [params] if isinstance(params, Parameter) else list(params)
        names = None
        if params and all(_is_named(p) for p in params):  # from named_parameters(), as torch
            names, params = [name for name, _ in params], [p for _, p in params]
        if self.param_groups and (names is None) != ("param_names" not in self.param_groups[0]):
            raise ValueError(
                "params: either every parameter group is named (from named_parameters()) or none"
            )
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"params: expected Parameter objects, got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if id(p) in seen:
                raise ValueError(f"params: {p!r} appears more than once among the parameter groups")
            seen.add(id(p))
        options = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        options = self._check_options(options)
        if names is not None:
            options["param_names"] = names
        options["params"] = params
        self.param_groups.append(options)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Sets every parameter's gradient to zero, in place. A Parameter's gradient is an array,
        never None: set_to_none=True marks it as torch's None instead (Parameter.grad_is_none), so
        that step() skips a parameter no backward reaches afterwards, as torch's does."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad(set_to_none)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter from its `.grad`; returns `closure()` if given. A
        parameter whose gradient torch would hold as None (grad_is_none, and nothing written into
        it in place since) is skipped, its state untouched: no weight decay, momentum or step.
        requires_grad is not consulted, as in torch: a frozen parameter normally has no gradient
        (backward computes none for it), but one frozen while it still holds a gradient (zeroed
        with set_to_none=False, or frozen between backward and step) steps on it."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad_is_none and not p.grad.any():
                    continue
                self._update(p, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """`{"state": {index: {name: array or int}}, "param_groups": [{option: value, "params":
        [index, ...]}]}`, parameters numbered in group order as in torch. Arrays are copies, so the
        result does not change as training goes on."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
            saved["params"] = ids
            groups.append(saved)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = {
                        k: (v.copy() if isinstance(v, np.ndarray) else v)
                        for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores options and state saved by `state_dict()` from an optimizer over parameters of
        the same shapes in the same groups. State keys may be ints or their decimal strings (as
        after a JSON round trip). Everything is checked before anything changes."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError("state_dict: expected a dict with 'state' and 'param_groups' entries")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict: has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, tuple[Parameter, dict[str, Any]]] = {}
        new_groups = []
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            saved_ids = list(saved.get("params", ()))
            if len(saved_ids) != len(group["params"]):
                raise ValueError(
                    f"state_dict: parameter group {g} has {len(saved_ids)} parameters, "
                    f"this optimizer's has {len(group['params'])}"
                )
            options = self._check_options(
                {k: v for k, v in saved.items() if k != "params"}, saved=True
            )
            options["params"] = group["params"]
            new_groups.append(options)
            for i, p in zip(saved_ids, group["params"]):
                by_index[as_int(i, "state_dict: parameter index")] = (p, options)
        new_state: dict[Parameter, dict[str, Any]] = {}
        for key, entry in state_dict["state"].items():
            i = int(key) if isinstance(key, str) and key.isdigit() else key
            if i not in by_index:
                raise ValueError(f"state_dict: state for parameter {key!r}, which no group lists")
            p, options = by_index[i]
            new_state[p] = self._load_entry(f"state[{key!r}]", p, options, entry)
        for group, options in zip(self.param_groups, new_groups):
            group.clear()
            group.update(options)
        self.state = new_state

    def _load_entry(
        self, where: str, p: Parameter, group: dict[str, Any], entry: dict[str, Any]
    ) -> dict[str, Any]:
        required = self._required_state(group)
        unknown = sorted(set(entry) - set(required))
        missing = sorted(set(required) - set(entry))
        if unknown or missing:
            raise ValueError(
                f"state_dict: {where} has entries {sorted(entry)}, expected {sorted(required)}"
            )
        loaded: dict[str, Any] = {}
        for name, value in entry.items():
            if name in self._scalar_state:
                number = np.asarray(value)
                if (
                    number.shape != ()
                    or number.dtype.kind not in "iuf"
                    or number != np.floor(number)
                    or number < 0
                ):
                    raise ValueError(
                        f"state_dict: {where}[{name!r}]: expected an int >= 0, got {value!r}"
                    )
                loaded[name] = int(number)
                continue
            array = np.asarray(value)
            if array.shape != p.shape:
                raise ValueError(
                    f"state_dict: {where}[{name!r}]: expected shape {p.shape}, got {array.shape}"
                )
            if array.dtype.kind not in "iuf":
                raise TypeError(
                    f"state_dict: {where}[{name!r}]: expected a real array, got dtype {array.dtype}"
                )
            loaded[name] = np.array(array, dtype=np.float32, order="C", copy=True)
        return loaded

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for i, group in enumerate(self.param_groups):
            options = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} parameters, {options}")
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.

    Per parameter, with g its gradient (negated with maximize): g += weight_decay * w; with
    momentum, the buffer starts as b = g on the first step, then b = momentum * b + (1 - dampening)
    * g, and g = g + momentum * b (Nesterov) or g = b; finally w -= lr * g. The same rule as
    torch.optim.SGD.
    """

    def __init__(
        self,
        params: ParamsArg,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        _implementation_switches(foreach, fused, differentiable)
        # Checked on the constructor's arguments only, as torch: a group may override momentum
        # (0: plain steps, nesterov then changes nothing) or dampening, and torch steps it.
        if as_bool(nesterov, "nesterov") and (
            _real(momentum, "momentum") <= 0 or _real(dampening, "dampening") != 0
        ):
            raise ValueError(
                "nesterov: Nesterov momentum needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any], *, saved: bool = False) -> dict[str, Any]:
        options["lr"] = _real(options["lr"], "lr", minimum=None if saved else 0.0)
        options["momentum"] = _real(options["momentum"], "momentum", minimum=0.0)
        options["dampening"] = _real(options["dampening"], "dampening")
        options["weight_decay"] = _real(options["weight_decay"], "weight_decay", minimum=0.0)
        options["nesterov"] = as_bool(options["nesterov"], "nesterov")
        # absent from checkpoints saved before the option existed
        options["maximize"] = as_bool(options.get("maximize", False), "maximize")
        return options

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",)

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        momentum = group["momentum"]
        buf = state.get("momentum_buffer") if momentum != 0 else None
        first = momentum != 0 and buf is None
        if first:
            buf = np.empty_like(p.data)  # the kernel sets it to this step's d, as torch clones it
        _core.sgd_step(
            p.data,
            _ascent(p, group),
            buf,
            group["lr"],
            momentum,
            group["dampening"],
            group["weight_decay"],
            group["nesterov"],
            first,
        )
        if first:  # only now: a step that raised (a bad gradient) leaves no unset buffer behind
            state["momentum_buffer"] = buf


def _ascent(p: Parameter, group: dict[str, Any]) -> np.ndarray:
    """The gradient a step descends along: negated for maximize (torch negates it first, before
    weight decay; negation is exact, so the kernels need no flag). Written into a new array: for a
    0-d parameter np.negative would return a NumPy scalar, which the kernels refuse."""
    grad = p.grad
    if not group["maximize"]:
        return grad
    return np.negative(grad, out=np.empty_like(grad))


class Adam(Optimizer):
    """Adam (Kingma & Ba), with optional L2 weight decay and the AMSGrad variant.

    Per parameter at step t, with g its gradient (negated with maximize): g += weight_decay * w;
    m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2 (v_max = max(v_max, v) with amsgrad);
    w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps). The same as torch.optim.Adam;
    decoupled_weight_decay=True makes it AdamW.
    """

    _scalar_state = ("step",)
    #: decoupled_weight_decay when a checkpoint saved before the option existed lacks it
    _decoupled_default = False

    def __init__(
        self,
        params: ParamsArg,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        _implementation_switches(foreach, fused, differentiable, capturable)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any], *, saved: bool = False) -> dict[str, Any]:
        options["lr"] = _real(options["lr"], "lr", minimum=None if saved else 0.0)
        options["eps"] = _real(options["eps"], "eps", minimum=0.0)
        options["weight_decay"] = _real(options["weight_decay"], "weight_decay", minimum=0.0)
        options["amsgrad"] = as_bool(options["amsgrad"], "amsgrad")
        # absent from checkpoints saved before the options existed
        options["maximize"] = as_bool(options.get("maximize", False), "maximize")
        options["decoupled_weight_decay"] = as_bool(
            options.get("decoupled_weight_decay", self._decoupled_default), "decoupled_weight_decay"
        )
        betas = options["betas"]
        if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        betas = (_real(betas[0], "betas[0]"), _real(betas[1], "betas[1]"))
        for i, beta in enumerate(betas):
            if not saved and not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{i}]: expected 0 <= beta < 1, got {beta}")
        options["betas"] = betas
        return options

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        names = ("step", "exp_avg", "exp_avg_sq")
        return names + ("max_exp_avg_sq",) if group["amsgrad"] else names

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        amsgrad = group["amsgrad"]
        if amsgrad and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = np.zeros_like(p.data)
        beta1, beta2 = group["betas"]
        _core.adam_step(
            p.data,
            _ascent(p, group),
            state["exp_avg"],
            state["exp_avg_sq"],
            state["max_exp_avg_sq"] if amsgrad else None,
            state["step"] + 1,
            group["lr"],
            beta1,
            beta2,
            group["eps"],
            group["weight_decay"],
            group["decoupled_weight_decay"],
        )
        state["step"] += 1  # after the kernel, which checks the arrays before it changes any


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): w *= 1 - lr * weight_decay before the
    Adam step, instead of adding weight_decay * w to the gradient. The same as torch.optim.AdamW."""

    _decoupled_default = True

    def __init__(
        self,
        params: ParamsArg,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )


class RMSprop(Optimizer):
    """RMSprop (Hinton), with optional momentum, weight decay and the centered variant.

    Per parameter, with g its gradient (negated with maximize): g += weight_decay * w;
    v = alpha v + (1 - alpha) g^2; centered: m = alpha m + (1 - alpha) g and the denominator is
    sqrt(v - m^2) + eps, else sqrt(v) + eps; with momentum, b = momentum b + g / denominator and
    w -= lr * b, else w -= lr * g / denominator. The same as torch.optim.RMSprop, state
    ("step", "square_avg", "momentum_buffer" with momentum, "grad_avg" when centered) included.
    """

    _scalar_state = ("step",)

    def __init__(
        self,
        params: ParamsArg,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        _implementation_switches(foreach, differentiable=differentiable, capturable=capturable)
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any], *, saved: bool = False) -> dict[str, Any]:
        options["lr"] = _real(options["lr"], "lr", minimum=None if saved else 0.0)
        options["alpha"] = _real(options["alpha"], "alpha", minimum=0.0)
        options["eps"] = _real(options["eps"], "eps", minimum=0.0)
        options["weight_decay"] = _real(options["weight_decay"], "weight_decay", minimum=0.0)
        options["momentum"] = _real(options["momentum"], "momentum", minimum=0.0)
        options["centered"] = as_bool(options["centered"], "centered")
        options["maximize"] = as_bool(options.get("maximize", False), "maximize")
        return options

    def _required_state(self, group: dict[str, Any]) -> tuple[str, ...]:
        names = ("step", "square_avg")
        names += ("momentum_buffer",) if group["momentum"] > 0 else ()
        return names + ("grad_avg",) if group["centered"] else names

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data)
        # created when first needed: a group's momentum or centered may be switched on later
        for name in self._required_state(group):
            if name not in state:
                state[name] = np.zeros_like(p.data)
        _core.rmsprop_step(
            p.data,
            _ascent(p, group),
            state["square_avg"],
            state.get("grad_avg") if group["centered"] else None,
            state.get("momentum_buffer"),
            group["lr"],
            group["alpha"],
            group["eps"],
            group["weight_decay"],
            group["momentum"],
        )
        state["step"] += 1  # after the kernel, which checks the arrays before it changes any


# --- learning-rate schedulers --------------------------------------------------------------------

_EPOCH_DEPRECATION = (
    "scheduler.step(epoch) is deprecated (in torch too): it jumps to that step with the "
    "closed-form lr; call scheduler.step() once per step instead"
)


class LRScheduler:
    """Base class: sets each group's "lr" for the step count `last_epoch`.

    Construction records each group's starting lr as "initial_lr" (kept if already there, as after
    loading an optimizer checkpoint) into `base_lrs`, and applies step 0 (a chainable one starts
    from the groups' lrs: LinearLR scales them by start_factor, the others keep them). Call
    `step()` once per epoch (or per batch, for OneCycleLR) after `optimizer.step()`. A chainable
    scheduler (StepLR, MultiStepLR, ExponentialLR, LinearLR, CosineAnnealingLR) steps each group's
    current lr, as torch's do, so an lr changed between steps carries on, and two of them stepped
    together compose; OneCycleLR (and load_state_dict) set the closed form in `last_epoch`.
    ReduceLROnPlateau, stepped with a metric, is a class of its own.
    """

    #: constructor options saved by state_dict(), besides last_epoch and base_lrs
    _config: tuple[str, ...] = ()
    #: whether step() derives the new lr from the group's current one (see _chained_lr)
    _chainable = False
    #: whether the step made by the constructor chains too (torch's StepLR does when resuming
    #: at last_epoch >= 0; its CosineAnnealingLR keeps the lr)
    _chains_at_start = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected an Optimizer, got {type(optimizer).__name__}")
        last_epoch = as_int(last_epoch, "last_epoch")
        if last_epoch < -1:
            raise ValueError(
                f"last_epoch: expected -1 (a fresh start) or a step >= 0, got {last_epoch}"
            )
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:  # resuming, as torch: the groups (from the optimizer's checkpoint) hold it
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param_groups[{i}]: no 'initial_lr' to resume from at last_epoch="
                        f"{last_epoch}; load the optimizer's state_dict first"
                    )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list[float] = []
        self._starting = True
        self.step()
        self._starting = False

    def _lr_at(self, base_lr: float, group_index: int, step: int) -> float:
        raise NotImplementedError

    def _chained_lr(self, lr: float, base_lr: float | None, step: int) -> float:
        """A chainable scheduler's lr for `step` >= 1 from the group's current lr (base_lr: None
        for a group added to the optimizer after the scheduler was made)."""
        raise NotImplementedError

    def _chained_start(self, lr: float) -> float:
        """A chainable scheduler's lr for step 0 (a fresh start) from the group's current lr."""
        return lr

    def _apply(self, step: int) -> None:
        """Sets the optimizer's options for `step` (subclasses may set more than lr)."""
        for i, (group, base_lr) in enumerate(zip(self.optimizer.param_groups, self.base_lrs)):
            group["lr"] = self._lr_at(base_lr, i, step)

    def step(self, epoch: int | None = None) -> None:
        """Advances one step and sets each group's lr. step(epoch), deprecated in torch but still
        taken there, jumps to step `epoch` instead, with the closed-form lrs of that step."""
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
            epoch = _nonnegative_int(epoch, "epoch")
            self._apply(epoch)
            self.last_epoch = epoch
            self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
            return
        self.last_epoch += 1
        if not self._chainable:
            self._apply(self.last_epoch)
        elif self.last_epoch == 0:
            for group in self.optimizer.param_groups:
                group["lr"] = self._chained_start(group["lr"])
        elif self._chains_at_start or not self._starting:
            # every group, as torch's: one added to the optimizer later (it has no base_lr, None
            # here) decays with the others
            groups = self.optimizer.param_groups
            base_lrs = self.base_lrs + [None] * (len(groups) - len(self.base_lrs))
            for group, base_lr in zip(groups, base_lrs):
                group["lr"] = self._chained_lr(group["lr"], base_lr, self.last_epoch)
        # else: resuming at last_epoch >= 0, a chainable scheduler starts from each group's lr as
        # it is (as torch's do: after loading an optimizer checkpoint it need not be "initial_lr")
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The lr of each group as set by the last `step()`."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """`last_epoch`, `base_lrs`, the constructor options and `_last_lr` (torch's name for the
        lrs of the last step): plain Python scalars and lists."""
        saved = {name: getattr(self, name) for name in self._config}
        saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in saved.items()}
        return {
            "last_epoch": self.last_epoch,
            "base_lrs": list(self.base_lrs),
            **saved,
            "_last_lr": list(self._last_lr),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a `state_dict()` and sets the optimizer's lrs (and cycled momenta) for the
        restored step, so it does not matter whether the optimizer's state was loaded first. A
        chainable scheduler restores the saved `_last_lr` (its lrs hold every change made between
        steps; the closed form stands in for a state without them)."""
        names = ("last_epoch", "base_lrs") + self._config
        if not isinstance(state_dict, dict) or not set(names) <= state_dict.keys():
            raise ValueError(f"state_dict: expected a dict with entries {list(names)}")
        base_lrs = [_real(lr, "state_dict: base_lrs") for lr in state_dict["base_lrs"]]
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"state_dict: base_lrs has {len(base_lrs)} entries, the optimizer has "
                f"{len(self.optimizer.param_groups)} parameter groups"
            )
        last_epoch = as_int(state_dict["last_epoch"], "state_dict: last_epoch")
        if last_epoch < 0:
            raise ValueError(f"state_dict: last_epoch: expected an int >= 0, got {last_epoch}")
        last_lrs = state_dict.get("_last_lr")
        if last_lrs is not None:
            last_lrs = [_real(lr, "state_dict: _last_lr") for lr in last_lrs]
            if len(last_lrs) != len(base_lrs):
                raise ValueError(
                    f"state_dict: _last_lr has {len(last_lrs)} entries, base_lrs {len(base_lrs)}"
                )
        previous = {name: getattr(self, name) for name in self._config}, self.base_lrs
        try:
            self._set_config({name: state_dict[name] for name in self._config})
            self.base_lrs = base_lrs
            self._apply(last_epoch)
        except (TypeError, ValueError):
            self._set_config(previous[0])
            self.base_lrs = previous[1]
            raise
        self.last_epoch = last_epoch
        if self._chainable and last_lrs is not None:
            for group, lr in zip(self.optimizer.param_groups, last_lrs):
                group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _set_config(self, config: dict[str, Any]) -> None:
        """Validates and sets the constructor options named in `_config` (none here)."""


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (step // step_size): decays by gamma every step_size steps
    (multiplying the current lr, as torch does)."""

    _config = ("step_size", "gamma")
    _chainable = True
    _chains_at_start = True

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self._set_config({"step_size": step_size, "gamma": gamma})
        super().__init__(optimizer, last_epoch)

    def _set_config(self, config: dict[str, Any]) -> None:
        self.step_size = _positive_int(config["step_size"], "step_size")
        self.gamma = _real(config["gamma"], "gamma")

    def _lr_at(self, base_lr: float, group_index: int, step: int) -> float:
        return base_lr * self.gamma ** (step // self.step_size)

    def _chained_lr(self, lr: float, base_lr: float | None, step: int) -> float:
        return lr * self.gamma if step % self.step_size == 0 else lr


class MultiStepLR(LRScheduler):
    """lr = base_lr * gamma ** (milestones reached by step): decays by gamma at each milestone step
    (twice for a milestone listed twice), multiplying the current lr, as torch does."""

    _config = ("milestones", "gamma")
    _chainable = True
    _chains_at_start = True

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self._set_config({"milestones": milestones, "gamma": gamma})
        super().__init__(optimizer, last_epoch)

    def _set_config(self, config: dict[str, Any]) -> None:
        milestones = config["milestones"]
        if isinstance(milestones, Mapping):
            # torch's state_dict holds them as a Counter {step: how often it is listed}
            milestones = [
                m for m, n in milestones.items() for _ in range(_nonnegative_int(n, "milestones"))
            ]
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise TypeError(
                f"milestones: expected an iterable of steps, got {type(milestones).__name__}"
            )
        steps = sorted(as_int(m, "milestones") for m in milestones)
        if steps and steps[0] < 1:
            # (torch would cut the lr at construction for a milestone 0)
            raise ValueError(f"milestones: expected steps >= 1, got {steps[0]}")
        self.milestones = steps
        self.gamma = _real(config["gamma"], "gamma")

    def _lr_at(self, base_lr: float, group_index: int, step: int) -> float:
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, step)

    def _chained_lr(self, lr: float, base_lr: float | None, step: int) -> float:
        count = self.milestones.count(step)
        return lr * self.gamma**count if count else lr


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** step: multiplies the current lr by gamma at every step, as torch
    does."""

    _config = ("gamma",)
    _chainable = True

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self._set_config({"gamma": gamma})
        super().__init__(optimizer, last_epoch)

    def _set_config(self, config: dict[str, Any]) -> None:
        self.gamma = _real(config["gamma"], "gamma")

    def _lr_at(self, base_lr: float, group_index: int, step: int) -> float:
        return base_lr * self.gamma**step

    def _chained_lr(self, lr: float, base_lr: float | None, step: int) -> float:
        return lr * self.gamma


class LinearLR(LRScheduler):
    """lr = base_lr * factor, the factor going linearly from start_factor at step 0 to end_factor
    at step total_iters and staying there: a warmup with the defaults. Each step multiplies the
    current lr by the ratio of successive factors, with torch's formula, so an lr changed between
    steps (or by another scheduler stepped beside it) carries on, as in torch."""

    _config = ("start_factor", "end_factor", "total_iters")
    _chainable = True

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self._set_config(
            {"start_factor": start_factor, "end_factor": end_factor, "total_iters": total_iters}
        )
        super().__init__(optimizer, last_epoch)

    def _set_config(self, config: dict[str, Any]) -> None:
        start = _real(config["start_factor"], "start_factor")
        if not 0.0 < start <= 1.0:
            raise ValueError(f"start_factor: expected a value in (0, 1], got {start}")
        end = _real(config["end_factor"], "end_factor")
        if not 0.0 <= end <= 1.0:
            raise ValueError(f"end_factor: expected a value in [0, 1], got {end}")
        self.start_factor, self.end_factor = start, end
        self.total_iters = _positive_int(config["total_iters"], "total_iters")

    def _lr_at(self, base_lr: float, group_index: int, step: int) -> float:
        progress = min(self.total_iters, step) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)

    def _chained_start(self, lr: float) -> float:
        return lr * self.start_factor

    def _chained_lr(self, lr: float, base_lr: float | None, step: int) -> float:
        if step > self.total_iters:
            return lr
        # factor(step) / factor(step - 1), times total_iters above and below
        change = self.end_factor - self.start_factor
        return lr * (1.0 + change / (self.total_iters * self.start_factor + (step - 1) * change))


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2.

    Reaches eta_min at step T_max and, stepped further, rises again with period 2 * T_max. step()
    computes it from the current lr with torch's recursive formula (the same floats as torch's,
    and an lr changed between steps carries on)."""

    _config = ("T_max", "eta_min")
    _chainable = True

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self._set_config({"T_max": T_max, "eta_min": eta_min})
        super().__init__(optimizer, last_epoch)

    def _set_config(self, config: dict[str, Any]) -> None:
        self.T_max = _positive_int(config["T_max"], "T_max")
        self.eta_min = _real(config["eta_min"], "eta_min")

    def _lr_at(self, base_lr: float, group_index: int, step: int) -> float:
        cosine = math.cos(math.pi * step / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + cosine) / 2.0

    def _chained_lr(self, lr: float, base_lr: float | None, step: int) -> float:
        t_max, eta_min = self.T_max, self.eta_min
        if (step - 1 - t_max) % (2 * t_max) == 0:  # leaving the minimum: the ratio below is 0/0
            if base_lr is None:  # (torch fails here too, on a shorter list of base lrs)
                raise ValueError(
                    "CosineAnnealingLR: a parameter group added after the scheduler was made has "
                    "no base lr to rise back to after eta_min"
                )
            return lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        now, before = math.cos(math.pi * step / t_max), math.cos(math.pi * (step - 1) / t_max)
        return (1 + now) / (1 + before) * (lr - eta_min) + eta_min


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin): lr rises from max_lr / div_factor to max_lr over the first
    pct_start of total_steps, then anneals to max_lr / div_factor / final_div_factor; momentum (or
    Adam's beta1) cycles the opposite way between max_momentum and base_momentum.

    Step it once per batch; total_steps = epochs * steps_per_epoch when not given. With
    three_phase, lr goes back down to the start value symmetrically before the final annealing.
    max_lr, base_momentum and max_momentum may be one value or one per group. Same as torch's,
    positional argument order included.
    """

    _config = (
        "total_steps",
        "max_lrs",
        "pct_start",
        "anneal_strategy",
        "div_factor",
        "final_div_factor",
        "three_phase",
        "cycle_momentum",
        "base_momentums",
        "max_momentums",
    )

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | Sequence[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | Sequence[float] = 0.85,
        max_momentum: float | Sequence[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected an Optimizer, got {type(optimizer).__name__}")
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError(
                    "total_steps: give total_steps, or both epochs and steps_per_epoch"
                )
            total_steps = _positive_int(epochs, "epochs") * _positive_int(
                steps_per_epoch, "steps_per_epoch"
            )
        n = len(optimizer.param_groups)
        self._set_config(
            {
                "total_steps": total_steps,
                "max_lrs": _per_group(max_lr, "max_lr", n),
                "pct_start": pct_start,
                "anneal_strategy": anneal_strategy,
                "div_factor": div_factor,
                "final_div_factor": final_div_factor,
                "three_phase": three_phase,
                "cycle_momentum": cycle_momentum,
                "base_momentums": _per_group(base_momentum, "base_momentum", n),
                "max_momentums": _per_group(max_momentum, "max_momentum", n),
            }
        )
        if self.cycle_momentum and not {"momentum", "betas"} & optimizer.defaults.keys():
            raise ValueError(
                "cycle_momentum: the optimizer has neither momentum nor betas; "
                "pass cycle_momentum=False"
            )
        if last_epoch == -1:  # resuming keeps the checkpoint's, as in torch
            for group, max_lr_value in zip(optimizer.param_groups, self.max_lrs):
                group["initial_lr"] = max_lr_value / self.div_factor
        super().__init__(optimizer, last_epoch)

    def _set_config(self, config: dict[str, Any]) -> None:
        n = len(config["max_lrs"])
        self.total_steps = _positive_int(config["total_steps"], "total_steps")
        self.max_lrs = [_real(v, "max_lr") for v in config["max_lrs"]]
        pct_start = _real(config["pct_start"], "pct_start")
        if not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"pct_start: expected a value in [0, 1], got {pct_start}")
        self.pct_start = pct_start
        if config["anneal_strategy"] not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy: expected 'cos' or 'linear', got {config['anneal_strategy']!r}"
            )
        self.anneal_strategy = config["anneal_strategy"]
        self.div_factor = _real(config["div_factor"], "div_factor")
        self.final_div_factor = _real(config["final_div_factor"], "final_div_factor")
        self.three_phase = as_bool(config["three_phase"], "three_phase")
        self.cycle_momentum = as_bool(config["cycle_momentum"], "cycle_momentum")
        self.base_momentums = [_real(v, "base_momentum") for v in config["base_momentums"]]
        self.max_momentums = [_real(v, "max_momentum") for v in config["max_momentums"]]
        if not len(self.base_momentums) == len(self.max_momentums) == n:
            raise ValueError("max_lr, base_momentum, max_momentum: need one value per group each")
        start = 0.0
        for i, (end, _, _) in enumerate(self._phases()):
            if end == start:  # torch divides by the phase's length (ZeroDivisionError)
                raise ValueError(
                    f"pct_start, total_steps: phase {i + 1} of the schedule would have no length "
                    f"(pct_start={self.pct_start}, total_steps={self.total_steps}, "
                    f"three_phase={self.three_phase})"
                )
            start = end

    def _phases(self) -> list[tuple[float, str, str]]:
        """(last step of the phase, lr it starts from, lr it ends at); momentum mirrors lr."""
        up = float(self.pct_start * self.total_steps) - 1
        if self.three_phase:
            down = float(2 * self.pct_start * self.total_steps) - 2
            return [
                (up, "initial", "max"),
                (down, "max", "initial"),
                (self.total_steps - 1, "initial", "min"),
            ]
        return [(up, "initial", "max"), (self.total_steps - 1, "max", "min")]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _apply(self, step: int) -> None:
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {step} times, but total_steps is {self.total_steps}"
            )
        phases = self._phases()
        if len(self.optimizer.param_groups) != len(self.max_lrs):
            raise ValueError(
                f"OneCycleLR: set up for {len(self.max_lrs)} parameter groups (a max_lr each), "
                f"the optimizer now has {len(self.optimizer.param_groups)}"
            )
        for i, group in enumerate(self.optimizer.param_groups):
            initial = self.max_lrs[i] / self.div_factor
            lrs = {
                "initial": initial,
                "max": self.max_lrs[i],
                "min": initial / self.final_div_factor,
            }
            # momentum is high where lr is low: each lr level maps to a momentum level
            momenta = {
                "initial": self.max_momentums[i],
                "max": self.base_momentums[i],
                "min": self.max_momentums[i],
            }
            start_step = 0.0
            for p, (end_step, start, end) in enumerate(phases):
                if step <= end_step or p == len(phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    group["lr"] = self._anneal(lrs[start], lrs[end], pct)
                    momentum = self._anneal(momenta[start], momenta[end], pct)
                    break
                start_step = end_step
            if self.cycle_momentum:
                if "betas" in group:
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    group["momentum"] = momentum


class ReduceLROnPlateau:
    """Cuts each group's lr to lr * factor (not below its min_lr) when the metric given to
    `step(metric)` has not improved for more than `patience` steps, then ignores `cooldown` steps.

    mode "min" watches a value that should fall (a loss), "max" one that should rise (an
    accuracy). A value improves on the best so far when it beats it by more than threshold,
    relative to it (threshold_mode "rel") or absolute ("abs"). A cut smaller than eps is skipped.
    min_lr may be one value or one per group. Arguments, defaults, rule and state_dict keys are
    torch's; `fastcnn.training.fit` steps it once per epoch on the validation loss (the training
    loss without a validation set), or on the accuracy with mode "max".
    """

    _config = (
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lrs",
        "eps",
    )
    _counters = ("last_epoch", "num_bad_epochs", "cooldown_counter")

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self._set_config(
            {
                "mode": mode,
                "factor": factor,
                "patience": patience,
                "threshold": threshold,
                "threshold_mode": threshold_mode,
                "cooldown": cooldown,
                "min_lrs": _per_group(min_lr, "min_lr", len(optimizer.param_groups)),
                "eps": eps,
            }
        )
        # min_lr given as one value also holds for groups added to the optimizer later (None: one
        # value per group was given), as in torch
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else self.min_lrs[0]
        self.last_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _set_config(self, config: dict[str, Any]) -> None:
        mode = _choice(config["mode"], "mode", ("min", "max"))
        factor = _real(config["factor"], "factor")
        if not 0.0 <= factor < 1.0:
            raise ValueError(f"factor: expected a value in [0, 1), got {factor}")
        patience = _nonnegative_int(config["patience"], "patience")
        threshold = _real(config["threshold"], "threshold", minimum=0.0)
        threshold_mode = _choice(config["threshold_mode"], "threshold_mode", ("rel", "abs"))
        cooldown = _nonnegative_int(config["cooldown"], "cooldown")
        min_lrs = config["min_lrs"]
        if not isinstance(min_lrs, (list, tuple)):
            raise TypeError(f"min_lrs: expected a list, got {type(min_lrs).__name__}")
        if len(min_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"min_lr: expected {len(self.optimizer.param_groups)} values (one per group), "
                f"got {len(min_lrs)}"
            )
        min_lrs = [_real(v, "min_lr", minimum=0.0) for v in min_lrs]
        eps = _real(config["eps"], "eps", minimum=0.0)
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.min_lrs = min_lrs
        self.eps = eps

    def _is_better(self, value: float) -> bool:
        best, threshold = self.best, self.threshold
        if self.mode == "min":
            return value < (
                best * (1.0 - threshold) if self.threshold_mode == "rel" else best - threshold
            )
        return value > (
            best * (threshold + 1.0) if self.threshold_mode == "rel" else best + threshold
        )

    def step(self, metrics: float, epoch: int | None = None) -> None:
        """Counts one step with the watched value `metrics` (a float, or a 0-d array). epoch,
        deprecated in torch but still taken there, sets last_epoch instead of counting on."""
        value = as_float(metrics, "metrics")
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
            epoch = _nonnegative_int(epoch, "epoch")
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise ValueError(
                    f"min_lr: has {len(self.min_lrs)} values, but the optimizer now has "
                    f"{len(groups)} parameter groups"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad steps during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(groups, self.min_lrs):
                old = float(group["lr"])
                new = max(old * self.factor, min_lr)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in groups]

    def get_last_lr(self) -> list[float]:
        """The lr of each group after the last `step()`."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The options, the counters, `best` and `_last_lr`, under torch's names: plain Python
        scalars and lists."""
        saved = {name: getattr(self, name) for name in self._config + self._counters}
        saved["min_lrs"] = list(self.min_lrs)
        saved["default_min_lr"] = self.default_min_lr
        return {**saved, "best": self.best, "_last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a `state_dict()` (torch's has the same entries, and more that are ignored);
        everything is checked before anything changes. The optimizer's lrs are its own state."""
        names = self._config + self._counters + ("best",)
        if not isinstance(state_dict, dict) or not set(names) <= state_dict.keys():
            raise ValueError(f"state_dict: expected a dict with entries {list(names)}")
        counters = {n: _nonnegative_int(state_dict[n], f"state_dict: {n}") for n in self._counters}
        best = as_float(state_dict["best"], "state_dict: best")
        last_lrs = state_dict.get("_last_lr", self._last_lr)
        if not isinstance(last_lrs, (list, tuple)):
            raise TypeError(f"state_dict: _last_lr: expected a list, got {type(last_lrs).__name__}")
        last_lrs = [_real(lr, "state_dict: _last_lr") for lr in last_lrs]
        default_min_lr = state_dict.get("default_min_lr")  # absent from older checkpoints
        if default_min_lr is not None:
            default_min_lr = _real(default_min_lr, "state_dict: default_min_lr", minimum=0.0)
        previous = {name: getattr(self, name) for name in self._config}
        try:
            self._set_config({name: state_dict[name] for name in self._config})
        except (TypeError, ValueError):
            self._set_config(previous)
            raise
        for name, value in counters.items():
            setattr(self, name, value)
        self.best = best
        self.default_min_lr = default_min_lr
        self._last_lr = last_lrs
