"""`Module.summary`: each leaf layer, its output shape and parameter count."""

from __future__ import annotations

import numpy as np


def layer_summary(model, input_shape: tuple[int, ...], print_fn=print) -> list:
    """Runs one eval-mode forward on random data (running statistics are untouched in eval mode)
    and records what each leaf module returns."""
    from fastcnn.nn.module import Module, layout_changed

    rows: list[tuple[str, str, tuple, int]] = []
    originals: list[tuple[Module, object]] = []

    def wrap(name: str, module: Module) -> None:
        forward = module.forward

        def recording_forward(x):
            y = forward(x)
            count = sum(p.data.size for p in module._parameters.values() if p is not None)
            rows.append((name, type(module).__name__, tuple(np.shape(y)), count))
            return y

        originals.append((module, forward))
        object.__setattr__(module, "forward", recording_forward)

    for name, module in model.named_modules():
        if not module._modules:
            wrap(name or type(module).__name__, module)
    layout_changed()  # the wrapped layers run alone, not fused with their neighbours
    was_training = model.training
    model.eval()
    try:
        model(np.random.default_rng(0).standard_normal(input_shape).astype(np.float32))
    finally:
        for module, _ in originals:
            del module.__dict__["forward"]
        layout_changed()
        model.train(was_training)

    total = sum(r[3] for r in rows)
    print_fn(f"{'layer':<14}{'type':<20}{'output shape':<24}{'params':>10}")
    for name, kind, shape, count in rows:
        print_fn(f"{name:<14}{kind:<20}{str(shape):<24}{count:>10,}")
    frozen = sum(p.data.size for p in model.parameters() if not p.requires_grad)
    trainable = f" ({total - frozen:,} trainable, {frozen:,} frozen)" if frozen else ""
    print_fn(f"total parameters: {total:,}{trainable}")
    return rows
