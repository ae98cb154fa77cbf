"""Losses: `loss_fn(output, target)` returns a Python float (an array for reduction 'none') and
keeps what `loss_fn.backward()` needs to return the gradient of the loss w.r.t. the output."""

from __future__ import annotations

import numpy as np

from fastcnn import _core, _xent_options
from fastcnn import functional as F
from fastcnn._args import as_int, named_as_called
from fastcnn.nn.module import Module

_reduction = _xent_options.check_reduction


class CrossEntropyLoss(Module):
    """Softmax cross-entropy of logits (N, C), (N, C, d1, ...) or one unbatched (C,) row against
    integer labels, with
    PyTorch's options: class weights (C,), ignore_index, label smoothing and reduction 'mean'
    (default), 'sum' or 'none' (an array shaped like the labels)."""

    def __init__(
        self,
        weight: np.ndarray | None = None,
        size_average: None = None,
        ignore_index: int = -100,
        reduce: None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        """torch.nn.CrossEntropyLoss's arguments, in its order (CrossEntropyLoss(class_weights)
        is common); size_average and reduce, deprecated there, must stay None."""
        super().__init__()
        _xent_options.refuse_legacy_reduction(size_average, reduce)
        self.reduction = _reduction(reduction)
        self.label_smoothing = float(label_smoothing)
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
        self.weight = None if weight is None else np.array(weight, dtype=np.float32)
        self.ignore_index = as_int(ignore_index, "ignore_index")
        self._saved = None
        self._single = False  # whether the last forward had one unbatched (C,) row

    def forward(self, input: np.ndarray, target: np.ndarray) -> float | np.ndarray:
        return named_as_called(lambda: self._forward(input, target), F.XENT_AS_TORCH)

    def _forward(self, logits: np.ndarray, labels: np.ndarray) -> float | np.ndarray:
        logits, labels, single = F._xent_batch(logits, labels)
        self.__dict__["_single"] = single  # see Module: saved state skips Module.__setattr__
        if _xent_options.fused_applies(self.weight, self.ignore_index, self.reduction):
            fused = _xent_options.fused_or_none(
                lambda: F.cross_entropy_with_probabilities(
                    logits, labels, label_smoothing=self.label_smoothing
                ),
                labels,
                self.ignore_index,
            )
            if fused is not None:
                loss, probabilities = fused
                # 'sum' is the mean times the number of labelled positions (N, or N*d1*...); over
                # no positions it is 0, as in torch, where the mean is NaN.
                scale = float(np.size(labels)) if self.reduction == "sum" else 1.0
                self._saved = (probabilities, labels, scale)
                return _xent_options.float32_loss(float(loss) * scale) if scale else 0.0
        self._saved = (logits, labels, None)  # the NumPy path of the other options
        loss = _xent_options.forward(
            logits, labels, self.label_smoothing, self.weight, self.ignore_index, self.reduction
        )
        return loss.reshape(()) if single and self.reduction == "none" else loss

    def backward(self, grad_output: float | np.ndarray = 1.0) -> np.ndarray:
        """dloss/dlogits; grad_output is a float, or for reduction 'none' an array shaped like the
        labels."""
        if self._saved is None:
            raise RuntimeError("CrossEntropyLoss.backward called before the loss was computed")
        first, labels, scale = self._saved
        if scale is None:
            if self._single and np.ndim(grad_output):
                grad_output = np.reshape(grad_output, (1,))
            grad = _xent_options.backward(
                first,
                labels,
                self.label_smoothing,
                self.weight,
                self.ignore_index,
                self.reduction,
                grad_output,
            )
        else:
            grad = F.cross_entropy_backward(
                None,
                labels,
                label_smoothing=self.label_smoothing,
                grad_output=float(grad_output) * scale,
                probabilities=first,
            )
        return grad[0] if self._single else grad

    def config(self) -> dict:
        return _class_loss_config(self, label_smoothing=self.label_smoothing)


class NLLLoss(Module):
    """Negative log-likelihood of log-probabilities (LogSoftmax's output) (N, C), (N, C, d1, ...)
    or one unbatched (C,) row against integer labels, with PyTorch's options: class weights (C,),
    ignore_index and reduction 'mean' (default: divided by the summed weights of the labels not
    ignored), 'sum' or 'none' (an array shaped like the labels). LogSoftmax then NLLLoss is
    CrossEntropyLoss."""

    def __init__(
        self,
        weight: np.ndarray | None = None,
        size_average: None = None,
        ignore_index: int = -100,
        reduce: None = None,
        reduction: str = "mean",
    ) -> None:
        """torch.nn.NLLLoss's arguments, in its order; size_average and reduce, deprecated there,
        must stay None."""
        super().__init__()
        _xent_options.refuse_legacy_reduction(size_average, reduce)
        self.reduction = _reduction(reduction)
        self.weight = None if weight is None else np.array(weight, dtype=np.float32)
        self.ignore_index = as_int(ignore_index, "ignore_index")
        self._saved = None

    def forward(self, input: np.ndarray, target: np.ndarray) -> float | np.ndarray:
        input, target, single = F._xent_batch(input, target)
        forward = _core.nll_loss_forward(input, target, self.weight, self.ignore_index)
        self._saved = (input, target, forward[2], single)
        return F._nll_reduce(forward, self.reduction, single)

    def backward(self, grad_output: float | np.ndarray = 1.0) -> np.ndarray:
        """dloss/dinput; grad_output is a float, or for reduction 'none' an array shaped like the
        labels."""
        if self._saved is None:
            raise RuntimeError("NLLLoss.backward called before the loss was computed")
        input, target, total_weight, single = self._saved
        return F._nll_backward(
            input,
            target,
            self.weight,
            self.ignore_index,
            grad_output,
            self.reduction,
            single,
            total_weight,
        )

    def config(self) -> dict:
        return _class_loss_config(self)


class MSELoss(Module):
    """Squared error between two arrays of the same shape: reduction 'mean' (default; NaN when
    empty, as in PyTorch), 'sum' or 'none' (the elementwise errors). As in PyTorch, shapes that
    differ broadcast against each other, with a UserWarning."""

    def __init__(
        self, size_average: None = None, reduce: None = None, reduction: str = "mean"
    ) -> None:
        """torch.nn.MSELoss's arguments, in its order; size_average and reduce, deprecated there,
        must stay None."""
        super().__init__()
        _xent_options.refuse_legacy_reduction(size_average, reduce)
        self.reduction = _reduction(reduction)
        self._saved = None

    def forward(self, output: np.ndarray, target: np.ndarray) -> float | np.ndarray:
        output, target = F._mse_operands(output, target)
        self._saved = (output, target)
        return F._mse_loss(output, target, self.reduction)

    def backward(self, grad_output: float | np.ndarray = 1.0) -> np.ndarray:
        """dloss/doutput; grad_output is a float, or for reduction 'none' an array shaped like the
        loss (the broadcast shape of output and target)."""
        if self._saved is None:
            raise RuntimeError("MSELoss.backward called before the loss was computed")
        output, target = self._saved
        return F._mse_loss_backward(output, target, grad_output, self.reduction)[0]

    def config(self) -> dict:
        return dict(reduction=self.reduction)


def _class_loss_config(loss: CrossEntropyLoss | NLLLoss, **options) -> dict:
    """The constructor arguments of a loss over class labels that differ from the defaults (the
    reduction always), for save/load."""
    out = dict(reduction=loss.reduction, **options)
    if loss.weight is not None:
        out["weight"] = loss.weight.tolist()
    if loss.ignore_index != -100:
        out["ignore_index"] = loss.ignore_index
    return out
