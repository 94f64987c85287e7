# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels of the kit: every loop over pixels lives here.

Public functions, each a Python-visible wrapper that checks its arguments (raising ValueError
that names the shapes) around typed, GIL-free loops:

- ``convolve``: true 2-D convolution of the last two axes, broadcast over the leading axes
  (conv method 2).
- ``correlate``, ``correlate_weight_derivative``: conv method 1, every filter's dot product
  with every patch (each patch read where it lies in the padded input), and the derivative
  of those dot products w.r.t. the filters; ``pre_activation_derivatives``: the derivatives
  through a conv layer's ReLU, with its bias derivative.
- ``maxpool_forward``, ``maxpool_backward``: max pooling and its derivative;
  ``maxpool_derivative``: the two passes of the derivative (the winners, then the routing) in one.

All accept float32 and float64 (the output has the input's dtype) and any memory layout:
non-contiguous views (``w[:, :, ::-1, ::-1]``, ``x[:, np.newaxis]``) are copied first (correlate's
kernels read them through their strides). Below the public functions: the argument checks,
then the typed kernels; convolve's innermost blocks and 2x2 max pooling and its derivative are C
vector code, in convolve_blocks.h, and correlate's in direct_blocks.h. The examples assume
``import numpy as np`` and ``from convolutions import *``; tests/test_convolutions_doctests.py
runs them. Build with ``python setup.py build_ext --inplace``.
"""

import numpy as np
from cython.parallel import prange

__all__ = ["convolve", "correlate", "correlate_weight_derivative", "pre_activation_derivatives",
           "maxpool_forward", "maxpool_backward", "maxpool_derivative"]
COMPILED = True  # the compiled module; its numpy version (convolutions.py) says False: require_compiled_kernels

ctypedef fused real:
    float
    double

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------

def convolve(inputs, weights, padding=0):
    """True 2-D convolution (the kernel flipped) of the last two axes, broadcast over the others.

    For every leading index, the image ``inputs[..., :, :]`` is convolved with the kernel
    ``weights[..., :, :]`` as ``scipy.signal.convolve2d`` does it, after padding the image
    with `padding` zeros on all four sides. Conv method 2 is written with it.

    Parameters
    ----------
    inputs : ndarray, float32 or float64, shape (..., in_y, in_x)
    weights : ndarray, shape (..., k_y, k_x)
        The inputs' dtype and number of dimensions (at least 3). Each leading axis has the
        same length in both arrays, or length 1 in one of them, which is then broadcast (as
        numpy broadcasts).
    padding : int, optional
        Zeros on each side of each image, 0 <= padding < min(k_y, k_x): 0 is scipy's mode
        'valid', k // 2 is 'same' (odd k), k - 1 is 'full'.

    Returns
    -------
    ndarray of the inputs' dtype, shape (broadcast leading axes..., out_y, out_x)
        With ``out = in + 2 * padding - k + 1`` along each of the last two axes. When exactly
        one leading axis has a length above 1 in both arrays (the axis a conv layer sums
        over: the input channels of its forward pass), that axis comes right after the first
        in memory (see _memory_order), so that numpy sums over it by adding whole blocks of
        maps. Where convolve computes maps side by side in vector lanes (see _across_axis),
        the axis they lie along comes last in memory, after the rows and columns (see
        _layout). Otherwise the array is C-contiguous. The values are the same either way.

    Raises
    ------
    ValueError
        For arrays of other or mixed dtypes, fewer than 3 or unequal numbers of dimensions,
        leading axes that cannot broadcast, empty images or kernels, a padding out of range,
        or a kernel larger than the padded input. The message names the shapes.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1.0, 0.0], [0.0, 2.0]]]])
    >>> convolve(x, w)  # flipped: out[y, c] = 2 * x[y, c] + 1 * x[y + 1, c + 1]
    array([[[[ 4.,  7.],
             [13., 16.]]]])
    >>> from scipy.signal import convolve2d
    >>> np.array_equal(convolve(x, w)[0, 0], convolve2d(x[0, 0], w[0, 0], mode="valid"))
    True
    >>> convolve(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), padding=1)
    array([[[[4., 6., 4.],
             [6., 9., 6.],
             [4., 6., 4.]]]])

    Broadcasting: two images of one channel, each convolved with the same three kernels.

    >>> convolve(np.ones((2, 1, 8, 8)), np.ones((1, 3, 5, 5)), padding=2).shape
    (2, 3, 8, 8)
    """
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

    lead = tuple(lead)
    axis = _across_axis(inputs.shape, weights.shape, out_y, out_x, inputs.dtype)
    # The maps, in memory in the order `layout` gives the axes; out is that array seen in
    # the order of the arguments' axes.
    order = _memory_order(inputs.shape, weights.shape)
    layout = _layout(order, axis, nd)
    shape = lead + (out_y, out_x)
    maps = np.empty(tuple(shape[a] for a in layout), dtype=inputs.dtype)
    out = maps.transpose(tuple(np.argsort(layout)))
    n_out = out.size // (out_y * out_x)
    if n_out == 0:
        return out
    if axis is not None:
        return _convolve_across(inputs, weights, pad, axis, out, maps)
    # Which image and which kernel each output map reads, in the maps' memory order:
    # broadcasting done once, on indices.
    n_x, n_w = inputs.size // (in_y * in_x), weights.size // (k_y * k_x)
    x_index = np.broadcast_to(np.arange(n_x, dtype=np.intp).reshape(inputs.shape[:nd - 2]), lead)
    w_index = np.broadcast_to(np.arange(n_w, dtype=np.intp).reshape(weights.shape[:nd - 2]), lead)
    x_index, w_index = x_index.transpose(order), w_index.transpose(order)
    # Convolution = correlation with the flipped kernel, over the zero-padded image; doing
    # the flip and the padding once here keeps the inner loop free of index tests. The
    # padded images' buffer has room after them (see _slack).
    x = _zero_padded(inputs.reshape(n_x, in_y, in_x), pad, room=_slack(in_x + 2 * pad))
    w = np.ascontiguousarray(weights.reshape(n_w, k_y, k_x)[:, ::-1, ::-1])
    _correlate_all(x, w, np.ascontiguousarray(x_index.reshape(n_out)),
                   np.ascontiguousarray(w_index.reshape(n_out)), maps.reshape(n_out, out_y, out_x))
    return out


def correlate(inputs, filters, bias=None, stride=1, padding=0, relu=False):
    """Every filter's cross-correlation with the inputs, read in place (conv method 1).

    Each filter's dot product with each k x k patch of the zero-padded input (all
    channels), the patch read where it lies, never copied out. With the filters flipped
    and their two channel axes swapped, and padding k - 1 - p, it gives a layer's
    derivative w.r.t. its inputs from the derivatives w.r.t. its stride-1 outputs (see
    the examples).

    Parameters
    ----------
    inputs : ndarray, float32 or float64, shape (N, C, H, W)
        Any memory layout (a transposed view is read as it is).
    filters : ndarray of the inputs' dtype, shape (K, C, k, k)
    bias : ndarray of the inputs' dtype with K values, or None, optional
        Added to every output of filter f after its sum.
    stride : int, optional
        Step between windows, >= 1.
    padding : int, optional
        Zeros on each side of each image, 0 <= padding < k.
    relu : bool, optional
        Apply ReLU after the bias (as ``np.maximum(v, 0)``: -0.0 and NaN pass unchanged).

    Returns
    -------
    ndarray of the inputs' dtype, shape (N, K, out_y, out_x)
        ``out[n, f, y, x] = sum over (c, i, j) of inputs[n, c, y*s + i - p, x*s + j - p] *
        filters[f, c, i, j]`` (+ bias[f]), the terms added one at a time in the order
        (c, i, j), each with one rounding (a fused multiply-add);
        ``out_y = (H + 2 * padding - k) // stride + 1`` (out_x likewise).

    Raises
    ------
    ValueError
        If an array is not float32 or float64, the dtypes differ, the filters are not
        (K, C, k, k) with the inputs' C and square windows, bias has not K values, or the
        window arguments are out of range (k >= 1, stride >= 1, 0 <= padding < k, the window within the padded input).

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> correlate(x, np.ones((1, 1, 2, 2)))  # each 2x2 window's sum
    array([[[[ 8., 12.],
             [20., 24.]]]])
    >>> correlate(x, np.ones((2, 1, 3, 3)), bias=np.array([0.0, -20.0]), padding=1, relu=True)[0, 1]
    array([[ 0.,  0.,  0.],
           [ 1., 16.,  7.],
           [ 0., 13.,  4.]])

    A layer's input derivative, from the derivatives w.r.t. its outputs:

    >>> w = np.arange(8.0).reshape(2, 1, 2, 2)
    >>> d = np.ones((1, 2, 2, 2))
    >>> correlate(d, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), padding=1)
    array([[[[ 4., 10.,  6.],
             [12., 28., 16.],
             [ 8., 18., 10.]]]])
    """
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
    nv, kp = _channel_blocks(n_out, x.dtype)
    # The filters laid out (c, i, j, channel), channels padded with zeros to whole blocks.
    wt = np.zeros((x.shape[1] * k * k, kp), dtype=x.dtype)
    wt[:, :n_out] = w.reshape(n_out, -1).T
    if not _correlate_images(_strided(x), wt, nv, b if b is not None else wt[0], b is not None, bool(relu),
                             out, p, k, s):
        raise MemoryError("correlate: out of memory for a padded copy of an image")
    return out


def correlate_weight_derivative(inputs, d_outputs, kernel_size, stride=1, padding=0):
    """The derivative of ``correlate``'s outputs' cost w.r.t. its filters, summed over the batch.

    Parameters
    ----------
    inputs : ndarray, float32 or float64, shape (N, C, H, W)
        The inputs ``correlate`` was given (any memory layout).
    d_outputs : ndarray of the inputs' dtype, shape (N, K, out_y, out_x)
        Derivatives w.r.t. its outputs before the bias and ReLU (any memory layout).
    kernel_size, stride, padding : int
        As given to ``correlate``.

    Returns
    -------
    ndarray of the inputs' dtype, shape (K, C, k, k)
        ``dw[f, c, i, j] = sum over (n, y, x) of d_outputs[n, f, y, x] *
        inputs[n, c, y*s + i - p, x*s + j - p]``: the terms of every 4 images added in the
        order (n, y, x), one rounding each, then those sums added in order of their first
        image (the same numbers on any number of threads).

    Raises
    ------
    ValueError
        If an array is not float32 or float64, the dtypes differ, d_outputs is not
        (N, K, out_y, out_x) for these inputs and window, or the window arguments are out
        of range (k >= 1, stride >= 1, 0 <= padding < k, the window within the padded input).

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> correlate_weight_derivative(x, np.ones((1, 1, 2, 2)), 2)  # each offset's window sum
    array([[[[ 8., 12.],
             [20., 24.]]]])
    """
    x = _checked_real(inputs, "correlate_weight_derivative: inputs")
    d = _checked_real(d_outputs, "correlate_weight_derivative: d_outputs", x.dtype)
    k, s, p, out_y, out_x = _check_window(x.shape, kernel_size, stride, padding, "correlate_weight_derivative",
                                          _as_int(kernel_size, "correlate_weight_derivative: kernel_size") - 1)
    if d.ndim != 4 or d.shape[0] != x.shape[0] or d.shape[2:] != (out_y, out_x):
        raise ValueError(f"correlate_weight_derivative: d_outputs has shape {d.shape}, expected "
                         f"({x.shape[0]}, K, {out_y}, {out_x}) for inputs {x.shape}, kernel_size {k}, "
                         f"stride {s}, padding {p}")
    n, n_ch, n_out = x.shape[0], x.shape[1], d.shape[1]
    if n == 0 or n_ch == 0 or n_out == 0:
        return np.zeros((n_out, n_ch, k, k), dtype=x.dtype)
    nv, kp = _channel_blocks(n_out, x.dtype)
    shares = np.empty((-(-n // kit_db_images_per_sum), n_ch * k * k, kp), dtype=x.dtype)
    if not _weight_images(_strided(x), _strided(d), nv, shares, p, k, s):
        raise MemoryError("correlate_weight_derivative: out of memory for copies of the images")
    total = np.empty((n_ch * k * k, kp), dtype=x.dtype)
    _sum_images(shares, total)
    return np.ascontiguousarray(total[:, :n_out].T).reshape(n_out, n_ch, k, k)


def pre_activation_derivatives(d_outputs, outputs, relu):
    """A conv layer's derivatives w.r.t. its pre-activations, and its bias derivative.

    Parameters
    ----------
    d_outputs : ndarray, float32 or float64, shape (N, K, H, W)
        Derivatives w.r.t. the layer's outputs.
    outputs : ndarray of d_outputs' dtype and shape
        The layer's outputs.
    relu : bool
        True when the outputs went through ReLU: derivatives pass where outputs > 0 (as
        ``d * (outputs > 0)``: inf and NaN give NaN there); False passes them unchanged.

    Returns
    -------
    d : ndarray of d_outputs' dtype, shape (N, K, H, W)
        The derivatives w.r.t. the pre-activations.
    bias_sum : ndarray of d_outputs' dtype, shape (K,)
        The sum of d over each image's positions, one at a time in memory order, then
        over the images (``np.sum``): the bias derivative, the same numbers on any number
        of threads.

    Raises
    ------
    ValueError
        If an array is not float32 or float64, the dtypes differ, or d_outputs and
        outputs are not of one 4-D shape.

    Examples
    --------
    >>> d = np.array([[[[1.0, 2.0]], [[3.0, 4.0]]],
    ...               [[[5.0, 6.0]], [[7.0, 8.0]]]])  # 2 images, 2 channels, 1x2 maps
    >>> outputs = np.array([[[[1.0, 0.0]], [[1.0, 1.0]]],
    ...                     [[[0.0, 1.0]], [[1.0, 0.0]]]])
    >>> d_pre, bias_sum = pre_activation_derivatives(d, outputs, relu=True)
    >>> d_pre[:, :, 0]
    array([[[1., 0.],
            [3., 4.]],
    <BLANKLINE>
           [[0., 6.],
            [7., 0.]]])
    >>> bias_sum
    array([ 7., 14.])
    """
    d = _as_real_array(d_outputs, "pre_activation_derivatives: d_outputs")
    o = _as_real_array(outputs, "pre_activation_derivatives: outputs", d.dtype)
    if d.ndim != 4 or o.shape != d.shape:
        raise ValueError(f"pre_activation_derivatives: d_outputs {d.shape} and outputs {o.shape} must be "
                         "of one (N, K, H, W) shape")
    flat_shape = (d.shape[0], d.shape[1], d.shape[2] * d.shape[3])
    d_pre = np.empty(flat_shape, dtype=d.dtype)
    image_sums = np.zeros(flat_shape[:2], dtype=d.dtype)
    if d.size:
        _pre_activation_derivatives(d.reshape(flat_shape), o.reshape(flat_shape), d_pre, image_sums, bool(relu))
    return d_pre.reshape(d.shape), image_sums.sum(axis=0)


def maxpool_forward(inputs, kernel_size, stride, padding=0):
    """Max over k x k windows moved by `stride`, per image and channel.

    Parameters
    ----------
    inputs : ndarray, float32 or float64, shape (N, C, H, W)
    kernel_size : int
        k >= 1, the windows' height and width.
    stride : int
        Step between windows, >= 1.
    padding : int, optional
        0 <= padding <= k // 2 (as PyTorch), so that every window holds a real pixel.
        Padding never wins the max.

    Returns
    -------
    outputs : ndarray of the inputs' dtype, shape (N, C, out_y, out_x)
        With ``out = (H + 2 * padding - k) // stride + 1`` (W likewise). A NaN wins its
        window.
    argmax : ndarray of intp, shape (N, C, out_y, out_x)
        For each window, the flat index ``iy * W + ix`` of its first maximum in row-major
        order: what ``maxpool_backward`` takes.

    Raises
    ------
    ValueError
        If inputs is not a 4-D float32 or float64 array or has maps without pixels, if
        kernel_size, stride or padding is not an integer or out of range, or if the window
        is larger than the padded input.

    Examples
    --------
    >>> x = np.array([[[[1.0, 5.0, 2.0, 0.0],
    ...                 [3.0, 4.0, 8.0, 8.0],
    ...                 [0.0, 0.0, 1.0, 2.0],
    ...                 [0.0, 0.0, 3.0, 1.0]]]])
    >>> outputs, argmax = maxpool_forward(x, 2, 2)
    >>> outputs
    array([[[[5., 8.],
             [0., 3.]]]])
    >>> argmax  # ties keep the first maximum
    array([[[[ 1,  6],
             [ 8, 14]]]])
    """
    x = _as_real_array(inputs, "maxpool_forward: inputs")
    k, s, p, out_y, out_x = _check_window(x.shape, kernel_size, stride, padding, "maxpool_forward",
                                          _as_int(kernel_size, "maxpool_forward: kernel_size") // 2)
    n, c, in_y, in_x = x.shape
    if n * c > 0 and (in_y < 1 or in_x < 1):
        # Maps without pixels: no window would hold a real pixel to win its max.
        raise ValueError(f"maxpool_forward: inputs {x.shape} have maps without pixels")
    out = np.empty((n, c, out_y, out_x), dtype=x.dtype)
    argmax = np.empty((n, c, out_y, out_x), dtype=np.intp)
    if out.size:
        _maxpool_maps(x.reshape(n * c, in_y, in_x), out.reshape(n * c, out_y, out_x),
                      argmax.reshape(n * c, out_y, out_x), k, s, p)
    return out, argmax


def maxpool_backward(d_outputs, argmax, input_shape):
    """Route each window's derivative to the one input that won its max.

    Parameters
    ----------
    d_outputs : ndarray, float32 or float64, shape (N, C, out_y, out_x)
        Derivatives w.r.t. the pooled outputs.
    argmax : ndarray of intp, shape (N, C, out_y, out_x)
        As returned by ``maxpool_forward``.
    input_shape : tuple of 4 ints
        (N, C, H, W), the shape of the pooled inputs.

    Returns
    -------
    ndarray of d_outputs' dtype, shape `input_shape`
        Derivatives w.r.t. the inputs. Overlapping windows that share a maximum add their
        derivatives.

    Raises
    ------
    ValueError
        If d_outputs is not a float32 or float64 array, argmax is not an intp array of its
        shape or holds indices outside the H x W inputs, or input_shape is not 4 non-negative
        integers that match.

    Examples
    --------
    >>> x = np.array([[[[1.0, 5.0, 2.0],
    ...                 [3.0, 4.0, 0.0]]]])
    >>> outputs, argmax = maxpool_forward(x, 2, 1)
    >>> argmax  # both windows' maximum is the 5
    array([[[[1, 1]]]])
    >>> maxpool_backward(np.array([[[[10.0, 20.0]]]]), argmax, x.shape)
    array([[[[ 0., 30.,  0.],
             [ 0.,  0.,  0.]]]])
    """
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
    am = np.ascontiguousarray(argmax)
    n, c, in_y, in_x = shape
    if am.size and (am.min() < 0 or am.max() >= in_y * in_x):
        raise ValueError(f"maxpool_backward: argmax holds indices outside the {in_y}x{in_x} inputs")
    d_in = np.zeros(shape, dtype=d.dtype)
    if d.size:
        _unpool_maps(d.reshape(n * c, -1), am.reshape(n * c, -1), d_in.reshape(n * c, in_y * in_x))
    return d_in


def maxpool_derivative(d_outputs, inputs, kernel_size, stride, padding=0):
    """The derivative of max pooling w.r.t. its inputs, from the inputs themselves: each
    window's derivative goes to the input that wins it.

    The same numbers as ``maxpool_backward(d_outputs, maxpool_forward(inputs, ...)[1],
    inputs.shape)``, bit for bit, in one pass over each map, with no argmax array: what a
    layer that keeps no state between its passes needs.

    Parameters
    ----------
    d_outputs : ndarray, float32 or float64, shape (N, C, out_y, out_x)
        Derivatives w.r.t. the pooled outputs, of the inputs' dtype.
    inputs : ndarray, float32 or float64, shape (N, C, H, W)
        The pooled inputs.
    kernel_size, stride, padding : int
        As given to ``maxpool_forward``.

    Returns
    -------
    ndarray of the inputs' dtype, shape (N, C, H, W)
        Derivatives w.r.t. the inputs. Ties go to the first maximum in row-major order, and
        overlapping windows that share a maximum add their derivatives, as in
        ``maxpool_backward``.

    Raises
    ------
    ValueError
        As ``maxpool_forward`` for the inputs and the window, and if d_outputs is not an
        array of the inputs' dtype and of the pooled shape.

    Examples
    --------
    >>> x = np.array([[[[1.0, 5.0, 2.0, 0.0],
    ...                 [3.0, 4.0, 8.0, 8.0]]]])
    >>> maxpool_derivative(np.array([[[[10.0, 20.0]]]]), x, 2, 2)  # ties: the first 8 wins
    array([[[[ 0., 10.,  0.,  0.],
             [ 0.,  0., 20.,  0.]]]])
    """
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
    d_in = np.empty(x.shape, dtype=x.dtype)
    if d_in.size:
        _route_maps(d.reshape(n * c, out_y, out_x), x.reshape(n * c, in_y, in_x),
                    d_in.reshape(n * c, in_y, in_x), k, s, p)
    return d_in


# ----------------------------------------------------------------------------------------
# shared helpers: argument checks, zero padding
# ----------------------------------------------------------------------------------------

def _as_real_array(array, what, dtype=None):
    """Return `array` as a C-contiguous float32/float64 ndarray, or raise ValueError."""
    return np.ascontiguousarray(_checked_real(array, what, dtype))


def _checked_real(array, what, dtype=None):
    """`array` itself if it is a float32/float64 ndarray (of `dtype`, if given), in any
    memory layout (for kernels that copy it anyway), or raise ValueError."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.dtype not in _DTYPES:
        raise ValueError(f"{what} must be float32 or float64, got {array.dtype} with shape {array.shape}")
    if dtype is not None and array.dtype != dtype:
        raise ValueError(f"{what} has dtype {array.dtype} but {dtype} was expected (shape {array.shape})")
    return array


def _as_int(value, what):
    """Return `value` as a Python int, or raise ValueError (bools, floats and integers too
    large for the kernels' index type are refused)."""
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


def _zero_padded(images, pad, room=0):
    """images (..., H, W) with `pad` zeros on all four sides, as a new C-contiguous array
    whose buffer has `room` spare values after it. (np.pad gives the same, with a tenth of a
    millisecond of Python around it on every call, and no room.)"""
    nd = images.ndim  # (no negative indices: this module is compiled with wraparound=False)
    h, w = images.shape[nd - 2], images.shape[nd - 1]
    shape = images.shape[:nd - 2] + (h + 2 * pad, w + 2 * pad)
    size = int(np.prod(shape))
    padded = np.zeros(size + room, dtype=images.dtype)[:size].reshape(shape)
    padded[..., pad:pad + h, pad:pad + w] = images
    return padded


# ----------------------------------------------------------------------------------------
# convolve: along rows or across maps, and the typed kernels
# ----------------------------------------------------------------------------------------

# convolve's innermost blocks, in C vectors (GCC/Clang vector extensions; plain loops for other
# compilers, with the same numbers bit for bit): see the header for what each one computes.
cdef extern from "convolve_blocks.h":
    const Py_ssize_t kit_lanes_double    # outputs of a row that make one block (along rows)
    const Py_ssize_t kit_lanes_float
    const Py_ssize_t kit_vector_double   # values in one vector register
    const Py_ssize_t kit_vector_float
    const Py_ssize_t kit_positions       # most output positions of one block across maps
    void kit_block_double(const double* x, Py_ssize_t in_x, const double* w, Py_ssize_t k_y, Py_ssize_t k_x,
                          double* out, Py_ssize_t out_x, Py_ssize_t n_rows, Py_ssize_t n_cols,
                          bint half) noexcept nogil
    void kit_block_float(const float* x, Py_ssize_t in_x, const float* w, Py_ssize_t k_y, Py_ssize_t k_x,
                         float* out, Py_ssize_t out_x, Py_ssize_t n_rows, Py_ssize_t n_cols,
                         bint half) noexcept nogil
    void kit_across_double(const double* x, const Py_ssize_t* off, Py_ssize_t n_pos, Py_ssize_t in_x,
                           const double* w, Py_ssize_t gp, Py_ssize_t k_y, Py_ssize_t k_x, double* res,
                           Py_ssize_t step, bint two) noexcept nogil
    void kit_across_float(const float* x, const Py_ssize_t* off, Py_ssize_t n_pos, Py_ssize_t in_x,
                          const float* w, Py_ssize_t gp, Py_ssize_t k_y, Py_ssize_t k_x, float* res,
                          Py_ssize_t step, bint two) noexcept nogil
    void kit_pool_2x2_double(const double* img, Py_ssize_t in_x, double* out, Py_ssize_t* argmax,
                             Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil
    void kit_pool_2x2_float(const float* img, Py_ssize_t in_x, float* out, Py_ssize_t* argmax,
                            Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil
    void kit_route_2x2_double(const double* d_out, const double* img, Py_ssize_t in_y, Py_ssize_t in_x,
                              double* d_in, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil
    void kit_route_2x2_float(const float* d_out, const float* img, Py_ssize_t in_y, Py_ssize_t in_x,
                             float* d_in, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil


def _slack(in_x):
    """How many values _correlate_map may read past the end of its last image, for images
    in_x wide (3 rows, and a block's row less one value): `convolve` leaves this much room
    after its images."""
    return 3 * in_x + 16


def _round_up(n, m):
    return -(-n // m) * m


def _memory_order(x_shape, w_shape):
    """The order in memory of convolve's leading output axes: as given, except that a shared
    axis (the only leading axis longer than 1 in both arrays) comes right after the first.

    A conv layer sums the products over that axis (`.sum(axis=2)` of the forward pass's
    (N, K, C, H, W) sums the input channels C), and numpy adds up an axis in memory order:
    with C after N, it adds whole (K, H, W) blocks, C times, where in C order it would add
    one short (H, W) map at a time. Same values, same order of additions; on convnet3's
    forward products, numpy's sum took a quarter to three quarters of the time.

    >>> _memory_order((100, 1, 16, 8, 8), (1, 32, 16, 3, 3))  # the forward pass: C after N
    (0, 2, 1)
    >>> _memory_order((100, 32, 1, 8, 8), (1, 32, 16, 3, 3))  # already second: as given
    (0, 1, 2)
    """
    lead = range(len(x_shape) - 2)
    shared = [a for a in lead if x_shape[a] > 1 and w_shape[a] > 1]
    if len(shared) != 1 or shared[0] < 2:
        return tuple(lead)
    return (0, shared[0]) + tuple(a for a in lead if a not in (0, shared[0]))


def _layout(order, axis, nd):
    """The order in memory of all of convolve's output axes: the leading axes in `order`,
    then the rows and columns; the axis across which maps lie side by side in vector lanes
    (`axis`, if not None) last, so that each block's lanes are stored as whole vectors.

    >>> _layout((0, 2, 1), None, 5)  # along rows: each map's pixels together
    (0, 2, 1, 3, 4)
    >>> _layout((0, 2, 1), 1, 5)  # across the kernels: each pixel's maps together
    (0, 2, 3, 4, 1)

    A conv layer never sums over that axis (its inputs are broadcast along it: it sums over
    an axis both arrays share, or the batch), so numpy still adds whole blocks of its sums.
    """
    if axis is None:
        return tuple(order) + (nd - 2, nd - 1)
    return tuple(a for a in order if a != axis) + (nd - 2, nd - 1, axis)


def _vector_width(dtype):
    """How many values of `dtype` one vector register holds in this build (8 doubles and 16
    floats with AVX-512, half that with AVX2, a quarter with SSE2 or NEON)."""
    return kit_vector_double if dtype == np.float64 else kit_vector_float


def _across_axis(x_shape, w_shape, out_y, out_x, dtype):
    """The leading axis along which convolve puts maps side by side in vector lanes (a
    broadcast axis of the inputs, along which every map reads the same image), or None to
    put each map's own outputs in the lanes.

    Decided by a cost per map, in vector multiply-adds (two a cycle): along rows, the
    blocks' vectors, past the map's edge included, times the terms (k_y * k_x); across
    maps, the map's positions (its blocks split them evenly: none is computed in vain)
    times its share of vectors times the terms, plus a cycle to store each vector (the
    maps lie side by side in memory too: see _layout). Across maps when that costs at
    most three quarters as much: for the weight derivative (small maps, 64 or more terms),
    and for forward passes and input derivatives whose rows fill half a vector or less (8x8
    maps of floats in 16-lane vectors, whose rows would leave half of every vector idle),
    not for those whose rows fill their vectors.

    >>> _across_axis((100, 1, 16, 8, 8), (100, 32, 1, 8, 8), 5, 5, np.float64)  # a weight derivative
    1
    >>> _across_axis((100, 1, 1, 16, 16), (1, 16, 1, 3, 3), 16, 16, np.float64)  # 16x16 maps
    """
    block = kit_lanes_double if dtype == np.float64 else kit_lanes_float
    width = _vector_width(dtype)
    terms = w_shape[len(w_shape) - 2] * w_shape[len(w_shape) - 1]
    vectors, c0 = 0, 0
    while c0 < out_x:
        n_cols = min(block, out_x - c0)
        vectors += block // width if 2 * n_cols > block else 1  # a full block, or a half
        c0 += n_cols
    along_rows = _round_up(out_y, 4) * vectors * terms / 2
    best, best_cost = None, 0.75 * along_rows
    for axis in range(len(x_shape) - 2):
        g = w_shape[axis]
        if x_shape[axis] == 1 and g > 1:
            n_pos = out_y * out_x
            cost = n_pos * (_round_up(g, width) // width) / g * (terms / 2 + 1)
            if cost <= best_cost:
                best, best_cost = axis, cost
    return best


def _convolve_across(inputs, weights, pad, axis, out, maps):
    """convolve, into `out` (a view of the contiguous array `maps`, laid out by _layout with
    `axis` last), with maps side by side in the lanes along `axis` (see _across_axis): for
    every other leading index (a group), one image and g kernels."""
    nd = inputs.ndim
    lead = out.shape[:nd - 2]
    in_y, in_x = inputs.shape[nd - 2], inputs.shape[nd - 1]
    k_y, k_x = weights.shape[nd - 2], weights.shape[nd - 1]
    out_y, out_x = out.shape[nd - 2], out.shape[nd - 1]
    g = weights.shape[axis]
    width = _vector_width(inputs.dtype)
    # The kernels of each group, flipped and interleaved: (n_w, k_y, k_x, gp), g rounded
    # up to whole vectors, with zeros; n_w counts the other leading indices of weights.
    w_rest = weights.shape[:axis] + weights.shape[axis + 1:nd - 2]
    n_w = int(np.prod(w_rest))
    gp = _round_up(g, width)
    w = (np.zeros if gp > g else np.empty)((n_w, k_y, k_x, gp), dtype=weights.dtype)
    kernels = np.moveaxis(weights, axis, nd - 3).reshape(n_w, g, k_y, k_x)
    if any(step % kernels.itemsize for step in kernels.strides):  # odd byte offsets: copy whole
        kernels = np.ascontiguousarray(kernels)
    # Which image, which kernels and which first output map each group has.
    group_lead = lead[:axis] + lead[axis + 1:]
    # Kernels of its own for every group (the weight derivative's: one image's derivatives):
    # each group interleaves them as it goes. Kernels shared by groups are interleaved once.
    own_kernels = n_w == int(np.prod(group_lead))
    if not own_kernels:
        _interleave_flipped(kernels, w)
    x_rest = inputs.shape[:axis] + inputs.shape[axis + 1:nd - 2]
    n_x = int(np.prod(x_rest))
    x_index = np.broadcast_to(np.arange(n_x, dtype=np.intp).reshape(x_rest), group_lead)
    w_index = np.broadcast_to(np.arange(n_w, dtype=np.intp).reshape(w_rest), group_lead)
    # Where each group's first output lies in `maps` (in elements), from out's strides.
    steps = [out.strides[a] // out.itemsize for a in range(nd - 2) if a != axis]
    start = np.tensordot(np.array(steps, dtype=np.intp), np.indices(group_lead, dtype=np.intp), axes=1)
    x = _zero_padded(inputs.reshape(n_x, in_y, in_x), pad)
    _correlate_across_all(x, kernels, w, own_kernels, np.ascontiguousarray(x_index).reshape(-1),
                          np.ascontiguousarray(w_index).reshape(-1),
                          np.ascontiguousarray(start, dtype=np.intp).reshape(-1), g,
                          out.strides[nd - 1] // out.itemsize, maps.reshape(-1), out_y, out_x)
    return out


def _correlate_all(const real[:, :, ::1] x, const real[:, :, ::1] w, const Py_ssize_t[::1] x_index,
                   const Py_ssize_t[::1] w_index, real[:, :, ::1] out):
    """out[o] = valid correlation of x[x_index[o]] with w[w_index[o]], for every o."""
    cdef Py_ssize_t o, in_x = x.shape[2], k_y = w.shape[1], k_x = w.shape[2]
    cdef Py_ssize_t out_y = out.shape[1], out_x = out.shape[2]
    # The output maps are independent: split them across the cores (OpenMP, when built with it).
    for o in prange(out.shape[0], nogil=True, schedule="static"):
        _correlate_map(&x[x_index[o], 0, 0], in_x, &w[w_index[o], 0, 0], k_y, k_x,
                       &out[o, 0, 0], out_y, out_x)


cdef void _correlate_map(const real* x, Py_ssize_t in_x, const real* w, Py_ssize_t k_y,
                         Py_ssize_t k_x, real* out, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil:
    """out[y, c] = sum over (i, j), in that order, of x[y + i, c + j] * w[i, j] (valid
    correlation), in blocks of 4 rows x one vector register (two where registers are
    narrow), or half as wide where that is enough (the weight derivative's maps are k x k).
    May read up to _slack(in_x) values past the map."""
    cdef Py_ssize_t y, c0, n_rows, n_cols
    cdef Py_ssize_t lanes = kit_lanes_double if real is double else kit_lanes_float
    for y in range(0, out_y, 4):
        n_rows = min(4, out_y - y)
        c0 = 0
        while c0 < out_x:
            n_cols = min(lanes, out_x - c0)
            if real is double:
                kit_block_double(x + y * in_x + c0, in_x, w, k_y, k_x, out + y * out_x + c0, out_x,
                                 n_rows, n_cols, 2 * n_cols <= lanes)
            else:
                kit_block_float(x + y * in_x + c0, in_x, w, k_y, k_x, out + y * out_x + c0, out_x,
                                n_rows, n_cols, 2 * n_cols <= lanes)
            c0 = c0 + n_cols


def _correlate_across_all(const real[:, :, ::1] x, const real[:, :, :, :] kernels, real[:, :, :, ::1] w,
                          bint interleave, const Py_ssize_t[::1] x_index, const Py_ssize_t[::1] w_index,
                          const Py_ssize_t[::1] out_start, Py_ssize_t n_maps, Py_ssize_t pos_stride,
                          real[::1] out, Py_ssize_t out_y, Py_ssize_t out_x):
    """For every group o: the n_maps valid correlations of image x[x_index[o]] with the
    interleaved kernels w[w_index[o]], written from out[out_start[o]] on, side by side (each
    output position's n_maps values together, positions pos_stride apart).
    With `interleave`, each group first interleaves its own kernels[w_index[o]] into
    w[w_index[o]] (every group has kernels of its own): the correlations then read them from
    the cache, where a pass of its own over all the kernels wrote them out to memory first.
    kernels' strides are whole elements (the caller checks)."""
    cdef Py_ssize_t o, in_x = x.shape[2], k_y = w.shape[1], k_x = w.shape[2], gp = w.shape[3]
    cdef Py_ssize_t g_step = kernels.strides[1] // sizeof(real), y_step = kernels.strides[2] // sizeof(real)
    cdef Py_ssize_t x_step = kernels.strides[3] // sizeof(real)
    # The groups are independent: split them across the cores.
    for o in prange(x_index.shape[0], nogil=True, schedule="static"):
        if interleave:
            _interleave_flipped_one(&kernels[w_index[o], 0, k_y - 1, k_x - 1], g_step, y_step, x_step,
                                    n_maps, k_y, k_x, &w[w_index[o], 0, 0, 0], gp)
        _correlate_across_maps(&x[x_index[o], 0, 0], in_x, &w[w_index[o], 0, 0, 0], n_maps, gp,
                               k_y, k_x, &out[out_start[o]], pos_stride, out_y, out_x)


def _interleave_flipped(const real[:, :, :, :] kernels, real[:, :, :, ::1] out):
    """out[n, i, j, g] = kernels[n, g, k_y - 1 - i, k_x - 1 - j]: kernels side by side,
    flipped, for every n (strides in whole elements: the caller checks; numpy's own strided
    copy of this took longer than the correlations that read it)."""
    cdef Py_ssize_t n, k_y = kernels.shape[2], k_x = kernels.shape[3]
    cdef Py_ssize_t g_step = kernels.strides[1] // sizeof(real), y_step = kernels.strides[2] // sizeof(real)
    cdef Py_ssize_t x_step = kernels.strides[3] // sizeof(real)
    for n in prange(kernels.shape[0], nogil=True, schedule="static"):
        _interleave_flipped_one(&kernels[n, 0, k_y - 1, k_x - 1], g_step, y_step, x_step,
                                kernels.shape[1], k_y, k_x, &out[n, 0, 0, 0], out.shape[3])


cdef void _interleave_flipped_one(const real* last, Py_ssize_t g_step, Py_ssize_t y_step,
                                  Py_ssize_t x_step, Py_ssize_t n_g, Py_ssize_t k_y, Py_ssize_t k_x,
                                  real* w, Py_ssize_t gp) noexcept nogil:
    """w[(i * k_x + j) * gp + g] = kernel g's value at (k_y - 1 - i, k_x - 1 - j), for the
    n_g kernels whose last value (k_y - 1, k_x - 1) of kernel 0 is at `last`, any strides
    (in elements): one group's kernels, flipped and side by side."""
    cdef Py_ssize_t g, i, j
    cdef const real* src
    cdef real* dst
    for g in range(n_g):
        for i in range(k_y):
            src = last + g * g_step - i * y_step
            dst = w + i * k_x * gp + g
            for j in range(k_x):
                dst[j * gp] = src[-j * x_step]


cdef void _correlate_across_maps(const real* x, Py_ssize_t in_x, const real* w, Py_ssize_t n_maps,
                                 Py_ssize_t gp, Py_ssize_t k_y, Py_ssize_t k_x, real* out,
                                 Py_ssize_t pos_stride, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil:
    """out[(y * out_x + c) * pos_stride + g] = sum over (i, j), in that order, of
    x[y + i, c + j] * w[i, j, g], for every map g < n_maps: the valid correlations of one
    image with n_maps interleaved kernels (gp values per (i, j): n_maps rounded up to whole
    vectors)."""
    cdef Py_ssize_t width = kit_vector_double if real is double else kit_vector_float
    cdef Py_ssize_t n_pos = out_y * out_x
    # The positions in n_blocks blocks of nearly equal size (9 as 5 + 4, where blocks of
    # kit_positions would compute 16): every position a block computes is one of the map's.
    cdef Py_ssize_t n_blocks = (n_pos + kit_positions - 1) // kit_positions
    cdef Py_ssize_t off[8]
    cdef Py_ssize_t g0, n_g, p0, p, t, g, size, block
    cdef real res[256]  # kit_positions (<= 8) x 2 vectors of up to 16 values (64-byte registers)
    g0 = 0
    while g0 < n_maps:
        n_g = min(2 * width, n_maps - g0)
        p0 = 0
        for block in range(n_blocks):
            size = n_pos // n_blocks + (block < n_pos % n_blocks)
            for t in range(size):
                p = p0 + t
                off[t] = (p // out_x) * in_x + p % out_x
            if n_g == width or n_g == 2 * width:
                # Whole vectors: stored where they go.
                if real is double:
                    kit_across_double(x, off, size, in_x, w + g0, gp, k_y, k_x, out + g0 + p0 * pos_stride,
                                      pos_stride, n_g > width)
                else:
                    kit_across_float(x, off, size, in_x, w + g0, gp, k_y, k_x, out + g0 + p0 * pos_stride,
                                     pos_stride, n_g > width)
            else:
                if real is double:
                    kit_across_double(x, off, size, in_x, w + g0, gp, k_y, k_x, res, 2 * width, n_g > width)
                else:
                    kit_across_float(x, off, size, in_x, w + g0, gp, k_y, k_x, res, 2 * width, n_g > width)
                for t in range(size):
                    for g in range(n_g):
                        out[(p0 + t) * pos_stride + g0 + g] = res[t * 2 * width + g]
            p0 = p0 + size
        g0 = g0 + n_g


def _pre_activation_derivatives(const real[:, :, ::1] d, const real[:, :, ::1] outputs, real[:, :, ::1] d_pre,
                                real[:, ::1] image_sums, bint relu):
    """d_pre[n, f, q] = d'[n, f, q]; image_sums[n, f] = their sum over q, in order."""
    cdef Py_ssize_t n, q, f, n_pos = d.shape[2], n_ch = d.shape[1]
    cdef real v, acc
    # Images are independent: one per core. Each image's sums go to its own row of
    # image_sums, so the order of every addition is fixed, whatever the threads.
    for n in prange(d.shape[0], nogil=True, schedule="static"):
        for f in range(n_ch):
            acc = 0
            for q in range(n_pos):
                v = d[n, f, q]
                if relu:
                    # As d * (outputs > 0) in numpy: a product, so inf and NaN give NaN.
                    v = v * (outputs[n, f, q] > 0)
                d_pre[n, f, q] = v
                acc = acc + v
            image_sums[n, f] = acc


# ----------------------------------------------------------------------------------------
# max pooling kernels
# ----------------------------------------------------------------------------------------

def _maxpool_maps(const real[:, :, ::1] x, real[:, :, ::1] out, Py_ssize_t[:, :, ::1] argmax,
                  Py_ssize_t k, Py_ssize_t s, Py_ssize_t p):
    """Max pooling of every map m of x into out[m] and argmax[m] (see maxpool_forward)."""
    cdef Py_ssize_t m, in_y = x.shape[1], in_x = x.shape[2]
    cdef Py_ssize_t out_y = out.shape[1], out_x = out.shape[2]
    cdef bint two_by_two = k == 2 and s == 2 and p == 0
    for m in prange(x.shape[0], nogil=True, schedule="static"):
        if two_by_two:
            if real is double:
                kit_pool_2x2_double(&x[m, 0, 0], in_x, &out[m, 0, 0], &argmax[m, 0, 0], out_y, out_x)
            else:
                kit_pool_2x2_float(&x[m, 0, 0], in_x, &out[m, 0, 0], &argmax[m, 0, 0], out_y, out_x)
        else:
            _maxpool_map(&x[m, 0, 0], in_y, in_x, &out[m, 0, 0], &argmax[m, 0, 0], out_y, out_x, k, s, p)


cdef void _maxpool_map(const real* img, Py_ssize_t in_y, Py_ssize_t in_x, real* out,
                       Py_ssize_t* argmax, Py_ssize_t out_y, Py_ssize_t out_x,
                       Py_ssize_t k, Py_ssize_t s, Py_ssize_t p) noexcept nogil:
    """Max pooling of one map: out[oy, ox] and argmax[oy, ox] for every window."""
    cdef Py_ssize_t oy, ox
    for oy in range(out_y):
        for ox in range(out_x):
            argmax[oy * out_x + ox] = _winner(img, in_y, in_x, oy, ox, k, s, p, &out[oy * out_x + ox])


cdef inline Py_ssize_t _winner(const real* img, Py_ssize_t in_y, Py_ssize_t in_x, Py_ssize_t oy,
                               Py_ssize_t ox, Py_ssize_t k, Py_ssize_t s, Py_ssize_t p,
                               real* best_value) noexcept nogil:
    """The flat index of the input that wins window (oy, ox), its value in *best_value."""
    cdef Py_ssize_t iy, ix, q, best
    cdef real v, best_v
    # Clip the window to the real pixels: padding never wins the max.
    cdef Py_ssize_t y0 = max(oy * s - p, 0), y1 = min(oy * s - p + k, in_y)
    cdef Py_ssize_t x0 = max(ox * s - p, 0), x1 = min(ox * s - p + k, in_x)
    best = y0 * in_x + x0
    best_v = img[best]
    for iy in range(y0, y1):
        for ix in range(x0, x1):
            q = iy * in_x + ix
            v = img[q]
            # Strictly greater: ties keep the first maximum in row-major order.
            # v != v lets a NaN win, as in PyTorch, so that divergence shows.
            if v > best_v or v != v:
                best_v = v
                best = q
    best_value[0] = best_v
    return best


def _route_maps(const real[:, :, ::1] d_out, const real[:, :, ::1] x, real[:, :, ::1] d_in,
                Py_ssize_t k, Py_ssize_t s, Py_ssize_t p):
    """d_in[m] = the derivatives d_out[m] routed to the winners of x[m], for every map m
    (see maxpool_derivative): one map per core at a time, in its cache."""
    cdef Py_ssize_t m
    for m in prange(x.shape[0], nogil=True, schedule="static"):
        _route_map(&d_out[m, 0, 0], &x[m, 0, 0], x.shape[1], x.shape[2], &d_in[m, 0, 0],
                   d_out.shape[1], d_out.shape[2], k, s, p)


cdef void _route_map(const real* d_out, const real* img, Py_ssize_t in_y, Py_ssize_t in_x, real* d_in,
                     Py_ssize_t out_y, Py_ssize_t out_x, Py_ssize_t k, Py_ssize_t s,
                     Py_ssize_t p) noexcept nogil:
    """One map of _route_maps: zeros, then each window's derivative added onto its winner
    (0 + d, as maxpool_backward adds onto its zeros: -0.0 becomes 0.0 there too)."""
    cdef Py_ssize_t i, oy, ox, best
    cdef real unused
    if k == 2 and s == 2 and p == 0:  # windows that tile the map: in C (convolve_blocks.h)
        if real is double:
            kit_route_2x2_double(d_out, img, in_y, in_x, d_in, out_y, out_x)
        else:
            kit_route_2x2_float(d_out, img, in_y, in_x, d_in, out_y, out_x)
        return
    for i in range(in_y * in_x):
        d_in[i] = 0
    for oy in range(out_y):
        for ox in range(out_x):
            best = _winner(img, in_y, in_x, oy, ox, k, s, p, &unused)
            # Overlapping windows may share a winner: their derivatives add, in window order.
            d_in[best] = d_in[best] + d_out[oy * out_x + ox]


def _unpool_maps(const real[:, ::1] d_out, const Py_ssize_t[:, ::1] argmax, real[:, ::1] d_in):
    """d_in[m, argmax[m, i]] += d_out[m, i] for every map m and output i."""
    cdef Py_ssize_t m, i
    for m in prange(d_out.shape[0], nogil=True, schedule="static"):
        for i in range(d_out.shape[1]):
            # Overlapping windows may share a maximum: their derivatives add.
            d_in[m, argmax[m, i]] = d_in[m, argmax[m, i]] + d_out[m, i]


# ----------------------------------------------------------------------------------------
# correlate / correlate_weight_derivative kernels (method 1 read in place)
# ----------------------------------------------------------------------------------------

# Their blocks, in C vectors with fused multiply-adds: see the header for what each computes.
cdef extern from "direct_blocks.h":
    const Py_ssize_t kit_db_lanes_float  # values of one vector register
    const Py_ssize_t kit_db_lanes_double
    int kit_correlate_image_float(const float* x, Py_ssize_t sc, Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t n_ch,
                                  Py_ssize_t in_y, Py_ssize_t in_x, Py_ssize_t p, Py_ssize_t k, Py_ssize_t s,
                                  const float* wt, Py_ssize_t kp, int nv, const float* bias, int relu,
                                  float* out, Py_ssize_t n_out, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil
    int kit_correlate_image_double(const double* x, Py_ssize_t sc, Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t n_ch,
                                   Py_ssize_t in_y, Py_ssize_t in_x, Py_ssize_t p, Py_ssize_t k, Py_ssize_t s,
                                   const double* wt, Py_ssize_t kp, int nv, const double* bias, int relu,
                                   double* out, Py_ssize_t n_out, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil
    int kit_weight_images_float(const float* x, Py_ssize_t x_img, Py_ssize_t sc, Py_ssize_t sy, Py_ssize_t sx,
                                Py_ssize_t n_ch, Py_ssize_t in_y, Py_ssize_t in_x, Py_ssize_t p, Py_ssize_t k,
                                Py_ssize_t s, const float* d, Py_ssize_t d_img, Py_ssize_t d_ch, Py_ssize_t d_y,
                                Py_ssize_t d_x, Py_ssize_t n_out, Py_ssize_t kp, int nv, Py_ssize_t n_img,
                                float* dwt, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil
    int kit_weight_images_double(const double* x, Py_ssize_t x_img, Py_ssize_t sc, Py_ssize_t sy, Py_ssize_t sx,
                                 Py_ssize_t n_ch, Py_ssize_t in_y, Py_ssize_t in_x, Py_ssize_t p, Py_ssize_t k,
                                 Py_ssize_t s, const double* d, Py_ssize_t d_img, Py_ssize_t d_ch, Py_ssize_t d_y,
                                 Py_ssize_t d_x, Py_ssize_t n_out, Py_ssize_t kp, int nv, Py_ssize_t n_img,
                                 double* dwt, Py_ssize_t out_y, Py_ssize_t out_x) noexcept nogil
    const Py_ssize_t kit_db_images_per_sum  # images one share of the weight derivative adds up


def _channel_blocks(n_out, dtype):
    """(vectors per block, 1 or 2; channels rounded up to whole blocks) for n_out output
    channels: two vectors a block when there are more channels than one vector holds."""
    lanes = kit_db_lanes_double if dtype == np.float64 else kit_db_lanes_float
    nv = 2 if n_out > lanes else 1
    return nv, _round_up(n_out, nv * lanes)


def _strided(array):
    """`array` itself if its strides are whole elements (every numpy view of float data
    but a few made by hand), else a contiguous copy: the kernels read through strides."""
    if any(step % array.itemsize for step in array.strides):
        return np.ascontiguousarray(array)
    return array


def _correlate_images(const real[:, :, :, :] x, const real[:, ::1] wt, int nv, const real[::1] bias,
                      bint has_bias, bint relu, real[:, :, :, ::1] out, Py_ssize_t p, Py_ssize_t k,
                      Py_ssize_t s):
    """out[n] = correlate's output for image x[n] (filters wt: (c, i, j), channel); False
    if an image's padded copy could not be allocated."""
    cdef Py_ssize_t n, failed = 0, n_ch = x.shape[1], in_y = x.shape[2], in_x = x.shape[3]
    cdef Py_ssize_t n_out = out.shape[1], out_y = out.shape[2], out_x = out.shape[3], kp = wt.shape[1]
    cdef Py_ssize_t sn = x.strides[0] // sizeof(real), sc = x.strides[1] // sizeof(real)
    cdef Py_ssize_t sy = x.strides[2] // sizeof(real), sx = x.strides[3] // sizeof(real)
    cdef const real* base = &x[0, 0, 0, 0]
    cdef const real* b = &bias[0] if has_bias else NULL
    # Images are independent: one per core.
    for n in prange(x.shape[0], nogil=True, schedule="static"):
        if real is float:
            failed += kit_correlate_image_float(base + n * sn, sc, sy, sx, n_ch, in_y, in_x, p, k, s, &wt[0, 0],
                                                kp, nv, b, relu, &out[n, 0, 0, 0], n_out, out_y, out_x) != 0
        else:
            failed += kit_correlate_image_double(base + n * sn, sc, sy, sx, n_ch, in_y, in_x, p, k, s, &wt[0, 0],
                                                 kp, nv, b, relu, &out[n, 0, 0, 0], n_out, out_y, out_x) != 0
    return failed == 0


def _weight_images(const real[:, :, :, :] x, const real[:, :, :, :] d, int nv, real[:, :, ::1] shares,
                   Py_ssize_t p, Py_ssize_t k, Py_ssize_t s):
    """shares[g] = the weight derivative of images [g * G, (g + 1) * G), G =
    kit_db_images_per_sum, laid out ((c, i, j), channel); False if a share's copies of
    its images could not be allocated."""
    cdef Py_ssize_t g, first, failed = 0, n = x.shape[0], per = kit_db_images_per_sum
    cdef Py_ssize_t n_ch = x.shape[1], in_y = x.shape[2], in_x = x.shape[3]
    cdef Py_ssize_t n_out = d.shape[1], out_y = d.shape[2], out_x = d.shape[3], kp = shares.shape[2]
    cdef Py_ssize_t xn = x.strides[0] // sizeof(real), xc = x.strides[1] // sizeof(real)
    cdef Py_ssize_t xy = x.strides[2] // sizeof(real), xx = x.strides[3] // sizeof(real)
    cdef Py_ssize_t dn = d.strides[0] // sizeof(real), dc = d.strides[1] // sizeof(real)
    cdef Py_ssize_t dy = d.strides[2] // sizeof(real), dx = d.strides[3] // sizeof(real)
    cdef const real* x0 = &x[0, 0, 0, 0]
    cdef const real* d0 = &d[0, 0, 0, 0]
    # The shares are independent: split across the cores, each into its own row of shares.
    for g in prange(shares.shape[0], nogil=True, schedule="static"):
        first = g * per
        if real is float:
            failed += kit_weight_images_float(x0 + first * xn, xn, xc, xy, xx, n_ch, in_y, in_x, p, k, s,
                                              d0 + first * dn, dn, dc, dy, dx, n_out, kp, nv,
                                              min(per, n - first), &shares[g, 0, 0], out_y, out_x) != 0
        else:
            failed += kit_weight_images_double(x0 + first * xn, xn, xc, xy, xx, n_ch, in_y, in_x, p, k, s,
                                               d0 + first * dn, dn, dc, dy, dx, n_out, kp, nv,
                                               min(per, n - first), &shares[g, 0, 0], out_y, out_x) != 0
    return failed == 0


def _sum_images(const real[:, :, ::1] per_image, real[:, ::1] total):
    """total = the sum of per_image over its first axis, in order 0, 1, ... for every value."""
    cdef Py_ssize_t r, f, n, n_rows = total.shape[0], n_cols = total.shape[1]
    # Rows are independent; each value adds the images in the same order whatever the
    # threads. Along a row the values are independent too: the loop over them is innermost,
    # in vectors.
    for r in prange(n_rows, nogil=True, schedule="static"):
        for f in range(n_cols):
            total[r, f] = per_image[0, r, f]
        for n in range(1, per_image.shape[0]):
            for f in range(n_cols):
                total[r, f] = total[r, f] + per_image[n, r, f]
