"""Module: the base of every layer and container, with PyTorch's names for its methods.

Backward is explicit: `forward` keeps what `backward` needs, `backward(dy)` adds each parameter's
gradient into `.grad` and returns the gradient of the input (or None when `input_grad=False`, which
lets the first layer of a network skip that work).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from fastcnn.parameter import Parameter


class Module:
    """Base class: holds parameters, buffers and child modules, registered by attribute assignment."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration ----------------------------------------------------------------------------
    def __setattr__(self, name: str, value: object) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = value  # e.g. `self.num_batches_tracked += 1`
            return
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        """A non-trainable array that is part of the state (e.g. batch norm's running mean)."""
        self._buffers[name] = value

    # --- traversal -------------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is not None:
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for module_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_name}.{name}" if module_name else name), b

    # --- state -----------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed as torch.nn names them ("0.weight", ...)."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for module_name, module in self.named_modules():
            dot = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    out[dot + name] = p.data.copy()
            for name, b in module._buffers.items():
                if b is not None:
                    out[dot + name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers; shapes must match. Accepts torch tensors too
        (anything np.asarray understands), so weights move between fastcnn and PyTorch."""
        own = self._state_slots()
        missing = [k for k in own if k not in state_dict]
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

    def _state_slots(self) -> OrderedDict[str, tuple[Module, str, str]]:
        slots: OrderedDict[str, tuple[Module, str, str]] = OrderedDict()
        for module_name, module in self.named_modules():
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
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

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
