"""The training loop of DESIGN.md, packaged: `fit` runs epochs with a progress bar and returns the
per-epoch history; `evaluate` and `predict_proba` run a model in eval mode."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import numpy as np

from fastcnn import functional as F
from fastcnn.nn.module import Module


class _Progress:
    """tqdm when it is installed (the `progress` extra); otherwise one plain line per epoch."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._bar = None
        self._desc = desc
        self._enabled = enabled
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc=desc, unit="batch", leave=True, file=sys.stderr)

    def update(self, logs: dict) -> None:
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            self._bar.update(1)

    def close(self, logs: dict) -> None:
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
            self._bar.close()
        elif self._enabled:
            text = "  ".join(f"{k} {v:.4g}" for k, v in logs.items())
            print(f"{self._desc}: {text}", file=sys.stderr, flush=True)


def _steps_on_a_metric(scheduler) -> bool:
    """Whether scheduler is a ReduceLROnPlateau (imported here: `import fastcnn` leaves
    fastcnn.optim unloaded until it is used)."""
    if scheduler is None:
        return False
    from fastcnn.optim import ReduceLROnPlateau

    return isinstance(scheduler, ReduceLROnPlateau)


def _steps_per_batch(scheduler, interval: str | None) -> bool:
    if scheduler is None:
        return False
    if interval is None:
        return type(scheduler).__name__ == "OneCycleLR"
    if interval not in ("epoch", "batch"):
        raise ValueError(f"scheduler_interval: expected 'epoch' or 'batch', got {interval!r}")
    if interval == "batch" and _steps_on_a_metric(scheduler):
        raise ValueError(
            "scheduler_interval: ReduceLROnPlateau steps once per epoch, on the epoch's loss; "
            "got 'batch'"
        )
    return interval == "batch"


def train_one_epoch(
    model: Module,
    loader: Iterable,
    loss_fn,
    optimizer,
    scheduler=None,
    step_scheduler_per_batch: bool = False,
    progress=None,
    callbacks: Iterable = (),
    epoch: int = 0,
) -> dict:
    """One pass over `loader`: forward, loss, backward, optimizer step. Returns mean loss,
    accuracy and images/s."""
    model.train()
    total_loss = 0.0
    correct = 0
    seen = 0
    start = time.perf_counter()
    for step, (xb, yb) in enumerate(loader):
        logits = model(xb)
        loss = loss_fn(logits, yb)
        optimizer.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        optimizer.step()
        if step_scheduler_per_batch:
            scheduler.step()
        n = len(yb)
        total_loss += loss * n
        correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
        seen += n
        logs = {
            "loss": total_loss / seen,
            "acc": correct / seen,
            "img/s": seen / max(time.perf_counter() - start, 1e-9),
        }
        if progress is not None:
            progress.update(logs)
        for cb in callbacks:
            if hasattr(cb, "on_batch_end"):
                cb.on_batch_end(epoch, step, logs)
    elapsed = time.perf_counter() - start
    return {
        "loss": total_loss / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "images_per_s": seen / max(elapsed, 1e-9),
        "seconds": elapsed,
    }


def evaluate(model: Module, loader: Iterable, loss_fn=None) -> dict:
    """Mean loss (cross-entropy unless `loss_fn` is given) and accuracy over `loader`, in eval
    mode; the model's previous mode is restored."""
    was_training = model.training
    model.eval()
    total_loss = 0.0
    correct = 0
    seen = 0
    try:
        for xb, yb in loader:
            logits = model(xb)
            loss = (
                loss_fn(logits, yb) if loss_fn is not None else float(F.cross_entropy(logits, yb))
            )
            n = len(yb)
            total_loss += loss * n
            correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
            seen += n
    finally:
        model.train(was_training)
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1)}


def predict_proba(model: Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, classes) for inputs x (N, C, H, W), in eval mode."""
    was_training = model.training
    model.eval()
    try:
        outs = [
            F.softmax(model(x[i : i + batch_size]), dim=1) for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def fit(
    model: Module,
    train_loader: Iterable,
    loss_fn,
    optimizer,
    epochs: int,
    val_loader: Iterable | None = None,
    scheduler=None,
    callbacks: Iterable = (),
    start_epoch: int = 0,
    progress: bool = True,
    scheduler_interval: str | None = None,
) -> list[dict]:
    """Train for epochs start_epoch..epochs-1. The scheduler steps once per epoch, or per batch
    for OneCycleLR (or as `scheduler_interval` says); ReduceLROnPlateau steps once per epoch on
    val_loss (on the training loss without val_loader), or on val_accuracy (accuracy) when its
    mode is "max". Each callback may define
    on_batch_end(epoch, step, logs) and on_epoch_end(epoch, logs); logs of each epoch are returned
    as a list of dicts (loss, accuracy, images_per_s, seconds, lr, val_loss, val_accuracy)."""
    if int(epochs) != epochs or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative int, got {epochs!r}")
    per_batch = _steps_per_batch(scheduler, scheduler_interval)
    on_metric = _steps_on_a_metric(scheduler)
    callbacks = list(callbacks)
    history = []
    for epoch in range(start_epoch, int(epochs)):
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        bar = _Progress(
            len(train_loader) if hasattr(train_loader, "__len__") else 0,
            f"epoch {epoch + 1}/{epochs}",
            progress,
        )
        logs = train_one_epoch(
            model, train_loader, loss_fn, optimizer, scheduler, per_batch, bar, callbacks, epoch
        )
        logs["epoch"] = epoch + 1
        logs["lr"] = float(optimizer.param_groups[0]["lr"])
        if val_loader is not None:
            val = evaluate(model, val_loader)
            logs["val_loss"], logs["val_accuracy"] = val["loss"], val["accuracy"]
        if on_metric:  # mode "max" watches a value that should rise: the accuracy
            name = "accuracy" if scheduler.mode == "max" else "loss"
            scheduler.step(logs.get(f"val_{name}", logs[name]))
        elif scheduler is not None and not per_batch:
            scheduler.step()
        shown = {"loss": logs["loss"], "acc": logs["accuracy"], "img/s": logs["images_per_s"]}
        if val_loader is not None:
            shown["val_acc"] = logs["val_accuracy"]
        bar.close(shown)
        history.append(logs)
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(epoch, logs)
    return history
