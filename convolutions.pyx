# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels of the kit: every loop over pixels lives here.

Three families of functions, each a small Python-visible wrapper that checks its
arguments (raising ValueError that names the shapes) around a typed, GIL-free loop:

- ``convolve``          true 2-D convolution of the last two axes, with broadcasting over
                        the leading axes. Conv method 2 is written with it.
- ``im2col``/``col2im`` the input patches of a convolution as the rows of a matrix, and the
                        scatter-add that undoes it. Conv method 1 is a matrix product on them.
- ``maxpool_forward``/``maxpool_backward``  max pooling and its derivative.

All accept float64 and float32 (the output has the input's dtype) and any memory layout:
non-contiguous views (``w[:, :, ::-1, ::-1]``, ``x[:, np.newaxis]``) are copied first.
Build with ``python setup.py build_ext --inplace``.
"""

import numpy as np
from cython.parallel cimport prange

ctypedef fused real:
    float
    double

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_real_array(array, what, dtype=None):
    """Return `array` as a C-contiguous float32/float64 ndarray, or raise ValueError."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.dtype not in _DTYPES:
        raise ValueError(f"{what} must be float32 or float64, got {array.dtype} with shape {array.shape}")
    if dtype is not None and array.dtype != dtype:
        raise ValueError(f"{what} has dtype {array.dtype} but {dtype} was expected (shape {array.shape})")
    return np.ascontiguousarray(array)


def _as_int(value, what):
    """Return `value` as a Python int, or raise ValueError (bools and floats are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------
# convolve
# ----------------------------------------------------------------------------------------

cdef void _convolve_kernel(const real[:, :, ::1] x, const real[:, :, ::1] w,
                           const Py_ssize_t[::1] x_index, const Py_ssize_t[::1] w_index,
                           real[:, :, ::1] out, Py_ssize_t padding) noexcept nogil:
    """out[o] = x[x_index[o]] (*) w[w_index[o]], zero padded by `padding` on every side."""
    cdef Py_ssize_t n_out = out.shape[0], out_y = out.shape[1], out_x = out.shape[2]
    cdef Py_ssize_t in_y = x.shape[1], in_x = x.shape[2]
    cdef Py_ssize_t k_y = w.shape[1], k_x = w.shape[2]
    cdef Py_ssize_t o, y, i, j, col, iy, x_lo, x_hi, shift
    cdef real wv
    for o in prange(n_out, schedule="static"):
        for y in range(out_y):
            for col in range(out_x):
                out[o, y, col] = 0
            for i in range(k_y):
                # Output row y sees padded input row y + i, i.e. real row y + i - padding,
                # multiplied by the flipped kernel row k_y - 1 - i.
                iy = y + i - padding
                if iy < 0 or iy >= in_y:
                    continue
                for j in range(k_x):
                    wv = w[w_index[o], k_y - 1 - i, k_x - 1 - j]
                    shift = j - padding
                    # Keep 0 <= col + shift < in_x: the padding zeros add nothing.
                    x_lo = -shift if shift < 0 else 0
                    x_hi = in_x - shift if in_x - shift < out_x else out_x
                    for col in range(x_lo, x_hi):
                        out[o, y, col] = out[o, y, col] + wv * x[x_index[o], iy, col + shift]


def convolve(inputs, weights, padding=0):
    """True 2-D convolution (the kernel is flipped) of the last two axes of two arrays.

    For every leading index, the image ``inputs[..., :, :]`` is convolved with the kernel
    ``weights[..., :, :]``, exactly as ``scipy.signal.convolve2d`` would do it, after
    padding the image with `padding` zeros on all four sides.

    Parameters
    ----------
    inputs : ndarray, float32 or float64, shape (..., in_y, in_x)
    weights : ndarray, same dtype and number of dimensions (at least 3), shape (..., k_y, k_x)
        Every leading axis must be equal in both arrays, or 1 in one of them: the axis
        of length 1 is broadcast, as numpy broadcasts.
    padding : int, 0 <= padding < min(k_y, k_x)
        0 is scipy's mode 'valid', k // 2 is 'same' (odd k), k - 1 is 'full'.

    Returns
    -------
    ndarray of the inputs' dtype, shape (broadcast leading axes..., out_y, out_x) with
    ``out = in + 2 * padding - k + 1`` along each axis.

    Examples
    --------
    inputs (2, 4, 20, 20) with weights (2, 1, 3, 3), padding 0 -> (2, 4, 18, 18)
    inputs (100, 1, 8, 20, 20) with weights (1, 16, 8, 5, 5), padding 2 -> (100, 16, 8, 20, 20)

    Raises
    ------
    ValueError for anything else: other or mixed dtypes, fewer than 3 or unequal numbers
    of dimensions, leading axes that cannot broadcast, a padding out of range, or a
    kernel larger than the padded input. The message names the shapes.
    """
    x = _as_real_array(inputs, "convolve: inputs")
    w = _as_real_array(weights, "convolve: weights")
    shapes = f"inputs {x.shape} {x.dtype}, weights {w.shape} {w.dtype}"
    if x.dtype != w.dtype:
        raise ValueError(f"convolve: inputs and weights must have the same dtype ({shapes})")
    if x.ndim < 3 or x.ndim != w.ndim:
        raise ValueError("convolve: inputs and weights must have the same number of dimensions, "
                         f"at least 3 ({shapes})")
    pad = _as_int(padding, f"convolve: padding ({shapes})")
    nd = x.ndim
    lead = []
    for axis, (a, b) in enumerate(zip(x.shape[:nd - 2], w.shape[:nd - 2])):
        if a != b and a != 1 and b != 1:
            raise ValueError(f"convolve: leading axis {axis} cannot broadcast ({shapes})")
        lead.append(max(a, b))
    in_y, in_x = x.shape[nd - 2], x.shape[nd - 1]
    k_y, k_x = w.shape[nd - 2], w.shape[nd - 1]
    if min(in_y, in_x, k_y, k_x) < 1:
        raise ValueError(f"convolve: empty image or kernel ({shapes})")
    if not 0 <= pad < min(k_y, k_x):
        raise ValueError(f"convolve: padding must satisfy 0 <= padding < kernel size, got {pad} ({shapes})")
    out_y, out_x = in_y + 2 * pad - k_y + 1, in_x + 2 * pad - k_x + 1
    if out_y < 1 or out_x < 1:
        raise ValueError(f"convolve: kernel larger than the padded input, padding {pad} ({shapes})")

    lead = tuple(lead)
    n_out = 1
    for n in lead:
        n_out *= n
    # Which image and which kernel each output map reads: broadcasting done once, on indices.
    x_index = np.broadcast_to(np.arange(x.size // (in_y * in_x), dtype=np.intp).reshape(x.shape[:nd - 2]), lead)
    w_index = np.broadcast_to(np.arange(w.size // (k_y * k_x), dtype=np.intp).reshape(w.shape[:nd - 2]), lead)
    out = np.empty(lead + (out_y, out_x), dtype=x.dtype)
    if n_out == 0:
        return out
    x3 = x.reshape(x.size // (in_y * in_x), in_y, in_x)
    w3 = w.reshape(w.size // (k_y * k_x), k_y, k_x)
    x_idx = np.ascontiguousarray(x_index.reshape(n_out))
    w_idx = np.ascontiguousarray(w_index.reshape(n_out))
    out3 = out.reshape(n_out, out_y, out_x)
    if x.dtype == np.float64:
        _convolve_double(x3, w3, x_idx, w_idx, out3, pad)
    else:
        _convolve_float(x3, w3, x_idx, w_idx, out3, pad)
    return out


def _convolve_double(const double[:, :, ::1] x, const double[:, :, ::1] w, const Py_ssize_t[::1] xi,
                     const Py_ssize_t[::1] wi, double[:, :, ::1] out, Py_ssize_t padding):
    with nogil:
        _convolve_kernel(x, w, xi, wi, out, padding)


def _convolve_float(const float[:, :, ::1] x, const float[:, :, ::1] w, const Py_ssize_t[::1] xi,
                    const Py_ssize_t[::1] wi, float[:, :, ::1] out, Py_ssize_t padding):
    with nogil:
        _convolve_kernel(x, w, xi, wi, out, padding)


# ----------------------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------------------

def _check_window(shape, kernel_size, stride, padding, name, max_padding):
    """Validate a (N, C, H, W) shape and window arguments; return ints and the output size."""
    k = _as_int(kernel_size, f"{name}: kernel_size")
    s = _as_int(stride, f"{name}: stride")
    p = _as_int(padding, f"{name}: padding")
    if len(shape) != 4:
        raise ValueError(f"{name}: inputs must have 4 dimensions (N, C, H, W), got shape {shape}")
    if k < 1 or s < 1:
        raise ValueError(f"{name}: kernel_size and stride must be >= 1, got {k} and {s} (inputs {shape})")
    if not 0 <= p <= max_padding(k):
        raise ValueError(f"{name}: padding {p} out of range for kernel_size {k} (inputs {shape})")
    out_y = (shape[2] + 2 * p - k) // s + 1
    out_x = (shape[3] + 2 * p - k) // s + 1
    if shape[2] + 2 * p < k or shape[3] + 2 * p < k:
        raise ValueError(f"{name}: kernel_size {k} larger than the padded input (inputs {shape}, padding {p})")
    return k, s, p, out_y, out_x


cdef void _im2col_kernel(const real[:, :, :, ::1] x, real[:, ::1] cols, Py_ssize_t k,
                         Py_ssize_t s, Py_ssize_t p, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil:
    cdef Py_ssize_t n_img = x.shape[0], n_ch = x.shape[1], in_y = x.shape[2], in_x = x.shape[3]
    cdef Py_ssize_t n, c, oy, ox, i, j, iy, ix, row, col
    for n in prange(n_img, schedule="static"):
        for oy in range(out_y):
            for ox in range(out_x):
                row = (n * out_y + oy) * out_x + ox
                col = 0
                for c in range(n_ch):
                    for i in range(k):
                        iy = oy * s + i - p
                        for j in range(k):
                            ix = ox * s + j - p
                            if 0 <= iy < in_y and 0 <= ix < in_x:
                                cols[row, col] = x[n, c, iy, ix]
                            else:
                                cols[row, col] = 0
                            col = col + 1


def _im2col_double(const double[:, :, :, ::1] x, double[:, ::1] cols, Py_ssize_t k, Py_ssize_t s,
                   Py_ssize_t p, Py_ssize_t out_y, Py_ssize_t out_x):
    with nogil:
        _im2col_kernel(x, cols, k, s, p, out_y, out_x)


def _im2col_float(const float[:, :, :, ::1] x, float[:, ::1] cols, Py_ssize_t k, Py_ssize_t s,
                  Py_ssize_t p, Py_ssize_t out_y, Py_ssize_t out_x):
    with nogil:
        _im2col_kernel(x, cols, k, s, p, out_y, out_x)


def im2col(inputs, kernel_size, stride=1, padding=0):
    """The k x k patches a convolution looks at, one patch per row.

    inputs: (N, C, H, W), float32 or float64.
    returns: (N * out_y * out_x, C * k * k), rows ordered (n, oy, ox) and columns (c, i, j),
    with out = (H + 2 * padding - k) // stride + 1. Padding positions hold 0.
    Row r dotted with a filter laid out as (C, k, k) is that filter's cross-correlation
    output at position r: conv method 1 is one matrix product with this matrix.
    """
    x = _as_real_array(inputs, "im2col: inputs")
    k, s, p, out_y, out_x = _check_window(x.shape, kernel_size, stride, padding, "im2col",
                                          lambda k: k - 1)
    cols = np.empty((x.shape[0] * out_y * out_x, x.shape[1] * k * k), dtype=x.dtype)
    if cols.size:
        (_im2col_double if x.dtype == np.float64 else _im2col_float)(x, cols, k, s, p, out_y, out_x)
    return cols


cdef void _col2im_kernel(const real[:, ::1] cols, real[:, :, :, ::1] x, Py_ssize_t k,
                         Py_ssize_t s, Py_ssize_t p, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil:
    cdef Py_ssize_t n_img = x.shape[0], n_ch = x.shape[1], in_y = x.shape[2], in_x = x.shape[3]
    cdef Py_ssize_t n, c, oy, ox, i, j, iy, ix, row, col
    # One image per thread: overlapping patches of an image add into the same pixels.
    for n in prange(n_img, schedule="static"):
        for c in range(n_ch):
            for iy in range(in_y):
                for ix in range(in_x):
                    x[n, c, iy, ix] = 0
        for oy in range(out_y):
            for ox in range(out_x):
                row = (n * out_y + oy) * out_x + ox
                col = 0
                for c in range(n_ch):
                    for i in range(k):
                        iy = oy * s + i - p
                        for j in range(k):
                            ix = ox * s + j - p
                            if 0 <= iy < in_y and 0 <= ix < in_x:
                                x[n, c, iy, ix] = x[n, c, iy, ix] + cols[row, col]
                            col = col + 1


def _col2im_double(const double[:, ::1] cols, double[:, :, :, ::1] x, Py_ssize_t k, Py_ssize_t s,
                   Py_ssize_t p, Py_ssize_t out_y, Py_ssize_t out_x):
    with nogil:
        _col2im_kernel(cols, x, k, s, p, out_y, out_x)


def _col2im_float(const float[:, ::1] cols, float[:, :, :, ::1] x, Py_ssize_t k, Py_ssize_t s,
                  Py_ssize_t p, Py_ssize_t out_y, Py_ssize_t out_x):
    with nogil:
        _col2im_kernel(cols, x, k, s, p, out_y, out_x)


def col2im(cols, input_shape, kernel_size, stride=1, padding=0):
    """Scatter-add patch rows back onto the image: the transpose of ``im2col``.

    cols: (N * out_y * out_x, C * k * k), as ``im2col`` returns for inputs of `input_shape`.
    returns: (N, C, H, W) where each pixel is the sum of every patch entry that copied it
    (derivatives w.r.t. the inputs, given derivatives w.r.t. the patches).
    """
    c = _as_real_array(cols, "col2im: cols")
    shape = tuple(_as_int(n, "col2im: input_shape entries") for n in input_shape)
    k, s, p, out_y, out_x = _check_window(shape, kernel_size, stride, padding, "col2im",
                                          lambda k: k - 1)
    if min(shape) < 0:
        raise ValueError(f"col2im: negative size in input_shape {shape}")
    expected = (shape[0] * out_y * out_x, shape[1] * k * k)
    if c.shape != expected:
        raise ValueError(f"col2im: cols has shape {c.shape}, expected {expected} for input_shape "
                         f"{shape}, kernel_size {k}, stride {s}, padding {p}")
    x = np.zeros(shape, dtype=c.dtype)
    if c.size:
        (_col2im_double if c.dtype == np.float64 else _col2im_float)(c, x, k, s, p, out_y, out_x)
    return x


# ----------------------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------------------

cdef void _maxpool_kernel(const real[:, :, ::1] x, real[:, :, ::1] out, Py_ssize_t[:, :, ::1] argmax,
                          Py_ssize_t k, Py_ssize_t s, Py_ssize_t p) noexcept nogil:
    cdef Py_ssize_t n_maps = x.shape[0], in_y = x.shape[1], in_x = x.shape[2]
    cdef Py_ssize_t out_y = out.shape[1], out_x = out.shape[2]
    cdef Py_ssize_t m, oy, ox, iy, ix, y0, x0, y1, x1, best
    cdef real v, best_v
    for m in prange(n_maps, schedule="static"):
        for oy in range(out_y):
            # Clip the window to the real pixels: padding never wins the max.
            y0 = oy * s - p
            y1 = y0 + k
            if y0 < 0:
                y0 = 0
            if y1 > in_y:
                y1 = in_y
            for ox in range(out_x):
                x0 = ox * s - p
                x1 = x0 + k
                if x0 < 0:
                    x0 = 0
                if x1 > in_x:
                    x1 = in_x
                best = y0 * in_x + x0
                best_v = x[m, y0, x0]
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        v = x[m, iy, ix]
                        # Strictly greater: ties keep the first maximum in row-major order.
                        # (v != v) makes a NaN win, as in PyTorch, so a diverged run shows.
                        if v > best_v or v != v:
                            best_v = v
                            best = iy * in_x + ix
                out[m, oy, ox] = best_v
                argmax[m, oy, ox] = best


def _maxpool_double(const double[:, :, ::1] x, double[:, :, ::1] out, Py_ssize_t[:, :, ::1] am,
                    Py_ssize_t k, Py_ssize_t s, Py_ssize_t p):
    with nogil:
        _maxpool_kernel(x, out, am, k, s, p)


def _maxpool_float(const float[:, :, ::1] x, float[:, :, ::1] out, Py_ssize_t[:, :, ::1] am,
                   Py_ssize_t k, Py_ssize_t s, Py_ssize_t p):
    with nogil:
        _maxpool_kernel(x, out, am, k, s, p)


def maxpool_forward(inputs, kernel_size, stride, padding=0):
    """Max over k x k windows moved by `stride`, per image and channel.

    inputs: (N, C, H, W), float32 or float64; 0 <= padding <= kernel_size // 2 (as PyTorch),
    so that every window holds at least one real pixel. Padding never wins.
    returns: (outputs, argmax), both (N, C, out_y, out_x) with
    out = (H + 2 * padding - k) // stride + 1; argmax holds, for each window, the flat index
    iy * W + ix of its first maximum in row-major order (what ``maxpool_backward`` needs).
    """
    x = _as_real_array(inputs, "maxpool_forward: inputs")
    k, s, p, out_y, out_x = _check_window(x.shape, kernel_size, stride, padding, "maxpool_forward",
                                          lambda k: k // 2)
    n, c, in_y, in_x = x.shape
    out = np.empty((n, c, out_y, out_x), dtype=x.dtype)
    argmax = np.empty((n, c, out_y, out_x), dtype=np.intp)
    if out.size:
        (_maxpool_double if x.dtype == np.float64 else _maxpool_float)(
            x.reshape(n * c, in_y, in_x), out.reshape(n * c, out_y, out_x),
            argmax.reshape(n * c, out_y, out_x), k, s, p)
    return out, argmax


cdef void _maxpool_back_kernel(const real[:, :, ::1] d_out, const Py_ssize_t[:, :, ::1] argmax,
                               real[:, ::1] d_in) noexcept nogil:
    cdef Py_ssize_t n_maps = d_out.shape[0], out_y = d_out.shape[1], out_x = d_out.shape[2]
    cdef Py_ssize_t m, oy, ox, i
    for m in prange(n_maps, schedule="static"):
        for i in range(d_in.shape[1]):
            d_in[m, i] = 0
        for oy in range(out_y):
            for ox in range(out_x):
                # Overlapping windows may share a maximum: their derivatives add.
                d_in[m, argmax[m, oy, ox]] = d_in[m, argmax[m, oy, ox]] + d_out[m, oy, ox]


def _maxpool_back_double(const double[:, :, ::1] d, const Py_ssize_t[:, :, ::1] am, double[:, ::1] out):
    with nogil:
        _maxpool_back_kernel(d, am, out)


def _maxpool_back_float(const float[:, :, ::1] d, const Py_ssize_t[:, :, ::1] am, float[:, ::1] out):
    with nogil:
        _maxpool_back_kernel(d, am, out)


def maxpool_backward(d_outputs, argmax, input_shape):
    """Route each window's derivative to the one input that won its max.

    d_outputs: (N, C, out_y, out_x) derivatives w.r.t. the pooled outputs.
    argmax:    (N, C, out_y, out_x) intp, as returned by ``maxpool_forward``.
    returns:   (N, C, H, W) derivatives w.r.t. the inputs, of d_outputs' dtype.
    """
    d = _as_real_array(d_outputs, "maxpool_backward: d_outputs")
    shape = tuple(_as_int(n, "maxpool_backward: input_shape entries") for n in input_shape)
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.intp:
        raise ValueError("maxpool_backward: argmax must be the intp array from maxpool_forward")
    if d.ndim != 4 or argmax.shape != d.shape or len(shape) != 4 or shape[:2] != d.shape[:2] or min(shape) < 0:
        raise ValueError(f"maxpool_backward: shapes do not match: d_outputs {d.shape}, argmax "
                         f"{argmax.shape}, input_shape {shape}")
    am = np.ascontiguousarray(argmax)
    n, c, in_y, in_x = shape
    if am.size and (am.min() < 0 or am.max() >= in_y * in_x):
        raise ValueError(f"maxpool_backward: argmax holds indices outside the {in_y}x{in_x} inputs")
    d_in = np.empty(shape, dtype=d.dtype)
    if d_in.size:
        (_maxpool_back_double if d.dtype == np.float64 else _maxpool_back_float)(
            d.reshape(n * c, d.shape[2], d.shape[3]), am.reshape(n * c, d.shape[2], d.shape[3]),
            d_in.reshape(n * c, in_y * in_x))
    return d_in
