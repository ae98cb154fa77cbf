"""End-to-end training: the explicit loop of DESIGN.md and fit() really learn."""

from __future__ import annotations

import numpy as np

import fastcnn as fc
from fastcnn import data, datasets, models, nn, optim
from fastcnn.training import evaluate


def synthetic_images(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes a CNN separates easily: a bright bar that is horizontal, vertical or absent."""
    labels = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 12, 12)).astype(np.float32)
    pos = rng.integers(2, 10, n)
    for i in range(n):
        if labels[i] == 1:
            x[i, 0, pos[i], 2:10] += 2.0
        elif labels[i] == 2:
            x[i, 0, 2:10, pos[i]] += 2.0
    return x, labels


def test_explicit_loop_loss_drops(rng):
    fc.manual_seed(0)
    x, y = synthetic_images(rng, 256)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 3),
    )
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    first = None
    for step in range(60):
        i = (step * 32) % 256
        loss = loss_fn(net(x[i : i + 32]), y[i : i + 32])
        first = loss if first is None else first
        net.backward(loss_fn.backward())
        opt.step()
        opt.zero_grad()
    assert first > 0.9  # ~ln 3 at the start
    assert loss < 0.1


def test_fit_on_embedded_fashion_mnist_beats_chance_by_far():
    """A real, seeded run: a few hundred steps on the subset shipped in the package."""
    fc.manual_seed(0)
    (xtr, ytr), (xte, yte) = (
        datasets.fashion_mnist_subset("train"),
        datasets.fashion_mnist_subset("test"),
    )
    mean, std = xtr.mean() / 255, xtr.std() / 255
    prep = lambda im: ((im.astype(np.float32)[:, None] / 255) - mean) / std  # noqa: E731
    train = data.DataLoader((prep(xtr), ytr), batch_size=32, shuffle=True, seed=0)
    test = data.DataLoader((prep(xte), yte), batch_size=500)
    net = models.lenet5()
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    history = fc.fit(
        net, train, nn.CrossEntropyLoss(), opt, epochs=5, val_loader=test, progress=False
    )
    assert len(history) == 5 and 5 * len(train) >= 300
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(net, test)["accuracy"] > 0.7  # chance is 0.10; this run reaches ~0.75
