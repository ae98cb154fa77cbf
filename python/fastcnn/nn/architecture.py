"""A module tree as JSON (class names and constructor arguments) and back, for checkpoints: no
pickle, and only fastcnn's own layer classes can be named."""

from __future__ import annotations

from fastcnn.nn import containers, layers, losses
from fastcnn.nn.module import Module

_MAX_DEPTH = 64
_LAYER_CLASSES = {
    cls.__name__: cls
    for cls in (
        layers.Conv2d,
        layers.Linear,
        layers.ReLU,
        layers.LeakyReLU,
        layers.Sigmoid,
        layers.Tanh,
        layers.MaxPool2d,
        layers.AvgPool2d,
        layers.AdaptiveAvgPool2d,
        layers.BatchNorm1d,
        layers.BatchNorm2d,
        layers.Dropout,
        layers.Flatten,
        layers.Identity,
        layers.Softmax,
        layers.LogSoftmax,
        losses.CrossEntropyLoss,
        losses.MSELoss,
        losses.NLLLoss,
    )
}


def describe(module: Module) -> dict:
    """{"type": class name, "config": constructor arguments, "children": [[name, spec], ...]}."""
    kind = type(module).__name__
    if isinstance(module, containers.Sequential):
        return {
            "type": "Sequential",
            # every name, as state_dict keys them (a shared child is written once per name)
            "children": [[name, describe(child)] for name, child in module._modules.items()],
        }
    if isinstance(module, containers.Residual):
        spec = {"type": "Residual", "body": describe(module.body)}
        if "shortcut" in module._modules:
            spec["shortcut"] = describe(module.shortcut)
        return spec
    if kind not in _LAYER_CLASSES or type(module) is not _LAYER_CLASSES[kind]:
        raise TypeError(
            f"cannot describe a {kind}: only fastcnn's own layers can be saved with "
            "their architecture; save its state_dict instead"
        )
    return {"type": kind, "config": module.config()}


def build(spec: object, depth: int = 0) -> Module:
    """The module tree `describe` wrote. Raises ValueError for anything it did not write."""
    if depth > _MAX_DEPTH:
        raise ValueError("architecture: nested deeper than any fastcnn model")
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError(f"architecture: expected an object with a 'type', got {spec!r:.80}")
    kind = spec["type"]
    try:
        if kind == "Sequential":
            from collections import OrderedDict

            children = spec.get("children")
            if not isinstance(children, list):
                raise ValueError("architecture: Sequential needs a list of children")
            entries = OrderedDict()
            for entry in children:
                if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
                    raise ValueError(f"architecture: bad Sequential child {entry!r:.80}")
                entries[entry[0]] = build(entry[1], depth + 1)
            return containers.Sequential(entries)
        if kind == "Residual":
            shortcut = spec.get("shortcut")
            return containers.Residual(
                build(spec.get("body"), depth + 1),
                None if shortcut is None else build(shortcut, depth + 1),
            )
        if kind not in _LAYER_CLASSES:
            raise ValueError(f"architecture: unknown layer type {kind!r}")
        config = spec.get("config", {})
        if not isinstance(config, dict):
            raise ValueError(f"architecture: config of {kind} must be an object")
        return _LAYER_CLASSES[kind](**config)
    except TypeError as e:
        raise ValueError(f"architecture: cannot build {kind}: {e}") from None
