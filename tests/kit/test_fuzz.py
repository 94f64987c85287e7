"""Property-based fuzzing (hypothesis) of the compiled kernels and of the layers.

Kernels: every argument is sometimes valid and sometimes not -- any dtype, 0 to 6
dimensions, sizes 0 and 1, kernel sizes / strides / paddings out of range, huge or not
integers at all, and any memory layout (C and Fortran order, flipped, strided, transposed,
broadcast, read-only and byte-swapped views, nested lists). An oracle written here from
the documented contracts says whether a call is valid: a valid call must give the answer
of an independent reference (scipy.signal.convolve2d, plain numpy loops: tests/references.py)
in the input's dtype, an invalid one must raise ValueError; a byte-swapped float array may do either.
Any other exception fails, and no argument may change. A batch of random calls also runs
in a child process, where a segfault shows as a negative return code instead of killing
pytest.

Layers: input, weight and bias derivatives against central differences for random
shapes, strides, paddings and roles; conv method 2 against method 1 with the same
weights; any memory layout or real dtype gives the answer of the contiguous float64 copy
(or, for dtypes other than float64, a ValueError).

The number of examples each property runs is the constant in its @settings (the counts of
hypothesis' own statistics: python -m pytest tests/kit/test_fuzz.py --hypothesis-show-statistics).
"""

import contextlib
import copy
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, numeric_gradient
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from references import (
    convolve_reference,
    fitting_size,
    maxpool_backward_reference,
    maxpool_reference,
    pre_activation_reference,
    window_size,
)

import convolutions
from conv_layer import ConvLayer
from fc_layer import FCLayer
from maxpool_layer import MaxPoolLayer
from plumbing.errors import ConfigError

# Examples per property (and calls in the child process): cited by the README.
CONVOLVE_CASES = 600
PRE_ACTIVATION_CASES = 500
MAXPOOL_FORWARD_CASES = 500
MAXPOOL_BACKWARD_CASES = 500
CHILD_PROCESS_CALLS = 600
CONV_LAYER_CASES = 120
MAXPOOL_LAYER_CASES = 120
FC_LAYER_CASES = 120
LAYER_LAYOUT_CASES = 400

FUZZ = dict(deadline=None, derandomize=True, database=None)

VALID, INVALID, EITHER = "valid", "invalid", "ValueError or the right answer"

DTYPES = (np.float64, np.float32, np.float16, np.int32, np.int64, np.complex128, np.bool_, object)
REAL_DTYPES = (np.float64, np.float32)
LAYOUTS = ("C", "F", "flip", "strided", "transposed", "readonly", "broadcast", "byteswapped", "list")
ARRAY_LAYOUTS = LAYOUTS[:-1]
NOT_INTS = (True, np.bool_(True), False, 1.5, 2.0, None, "1", np.float64(1.0), np.array(1), (1,), 1 + 0j)
HUGE_INTS = (2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -2**63)
# Huge paddings only where the oracle can never call them valid (the output would be huge).
HUGE_PADDINGS = (2**64, 10**30, -2**63, -2**64)


# ----------------------------------------------------------------------------------------
# building arguments
# ----------------------------------------------------------------------------------------

def make_values(shape, dtype, rng, values="uniform"):
    """A C-order array of `shape` and `dtype` holding random values of the kind `values`."""
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    if values == "distinct":
        v = rng.permutation(n) / 8.0 - n / 16.0  # exact in float32 and float16 for small n
    elif values == "ties":
        v = rng.integers(0, 3, n).astype(float)
    elif values == "negative":
        v = -rng.uniform(1, 2, n)
    elif values == "inf":
        v = rng.choice([-np.inf, np.inf, -0.5, 0.5, 1.0], n)
    elif values == "nan":
        v = rng.uniform(-1, 1, n)
        v[rng.random(n) < 0.25] = np.nan
    else:
        v = rng.uniform(-1, 1, n)
    v = v.reshape(shape)
    dtype = np.dtype(dtype)
    if dtype.kind == "O":  # object
        return v.astype(object)
    if dtype.kind in "iu":
        return rng.integers(-3, 4, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "c":
        return (v + 1j * rng.uniform(-1, 1, shape)).astype(dtype)
    return v.astype(dtype)


def arrange(a, layout):
    """`a` (C order) in another memory layout, or as a nested list. 'broadcast' repeats
    a[:1]; the other layouts keep the values."""
    nd = a.ndim
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "flip" and nd >= 1:
        index = (Ellipsis, slice(None, None, -1), slice(None, None, -1)) if nd >= 2 else (slice(None, None, -1),)
        return np.ascontiguousarray(a[index])[index]  # negative strides, same values
    if layout == "strided" and nd >= 1:
        axis = nd - 2 if nd >= 2 else 0
        big_shape = list(a.shape)
        big_shape[axis] *= 2
        big = np.zeros(big_shape, dtype=a.dtype)
        index = [slice(None)] * nd
        index[axis] = slice(None, None, 2)
        big[tuple(index)] = a
        return big[tuple(index)]
    if layout == "transposed" and nd >= 2:
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if layout == "readonly":
        a = a.copy()
        a.setflags(write=False)
        return a
    if layout == "broadcast" and nd >= 1:
        return np.broadcast_to(a[:1], a.shape)  # stride 0, read-only
    if layout == "byteswapped" and a.dtype.kind in "fiuc":
        return a.astype(a.dtype.newbyteorder())
    if layout == "list":
        return a.tolist()
    return np.ascontiguousarray(a)


class Fuzz:
    """The draws of one example. A third of the examples are calm (every argument within
    the contract, so that valid calls are common); in the others, each argument leaves the
    contract on its own now and then."""

    def __init__(self, draw):
        self.draw = draw
        self.calm = draw(st.integers(0, 2)) == 0

    def wild(self, one_in=4):
        """Whether this argument leaves the contract (one time in `one_in`)."""
        return not self.calm and self.draw(st.integers(0, one_in - 1)) == 0

    def index(self, good, fuzz, huge=HUGE_INTS):
        """An integer argument: mostly from `good` (inclusive range), sometimes a numpy
        integer; when wild also from `fuzz`, huge, or not an integer at all."""
        draw = self.draw
        if not self.wild():
            value = draw(st.integers(*good)) if good[0] <= good[1] else draw(st.integers(*fuzz))
            return np.int64(value) if draw(st.integers(0, 5)) == 0 else value
        kind = draw(st.integers(0, 6))
        if kind <= 1:
            return draw(st.integers(*fuzz))
        if kind == 2:
            kind_of_int = draw(st.sampled_from([np.int8, np.int32, np.uint16, np.intp]))
            value = draw(st.integers(*fuzz))
            return kind_of_int(abs(value) if kind_of_int is np.uint16 else value)
        if kind <= 4:
            return draw(st.sampled_from(huge))
        return draw(st.sampled_from(NOT_INTS))

    def dtype(self):
        return self.draw(st.sampled_from(DTYPES if self.wild() else REAL_DTYPES))

    def layout(self):
        return self.draw(st.sampled_from(LAYOUTS if self.wild() else ARRAY_LAYOUTS))

    def shape_container(self, shape):
        """input_shape as callers pass it: a tuple, a list or an array; when wild, broken."""
        draw = self.draw
        if self.wild(3):
            choice = draw(st.integers(0, 6))
            if choice == 0:
                return shape[:-1]
            if choice == 1:
                return shape + (1,)
            if choice == 2:
                i = draw(st.integers(0, len(shape) - 1))
                bad = draw(st.sampled_from([2.0, True, None, "3", np.float64(1.0), -1]))
                return shape[:i] + (bad,) + shape[i + 1:]
            return draw(st.sampled_from([None, 5, "1234", np.int64(4), np.array(shape, dtype=float)]))
        container = draw(st.sampled_from(["tuple", "list", "array", "numpy ints"]))
        if container == "list":
            return list(shape)
        if container == "array":
            return np.array(shape, dtype=np.intp)
        if container == "numpy ints":
            return tuple(np.int64(n) for n in shape)
        return tuple(shape)


def small_int(value, hi=8):
    """`value` as an int if it is a plain or numpy integer (not bool) in 0..hi, else None."""
    i = as_index(value)
    return i if i is not None and 0 <= i <= hi else None


# ----------------------------------------------------------------------------------------
# the oracle: what the docstrings of convolutions.pyx promise
# ----------------------------------------------------------------------------------------

def as_index(value):
    """The int that an integer argument stands for, or None when the contract refuses it
    (bools and floats are not integers)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    if not -2**31 < int(value) < 2**31:
        return None  # the kernels refuse integers beyond their index range
    return int(value)


def index_tuple(input_shape):
    """input_shape as a tuple of ints, or None when it is not an iterable of integers."""
    try:
        entries = list(input_shape)
    except TypeError:
        return None
    shape = tuple(as_index(n) for n in entries)
    return None if None in shape else shape


def array_verdict(a):
    """VALID for a native float32/float64 ndarray; EITHER for a byte-swapped one (still
    float32/float64, but a kernel may refuse it); INVALID for anything else."""
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        return INVALID
    return VALID if a.dtype.isnative else EITHER


def worst(*verdicts):
    for v in (INVALID, EITHER):
        if v in verdicts:
            return v
    return VALID


def native(dtype):
    return dtype.newbyteorder("=")


def convolve_verdict(x, w, padding):
    v = worst(array_verdict(x), array_verdict(w))
    if v == INVALID or native(x.dtype) != native(w.dtype):
        return INVALID
    pad = as_index(padding)
    if pad is None or x.ndim < 3 or w.ndim != x.ndim:
        return INVALID
    for a, b in zip(x.shape[:-2], w.shape[:-2]):
        if a != b and a != 1 and b != 1:
            return INVALID
    (in_y, in_x), (k_y, k_x) = x.shape[-2:], w.shape[-2:]
    if min(in_y, in_x, k_y, k_x) < 1 or not 0 <= pad < min(k_y, k_x):
        return INVALID
    if in_y + 2 * pad - k_y + 1 < 1 or in_x + 2 * pad - k_x + 1 < 1:
        return INVALID
    return v


def window_verdict(shape, kernel_size, stride, padding, max_padding):
    """maxpool_forward's window arguments: (N, C, H, W) and k x k windows moved
    by stride over the input padded by `padding` <= max_padding(k)."""
    k, s, p = as_index(kernel_size), as_index(stride), as_index(padding)
    if None in (k, s, p) or len(shape) != 4 or k < 1 or s < 1 or not 0 <= p <= max_padding(k):
        return INVALID
    if shape[2] + 2 * p < k or shape[3] + 2 * p < k:
        return INVALID
    return VALID


def pre_activation_verdict(d_outputs, outputs):
    """Two float32/float64 ndarrays of one dtype and one 4-D shape (any sizes, 0 included)."""
    v = worst(array_verdict(d_outputs), array_verdict(outputs))
    if v == INVALID or native(d_outputs.dtype) != native(outputs.dtype):
        return INVALID
    if d_outputs.ndim != 4 or outputs.shape != d_outputs.shape:
        return INVALID
    return v


def maxpool_forward_verdict(x, kernel_size, stride, padding):
    v = array_verdict(x)
    if v == INVALID:
        return INVALID
    v = worst(v, window_verdict(x.shape, kernel_size, stride, padding, lambda k: k // 2))
    # "every window holds at least one real pixel": none does in an empty map.
    if v != INVALID and x.shape[0] * x.shape[1] > 0 and min(x.shape[2:]) == 0:
        return INVALID
    return v


def maxpool_backward_verdict(d_outputs, argmax, input_shape):
    v = array_verdict(d_outputs)
    shape = index_tuple(input_shape)
    if v == INVALID or shape is None or not isinstance(argmax, np.ndarray):
        return INVALID
    intp = np.dtype(np.intp)
    if argmax.dtype.kind != "i" or argmax.dtype.itemsize != intp.itemsize:
        return INVALID
    if not argmax.dtype.isnative:
        v = EITHER
    d = d_outputs
    if d.ndim != 4 or argmax.shape != d.shape or len(shape) != 4 or shape[:2] != d.shape[:2] or min(shape) < 0:
        return INVALID
    if argmax.size and (argmax.min() < 0 or argmax.max() >= shape[2] * shape[3]):
        return INVALID
    return v


def outcome(verdict, call):
    """Call; an INVALID call must raise ValueError, a VALID one must not raise, an EITHER
    one may. Returns the result to check, or None after an accepted ValueError."""
    event(f"verdict: {verdict}")
    if verdict == INVALID:
        with pytest.raises(ValueError):
            call()
        return None
    try:
        return call()
    except ValueError:
        if verdict == EITHER:
            return None
        raise


def snapshot(a):
    if isinstance(a, np.ndarray):
        return (a.copy(), a.dtype, a.shape, a.strides, a.flags.writeable)
    return copy.deepcopy(a)


def assert_unchanged(a, before):
    if isinstance(a, np.ndarray):
        values, dtype, shape, strides, writeable = before
        assert (a.dtype, a.shape, a.strides, a.flags.writeable) == (dtype, shape, strides, writeable)
        if a.dtype == object:  # list equality: the same objects (NaN too) are equal
            assert a.tolist() == values.tolist(), "an argument was modified"
        else:
            assert np.array_equal(a, values, equal_nan=a.dtype.kind in "fc"), "an argument was modified"
    elif isinstance(before, (list, tuple)):
        assert a == before, "an argument was modified"


def tolerance(dtype):
    return dict(rtol=1e-4, atol=1e-5) if np.dtype(dtype).itemsize == 4 else dict(rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------
# convolve
# ----------------------------------------------------------------------------------------

@st.composite
def convolve_arguments(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    f = Fuzz(draw)
    if f.wild():
        nd_x = draw(st.integers(0, 6))
        nd_w = nd_x if draw(st.booleans()) else draw(st.integers(0, 6))
    else:
        nd_x = nd_w = draw(st.integers(3, 6))
    x_lead, w_lead = [], []
    for _ in range(max(nd_x, nd_w, 2) - 2):
        size = draw(st.integers(0, 3))
        who = draw(st.sampled_from(["both", "x", "w", "any"] if f.wild() else ["both", "x", "w"]))
        x_lead.append(size if who in ("both", "x") else 1)
        w_lead.append(size if who in ("both", "w") else 1)
        if who == "any":
            x_lead[-1], w_lead[-1] = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    k_lo = 0 if f.wild(6) else 1
    k_y, k_x = draw(st.integers(k_lo, 5)), draw(st.integers(k_lo, 5))
    k_min = max(min(k_y, k_x), 1)
    padding = f.index((0, k_min - 1), (-2, max(k_y, k_x) + 2), HUGE_PADDINGS)
    p = small_int(padding) or 0
    in_lo = 0 if f.wild(6) else 1
    in_y = draw(st.integers(max(in_lo, k_y - 2 * p), k_y + 5))
    in_x = draw(st.integers(max(in_lo, k_x - 2 * p), k_x + 5))
    if f.wild(6):
        in_y = draw(st.integers(in_lo, max(in_lo, k_y)))  # often smaller than the kernel
    x_dtype = f.dtype()
    w_dtype = draw(st.sampled_from(DTYPES)) if f.wild() else x_dtype

    def shape(lead, nd):
        full = tuple(lead) + (in_y, in_x) if lead is x_lead else tuple(lead) + (k_y, k_x)
        return full[len(full) - nd:] if nd else ()

    x = arrange(make_values(shape(x_lead, nd_x), x_dtype, rng), f.layout())
    w = arrange(make_values(shape(w_lead, nd_w), w_dtype, rng), f.layout())
    return x, w, padding


@settings(max_examples=CONVOLVE_CASES, **FUZZ)
@given(convolve_arguments())
def test_convolve_gives_scipy_answer_or_value_error_for_any_arguments(args):
    x, w, padding = args
    before = [snapshot(a) for a in args]
    verdict = convolve_verdict(x, w, padding) if isinstance(x, np.ndarray) and isinstance(w, np.ndarray) else INVALID
    out = outcome(verdict, lambda: convolutions.convolve(x, w, padding=padding))
    for a, b in zip(args, before):
        assert_unchanged(a, b)
    if out is not None:
        expected = convolve_reference(x, w, as_index(padding))
        assert type(out) is np.ndarray
        assert out.dtype == native(x.dtype)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, **tolerance(out.dtype))


# ----------------------------------------------------------------------------------------
# pre_activation_derivatives
# ----------------------------------------------------------------------------------------

PRE_ACTIVATION_VALUES = ("uniform", "inf", "nan", "ties")
RELU_FLAGS = (True, False, np.bool_(True), np.bool_(False), 1, 0)


@st.composite
def pre_activation_arguments(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    f = Fuzz(draw)
    shape = tuple(0 if draw(st.integers(0, 11)) == 0 else draw(st.integers(1, 4)) for _ in range(2)) + \
        (draw(st.integers(0, 9)), draw(st.integers(0, 9)))
    if f.wild(5):
        shape = tuple(draw(st.integers(0, 3)) for _ in range(draw(st.integers(0, 6))))
    o_shape = shape
    if f.wild(6) and len(shape):
        o_shape = draw(st.sampled_from([shape[:-1], shape + (1,), shape[:-1] + (shape[-1] + 1,), shape[::-1]]))
    d_dtype = f.dtype()
    o_dtype = draw(st.sampled_from(DTYPES)) if f.wild() else d_dtype
    d = arrange(make_values(shape, d_dtype, rng, draw(st.sampled_from(PRE_ACTIVATION_VALUES))), f.layout())
    outputs = arrange(make_values(o_shape, o_dtype, rng, draw(st.sampled_from(PRE_ACTIVATION_VALUES))), f.layout())
    return d, outputs, draw(st.sampled_from(RELU_FLAGS))


def assert_same_sums(a, b):
    """Equal values and signs of zeros, NaN where NaN (of either sign: which of two NaNs an
    addition keeps is the compiler's choice)."""
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b))
    assert a[~nan].tobytes() == b[~nan].tobytes()


@settings(max_examples=PRE_ACTIVATION_CASES, **FUZZ)
@given(pre_activation_arguments())
def test_pre_activation_derivatives_give_the_loops_bits_or_value_error_for_any_arguments(args):
    d, outputs, relu = args
    before = [snapshot(a) for a in args]
    verdict = (pre_activation_verdict(d, outputs) if isinstance(d, np.ndarray) and isinstance(outputs, np.ndarray)
               else INVALID)
    result = outcome(verdict, lambda: convolutions.pre_activation_derivatives(d, outputs, relu))
    for a, b in zip(args, before):
        assert_unchanged(a, b)
    if result is not None:
        d_pre, bias_sum = result
        expected_d, expected_sum = pre_activation_reference(d, outputs, bool(relu))
        assert type(d_pre) is np.ndarray and d_pre.dtype == native(d.dtype) and d_pre.shape == d.shape
        assert type(bias_sum) is np.ndarray and bias_sum.dtype == native(d.dtype) and bias_sum.shape == (d.shape[1],)
        assert d_pre.tobytes() == expected_d.tobytes()  # every bit: NaNs, infinities, signed zeros
        assert_same_sums(bias_sum, expected_sum)


def window_arguments(f, max_padding, k_good=(1, 4)):
    """kernel_size, stride, padding and a shape (N, C, H, W) -- usually of a fitting size,
    when wild of any size and number of dimensions."""
    draw = f.draw
    k = f.index(k_good, (-1, 6))
    stride = f.index((1, 3), (-1, 4))
    k_small = small_int(k)
    k_ok = k_small is not None and k_small >= 1
    padding = f.index((0, max_padding(k_small)) if k_ok else (0, 1), (-2, (k_small if k_ok else 2) + 2),
                      HUGE_PADDINGS)
    p_small = small_int(padding) or 0
    if f.wild(5):
        shape = tuple(draw(st.integers(0, 3)) for _ in range(draw(st.integers(0, 6))))
    else:
        # Empty batches and channel-less images are valid; empty maps are not (maxpool_forward).
        n = 0 if draw(st.integers(0, 11)) == 0 else draw(st.integers(1, 2))
        c = 0 if draw(st.integers(0, 11)) == 0 else draw(st.integers(1, 3))
        lo = max(0, (k_small if k_ok else 0) - 2 * p_small - (2 if f.wild() else 0))
        shape = (n, c, draw(st.integers(lo, lo + 6)), draw(st.integers(lo, lo + 6)))
    return k, stride, padding, shape


# ----------------------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------------------

POOL_VALUES = ("distinct", "ties", "negative", "inf", "nan")


@st.composite
def maxpool_forward_arguments(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    f = Fuzz(draw)
    k, stride, padding, shape = window_arguments(f, lambda k: k // 2)
    values = draw(st.sampled_from(POOL_VALUES))
    x = arrange(make_values(shape, f.dtype(), rng, values), f.layout())
    return x, k, stride, padding


@settings(max_examples=MAXPOOL_FORWARD_CASES, **FUZZ)
@given(maxpool_forward_arguments())
def test_maxpool_forward_gives_first_maximum_or_value_error_for_any_arguments(args):
    x, k, stride, padding = args
    before = [snapshot(a) for a in args]
    verdict = maxpool_forward_verdict(x, k, stride, padding)
    result = outcome(verdict, lambda: convolutions.maxpool_forward(x, k, stride, padding))
    for a, b in zip(args, before):
        assert_unchanged(a, b)
    if result is not None:
        out, argmax = result
        expected, expected_argmax, has_nan = maxpool_reference(x, as_index(k), as_index(stride), as_index(padding))
        assert type(out) is np.ndarray and out.dtype == native(x.dtype)
        assert type(argmax) is np.ndarray and argmax.dtype == np.intp
        assert out.shape == argmax.shape == expected.shape
        np.testing.assert_array_equal(out, expected)  # NaN where a window holds one
        np.testing.assert_array_equal(argmax[~has_nan], expected_argmax[~has_nan])
        # A NaN wins its window: argmax points at a NaN of that window.
        n_img, n_ch, h, w = x.shape
        flat = np.asarray(x, dtype=np.float64).reshape(n_img, n_ch, h * w)
        won = np.take_along_axis(flat, argmax.reshape(n_img, n_ch, argmax.shape[2] * argmax.shape[3]), axis=2)
        assert np.isnan(won.reshape(argmax.shape)[has_nan]).all()


@st.composite
def maxpool_backward_arguments(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    f = Fuzz(draw)
    n = 0 if draw(st.integers(0, 11)) == 0 else draw(st.integers(1, 2))
    c = 0 if draw(st.integers(0, 11)) == 0 else draw(st.integers(1, 3))
    h, w = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    out_y, out_x = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    if h * w == 0 and not f.wild():
        out_y = 0
    d_shape = (n, c, out_y, out_x)
    argmax = rng.integers(0, max(h * w, 1), d_shape)
    if argmax.size and f.wild():
        argmax.reshape(-1)[draw(st.integers(0, argmax.size - 1))] = draw(st.sampled_from([-1, h * w, 2**40]))
    argmax_dtype = np.intp
    if f.wild():
        argmax_dtype = draw(st.sampled_from([np.int32, np.uint64, np.float64, np.dtype("q"), np.bool_, object,
                                             np.int16]))
    argmax_shape = d_shape
    if f.wild(6):
        argmax_shape = draw(st.sampled_from([d_shape[:3], (n, c, out_x, out_y), (1,) + d_shape]))
        argmax = rng.integers(0, max(h * w, 1), argmax_shape)
    if f.wild(8):
        d_shape = (n, c, out_y * out_x)
    d = arrange(make_values(d_shape, f.dtype(), rng), f.layout())
    argmax = arrange(argmax.astype(argmax_dtype), f.layout())
    shape = (n, c, h, w)
    if f.wild(6):
        shape = (n, c + 1, h, w)
    return d, argmax, f.shape_container(shape)


@settings(max_examples=MAXPOOL_BACKWARD_CASES, **FUZZ)
@given(maxpool_backward_arguments())
def test_maxpool_backward_routes_derivatives_or_raises_value_error_for_any_arguments(args):
    d, argmax, input_shape = args
    before = [snapshot(a) for a in args]
    verdict = maxpool_backward_verdict(d, argmax, input_shape)
    d_in = outcome(verdict, lambda: convolutions.maxpool_backward(d, argmax, input_shape))
    for a, b in zip(args, before):
        assert_unchanged(a, b)
    if d_in is not None:
        shape = index_tuple(input_shape)
        assert type(d_in) is np.ndarray and d_in.dtype == native(d.dtype)
        assert d_in.shape == shape
        np.testing.assert_allclose(d_in, maxpool_backward_reference(d, argmax, shape), **tolerance(d_in.dtype))


# ----------------------------------------------------------------------------------------
# hard crashes: random calls in a child process
# ----------------------------------------------------------------------------------------

CHILD = r'''
import faulthandler, json, sys
import numpy as np
import convolutions

faulthandler.enable()
calls, rng = int(sys.argv[1]), np.random.default_rng(int(sys.argv[2]))
DTYPES = [np.float64, np.float64, np.float32, np.float32, np.float16, np.int64, np.int32,
          np.complex128, np.bool_, object]
ODD = [2**31, 2**63 - 1, 2**63, -2**63, 1.5, True, None, "1", np.int64(2), np.uint8(1)]

def pick(seq):
    return seq[int(rng.integers(len(seq)))]

def integer(lo, hi):
    return int(rng.integers(lo, hi + 1)) if rng.random() < 0.85 else pick(ODD)

def array(shape, dtype=None):
    dtype = np.dtype(dtype or (pick(DTYPES) if rng.random() < 0.3 else pick([np.float64, np.float32])))
    a = rng.uniform(-1, 1, shape)
    if dtype.kind in "iub":
        a = rng.integers(-3, 4, shape)
    a = a.astype(dtype)
    layout = pick(["C", "C", "F", "flip", "view", "readonly", "list", "swap"])
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "flip" and a.ndim >= 2:
        return a[..., ::-1, ::-1]
    if layout == "view" and a.ndim >= 1:
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if layout == "readonly":
        a.setflags(write=False)
    if layout == "list" and max(a.shape, default=0) < 1000:  # not a list of 10**8 empty lists
        return a.tolist()
    if layout == "swap" and a.dtype.kind in "fiuc":
        return a.astype(a.dtype.newbyteorder())
    return a

def shape4(k, p):
    if rng.random() < 0.15:
        return tuple(int(rng.integers(0, 4)) for _ in range(int(rng.integers(0, 7))))
    lo = max(0, (k if isinstance(k, int) and 0 < k < 9 else 0) - 2 * (p if isinstance(p, int) and 0 <= p < 9 else 0))
    return (int(rng.integers(0, 3)), int(rng.integers(0, 4)), int(rng.integers(lo, lo + 7)),
            int(rng.integers(lo, lo + 7)))

def convolve_args():
    nd = int(rng.integers(0, 7)) if rng.random() < 0.2 else int(rng.integers(3, 6))
    lead = tuple(int(rng.integers(0, 4)) for _ in range(max(nd - 2, 0)))
    k = (int(rng.integers(0, 6)), int(rng.integers(0, 6)))
    xs = (lead + (int(rng.integers(0, 9)), int(rng.integers(0, 9))))[-nd:] if nd else ()
    ws = (tuple(pick([1, n]) for n in lead) + k)[-nd:] if nd else ()
    if rng.random() < 0.2:
        ws = ws[1:]
    return array(xs), array(ws), integer(-2, 6)

def window_args(max_padding):
    k, s = integer(0, 5), integer(0, 4)
    kk = k if isinstance(k, int) and 0 < k < 9 else 2
    p = max_padding(kk) if rng.random() < 0.3 else integer(-1, max_padding(kk) + 1)  # the edge, often
    return array(shape4(k, p)), k, s, p

def pre_activation_args():
    shape = shape4(1, 0)
    o_shape = shape if rng.random() < 0.8 else pick([shape[:-1], shape + (1,), shape[::-1], (3, 1, 2, 2)])
    return array(shape), array(o_shape), pick([True, False, 1, 0, np.bool_(True)])

def maxpool_forward_args():
    if rng.random() < 0.3:
        # An empty map beside a huge one, at the largest padding: free to allocate, but a
        # kernel that indexes by window geometry reads far outside it (the stride keeps
        # the output small).
        big = pick([10**6, 10**8])
        k = pick([2, 4, integer(0, 5)])
        p = k // 2 if isinstance(k, int) and rng.random() < 0.7 else integer(-1, 3)
        return array(pick([(1, 1, 0, big), (2, 1, 0, big), (1, 1, big, 0)])), k, big // pick([100, 10**4]), p
    return window_args(lambda k: k // 2)

def maxpool_backward_args():
    n, c, h, w = (int(rng.integers(0, 3)), int(rng.integers(0, 3)), int(rng.integers(0, 6)), int(rng.integers(0, 6)))
    d_shape = (n, c, int(rng.integers(0, 4)), int(rng.integers(0, 4)))
    argmax = rng.integers(-1 if rng.random() < 0.1 else 0, max(h * w, 1) + (rng.random() < 0.1), d_shape)
    argmax = argmax.astype(pick([np.intp, np.intp, np.intp, np.int32, np.float64, np.uint64]))
    if rng.random() < 0.5:
        argmax = pick([argmax, np.asfortranarray(argmax), argmax[..., ::-1], argmax.tolist()])
    return array(d_shape), argmax, pick([(n, c, h, w), (n, c, h, w), (n, c + 1, h, w), (n, c, h), (n, c, -1, w)])

def describe(args):
    return ", ".join(f"array{np.shape(a)} {getattr(a, 'dtype', type(a).__name__)}"
                     if isinstance(a, (np.ndarray, list)) else repr(a) for a in args)

makers = {"convolve": convolve_args, "pre_activation_derivatives": pre_activation_args,
          "maxpool_forward": maxpool_forward_args, "maxpool_backward": maxpool_backward_args}
names = list(makers)
value_errors, unexpected = 0, []
for i in range(calls):
    name = names[i % len(names)]
    args = makers[name]()
    text = f"call {i}: convolutions.{name}({describe(args)})"
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    try:
        getattr(convolutions, name)(*args)
    except ValueError:
        value_errors += 1
    except Exception as e:
        unexpected.append(f"{text} raised {type(e).__name__}: {e}")
print(json.dumps({"calls": calls, "value_errors": value_errors, "unexpected": unexpected}))
'''


def test_random_valid_and_invalid_kernel_calls_never_crash_the_interpreter():
    result = subprocess.run([sys.executable, "-c", CHILD, str(CHILD_PROCESS_CALLS), "2015"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    lines = result.stderr.splitlines()
    calls = [line for line in lines if line.startswith("call ")]
    report = "\n".join(line for line in lines if not line.startswith("call "))[-2000:]
    assert result.returncode == 0, (
        f"the child process died with return code {result.returncode} (negative: killed by that signal, "
        f"-11 is a segfault) during {calls[-1] if calls else '?'}\n{report}")
    summary = json.loads(result.stdout)
    assert summary["calls"] == CHILD_PROCESS_CALLS
    assert 0 < summary["value_errors"] < CHILD_PROCESS_CALLS  # both kinds of call were made
    assert summary["unexpected"] == [], "exceptions other than ValueError:\n" + "\n".join(summary["unexpected"])


# ----------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------

def quiet_initialize(layer, size_y, size_x, channels, seed):
    """Initialize without its one-line shape summary on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return layer.Initialize(size_y, size_x, channels, rng=np.random.default_rng(seed))


def set_role(layer, role):
    if role == "input":
        layer.SetAsInput()
    elif role == "output":
        layer.SetAsOutput()
    return layer


def conv_layer(k, stride, padding, num_channels, method, role):
    return set_role(ConvLayer({"name": "c", "type": "CONVOLUTIONAL", "num_channels": num_channels,
                               "kernel_size": k, "stride": stride, "padding": padding, "convolve_method": method,
                               "init_wt": 0.3, "epsilon": 0.1, "momentum": 0.9, "l2_decay": 0.0}), role)


def fc_layer(num_channels, role):
    return set_role(FCLayer({"name": "f", "type": "FC", "num_channels": num_channels, "init_wt": 0.3,
                             "epsilon": 0.1, "momentum": 0.9, "l2_decay": 0.0}), role)


def pool_layer(k, stride, padding, role):
    return set_role(MaxPoolLayer({"name": "pool", "type": "MAXPOOL", "kernel_size": k, "stride": stride,
                                  "padding": padding}), role)


def activation(pre, role):
    """ReLU, or for the output layer softmax over all units of an example."""
    if role != "output":
        return np.maximum(pre, 0)
    flat = pre.reshape(pre.shape[0], -1)
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(pre.shape)


def cross_correlation_reference(x, w, b, k, s, p):
    """b[f] + sum_{c,i,j} w[f, c, i, j] * x[n, c, s*y + i - p, s*x + j - p], by sliding windows."""
    n_ch = x.shape[1]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    return np.einsum("ncyxij,fcij->nfyx", windows, w.reshape(-1, n_ch, k, k)) + b.reshape(1, -1, 1, 1)


def check_derivatives(layer, x, rng, eps=1e-6):
    """ComputeDown against central differences of a scalar loss: sum(outputs * R) for a
    hidden or input layer; the cross entropy of softmax outputs for the output layer,
    whose derivative w.r.t. the softmax input (predictions - targets) the layer gets.
    dw and db are batch averages, the input derivative is not. Returns (d_out, outputs,
    what ComputeDown returned)."""
    outputs = layer.ComputeUp(x)
    batch = x.shape[0]
    if layer.is_output_:
        targets = np.zeros((batch, outputs[0].size))
        targets[np.arange(batch), rng.integers(0, outputs[0].size, batch)] = 1.0
        targets = targets.reshape(outputs.shape)
        d_out = outputs - targets

        def loss():
            return -np.sum(targets * np.log(layer.ComputeUp(x)))
    else:
        d_out = rng.standard_normal(outputs.shape)

        def loss():
            return np.sum(layer.ComputeUp(x) * d_out)

    down = layer.ComputeDown(d_out, outputs, x)
    d_in, dw, db = down
    if layer.has_params_:
        assert dw.shape == layer.w_.shape and db.shape == layer.b_.shape
        np.testing.assert_allclose(dw, numeric_gradient(loss, layer.w_, eps) / batch, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(db, numeric_gradient(loss, layer.b_, eps) / batch, rtol=1e-5, atol=1e-7)
    else:
        assert dw is None and db is None
    if layer.is_input_:
        assert d_in is None
    else:
        assert d_in.shape == x.shape
        np.testing.assert_allclose(d_in, numeric_gradient(loss, x, eps), rtol=1e-5, atol=1e-7)
    return d_out, outputs, down


def assert_same_results(a, b, **tol):
    for one, two in zip(a, b):
        if one is None or two is None:
            assert one is None and two is None
        else:
            assert np.shape(one) == np.shape(two)
            np.testing.assert_allclose(two, one, **tol)


def refuse_sizes_that_leave_rows_out(layer, h, w, c, seed):
    """The drawn input size, if the layer's windows end on its last padded pixel along both
    axes; else Initialize must refuse it (ConfigError naming the axis, or method 2's own
    limit), and the sizes on which they do fit, the next ones up, are returned."""
    k, s, p = layer.kernel_size_, layer.stride_, layer.padding_
    fit_h, fit_w = fitting_size(h, k, s, p), fitting_size(w, k, s, p)
    if (fit_h, fit_w) != (h, w):
        event("input size refused: the windows leave rows or columns out")
        if getattr(layer, "conv_method_", 1) == 2 and min(h, w) + p < k:
            message = "method2"
        else:
            message = rf"along {'y' if fit_h != h else 'x'} is [-0-9.e+]+, not a whole number >= 1"
        with pytest.raises(ConfigError, match=message):
            quiet_initialize(layer, h, w, c, seed)
    return fit_h, fit_w


@st.composite
def conv_layer_cases(draw):
    k = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, k - 1))
    lo = max(1, k - 2 * padding)
    return dict(k=k, stride=stride, padding=padding, channels=draw(st.integers(1, 3)),
                num_channels=draw(st.integers(1, 3)), batch=draw(st.integers(1, 2)),
                size_y=draw(st.integers(lo, lo + 4)), size_x=draw(st.integers(lo, lo + 4)),
                method=draw(st.sampled_from(["method1", "method2"])),
                role=draw(st.sampled_from(["hidden", "input", "output"])),
                flat=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=CONV_LAYER_CASES, **FUZZ)
@given(conv_layer_cases())
def test_conv_layer_derivatives_match_central_differences_and_both_methods_agree(case):
    k, s, p, role = case["k"], case["stride"], case["padding"], case["role"]
    n, c, h, w, n_out = case["batch"], case["channels"], case["size_y"], case["size_x"], case["num_channels"]
    rng = np.random.default_rng(case["seed"])
    method = case["method"]
    h, w = refuse_sizes_that_leave_rows_out(conv_layer(k, s, p, n_out, method, role), h, w, c, case["seed"])
    method2_fits = min(h, w) + p >= k
    if method == "method2" and not method2_fits:
        with pytest.raises(ConfigError, match="method2"):
            quiet_initialize(conv_layer(k, s, p, n_out, method, role), h, w, c, case["seed"])
        method = "method1"
    event(f"conv layer checked numerically: {method}")
    layer = conv_layer(k, s, p, n_out, method, role)
    out_y, out_x = window_size(h, k, s, p), window_size(w, k, s, p)
    assert quiet_initialize(layer, h, w, c, case["seed"]) == (out_y, out_x, n_out)
    layer.b_ = rng.uniform(-0.2, 0.2, layer.b_.shape)
    x = rng.standard_normal((n, c, h, w))
    pre = cross_correlation_reference(x, layer.w_, layer.b_, k, s, p)
    if role != "output":
        assume(np.abs(pre).min() > 1e-4)  # no ReLU kink within reach of the differences
    if case["flat"]:
        x = x.reshape(n, -1)
    np.testing.assert_allclose(layer.ComputeUp(x), activation(pre, role), rtol=1e-10, atol=1e-12)
    d_out, outputs, down = check_derivatives(layer, x, rng)

    other = "method2" if method == "method1" else "method1"
    twin = conv_layer(k, s, p, n_out, other, role)
    if other == "method2" and not method2_fits:
        with pytest.raises(ConfigError, match="method2"):
            quiet_initialize(twin, h, w, c, case["seed"])
        return
    quiet_initialize(twin, h, w, c, case["seed"] + 1)
    twin.w_, twin.b_ = layer.w_.copy(), layer.b_.copy()
    twin_outputs = twin.ComputeUp(x)
    np.testing.assert_allclose(twin_outputs, outputs, rtol=1e-10, atol=1e-13)
    assert_same_results(down, twin.ComputeDown(d_out, twin_outputs, x), rtol=1e-10, atol=1e-13)


@st.composite
def maxpool_layer_cases(draw):
    k = draw(st.integers(1, 3))
    padding = draw(st.integers(0, k // 2))
    lo = max(1, k - 2 * padding)
    return dict(k=k, stride=draw(st.integers(1, 3)), padding=padding, channels=draw(st.integers(1, 3)),
                batch=draw(st.integers(1, 2)), size_y=draw(st.integers(lo, lo + 5)),
                size_x=draw(st.integers(lo, lo + 5)), role=draw(st.sampled_from(["hidden", "input"])),
                flat=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=MAXPOOL_LAYER_CASES, **FUZZ)
@given(maxpool_layer_cases())
def test_maxpool_layer_input_derivatives_match_central_differences(case):
    k, s, p = case["k"], case["stride"], case["padding"]
    n, c, h, w = case["batch"], case["channels"], case["size_y"], case["size_x"]
    rng = np.random.default_rng(case["seed"])
    h, w = refuse_sizes_that_leave_rows_out(pool_layer(k, s, p, case["role"]), h, w, c, case["seed"])
    layer = pool_layer(k, s, p, case["role"])
    assert quiet_initialize(layer, h, w, c, case["seed"]) == (window_size(h, k, s, p), window_size(w, k, s, p), c)
    # Distinct values 0.1 apart: no ties, and the differences never change a winner.
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) / 10.0 - 1.0
    expected, _, _ = maxpool_reference(x, k, s, p)
    if case["flat"]:
        x = x.reshape(n, -1)
    np.testing.assert_array_equal(layer.ComputeUp(x), expected)
    check_derivatives(layer, x, rng, eps=1e-4)


@st.composite
def fc_layer_cases(draw):
    if draw(st.booleans()):
        input_shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)))
    else:
        input_shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4)),
                       draw(st.integers(1, 4)))
    return dict(input_shape=input_shape, num_channels=draw(st.integers(1, 5)),
                role=draw(st.sampled_from(["hidden", "input", "output"])), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=FC_LAYER_CASES, **FUZZ)
@given(fc_layer_cases())
def test_fc_layer_derivatives_match_central_differences(case):
    shape, n_out, role = case["input_shape"], case["num_channels"], case["role"]
    rng = np.random.default_rng(case["seed"])
    layer = fc_layer(n_out, role)
    fan_in = int(np.prod(shape[1:]))
    assert quiet_initialize(layer, 1, fan_in, 1, case["seed"]) == (1, 1, n_out)
    layer.b_ = rng.uniform(-0.2, 0.2, layer.b_.shape)
    x = rng.standard_normal(shape)
    pre = x.reshape(shape[0], -1) @ layer.w_.T + layer.b_
    if role != "output":
        assume(np.abs(pre).min() > 1e-4)
    np.testing.assert_allclose(layer.ComputeUp(x), activation(pre, role), rtol=1e-12, atol=1e-14)
    check_derivatives(layer, x, rng)


LAYER_LAYOUTS = ("C", "F", "flip", "strided", "transposed", "readonly", "broadcast", "byteswapped",
                 "flat", "flat F", "flat flip", "flat strided")
LAYER_DTYPES = (np.float64, np.float64, np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)


@st.composite
def layer_layout_cases(draw):
    kind = draw(st.sampled_from(["method1", "method2", "maxpool", "fc"]))
    k = draw(st.integers(1, 4))
    padding = draw(st.integers(0, k // 2 if kind == "maxpool" else k - 1))
    lo = max(1, k - 2 * padding, k - padding if kind == "method2" else 1)
    return dict(kind=kind, k=k, stride=draw(st.integers(1, 3)), padding=padding,
                channels=draw(st.integers(1, 3)), num_channels=draw(st.integers(1, 3)),
                batch=draw(st.integers(1, 3)), size_y=draw(st.integers(lo, lo + 4)),
                size_x=draw(st.integers(lo, lo + 4)),
                role=draw(st.sampled_from(["hidden", "input"] if kind == "maxpool" else ["hidden", "input", "output"])),
                layout=draw(st.sampled_from(LAYER_LAYOUTS)), dtype=draw(st.sampled_from(LAYER_DTYPES)),
                wrong_size=draw(st.integers(0, 9)) == 0, seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=LAYER_LAYOUT_CASES, **FUZZ)
@given(layer_layout_cases())
def test_layers_give_the_contiguous_float64_answer_for_any_layout_or_dtype(case):
    """float64 inputs in any layout must give the answer of their contiguous copy; other
    real dtypes that answer (instead of raising ValueError) must give the answer of their
    float64 copy; inputs of the wrong size raise ValueError. Inputs never change."""
    kind, role, seed = case["kind"], case["role"], case["seed"]
    n, c, h, w = case["batch"], case["channels"], case["size_y"], case["size_x"]
    rng = np.random.default_rng(seed)
    if kind == "maxpool":
        layer = pool_layer(case["k"], case["stride"], case["padding"], role)
    elif kind == "fc":
        layer = fc_layer(case["num_channels"], role)
    else:
        layer = conv_layer(case["k"], case["stride"], case["padding"], case["num_channels"], kind, role)
    if kind != "fc":  # sizes on which the windows fit (the others are refused: the layer tests)
        h, w = (fitting_size(size, case["k"], case["stride"], case["padding"]) for size in (h, w))
    quiet_initialize(layer, h, w, c, seed)
    if layer.has_params_:
        layer.b_ = rng.uniform(-0.2, 0.2, layer.b_.shape)
    layout, dtype = case["layout"], np.dtype(case["dtype"])
    shape = (n, c, h, w + 1 if case["wrong_size"] else w)
    values = make_values(shape, dtype, rng, "distinct" if kind == "maxpool" else "uniform")
    if layout.startswith("flat"):
        values, layout = values.reshape(n, -1), layout.replace("flat", "").strip() or "C"
    x = arrange(values, layout)
    before = snapshot(x)
    event(f"layer input: {case['layout']} {dtype}{' wrong size' if case['wrong_size'] else ''}")
    if case["wrong_size"]:
        with pytest.raises(ValueError):
            layer.ComputeUp(x)
        assert_unchanged(x, before)
        return

    x64 = np.array(x, dtype=np.float64, order="C")
    expected_out = layer.ComputeUp(x64)
    d_out = rng.standard_normal(expected_out.shape)
    expected_down = layer.ComputeDown(d_out, expected_out, x64)
    must_answer = dtype == np.float64 and x.dtype.isnative
    tol = dict(rtol=1e-12, atol=1e-14) if must_answer else dict(rtol=1e-6, atol=1e-7)
    try:
        out = layer.ComputeUp(x)
        np.testing.assert_allclose(out, expected_out, **tol)
        assert out.shape == expected_out.shape
        down = layer.ComputeDown(d_out, out, x)
    except ValueError:
        if must_answer:
            raise
        event(f"ValueError from {kind} for {case['layout']} {dtype}")
    else:
        assert_same_results(expected_down, down, **tol)
        if down[0] is not None:
            assert down[0].shape == x.shape
    assert_unchanged(x, before)
