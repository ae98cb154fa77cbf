"""Type stubs for fastcnn._core, the compiled kernels (internal: use fastcnn.functional)."""

from types import ModuleType

import numpy as np
import numpy.typing as npt

__version__: str
_variants: dict[str, ModuleType]
ref: ModuleType
avx2: ModuleType
avx512: ModuleType

class WeightCache:
    """A layer's packed weights, remade whenever the weights change."""
    def __init__(self) -> None: ...

def adam_step(
    param: npt.NDArray[np.float32],
    grad: npt.NDArray[np.float32],
    exp_avg: npt.NDArray[np.float32],
    exp_avg_sq: npt.NDArray[np.float32],
    max_exp_avg_sq: npt.NDArray[np.float32] | None,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float = ...,
    decoupled: bool = ...,
) -> None:
    """One torch.optim.Adam (decoupled=False) or AdamW step number `step` (>= 1), in place on param,
    exp_avg, exp_avg_sq and max_exp_avg_sq (amsgrad; None otherwise). All float32 C-contiguous
    arrays of param's shape, the written ones writeable, none overlapping; never converted."""

def adaptive_avg_pool2d_backward(
    dy: npt.ArrayLike, x: npt.ArrayLike, output_size: int | tuple[int | None, int | None] | None
) -> npt.NDArray[np.float32]:
    """dx: each dy / window area spread over its adaptive window."""

def adaptive_avg_pool2d_forward(
    input: npt.ArrayLike, output_size: int | tuple[int | None, int | None] | None
) -> npt.NDArray[np.float32]:
    """Averages of x (N, C, H, W) over PyTorch's adaptive windows, to (N, C, P, Q)."""

def avg_pool2d_backward(
    dy: npt.ArrayLike,
    x: npt.ArrayLike,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = ...,
    padding: int | tuple[int, ...] = ...,
    ceil_mode: bool = ...,
    count_include_pad: bool = ...,
    divisor_override: int | None = ...,
) -> npt.NDArray[np.float32]:
    """dx: each dy / divisor spread over its window's input cells."""

def avg_pool2d_forward(
    input: npt.ArrayLike,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = ...,
    padding: int | tuple[int, ...] = ...,
    ceil_mode: bool = ...,
    count_include_pad: bool = ...,
    divisor_override: int | None = ...,
) -> npt.NDArray[np.float32]:
    """Window averages of x (N, C, H, W)."""

def batchnorm2d_backward(
    dy: npt.ArrayLike,
    x: npt.ArrayLike,
    weight: npt.ArrayLike,
    mean: npt.ArrayLike,
    invstd: npt.ArrayLike,
    training: bool = ...,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Batch norm gradients -> (dx, dweight, dbias). training=True: mean/invstd are the batch
    statistics from forward_train (save_mean, save_invstd) and dx includes the paths through them;
    training=False: mean/invstd are constants (see batchnorm2d_backward_eval)."""

def batchnorm2d_backward_pooled(
    dy: npt.ArrayLike,
    indices: npt.ArrayLike,
    x: npt.ArrayLike,
    weight: npt.ArrayLike | None,
    mean: npt.ArrayLike,
    invstd: npt.ArrayLike,
    training: bool = ...,
    relu_output: npt.ArrayLike | None = ...,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """batchnorm2d_backward of max pooling's input gradient -> (dx, dweight, dbias): dy (N, C, P, Q)
    is the gradient of the pooling's output and indices its window maxima in x's (H, W) planes;
    equal to max_pool2d_backward then batchnorm2d_backward."""

def batchnorm2d_backward_pooled_eval(
    dy: npt.ArrayLike,
    indices: npt.ArrayLike,
    x: npt.ArrayLike,
    weight: npt.ArrayLike | None,
    running_mean: npt.ArrayLike,
    running_var: npt.ArrayLike,
    eps: float = ...,
    relu_output: npt.ArrayLike | None = ...,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """batchnorm2d_backward_pooled of eval-mode batch norm (running stats are constants)."""

def batchnorm2d_max_pool2d_forward(
    x: npt.ArrayLike,
    weight: npt.ArrayLike | None,
    bias: npt.ArrayLike | None,
    running_mean: npt.ArrayLike | None,
    running_var: npt.ArrayLike | None,
    training: bool,
    relu: bool,
    momentum: float = ...,
    eps: float = ...,
    return_indices: bool = ...,
) -> tuple[
    npt.NDArray[np.float32],
    npt.NDArray[np.int64] | None,
    npt.NDArray[np.float32] | None,
    npt.NDArray[np.float32] | None,
]:
    """max_pool2d(batch_norm(x), 2) (then relu) without the full-size normalized x; indices
    None when return_indices=False."""

def batchnorm2d_backward_eval(
    dy: npt.ArrayLike,
    x: npt.ArrayLike,
    weight: npt.ArrayLike,
    running_mean: npt.ArrayLike,
    running_var: npt.ArrayLike,
    eps: float = ...,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Gradients of eval-mode batch norm (running stats are constants) -> (dx, dweight, dbias): dx =
    dy * weight / sqrt(running_var + eps)."""

def batchnorm2d_forward_eval(
    input: npt.ArrayLike,
    weight: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    running_mean: npt.ArrayLike,
    running_var: npt.ArrayLike,
    eps: float = ...,
) -> npt.NDArray[np.float32]:
    """Eval-mode batch norm: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias."""

def batchnorm2d_forward_train(
    input: npt.ArrayLike,
    weight: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    running_mean: npt.ArrayLike,
    running_var: npt.ArrayLike,
    momentum: float = ...,
    eps: float = ...,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Training-mode batch norm with batch statistics -> (y, save_mean, save_invstd). weight, bias,
    running_mean, running_var may be None; the running stats (float32 C-contiguous (C,) arrays) are
    updated in place with momentum and the unbiased batch variance. An empty batch leaves them
    untouched and gives save_mean = save_invstd = 0."""

def compiler() -> str: ...
def conv2d_backward_input(
    dy: npt.ArrayLike,
    weight: npt.ArrayLike,
    x_shape: tuple[int, int, int, int],
    stride: int | tuple[int, int] | None = ...,
    padding: int | tuple[int, ...] = ...,
    dilation: int | tuple[int, int] = ...,
    groups: int = ...,
) -> npt.NDArray[np.float32]:
    """dx, the gradient of conv2d w.r.t. its input of shape x_shape."""

def conv2d_backward_weight(
    dy: npt.ArrayLike,
    x: npt.ArrayLike,
    weight_shape: tuple[int, int, int, int],
    stride: int | tuple[int, int] | None = ...,
    padding: int | tuple[int, ...] = ...,
    dilation: int | tuple[int, int] = ...,
    groups: int = ...,
    need_weight: bool = ...,
    need_bias: bool = ...,
) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32] | None]:
    """(dw, db), the gradients of conv2d w.r.t. weight and bias; None where not needed."""

def conv2d_forward(
    input: npt.ArrayLike,
    weight: npt.ArrayLike,
    bias: npt.ArrayLike | None = ...,
    stride: int | tuple[int, int] | None = ...,
    padding: int | tuple[int, ...] = ...,
    dilation: int | tuple[int, int] = ...,
    groups: int = ...,
    weight_cache: WeightCache | None = ...,
) -> npt.NDArray[np.float32]:
    """y = conv2d(x, weight) + bias. stride/dilation: int or (h, w); padding: int, (h, w) or (top,
    left, bottom, right). weight_cache: a WeightCache that keeps the packed weight between calls
    (one per layer), or None."""

def cpu_variant() -> str:
    """The CPU kernel variant in use: ref, avx2 or avx512."""

def cuda_device_count() -> tuple[int, str]: ...
def cuda_relu_forward(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """ReLU on the GPU, host arrays in and out (a check of the CUDA build)."""

def dropout_backward(dy: npt.ArrayLike, mask: npt.ArrayLike, p: float) -> npt.NDArray[np.float32]:
    """dx = dy * mask / (1 - p)."""

def dropout_forward(
    input: npt.ArrayLike, p: float, seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """(y, mask): mask (uint8, x's shape) is 1 where kept; y = x * mask / (1 - p). Any shape."""

def get_num_threads() -> int:
    """Threads a parallel kernel may use."""

def has_cuda() -> bool:
    """Whether the CUDA kernels were compiled into this build."""

def has_openmp() -> bool: ...
def leaky_relu_backward(
    dy: npt.ArrayLike, x: npt.ArrayLike, negative_slope: float = ...
) -> npt.NDArray[np.float32]:
    """dx = dy where x > 0, else dy * negative_slope."""

def leaky_relu_forward(
    input: npt.ArrayLike, negative_slope: float = ...
) -> npt.NDArray[np.float32]:
    """y = x where x > 0, else x * negative_slope."""

def linear_backward_input(dy: npt.ArrayLike, weight: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """dx = dy @ weight, the gradient of linear w.r.t. x."""

def linear_backward_weight(
    dy: npt.ArrayLike, x: npt.ArrayLike, need_weight: bool = ..., need_bias: bool = ...
) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32] | None]:
    """(dw, db) = (dy^T @ x, dy summed over rows), flattening leading dims; None if not needed."""

def linear_forward(
    input: npt.ArrayLike, weight: npt.ArrayLike, bias: npt.ArrayLike | None = ...
) -> npt.NDArray[np.float32]:
    """y = x @ weight.T + bias for x of shape (..., in_features)."""

def log_softmax_backward(
    dy: npt.ArrayLike, y: npt.ArrayLike, dim: int = ...
) -> npt.NDArray[np.float32]:
    """dx = dy - exp(y) * sum(dy) along dim; y is log_softmax_forward's output."""

def log_softmax_forward(input: npt.ArrayLike, dim: int = ...) -> npt.NDArray[np.float32]:
    """y = x - log(sum(exp(x))) along dim, computed stably."""

def max_pool2d_backward(
    dy: npt.ArrayLike,
    x: npt.ArrayLike,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = ...,
    padding: int | tuple[int, ...] = ...,
    dilation: int | tuple[int, int] = ...,
    ceil_mode: bool = ...,
    indices: npt.ArrayLike | None = ...,
) -> npt.NDArray[np.float32]:
    """dx: dy added at each window's argmax; reuses forward's indices, recomputes them if None."""

def max_pool2d_forward(
    input: npt.ArrayLike,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = ...,
    padding: int | tuple[int, ...] = ...,
    dilation: int | tuple[int, int] = ...,
    ceil_mode: bool = ...,
    need_indices: bool = ...,
    relu: bool = ...,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64] | None]:
    """(y, indices): window maxima of x (N, C, H, W) (relu: passed through relu_forward) and their
    int64 flat h * W + w positions (None unless need_indices)."""

def nll_loss_backward(
    grad: npt.ArrayLike | None,
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = ...,
    ignore_index: int = ...,
    grad_scale: float = ...,
) -> npt.NDArray[np.float32]:
    """dinput: zeros except -weight[t] * (grad[pos] or grad_scale) at each position's label t."""

def nll_loss_forward(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = ...,
    ignore_index: int = ...,
) -> tuple[npt.NDArray[np.float32], float, float]:
    """(losses, total_loss, total_weight) of log-probabilities input (N, C, d...)."""

def relu_backward(dy: npt.ArrayLike, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """dx = dy where x > 0, else 0."""

def relu_forward(input: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """y = max(x, 0), any shape."""

def rmsprop_step(
    param: npt.NDArray[np.float32],
    grad: npt.NDArray[np.float32],
    square_avg: npt.NDArray[np.float32],
    grad_avg: npt.NDArray[np.float32] | None,
    momentum_buffer: npt.NDArray[np.float32] | None,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float = ...,
    momentum: float = ...,
) -> None:
    """One torch.optim.RMSprop step, in place on param and the state: centered when grad_avg is
    given; momentum_buffer is ignored (may be None) without momentum. All float32 C-contiguous
    arrays of param's shape, the written ones writeable, none overlapping; never converted."""

def set_num_threads(n: int) -> None:
    """Sets the threads parallel kernels may use (n >= 1)."""

def host_pool_stats() -> dict[str, int]:
    """The caching allocator of returned arrays: cached_bytes, limit_bytes, hits, misses."""

def host_pool_set_limit(bytes: int) -> None:
    """Caps the bytes the allocator keeps for reuse (0: none); frees the excess."""

def host_pool_trim() -> None:
    """Frees every block the allocator holds for reuse."""

def sgd_step(
    param: npt.NDArray[np.float32],
    grad: npt.NDArray[np.float32],
    momentum_buffer: npt.NDArray[np.float32] | None,
    lr: float,
    momentum: float = ...,
    dampening: float = ...,
    weight_decay: float = ...,
    nesterov: bool = ...,
    init_buffer: bool = ...,
) -> None:
    """One torch.optim.SGD step, in place on param and momentum_buffer (which init_buffer, the first
    step, sets to the decayed gradient; ignored without momentum). All float32 C-contiguous arrays
    of param's shape, the written ones writeable, none overlapping; never converted."""

def sigmoid_backward(dy: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """dx = dy * y * (1 - y); y is sigmoid_forward's output."""

def sigmoid_forward(input: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """y = 1 / (1 + exp(-x)), any shape."""

def softmax_backward(
    dy: npt.ArrayLike, y: npt.ArrayLike, dim: int = ...
) -> npt.NDArray[np.float32]:
    """dx = y * (dy - sum(dy * y)) along dim; y is softmax_forward's output."""

def softmax_forward(input: npt.ArrayLike, dim: int = ...) -> npt.NDArray[np.float32]:
    """y = exp(x) / sum(exp(x)) along dim (any rank, negative dims count from the end)."""

def softmax_xent_backward(
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    label_smoothing: float = ...,
    grad_output: float = ...,
) -> npt.NDArray[np.float32]:
    """dlogits = (probabilities - target) * grad_output / (N * d...), target = (1 - e) * onehot + e
    / C; probabilities is softmax_xent_forward's second output."""

def softmax_xent_forward(
    logits: npt.ArrayLike, labels: npt.ArrayLike, label_smoothing: float = ...
) -> tuple[float, npt.NDArray[np.float32]]:
    """Fused log-softmax + cross-entropy -> (loss, probabilities). logits (N, C) or (N, C, d...),
    labels (N,) or (N, d...) integer class ids in [0, C); loss is the mean over the N * d...
    positions (NaN when there are none), accumulated in double."""

def tanh_backward(dy: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """dx = dy * (1 - y * y); y is tanh_forward's output."""

def tanh_forward(input: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """y = tanh(x), any shape."""
