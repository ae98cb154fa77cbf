"""Module: the base of every layer and container, with PyTorch's names for its methods.

Backward is explicit: `forward` keeps what `backward` needs, `backward(dy)` adds each parameter's
gradient into `.grad` and returns the gradient of the input (or None when `input_grad=False`, which
lets the first layer of a network skip that work).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from fastcnn._args import as_bool
from fastcnn.parameter import Parameter

_PLAIN_TYPES = frozenset((np.ndarray, tuple, list, type(None)))

# Counts the attribute assignments and deletions on any module that may change how a container
# runs its children (a layer's arguments, return_indices, a forward replaced on the instance, a
# child set as an attribute); what layers save for backward does not count. nn.Sequential keeps
# the steps it worked out for its children while this count and its children stay the same.
_layout_changes = [0]


def layout_changed() -> None:
    """Marks that some module's attributes changed in a way Module.__setattr__ did not see (e.g.
    an object.__setattr__ on a module): containers work out their steps again."""
    _layout_changes[0] += 1


def layout_version() -> int:
    return _layout_changes[0]


class IncompatibleKeys(NamedTuple):
    """What load_state_dict returns: the keys the module has and the state_dict lacks, and the
    keys the state_dict has and the module lacks."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class: holds parameters, buffers and child modules, registered by assigning them."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration ----------------------------------------------------------------------------
    #: attributes whose assignment invalidates `_call_args`, the arguments a layer normalized once
    #: for its kernel calls (see `Module._cached_args`)
    _call_arg_names: frozenset[str] = frozenset()
    _call_args = None
    #: buffers load_state_dict does not require (see there)
    _optional_buffers: frozenset[str] = frozenset()

    # The layers on the batch-1 inference path (Conv2d, Linear, ReLU, MaxPool2d, BatchNorm2d,
    # Flatten) store what their backward needs with `self.__dict__[name] = value`: a plain
    # attribute their __init__ created, where the hot path below would cost a Python-level call
    # (~0.15 us of a ~1 us layer call).
    def __setattr__(self, name: str, value: object) -> None:
        d = self.__dict__
        if name in d and type(value) in _PLAIN_TYPES and name not in self._call_arg_names:
            # Hot path: a layer replacing what it saved for backward (a plain attribute already,
            # so in no table; arrays, tuples, lists and None are never parameters or modules).
            d[name] = value
            return
        parameters = d.get("_parameters")
        if parameters is None:
            raise AttributeError("call Module.__init__() before assigning attributes")
        _layout_changes[0] += 1
        if isinstance(value, Parameter):
            self._unregister(name)
            parameters[name] = value
        elif isinstance(value, Module):
            self._unregister(name)
            d["_modules"][name] = value
        elif name in d["_buffers"]:
            d["_buffers"][name] = value  # e.g. `self.num_batches_tracked += 1`
        else:
            # The common case (a layer saving what backward needs) costs two dict lookups here.
            if name in parameters or name in d["_modules"]:
                self._unregister(name)
            object.__setattr__(self, name, value)
            if name in self._call_arg_names:
                d.pop("_call_args", None)

    def _unregister(self, name: str) -> None:
        """Forget `name` in every table and as a plain attribute (which would shadow the tables)."""
        d = self.__dict__
        for table in (d["_parameters"], d["_buffers"], d["_modules"]):
            table.pop(name, None)
        d.pop(name, None)

    def __getattr__(self, name: str):
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            entries = d.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        _layout_changes[0] += 1
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if name in d.get(table, ()):
                del d[table][name]
                return
        object.__delattr__(self, name)
        if name in self._call_arg_names:
            d.pop("_call_args", None)

    def _cached_args(self) -> tuple:
        """`_call_args`, rebuilt by `_make_call_args()` after any of `_call_arg_names` changed."""
        args = self._make_call_args()
        self.__dict__["_call_args"] = args
        return args

    def _make_call_args(self) -> tuple:
        raise NotImplementedError

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        """A non-trainable array that is part of the state (e.g. batch norm's running mean)."""
        self._unregister(name)
        self._buffers[name] = value

    # --- traversal -------------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct children, each once (as in torch: a child under two names is given once)."""
        seen: set[int] = set()
        for name, child in self._modules.items():
            if id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(
        self, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """Every module of the tree, this one first, depth first. As in torch, a module registered
        under several names is given once (under its first name) unless remove_duplicate=False."""
        seen: set[int] | None = set() if remove_duplicate else None
        yield from self._named_modules(prefix, seen)

    def _named_modules(self, prefix: str, seen: set[int] | None) -> Iterator[tuple[str, Module]]:
        if seen is not None:
            if id(self) in seen:
                return
            seen.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            yield from child._named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def _named_members(
        self, table: str, prefix: str, recurse: bool, remove_duplicate: bool
    ) -> Iterator[tuple[str, Parameter | np.ndarray]]:
        """Every entry of each module's `table` once (a shared one under its first name, as in
        torch), or under each of its names with remove_duplicate=False; recurse=False: this
        module's own only."""
        seen: set[int] = set()
        modules = self.named_modules(prefix, remove_duplicate) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, value in getattr(module, table).items():
                if value is not None and not (remove_duplicate and id(value) in seen):
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """Every parameter once (a shared one under its first name, as in torch), so an optimizer
        over parameters() steps each once; remove_duplicate=False gives it under each name.
        recurse=False: this module's own only."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, np.ndarray]]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The module at the dotted path `target`, as torch's ("" is this one, "0.conv" child
        "0"'s child "conv"); AttributeError names the first step that is not a child module."""
        module = self
        for name in target.split(".") if target else ():
            if name not in module._modules:
                raise AttributeError(
                    f"{type(module).__name__} has no submodule {name!r} (looking up {target!r})"
                )
            module = module._modules[name]
        return module

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at the dotted path `target` ("0.weight"), as torch's."""
        return self._get_member("_parameters", target)

    def get_buffer(self, target: str) -> np.ndarray:
        """The buffer at the dotted path `target` ("1.running_mean"), as torch's."""
        return self._get_member("_buffers", target)

    def _get_member(self, table: str, target: str):
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        value = getattr(module, table).get(name)
        if value is None:
            kind = table.strip("_")[:-1]
            raise AttributeError(f"{type(module).__name__} has no {kind} {name!r} ({target!r})")
        return value

    def add_module(self, name: str, module: Module) -> None:
        """Registers a child under `name`, as assigning the attribute does."""
        if not isinstance(module, Module):
            raise TypeError(f"add_module: expected a Module, got {type(module).__name__}")
        self._unregister(name)
        self._modules[name] = module

    def apply(self, fn) -> Module:
        """Calls fn on every child module (recursively), then on this one; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # --- state -----------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed as torch.nn names them ("0.weight", ...)."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        # every name of a shared module, as torch's state_dict
        for module_name, module in self.named_modules(remove_duplicate=False):
            dot = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    out[dot + name] = p.data.copy()
            for name, b in module._buffers.items():
                if b is not None:
                    out[dot + name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays into the parameters and buffers; shapes must match. Accepts torch tensors too
        (anything np.asarray understands), so weights move between fastcnn and PyTorch. Returns
        (missing_keys, unexpected_keys), as torch does; with strict, either being non-empty raises
        KeyError before anything is copied. A buffer in `_optional_buffers` (a batch norm's
        num_batches_tracked) may be absent: it keeps its value and is not missing, as torch treats
        a plain dict (one without its version metadata, such as a converted one)."""
        own = self._state_slots()
        missing = [
            k
            for k, (module, name, kind) in own.items()
            if k not in state_dict and not (kind == "buffer" and name in module._optional_buffers)
        ]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict: missing keys {missing}, unexpected keys {unexpected} "
                f"for {type(self).__name__}"
            )
        for key, (module, name, kind) in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if hasattr(value, "detach"):  # a torch tensor
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            current = module._parameters[name].data if kind == "param" else module._buffers[name]
            if value.shape != current.shape:
                raise ValueError(
                    f"state_dict[{key!r}]: expected shape {current.shape}, got {value.shape}"
                )
            if value.dtype.kind not in "biuf":
                raise TypeError(f"state_dict[{key!r}]: expected a real array, got {value.dtype}")
            current[...] = value
        return IncompatibleKeys(missing, unexpected)

    def _state_slots(self) -> OrderedDict[str, tuple[Module, str, str]]:
        slots: OrderedDict[str, tuple[Module, str, str]] = OrderedDict()
        for module_name, module in self.named_modules(remove_duplicate=False):
            dot = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    slots[dot + name] = (module, name, "param")
            for name, b in module._buffers.items():
                if b is not None:
                    slots[dot + name] = (module, name, "buffer")
        return slots

    # --- modes and calls -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        # train(0) or train("eval") is a mistake: ValueError, as torch's
        if not isinstance(mode, (bool, np.bool_)):
            raise ValueError(f"mode: expected a bool, got {type(mode).__name__} {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Sets `requires_grad` on every parameter of the tree and returns self, as torch's: with
        False, backward computes no gradient for them, so optimizers leave them alone once their
        gradients are None (after zero_grad(), or never computed): freezing a pretrained feature
        extractor while the head trains."""
        as_bool(requires_grad, "requires_grad")
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zeroes every parameter's gradient in place (set_to_none: see Optimizer.zero_grad)."""
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def __call__(self, *inputs: np.ndarray) -> np.ndarray | float:
        # one input for a layer, two (prediction, target) for a loss
        return self.forward(*inputs)

    # --- description -----------------------------------------------------------------------------
    def config(self) -> dict:
        """Constructor arguments as JSON-able values: with the class name, enough to rebuild it."""
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)

    def summary(
        self, input_shape: tuple[int, ...], print_fn=print
    ) -> list[tuple[str, str, tuple, int]]:
        """Print each leaf layer, its output shape and parameter count for an input of `input_shape`
        (batch dimension included); returns the rows. Runs one forward pass in eval mode."""
        from fastcnn.nn.summary import layer_summary

        return layer_summary(self, input_shape, print_fn)
