"""Losses: `loss_fn(output, target)` returns a Python float and keeps what `loss_fn.backward()`
needs to return the gradient of the loss w.r.t. the output."""

from __future__ import annotations

import numpy as np

from fastcnn import functional as F
from fastcnn.nn.module import Module

_REDUCTIONS = ("mean", "sum")


def _reduction(value: str) -> str:
    if value not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {value!r}")
    return value


class CrossEntropyLoss(Module):
    """Softmax cross-entropy of logits (N, C) against integer labels (N,), with label smoothing as
    in PyTorch. reduction 'mean' (default) or 'sum'."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.reduction = _reduction(reduction)
        self.label_smoothing = float(label_smoothing)
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
        self._saved = None

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        loss, probabilities = F.cross_entropy_with_probabilities(
            logits, labels, label_smoothing=self.label_smoothing
        )
        # 'sum' is the mean times the number of labelled positions (N, or N*d1*... for maps).
        scale = float(np.size(labels)) if self.reduction == "sum" else 1.0
        self._saved = (probabilities, labels, scale)
        return float(loss) * scale

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> float:
        return self.forward(logits, labels)

    def backward(self, grad_output: float = 1.0) -> np.ndarray:
        if self._saved is None:
            raise RuntimeError("CrossEntropyLoss.backward called before the loss was computed")
        probabilities, labels, scale = self._saved
        return F.cross_entropy_backward(
            None,
            labels,
            label_smoothing=self.label_smoothing,
            grad_output=float(grad_output) * scale,
            probabilities=probabilities,
        )

    def config(self) -> dict:
        return dict(reduction=self.reduction, label_smoothing=self.label_smoothing)


class MSELoss(Module):
    """Mean (or summed) squared error between two arrays of the same shape."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _reduction(reduction)
        self._saved = None

    def forward(self, output: np.ndarray, target: np.ndarray) -> float:
        output = np.asarray(output, dtype=np.float32)
        target = np.asarray(target, dtype=np.float32)
        if output.shape != target.shape:
            raise ValueError(
                f"target: expected shape {output.shape} (the output's), got {target.shape}"
            )
        diff = output.astype(np.float64) - target
        total = float(np.sum(diff * diff))
        self._saved = (output, target)
        return total / max(diff.size, 1) if self.reduction == "mean" else total

    def __call__(self, output: np.ndarray, target: np.ndarray) -> float:
        return self.forward(output, target)

    def backward(self, grad_output: float = 1.0) -> np.ndarray:
        if self._saved is None:
            raise RuntimeError("MSELoss.backward called before the loss was computed")
        output, target = self._saved
        scale = 2.0 * float(grad_output)
        if self.reduction == "mean":
            scale /= max(output.size, 1)
        return ((output - target) * np.float32(scale)).astype(np.float32)

    def config(self) -> dict:
        return dict(reduction=self.reduction)
