"""Containers: Sequential runs children in order and their backward in reverse; Residual adds a
shortcut around a body, so ResNet-style blocks can be built; ModuleList holds modules for a
custom Module's own forward and backward."""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator

import numpy as np

from fastcnn.nn.layers import BatchNorm2d, Identity, MaxPool2d, ReLU
from fastcnn.nn.module import Module, layout_version


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: their children by position, with torch's list
    operations. Assigning to a position keeps its name; deleting, popping or inserting numbers the
    children "0", "1", ... again, as torch's do (their state_dict keys follow)."""

    def _index(self, index: int) -> int:
        n = len(self._modules)
        i = operator.index(index)
        if not -n <= i < n:
            raise IndexError(
                f"{type(self).__name__}: index {index} is out of range for {n} modules"
            )
        return i + n if i < 0 else i

    def _renumber(self, mods: list[Module]) -> None:
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m

    def __len__(self) -> int:
        return len(self._modules)

    def __setitem__(self, index: int, module: Module) -> None:
        key = list(self._modules)[self._index(index)]
        self._modules[key] = _checked(module, type(self).__name__)

    def __delitem__(self, index: int | slice) -> None:
        mods = list(self._modules.values())
        if isinstance(index, slice):
            del mods[index]
        else:
            del mods[self._index(index)]
        self._renumber(mods)

    def __iadd__(self, modules: Iterable[Module]):
        return self.extend(modules)

    def append(self, module: Module):
        name = type(self).__name__
        self._modules[str(len(self._modules))] = _checked(module, f"{name}.append")
        return self

    def extend(self, modules: Iterable[Module]):
        if not isinstance(modules, Iterable):
            raise TypeError(
                f"{type(self).__name__}.extend: expected an iterable of Modules, got "
                f"{type(modules).__name__}"
            )
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index: int, module: Module):
        mods = list(self._modules.values())
        mods.insert(operator.index(index), _checked(module, f"{type(self).__name__}.insert"))
        self._renumber(mods)
        return self

    def pop(self, index: int = -1) -> Module:
        module = list(self._modules.values())[self._index(index)]
        del self[index]
        return module


class Sequential(_ModuleSequence):
    """Applies its modules in order. Built from modules, or from an OrderedDict of named modules.

    A ReLU directly followed by a MaxPool2d runs after it instead: max commutes with the monotone
    ReLU, so relu(max_pool(x)) is max_pool(relu(x)) exactly, and the ReLU and its backward then
    touch the pooled array (a quarter of the elements for 2x2 pooling) instead of the full one.
    A MaxPool2d followed by a ReLU (so placed, or moved there) runs as one kernel pass.
    The backward of a BatchNorm2d followed by a MaxPool2d is one fused kernel that never builds
    the full-size gradient between them; when the pooling has 2x2 windows with stride 2, so is
    the forward of the pair (with the ReLU after them), which never builds the full-size
    normalized array. The forward's results equal running each module alone, bit for bit; the
    fused backward sums the batch norm's gradient terms over the pooled positions only (the
    gradient is zero elsewhere), in another order than the modules alone, so its results agree
    with theirs to float rounding.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: entry {name!r} is a {type(m).__name__}, not a Module")
            self._modules[name] = m
        self._steps: _Steps | None = None

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        if isinstance(index, slice):
            # keeps the names, as torch's does: net[1:].state_dict() has "1.weight", not "0.weight"
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[self._index(index)]

    def _run_order(self) -> list[Module]:
        mods = list(self._modules.values())
        for i in range(len(mods) - 1):
            # (not a pooling that returns its indices: those of relu(x) differ where x < 0)
            if type(mods[i]) is ReLU and _pool_output_only(mods[i + 1]):
                mods[i], mods[i + 1] = mods[i + 1], mods[i]
        return mods

    def _make_steps(self, children: list[Module]) -> _Steps:
        # A BatchNorm2d followed by a 2x2 stride-2 MaxPool2d (and a ReLU) runs as one kernel, and
        # so does any other MaxPool2d followed by a ReLU.
        mods = self._run_order()
        steps = []
        i, n = 0, len(mods)
        while i < n:
            m = mods[i]
            if type(m) is BatchNorm2d and i + 1 < n and _fusable(m, mods[i + 1]):
                relu = mods[i + 2] if i + 2 < n and _fusable_relu(mods[i + 2]) else None
                steps.append((m, _BN_POOL, (mods[i + 1], relu)))
                i += 2 if relu is None else 3
            elif type(m) is MaxPool2d and i + 1 < n and _pool_then_relu(m, mods[i + 1]):
                steps.append((m, _POOL_RELU, (mods[i + 1],)))
                i += 2
            elif type(m) is Identity and "forward" not in m.__dict__:
                i += 1  # (what fuse_conv_bn leaves in a folded batch norm's place)
            else:
                steps.append((m, None, ()))
                i += 1
        plan = _Steps(children, layout_version(), mods, steps)
        self.__dict__["_steps"] = plan
        return plan

    def forward(self, x: np.ndarray) -> np.ndarray:
        # The steps are worked out again only when a child or a module's layout attributes
        # changed (at batch 1 working them out cost ~4 us of a ~100 us forward).
        children = list(self._modules.values())
        plan = self._steps
        if plan is None or plan.version != layout_version() or plan.children != children:
            plan = self._make_steps(children)
        for m, fused, args in plan.steps:
            if fused is None:
                x = m(x)
            elif fused is _BN_POOL:
                x = m.forward_max_pool(x, *args)
            else:
                x = m.forward_then_relu(x, *args)
        return x

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        # The order the last forward ran in (its steps), reversed: children may have been
        # replaced since. A BatchNorm2d followed by a MaxPool2d (and a ReLU) runs one fused
        # backward for them.
        mods = self._steps.order if self._steps is not None else self._run_order()
        if len({id(m) for m in mods}) != len(mods):
            raise ValueError(
                "Sequential.backward: a module appears more than once; it keeps only its last "
                "call's input for backward, so shared (tied) modules cannot be trained here"
            )
        # Without input_grad, nothing below the lowest module with a trainable parameter runs, as
        # torch's autograd stops there: a frozen feature extractor costs no backward at all.
        low = 0 if input_grad else _lowest_trainable(mods)
        i = len(mods) - 1
        while i >= low:
            if (
                i - 2 >= low
                and type(mods[i]) is ReLU
                and type(mods[i - 1]) is MaxPool2d
                and type(mods[i - 2]) is BatchNorm2d
            ):
                dy = mods[i - 2].backward_through_max_pool(
                    dy, mods[i - 1], input_grad=i - 2 > low or input_grad, relu=mods[i]
                )
                i -= 3
                continue
            if i - 1 >= low and type(mods[i]) is MaxPool2d and type(mods[i - 1]) is BatchNorm2d:
                dy = mods[i - 1].backward_through_max_pool(
                    dy, mods[i], input_grad=i - 1 > low or input_grad
                )
                i -= 2
                continue
            dy = mods[i].backward(dy, input_grad=i > low or input_grad)
            i -= 1
        return dy if input_grad else None


_BN_POOL = "batch norm, max pooling (, ReLU)"
_POOL_RELU = "max pooling, ReLU"


class _Steps:
    """How a Sequential runs its children (`children`, as they were when worked out): `order` is
    the order they run in, `steps` the calls, (module, fused, extra arguments) with fused None for
    a plain call. Valid while layout_version() is `version`. They are those of the last forward,
    so backward reverses `order`.
    A copy of the Sequential works its steps out anew (they name the original's children)."""

    __slots__ = ("children", "version", "order", "steps")

    def __init__(self, children: list, version: int, order: list, steps: list) -> None:
        self.children, self.version, self.order, self.steps = children, version, order, steps

    def __deepcopy__(self, memo: dict) -> None:
        return None


class ModuleList(_ModuleSequence):
    """A list of modules, registered as children "0", "1", ... so that their parameters, buffers,
    state_dict keys and train()/eval() are the parent's, as in torch.nn.ModuleList. It has no
    forward or backward: the Module that holds it calls its entries in its own."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        mods = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(mods[index])
        return mods[self._index(index)]


def _checked(module: object, where: str) -> Module:
    if not isinstance(module, Module):
        raise TypeError(f"{where}: expected a Module, got {type(module).__name__}")
    return module


def _lowest_trainable(mods: list[Module]) -> int:
    """The index of the first module holding a parameter with requires_grad, else len(mods)."""
    for i, m in enumerate(mods):
        params = m.parameters() if m._modules else m._parameters.values()
        if any(p is not None and p.requires_grad for p in params):
            return i
    return len(mods)


def _fusable(bn: BatchNorm2d, pool: Module) -> bool:
    # A module whose forward was replaced on the instance (summary() records shapes that way)
    # runs alone.
    return (
        type(pool) is MaxPool2d
        and "forward" not in bn.__dict__
        and "forward" not in pool.__dict__
        and pool.fuses_after_batch_norm()
    )


def _fusable_relu(m: Module) -> bool:
    return type(m) is ReLU and "forward" not in m.__dict__


def _pool_output_only(m: Module) -> bool:
    return type(m) is MaxPool2d and not m.return_indices


def _pool_then_relu(pool: MaxPool2d, relu: Module) -> bool:
    # As _fusable: a module whose forward was replaced on the instance runs alone.
    return "forward" not in pool.__dict__ and not pool.return_indices and _fusable_relu(relu)


class Residual(Module):
    """y = body(x) + shortcut(x), with the identity as shortcut when it is None. Output shape is
    the body's; the shortcut must produce the same shape."""

    def __init__(self, body: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        if not isinstance(body, Module):
            raise TypeError(f"body: expected a Module, got {type(body).__name__}")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError(f"shortcut: expected a Module or None, got {type(shortcut).__name__}")
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self.body(x)
        s = self.shortcut(x) if "shortcut" in self._modules else x
        if np.shape(s) != np.shape(y):
            raise ValueError(
                f"Residual: body output {np.shape(y)} and shortcut output {np.shape(s)} differ"
            )
        return np.add(y, s, dtype=np.float32)

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if self._modules.get("shortcut") is self.body:
            raise ValueError(
                "Residual.backward: body and shortcut are the same module; it keeps only its last "
                "call's input for backward, so it cannot be trained here"
            )
        d_body = self.body.backward(dy, input_grad=input_grad)
        if "shortcut" in self._modules:
            d_short = self.shortcut.backward(dy, input_grad=input_grad)
        else:
            d_short = dy
        if not input_grad:
            return None
        return np.add(d_body, d_short, dtype=np.float32)
