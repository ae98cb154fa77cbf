"""Tests of the negative log-likelihood loss and LogSoftmax: every compiled variant against the
float64 oracle (weights, ignore_index, every reduction, extra dims, unbatched rows), the oracle's
backward by finite differences, -inf and NaN log-probabilities, thread-count determinism, the
module forms, and bad arguments to the functional and the compiled forms.
"""

from __future__ import annotations

import numpy as np
import pytest

# tests/ has no __init__.py: pytest puts this directory on sys.path, so siblings import flat.
import reference as ref
from gradcheck import check_backward

import fastcnn
import fastcnn.functional as F
from fastcnn import nn

RTOL = 1e-5
ATOL = 1e-6
# (input shape): plain rows, odd class counts, extra dims (N, C, d1, d2), batch 1
SHAPES = [(1, 1), (5, 7), (33, 10), (4, 3, 5), (2, 13, 3, 7), (1, 17, 1), (300, 129)]


def _case(rng, shape, weighted: bool, ignore: bool):
    logp = ref.log_softmax(rng.standard_normal(shape) * 3, dim=1).astype(np.float32)
    labels = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    if ignore and labels.size > 1:
        labels.flat[rng.choice(labels.size, max(1, labels.size // 4), replace=False)] = -100
    weight = rng.random(shape[1]).astype(np.float32) + 0.1 if weighted else None
    return logp, labels, weight


def _call(core, logp, labels, weight, reduction, ignore_index=-100):
    """The loss through the compiled kernels, reduced as F.nll_loss does."""
    losses, total, total_weight = core.nll_loss_forward(logp, labels, weight, ignore_index)
    return {"none": losses, "sum": total, "mean": total / total_weight}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_oracle(core, rng, shape, weighted, reduction):
    logp, labels, weight = _case(rng, shape, weighted, ignore=shape[0] > 1)
    want = ref.nll_loss(logp, labels, weight, reduction=reduction)
    np.testing.assert_allclose(_call(core, logp, labels, weight, reduction), want, rtol=RTOL)
    g = rng.standard_normal(labels.shape).astype(np.float32) if reduction == "none" else 1.7
    want_grad = ref.nll_loss_backward(logp, labels, weight, reduction=reduction, grad=g)
    if reduction == "none":
        got = core.nll_loss_backward(g, logp, labels, weight, -100, 1.0)
    else:
        scale = 1.7 / core.nll_loss_forward(logp, labels, weight)[2] if reduction == "mean" else 1.7
        got = core.nll_loss_backward(None, logp, labels, weight, -100, scale)
    np.testing.assert_allclose(got, want_grad, rtol=RTOL, atol=ATOL)
    # the functional form, which reduces and scales itself
    np.testing.assert_allclose(F.nll_loss(logp, labels, weight, reduction=reduction), want, RTOL)
    np.testing.assert_allclose(
        F.nll_loss_backward(logp, labels, g, weight, reduction=reduction), want_grad, RTOL, ATOL
    )


def test_variants_agree_bitwise_across_thread_counts(rng):
    logp, labels, weight = _case(rng, (4000, 37), weighted=True, ignore=True)
    g = rng.standard_normal(labels.shape).astype(np.float32)
    base = fastcnn._core._variants["ref"]
    want = (
        base.nll_loss_forward(logp, labels, weight),
        base.nll_loss_backward(g, logp, labels, weight, -100, 1.0),
    )
    threads = fastcnn.get_num_threads()
    try:
        for n in (1, 2, 3):
            fastcnn.set_num_threads(n)
            for core in fastcnn._core._variants.values():
                losses, total, total_weight = core.nll_loss_forward(logp, labels, weight)
                np.testing.assert_array_equal(losses, want[0][0])
                assert (total, total_weight) == want[0][1:]
                got = core.nll_loss_backward(g, logp, labels, weight, -100, 1.0)
                np.testing.assert_array_equal(got, want[1])
                got = core.nll_loss_backward(None, logp, labels, None, -100, 0.5)
                np.testing.assert_array_equal(
                    got, base.nll_loss_backward(None, logp, labels, None, -100, 0.5)
                )
    finally:
        fastcnn.set_num_threads(threads)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_oracle_backward_by_finite_differences(rng, reduction):
    logp, labels, weight = _case(rng, (4, 5, 3), weighted=True, ignore=True)
    logp = logp.astype(np.float64)

    def loss(z):
        return np.asarray(ref.nll_loss(z, labels, weight, reduction=reduction))

    def backward(g, z):
        return ref.nll_loss_backward(z, labels, weight, reduction=reduction, grad=g)

    check_backward(loss, backward, [logp])


def test_ignore_index_and_empty(core):
    logp = np.log(np.full((3, 4), 0.25, np.float32))
    labels = np.array([1, 7, 2])  # any ignore_index, even one inside [0, C), is skipped
    losses, total, total_weight = core.nll_loss_forward(logp, labels, None, 7)
    np.testing.assert_allclose(losses, [np.log(4), 0, np.log(4)], rtol=1e-6)
    assert total_weight == 2.0
    dx = core.nll_loss_backward(None, logp, labels, None, 7, 0.5)
    np.testing.assert_array_equal(dx[1], 0.0)
    assert dx[0, 1] == -0.5 and dx[2, 2] == -0.5 and np.count_nonzero(dx) == 2
    everything_ignored = np.full(3, -100)
    assert np.isnan(F.nll_loss(logp, everything_ignored))
    assert F.nll_loss(logp, everything_ignored, reduction="sum") == 0.0
    np.testing.assert_array_equal(F.nll_loss_backward(logp, everything_ignored), 0.0)
    empty = np.zeros((0, 4), np.float32)
    assert np.isnan(F.nll_loss(empty, np.zeros(0, int)))
    assert F.nll_loss(empty, np.zeros(0, int), reduction="none").shape == (0,)
    assert F.nll_loss_backward(empty, np.zeros(0, int)).shape == (0, 4)


def test_non_finite_log_probabilities(core):
    # log_softmax gives -inf for a class of probability 0; picking it makes the loss inf, and a
    # NaN reaches only its own position's loss.
    logp = np.array([[0.0, -np.inf], [-np.inf, 0.0], [np.nan, 0.0]], np.float32)
    losses = core.nll_loss_forward(logp, np.array([1, 1, 1]), None, -100)[0]
    np.testing.assert_array_equal(losses, [np.inf, -0.0, -0.0])
    losses, total, _ = core.nll_loss_forward(logp, np.array([0, 1, 0]), None, -100)
    assert losses[0] == 0.0 and losses[1] == 0.0 and np.isnan(losses[2]) and np.isnan(total)
    assert F.nll_loss(logp, np.array([1, 1, -100])) == np.inf


def test_unbatched_row(rng):
    logp = ref.log_softmax(rng.standard_normal(6), dim=0).astype(np.float32)
    weight = rng.random(6).astype(np.float32)
    label = np.array(4)
    want = -logp[4]
    assert F.nll_loss(logp, label) == pytest.approx(want, rel=1e-6)
    assert F.nll_loss(logp, label, weight) == pytest.approx(want, rel=1e-6)  # weight cancels
    none = F.nll_loss(logp, label, weight, reduction="none")
    assert none.shape == () and none == pytest.approx(want * weight[4], rel=1e-6)
    dx = F.nll_loss_backward(logp, label, 2.0, reduction="sum")
    assert dx.shape == (6,) and dx[4] == -2.0 and np.count_nonzero(dx) == 1
    module = nn.NLLLoss(reduction="none")
    assert module(logp, label).shape == ()
    np.testing.assert_array_equal(
        module.backward(np.float32(3.0)), F.nll_loss_backward(logp, label, 3.0, reduction="none")
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_module_matches_functional(rng, reduction):
    logp, labels, weight = _case(rng, (6, 5, 2), weighted=True, ignore=True)
    module = nn.NLLLoss(weight, ignore_index=-100, reduction=reduction)
    with pytest.raises(RuntimeError, match="before the loss"):
        module.backward()
    loss = module(logp, labels)
    np.testing.assert_array_equal(loss, F.nll_loss(logp, labels, weight, reduction=reduction))
    g = rng.standard_normal(labels.shape) if reduction == "none" else 0.3
    np.testing.assert_array_equal(
        module.backward(g), F.nll_loss_backward(logp, labels, g, weight, reduction=reduction)
    )
    assert module.state_dict() == {}
    assert module.config()["reduction"] == reduction


def test_log_softmax_module(rng):
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    # dim=None: PyTorch's legacy rule, dim 0 for ranks 0, 1 and 3
    for dim, legacy in ((1, None), (-1, -1), (None, 0)):
        module = nn.LogSoftmax(dim)
        with pytest.raises(RuntimeError, match="before forward"):
            module.backward(dy)
        y = module(x)
        axis = legacy if dim is None else dim
        np.testing.assert_array_equal(y, F.log_softmax(x, axis))
        np.testing.assert_allclose(y, ref.log_softmax(x, axis), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(module.backward(dy), F.log_softmax_backward(dy, x, axis))
        assert module.backward(dy, input_grad=False) is None
    np.testing.assert_array_equal(nn.LogSoftmax()(x[0]), F.log_softmax(x[0], 1))
    # -inf logits stay -inf, and a row of them with a finite one is finite elsewhere
    z = np.array([[0.0, -np.inf, 1.0]], np.float32)
    y = nn.LogSoftmax(dim=1)(z)
    assert y[0, 1] == -np.inf and np.isfinite(y[0, [0, 2]]).all()
    # LogSoftmax then NLLLoss is CrossEntropyLoss
    logits = rng.standard_normal((7, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 7)
    assert F.nll_loss(F.log_softmax(logits, 1), labels) == pytest.approx(
        F.cross_entropy(logits, labels), rel=1e-6
    )


def test_bad_arguments(core):
    logp = np.zeros((3, 4), np.float32)
    labels = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"target: expected class ids in \[0, C\) with C = 4"):
        core.nll_loss_forward(logp, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="target: expected class ids"):
        core.nll_loss_backward(None, logp, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"target: expected shape \(3\)|target: expected shape"):
        core.nll_loss_forward(logp, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"input: expected an array \(N, C\)"):
        core.nll_loss_forward(np.zeros(4, np.float32), np.array(0))
    with pytest.raises(TypeError, match="target: expected an integer array"):
        core.nll_loss_forward(logp, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="input"):
        core.nll_loss_forward("abc", labels)
    with pytest.raises(ValueError, match="weight: expected shape"):
        core.nll_loss_forward(logp, labels, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="weight"):
        core.nll_loss_forward(logp, labels, "w")
    with pytest.raises(ValueError, match="grad: expected shape"):
        core.nll_loss_backward(np.ones(2, np.float32), logp, labels)
    with pytest.raises(TypeError):
        core.nll_loss_forward(logp)
    with pytest.raises(ValueError, match="reduction"):
        F.nll_loss(logp, labels, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        nn.NLLLoss(reduction="avg")
    with pytest.raises(ValueError, match="size_average, reduce"):
        nn.NLLLoss(size_average=True)
    with pytest.raises(TypeError, match="ignore_index"):
        F.nll_loss(logp, labels, ignore_index=1.5)
    with pytest.raises(TypeError, match="grad_output"):
        F.nll_loss_backward(logp, labels, "g")
