"""The compiled kernels' numpy version, for a machine with no C compiler: the same functions.

`import convolutions` loads the compiled module (convolutions.pyx, built in place) when it is
there, since Python prefers an extension module to a .py of the same name in the same folder;
without it, this module loads and says so in one line on stderr, once per process. Each function
has the name, arguments, defaults, checks (ValueError), return dtypes and shapes of its compiled
twin, whose docstring is the contract; the results are the same to rounding (convolve, the
pre-activation derivatives and max pooling bit for bit; correlate and its weight derivative add
their terms in another order). No loop here runs over pixels: at most over the k x k offsets of a
window, or over chunks of a batch. tests/kit/test_convolutions_numpy.py compares the two.
"""

import functools
import sys

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["convolve", "correlate", "correlate_weight_derivative", "pre_activation_derivatives",
           "maxpool_forward", "maxpool_backward", "maxpool_derivative"]
COMPILED = False  # the numpy version (the compiled module says True): see require_compiled_kernels

BUILD_COMMAND = "python setup.py build_ext --inplace"
# Epochs of `python train.py configs/convnet1_method2.yaml --epochs 2 --no-display` with this
# module, over those with the compiled one (docs/speed.md, "Without a compiler").
SLOWDOWN = "about 16 times slower on convnet1"


def _compiled_beside():
    """The compiled module if it is built beside this file (None if not): an import may reach
    this file first all the same (setuptools' finder for an editable install, `pip install -e .`,
    tries .py before extension modules when the kit's folder is not on sys.path)."""
    import importlib.machinery
    import importlib.util
    import os

    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convolutions" + suffix)
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location(__name__, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


# Why this module runs instead of the compiled one. Whoever loads it by hand sets WHY on the
# module before running it (plumbing.command_line.load_kernels: a build that cannot be loaded;
# the tests' --kernels numpy: None, no notice); an import finds out here.
if "WHY" not in globals():
    WHY = "the compiled kernels are not built"
    try:
        _compiled = _compiled_beside()
    except ImportError as e:
        WHY = f"the compiled kernels cannot be loaded ({' '.join(str(e).split())})"
    else:
        if _compiled is not None:
            sys.modules[__name__] = _compiled  # what the import statement gives: the compiled module, no notice
            WHY = None
if WHY:
    print(f"convolutions: {WHY}; using their numpy version ({SLOWDOWN}); build them with: {BUILD_COMMAND}",
          file=sys.stderr, flush=True)

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The largest patch copy correlate makes at a time (values): its batch goes in chunks below it.
_PATCH_VALUES = 1 << 22


# ----------------------------------------------------------------------------------------
# public functions (their contracts: the docstrings in convolutions.pyx)
# ----------------------------------------------------------------------------------------


def _quiet(function):
    """No RuntimeWarning for inf and NaN in the arithmetic: the compiled kernels give none."""
    @functools.wraps(function)
    def quiet(*args, **kwargs):
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)
    return quiet


@_quiet
def convolve(inputs, weights, padding=0):
    """True 2-D convolution of the last two axes, broadcast over the others (see
    convolutions.pyx). The products added in the order (i, j) of the kernel's offsets from
    zero, as the compiled kernels add them: the same numbers, bit for bit. The result is
    C-contiguous (the compiled module may lay its axes out otherwise: same values)."""
    if not isinstance(inputs, np.ndarray) or not isinstance(weights, np.ndarray):
        raise ValueError(f"convolve: inputs and weights must be numpy arrays, got "
                         f"{type(inputs).__name__} and {type(weights).__name__}")
    shapes = f"inputs {inputs.shape} {inputs.dtype}, weights {weights.shape} {weights.dtype}"
    if inputs.dtype not in _DTYPES or weights.dtype != inputs.dtype:
        raise ValueError(f"convolve: inputs and weights must both be float32 or both float64 ({shapes})")
    nd = inputs.ndim
    if nd < 3 or weights.ndim != nd:
        raise ValueError("convolve: inputs and weights must have the same number of dimensions, "
                         f"at least 3 ({shapes})")
    pad = _as_int(padding, f"convolve: padding ({shapes})")
    lead = []
    for axis in range(nd - 2):
        a, b = inputs.shape[axis], weights.shape[axis]
        if a != b and a != 1 and b != 1:
            raise ValueError(f"convolve: leading axis {axis} cannot broadcast ({shapes})")
        lead.append(b if a == 1 else a)
    in_y, in_x = inputs.shape[nd - 2], inputs.shape[nd - 1]
    k_y, k_x = weights.shape[nd - 2], weights.shape[nd - 1]
    if min(in_y, in_x, k_y, k_x) < 1:
        raise ValueError(f"convolve: empty image or kernel ({shapes})")
    if not 0 <= pad < min(k_y, k_x):
        raise ValueError(f"convolve: padding must satisfy 0 <= padding < kernel size, got {pad} ({shapes})")
    out_y, out_x = in_y + 2 * pad - k_y + 1, in_x + 2 * pad - k_x + 1
    if out_y < 1 or out_x < 1:
        raise ValueError(f"convolve: kernel larger than the padded input, padding {pad} ({shapes})")

    out = np.zeros(tuple(lead) + (out_y, out_x), dtype=inputs.dtype)
    if out.size == 0:
        return out
    x = _zero_padded(inputs, pad)
    flipped = weights[..., ::-1, ::-1]
    term = np.empty_like(out)
    for i in range(k_y):
        for j in range(k_x):
            np.multiply(x[..., i:i + out_y, j:j + out_x], flipped[..., i, j, np.newaxis, np.newaxis], out=term)
            out += term
    return out


@_quiet
def correlate(inputs, filters, bias=None, stride=1, padding=0, relu=False):
    """Every filter's cross-correlation with the inputs (conv method 1; see convolutions.pyx):
    one matrix product per chunk of the batch, of its patches and the filters. The sums are
    BLAS's (the compiled kernels add the terms in order (c, i, j), each in a fused
    multiply-add): equal to rounding."""
    x = _checked_real(inputs, "correlate: inputs")
    w = _checked_real(filters, "correlate: filters", x.dtype)
    if w.ndim != 4 or x.ndim != 4 or w.shape[1] != x.shape[1] or w.shape[2] != w.shape[3]:
        raise ValueError(f"correlate: filters must be (K, C, k, k) with the inputs' C = "
                         f"{x.shape[1] if x.ndim == 4 else '?'}, got filters {w.shape} for inputs {x.shape}")
    k, s, p, out_y, out_x = _check_window(x.shape, w.shape[2], stride, padding, "correlate", w.shape[2] - 1)
    n_out = w.shape[0]
    b = None
    if bias is not None:
        b = _checked_real(bias, "correlate: bias", x.dtype)
        if b.size != n_out:
            raise ValueError(f"correlate: bias has {b.size} values, expected {n_out} (one per filter)")
        b = np.ascontiguousarray(b).reshape(-1)
    out = np.empty((x.shape[0], n_out, out_y, out_x), dtype=x.dtype)
    if out.size == 0:
        return out
    if x.shape[1] * k * k == 0:
        out[...] = 0 if b is None else b.reshape(1, -1, 1, 1)
        return np.maximum(out, 0) if relu else out
    n_ch = x.shape[1]
    # Every image's patches (N, C, out_y, out_x, k, k), read in place until a chunk is copied.
    patches = _windows(_zero_padded(x, p), k, s, out_y, out_x)
    step = max(1, _PATCH_VALUES // (n_ch * k * k * out_y * out_x))
    for first in range(0, x.shape[0], step):
        # (chunk, out_y, out_x, K): the patches' (c, i, j) against each filter's.
        sums = np.tensordot(patches[first:first + step], w, axes=([1, 4, 5], [1, 2, 3]))
        out[first:first + step] = sums.transpose(0, 3, 1, 2)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    if relu:
        np.maximum(out, 0, out=out)
    return out


@_quiet
def correlate_weight_derivative(inputs, d_outputs, kernel_size, stride=1, padding=0):
    """The derivative of correlate's outputs' cost w.r.t. its filters, summed over the batch
    (see convolutions.pyx): for each of the k x k offsets, one matrix product over the batch
    and the positions. Equal to the compiled sums to rounding."""
    x = _checked_real(inputs, "correlate_weight_derivative: inputs")
    d = _checked_real(d_outputs, "correlate_weight_derivative: d_outputs", x.dtype)
    k, s, p, out_y, out_x = _check_window(x.shape, kernel_size, stride, padding, "correlate_weight_derivative",
                                          _as_int(kernel_size, "correlate_weight_derivative: kernel_size") - 1)
    if d.ndim != 4 or d.shape[0] != x.shape[0] or d.shape[2:] != (out_y, out_x):
        raise ValueError(f"correlate_weight_derivative: d_outputs has shape {d.shape}, expected "
                         f"({x.shape[0]}, K, {out_y}, {out_x}) for inputs {x.shape}, kernel_size {k}, "
                         f"stride {s}, padding {p}")
    n, n_ch, n_out = x.shape[0], x.shape[1], d.shape[1]
    dw = np.zeros((n_out, n_ch, k, k), dtype=x.dtype)
    if n == 0 or n_ch == 0 or n_out == 0:
        return dw
    padded = _zero_padded(x, p)
    for i in range(k):
        for j in range(k):
            # The input each output position reads at offset (i, j): (N, C, out_y, out_x).
            seen = padded[:, :, i:i + s * (out_y - 1) + 1:s, j:j + s * (out_x - 1) + 1:s]
            dw[:, :, i, j] = np.tensordot(d, seen, axes=([0, 2, 3], [0, 2, 3]))
    return dw


@_quiet
def pre_activation_derivatives(d_outputs, outputs, relu):
    """A conv layer's derivatives w.r.t. its pre-activations, and its bias derivative (see
    convolutions.pyx): each image's sums one value at a time in memory order (a cumulative
    sum, from +0), then np.sum over the images, as the compiled kernels: bit for bit."""
    d = _as_real_array(d_outputs, "pre_activation_derivatives: d_outputs")
    o = _as_real_array(outputs, "pre_activation_derivatives: outputs", d.dtype)
    if d.ndim != 4 or o.shape != d.shape:
        raise ValueError(f"pre_activation_derivatives: d_outputs {d.shape} and outputs {o.shape} must be "
                         "of one (N, K, H, W) shape")
    # As d * (outputs > 0), a product: inf and NaN give NaN where outputs <= 0.
    d_pre = d * (o > 0) if relu else d.copy()
    flat = d_pre.reshape(d.shape[0], d.shape[1], d.shape[2] * d.shape[3])
    if flat.shape[2] == 0:
        image_sums = np.zeros(flat.shape[:2], dtype=d.dtype)
    else:
        # A cumulative sum adds in order, from the first value; the compiled sums start from
        # +0, which differs only for a sum that is -0: adding +0 makes it +0 too.
        image_sums = np.cumsum(flat, axis=2)[:, :, -1] + d.dtype.type(0)
    return d_pre, image_sums.sum(axis=0)


@_quiet
def maxpool_forward(inputs, kernel_size, stride, padding=0):
    """Max over k x k windows moved by `stride`, per image and channel (see convolutions.pyx):
    ties keep the first maximum in row-major order, a NaN wins (the last NaN of a window, as
    in the compiled kernels), padding never wins."""
    x = _as_real_array(inputs, "maxpool_forward: inputs")
    k, s, p, out_y, out_x = _check_window(x.shape, kernel_size, stride, padding, "maxpool_forward",
                                          _as_int(kernel_size, "maxpool_forward: kernel_size") // 2)
    n, c, in_y, in_x = x.shape
    if n * c > 0 and (in_y < 1 or in_x < 1):
        raise ValueError(f"maxpool_forward: inputs {x.shape} have maps without pixels")
    if n * c * out_y * out_x == 0:
        return np.empty((n, c, out_y, out_x), dtype=x.dtype), np.empty((n, c, out_y, out_x), dtype=np.intp)
    return _winners(x, k, s, p, out_y, out_x)


@_quiet
def maxpool_backward(d_outputs, argmax, input_shape):
    """Route each window's derivative to the one input that won its max (see
    convolutions.pyx): added onto zeros in window order, as the compiled kernels: bit for bit."""
    d = _as_real_array(d_outputs, "maxpool_backward: d_outputs")
    try:
        shape = tuple(_as_int(n, "maxpool_backward: input_shape entries") for n in input_shape)
    except TypeError:
        raise ValueError(f"maxpool_backward: input_shape must be 4 integers, got {input_shape!r}") from None
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.intp:
        raise ValueError("maxpool_backward: argmax must be the intp array from maxpool_forward")
    if d.ndim != 4 or argmax.shape != d.shape or len(shape) != 4 or shape[:2] != d.shape[:2] or min(shape) < 0:
        raise ValueError(f"maxpool_backward: shapes do not match: d_outputs {d.shape}, argmax "
                         f"{argmax.shape}, input_shape {shape}")
    n, c, in_y, in_x = shape
    if argmax.size and (argmax.min() < 0 or argmax.max() >= in_y * in_x):
        raise ValueError(f"maxpool_backward: argmax holds indices outside the {in_y}x{in_x} inputs")
    return _routed(d, argmax, shape)


@_quiet
def maxpool_derivative(d_outputs, inputs, kernel_size, stride, padding=0):
    """The derivative of max pooling w.r.t. its inputs, from the inputs themselves (see
    convolutions.pyx): maxpool_backward of maxpool_forward's winners, the same numbers."""
    x = _as_real_array(inputs, "maxpool_derivative: inputs")
    k, s, p, out_y, out_x = _check_window(x.shape, kernel_size, stride, padding, "maxpool_derivative",
                                          _as_int(kernel_size, "maxpool_derivative: kernel_size") // 2)
    d = _as_real_array(d_outputs, "maxpool_derivative: d_outputs", x.dtype)
    n, c, in_y, in_x = x.shape
    if n * c > 0 and (in_y < 1 or in_x < 1):
        raise ValueError(f"maxpool_derivative: inputs {x.shape} have maps without pixels")
    if d.shape != (n, c, out_y, out_x):
        raise ValueError(f"maxpool_derivative: d_outputs has shape {d.shape}, expected {(n, c, out_y, out_x)} "
                         f"for inputs {x.shape}, kernel_size {k}, stride {s}, padding {p}")
    if x.size == 0 or d.size == 0:
        return np.zeros(x.shape, dtype=x.dtype)
    return _routed(d, _winners(x, k, s, p, out_y, out_x)[1], x.shape)


# ----------------------------------------------------------------------------------------
# the argument checks (as in convolutions.pyx, word for word), windows, padding
# ----------------------------------------------------------------------------------------

def _as_real_array(array, what, dtype=None):
    """Return `array` as a C-contiguous float32/float64 ndarray, or raise ValueError."""
    return np.ascontiguousarray(_checked_real(array, what, dtype))


def _checked_real(array, what, dtype=None):
    """`array` itself if it is a float32/float64 ndarray (of `dtype`, if given), or raise ValueError."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.dtype not in _DTYPES:
        raise ValueError(f"{what} must be float32 or float64, got {array.dtype} with shape {array.shape}")
    if dtype is not None and array.dtype != dtype:
        raise ValueError(f"{what} has dtype {array.dtype} but {dtype} was expected (shape {array.shape})")
    return array


def _as_int(value, what):
    """Return `value` as a Python int, or raise ValueError (bools, floats and integers beyond
    the compiled kernels' index type are refused, as there)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not -2**31 < int(value) < 2**31:
        raise ValueError(f"{what} is out of range, got {value!r}")
    return int(value)


def _check_window(shape, kernel_size, stride, padding, name, max_padding):
    """Validate a (N, C, H, W) shape and window arguments; return ints and the output size."""
    k = _as_int(kernel_size, f"{name}: kernel_size")
    s = _as_int(stride, f"{name}: stride")
    p = _as_int(padding, f"{name}: padding")
    if len(shape) != 4:
        raise ValueError(f"{name}: inputs must have 4 dimensions (N, C, H, W), got shape {shape}")
    if k < 1 or s < 1:
        raise ValueError(f"{name}: kernel_size and stride must be >= 1, got {k} and {s} (inputs {shape})")
    if not 0 <= p <= max_padding:
        raise ValueError(f"{name}: padding {p} out of range 0..{max_padding} for kernel_size {k} "
                         f"(inputs {shape})")
    if shape[2] + 2 * p < k or shape[3] + 2 * p < k:
        raise ValueError(f"{name}: kernel_size {k} larger than the padded input (inputs {shape}, padding {p})")
    return k, s, p, (shape[2] + 2 * p - k) // s + 1, (shape[3] + 2 * p - k) // s + 1


def _zero_padded(images, pad):
    """images (..., H, W) with `pad` zeros on all four sides (the images themselves if pad is 0)."""
    if pad == 0:
        return images
    h, w = images.shape[-2:]
    padded = np.zeros(images.shape[:-2] + (h + 2 * pad, w + 2 * pad), dtype=images.dtype)
    padded[..., pad:pad + h, pad:pad + w] = images
    return padded


def _windows(padded, k, s, out_y, out_x):
    """The k x k windows of padded (N, C, H, W) at stride s, as a view (N, C, out_y, out_x, k, k)."""
    return sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :out_y, :out_x]


def _winners(x, k, s, p, out_y, out_x):
    """(outputs, argmax) of max pooling the C-contiguous x (N, C, H, W), none of its maps
    empty: each window's winner found over its k x k offsets in row-major order, the rule of
    the compiled kernels' loop (start at the window's first real pixel; take a value that is
    greater, or NaN)."""
    in_y, in_x = x.shape[2:]
    padded = _zero_padded(x, p)
    rows, cols = np.arange(out_y) * s - p, np.arange(out_x) * s - p  # each window's first row, column
    first = np.maximum(rows, 0)[:, np.newaxis] * in_x + np.maximum(cols, 0)
    argmax = np.broadcast_to(first, x.shape[:2] + first.shape).copy()
    flat = x.reshape(x.shape[0], x.shape[1], in_y * in_x)
    best = np.take_along_axis(flat, argmax.reshape(flat.shape[:2] + (-1,)), axis=2).reshape(argmax.shape)
    for i in range(k):
        row_in = (rows + i >= 0) & (rows + i < in_y)
        for j in range(k):
            col_in = (cols + j >= 0) & (cols + j < in_x)
            real = row_in[:, np.newaxis] & col_in  # padding never wins
            if not real.any():
                continue
            v = padded[:, :, i:i + s * (out_y - 1) + 1:s, j:j + s * (out_x - 1) + 1:s]
            take = ((v > best) | (v != v)) & real
            np.copyto(best, v, where=take)
            np.copyto(argmax, (rows + i)[:, np.newaxis] * in_x + (cols + j), where=take)
    return best, argmax


def _routed(d, argmax, shape):
    """Zeros of `shape` (N, C, H, W) with d[n, c, o] added onto [n, c, argmax[n, c, o]], in
    order o = 0, 1, ... (windows that share a winner add up in window order)."""
    n, c, in_y, in_x = shape
    d_in = np.zeros((n * c, in_y * in_x), dtype=d.dtype)
    if d.size:
        maps = np.arange(n * c)[:, np.newaxis]
        np.add.at(d_in, (maps, argmax.reshape(n * c, -1)), d.reshape(n * c, -1))
    return d_in.reshape(shape)
