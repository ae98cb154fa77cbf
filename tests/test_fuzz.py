"""Property tests: random calls of every public function keep the error contract, and the compiled
variants agree with the reference on random shapes. tests/fuzz/run_fuzz.py runs the same case
generator much longer, in subprocesses."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcnn
from fastcnn import _core

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
import cases

TARGETS = cases.targets()
TABLE = cases.target_table(TARGETS)

# The same examples on every run, drawn from a seed of each test's own (as the `rng` fixture does
# for the other tests), and no example database: a run's outcome never depends on the run before
# it, and nothing is written to the working directory. That may be read-only (another user's
# checkout), where Hypothesis warned that its .hypothesis/ folder was unusable, an error under
# filterwarnings = error. tests/fuzz/run_fuzz.py explores further, with a seed of its own.
REPRODUCIBLE = settings(deadline=None, derandomize=True, database=None)


@settings(REPRODUCIBLE, max_examples=400)
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, 2**20))
def test_random_calls_keep_the_error_contract(seed, index):
    label, fn, kwargs = cases.make_case(seed, index, TARGETS, TABLE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's cast overflow warnings
        # mse_loss's warning for a target it broadcasts, as PyTorch's
        warnings.filterwarnings("ignore", "Using a target size", UserWarning)
        problem = cases.check_call(label, fn, kwargs)
    assert problem is None, f"{label}({cases.describe(kwargs)}): {problem}"


def test_every_core_function_is_fuzzed():
    names = {label.split(".")[-1] for label, _, _ in TARGETS if label.startswith("_core.")}
    public = {n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))}
    assert public - set(_core._variants) <= names


def _misaligned(a: np.ndarray) -> np.ndarray:
    buf = bytearray(a.nbytes + 1)
    m = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned
    return m


@pytest.mark.parametrize("variant", sorted(_core._variants))
def test_misaligned_inputs_give_the_aligned_result(variant, rng):
    core = _core._variants[variant]
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(core.relu_forward(_misaligned(x)), core.relu_forward(x))
    np.testing.assert_array_equal(
        core.conv2d_forward(_misaligned(x), _misaligned(w)), core.conv2d_forward(x, w)
    )
    np.testing.assert_array_equal(
        core.max_pool2d_forward(_misaligned(x), 2)[0], core.max_pool2d_forward(x, 2)[0]
    )


@pytest.mark.parametrize("variant", sorted(_core._variants))
def test_misaligned_running_statistics_are_refused(variant, rng):
    # They are updated in place, so they cannot be copied to aligned memory.
    core = _core._variants[variant]
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    w, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    rm = _misaligned(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="running_mean.*aligned"):
        core.batchnorm2d_forward_train(x, w, b, rm, np.ones(3, np.float32))
    np.testing.assert_array_equal(rm, 0.0)


@pytest.mark.parametrize("size", [2**31, 2**63 - 1])
def test_conv2d_shape_arguments_past_int32_are_refused(size):
    # H + padding overflowed int64 for H = 2**63 - 1 (UBSan: signed overflow in the output size).
    dy = np.ones((1, 1, 1, 1), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="x_shape"):
        _core.conv2d_backward_input(dy, w, (1, 1, size, 1), padding=3)
    with pytest.raises(ValueError, match="weight_shape"):
        _core.conv2d_backward_weight(dy, np.ones((1, 1, 1, 1), np.float32), (1, 1, size, 1))


def test_empty_outputs_with_int64_overflowing_strides_are_refused():
    # (0, 3, 2**31-1, 2**31-1) has no elements, but its batch stride overflows int64.
    x = np.ones((0, 3, 1, 3), np.float32)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d_forward output"):
        _core.adaptive_avg_pool2d_forward(x, 2**31 - 1)
    assert _core.adaptive_avg_pool2d_forward(x, 5).shape == (0, 3, 5, 5)


def test_inputs_too_large_to_copy_raise_memory_error():
    # A zero-strided broadcast view of 2**60 floats needs a contiguous copy NumPy cannot make;
    # the conversion's null result reached the kernels (a segmentation fault).
    huge = np.broadcast_to(np.float32(1), (2**15,) * 4)
    with pytest.raises(MemoryError, match="input: cannot make a C-contiguous float32 copy"):
        _core.relu_forward(huge)
    mask = np.broadcast_to(np.uint8(1), huge.shape)
    with pytest.raises(MemoryError, match="dy: cannot make"):
        _core.dropout_backward(huge, mask, 0.5)
    labels = np.broadcast_to(np.int32(0), (2**30, 2**30))
    with pytest.raises(MemoryError, match="target: cannot make a C-contiguous int64 copy"):
        _core.nll_loss_forward(np.zeros((1, 2), np.float32), labels, None, -100)


def _overcommit_mode() -> str:
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


@pytest.mark.skipif(
    _overcommit_mode() not in ("0", "2"),
    reason="needs Linux refusing an allocation past memory (vm.overcommit_memory 0 or 2); "
    "with 1 the 64 TB output would be handed out and written",
)
def test_outputs_too_large_to_allocate_raise_memory_error_naming_the_output():
    # 4096 filters over 2**32 + 1 padded rows: 2**46 bytes, under the 2**47 refused as no
    # machine's, but past any machine's memory; the failed allocation said only "std::bad_alloc".
    x = np.ones((1, 1, 1, 1), np.float32)
    w = np.ones((4096, 1, 1, 1), np.float32)
    with pytest.raises(MemoryError, match=r"conv2d_forward output: cannot allocate \d+ bytes"):
        _core.conv2d_forward(x, w, None, 1, (2**31, 0, 2**31, 0))


@pytest.mark.parametrize("n", [2**31, 2**63, -(2**63), 2**100])
def test_thread_counts_past_int_range_raise_type_error(n):
    # pybind11 refuses an int it cannot convert with TypeError (never OverflowError).
    with pytest.raises(TypeError, match="set_num_threads"):
        _core.set_num_threads(n)


@pytest.mark.parametrize("n", [0, -1, 2**31, 2**100])
def test_public_set_num_threads_names_the_range(n):
    with pytest.raises(ValueError, match=r"n: expected a thread count in \[1, 2147483647\]"):
        fastcnn.set_num_threads(n)


@pytest.mark.parametrize("dim", [2**31, 2**63, 2**100])
def test_huge_softmax_dim_is_refused(dim):
    with pytest.raises((TypeError, ValueError)):
        _core.softmax_forward(np.ones((2, 3), np.float32), dim)


conv_shapes = st.tuples(
    st.integers(1, 3),  # N
    st.integers(1, 6),  # C per group
    st.integers(1, 6),  # K per group
    st.integers(1, 3),  # groups
    st.integers(1, 4),  # R
    st.integers(1, 4),  # S
    st.integers(1, 3),  # stride
    st.integers(1, 2),  # dilation
    st.integers(0, 12),  # extra height
    st.integers(0, 12),  # extra width
)

# A conv2d output is a sum of up to C*R*S = 96 products; the variants order them differently.
CONV_RTOL, CONV_ATOL = 1e-4, 1e-5


@settings(REPRODUCIBLE, max_examples=60)
@given(shape=conv_shapes, pad=st.integers(0, 2), seed=st.integers(0, 2**32 - 1))
def test_conv2d_variants_agree_with_ref_on_random_shapes(shape, pad, seed):
    N, Cg, Kg, g, R, S, stride, dil, eh, ew = shape
    rng = np.random.default_rng(seed)
    H, W = dil * (R - 1) + 1 + eh, dil * (S - 1) + 1 + ew
    x = rng.standard_normal((N, Cg * g, H, W)).astype(np.float32)
    w = rng.standard_normal((Kg * g, Cg, R, S)).astype(np.float32)
    b = rng.standard_normal(Kg * g).astype(np.float32)
    args = {"stride": stride, "padding": pad, "dilation": dil, "groups": g}
    ref = _core._variants["ref"]
    y_ref = ref.conv2d_forward(x, w, b, **args)
    dy = rng.standard_normal(y_ref.shape).astype(np.float32)
    dx_ref = ref.conv2d_backward_input(dy, w, x.shape, **args)
    dw_ref, db_ref = ref.conv2d_backward_weight(dy, x, w.shape, **args)
    # Each pass sums L float32 products in its own order (Winograd reorders more): the absolute
    # tolerance grows with sqrt(L), as in test_conv2d.
    lengths = {"y": Cg * R * S, "dx": Kg * R * S, "dw": dy[:, 0].size}

    def tol(name, which):
        return {"rtol": CONV_RTOL, "atol": CONV_ATOL * lengths[which] ** 0.5, "err_msg": name}

    for name, core in _core._variants.items():
        np.testing.assert_allclose(core.conv2d_forward(x, w, b, **args), y_ref, **tol(name, "y"))
        np.testing.assert_allclose(
            core.conv2d_backward_input(dy, w, x.shape, **args), dx_ref, **tol(name, "dx")
        )
        dw, db = core.conv2d_backward_weight(dy, x, w.shape, **args)
        np.testing.assert_allclose(dw, dw_ref, **tol(name, "dw"))
        np.testing.assert_allclose(db, db_ref, **tol(name, "dw"))


@settings(REPRODUCIBLE, max_examples=60)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 5),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    ceil_mode=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_max_pool2d_variants_match_ref_exactly(n, c, h, w, k, stride, ceil_mode, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h + k, w + k)).astype(np.float32)
    pad = int(rng.integers(0, k // 2 + 1))
    y_ref, i_ref = _core._variants["ref"].max_pool2d_forward(x, k, stride, pad, 1, ceil_mode)
    for name, core in _core._variants.items():
        y, i = core.max_pool2d_forward(x, k, stride, pad, 1, ceil_mode)
        np.testing.assert_array_equal(y, y_ref, err_msg=name)
        np.testing.assert_array_equal(i, i_ref, err_msg=name)
