"""Method 1 read in place (convolutions.correlate, correlate_weight_derivative) against
scipy.signal, and the numbers it promises: the same bits whatever the threads, the memory
layout, the batch or the other filters."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
from conftest import REPO_ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

import convolutions

HYPOTHESIS = settings(max_examples=40, deadline=None, derandomize=True)


def tolerance(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-11)


def padded(x, p):
    return np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))


def correlate_reference(x, w, b, s, p, relu):
    """scipy.signal.correlate2d of each channel, summed, every s-th output, + bias, ReLU."""
    xp = padded(x, p)
    n, k = x.shape[0], w.shape[0]
    out = []
    for i in range(n):
        maps = []
        for f in range(k):
            total = sum(scipy.signal.correlate2d(xp[i, c], w[f, c].astype(np.float64), mode="valid")
                        for c in range(x.shape[1]))
            maps.append(total[::s, ::s] + (0 if b is None else b[f]))
        out.append(maps)
    out = np.array(out)
    return np.maximum(out, 0) if relu else out


def weight_derivative_reference(x, d, k, s, p):
    """dw[f, c] = sum over images of correlate2d(padded x[n, c], d[n, f] spread s apart)."""
    xp = padded(x, p)
    n, c_in, k_out = x.shape[0], x.shape[1], d.shape[1]
    dw = np.zeros((k_out, c_in, k, k))
    for i in range(n):
        for f in range(k_out):
            spread = np.zeros(((d.shape[2] - 1) * s + 1, (d.shape[3] - 1) * s + 1))
            spread[::s, ::s] = d[i, f]
            for c in range(c_in):
                window = xp[i, c, :spread.shape[0] + k - 1, :spread.shape[1] + k - 1]
                dw[f, c] += scipy.signal.correlate2d(window, spread, mode="valid")
    return dw


@st.composite
def layer_cases(draw):
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k - 1))
    size_y = draw(st.integers(max(1, k - 2 * p), k + 9))
    size_x = draw(st.integers(max(1, k - 2 * p), k + 9))
    n = draw(st.integers(1, 6))  # fewer and more images than a weight-derivative share
    c_in = draw(st.integers(1, 20))  # fewer and more than a block's channels
    k_out = draw(st.integers(1, 40))  # fewer and more than a vector, and than two
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.uniform(-1, 1, (n, c_in, size_y, size_x)).astype(dtype)
    w = rng.uniform(-1, 1, (k_out, c_in, k, k)).astype(dtype)
    b = rng.uniform(-1, 1, k_out).astype(dtype) if draw(st.booleans()) else None
    return x, w, b, s, p, draw(st.booleans())


@HYPOTHESIS
@given(layer_cases())
def test_correlate_matches_scipy_for_any_stride_padding_and_channel_counts(case):
    x, w, b, s, p, relu = case
    out = convolutions.correlate(x, w, b, stride=s, padding=p, relu=relu)
    expected = correlate_reference(x, w, b, s, p, relu)
    assert out.dtype == x.dtype and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, **tolerance(x.dtype))


@HYPOTHESIS
@given(layer_cases())
def test_correlate_weight_derivative_matches_scipy(case):
    x, w, _, s, p, _ = case
    k = w.shape[2]
    out_y, out_x = (x.shape[2] + 2 * p - k) // s + 1, (x.shape[3] + 2 * p - k) // s + 1
    d = np.random.default_rng(1).uniform(-1, 1, (x.shape[0], w.shape[0], out_y, out_x)).astype(x.dtype)
    dw = convolutions.correlate_weight_derivative(x, d, k, stride=s, padding=p)
    assert dw.dtype == x.dtype and dw.shape == w.shape
    np.testing.assert_allclose(dw, weight_derivative_reference(x, d, k, s, p), **tolerance(x.dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,p", [(3, 1), (5, 2), (3, 0), (2, 1)])
def test_flipped_swapped_filters_give_the_input_derivative_as_scipy_full_convolution(k, p, dtype):
    # d_in[n, c] = sum over f of convolve2d(d[n, f], w[f, c], 'full'), cropped by the padding.
    rng = np.random.default_rng(k)
    w = rng.uniform(-1, 1, (20, 17, k, k)).astype(dtype)
    d = rng.uniform(-1, 1, (3, 20, 8, 9)).astype(dtype)
    h, wd = 8 + k - 1 - 2 * p, 9 + k - 1 - 2 * p  # the layer's input size
    got = convolutions.correlate(d, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), padding=k - 1 - p)
    full = np.array([[sum(scipy.signal.convolve2d(d[n, f].astype(np.float64), w[f, c].astype(np.float64))
                          for f in range(20)) for c in range(17)] for n in range(3)])
    expected = full[:, :, p:full.shape[2] - p, p:full.shape[3] - p]
    assert got.shape == expected.shape == (3, 17, h, wd)
    np.testing.assert_allclose(got, expected, **tolerance(dtype))


def test_small_integers_give_the_exact_sums():
    # Every product and partial sum is an integer below 2**24: exact in float32 too.
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.integers(-4, 5, (2, 5, 7, 6)).astype(dtype)
        w = rng.integers(-4, 5, (33, 5, 3, 3)).astype(dtype)
        exact = correlate_reference(x, w, None, 1, 1, False)
        np.testing.assert_array_equal(convolutions.correlate(x, w, padding=1), exact)
        d = rng.integers(-4, 5, (2, 33, 7, 6)).astype(dtype)
        np.testing.assert_array_equal(convolutions.correlate_weight_derivative(x, d, 3, padding=1),
                                      weight_derivative_reference(x, d, 3, 1, 1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_same_bits_whatever_the_layout_the_batch_and_the_other_filters(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 16, 9, 9)).astype(dtype)
    w = rng.standard_normal((40, 16, 3, 3)).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    whole = convolutions.correlate(x, w, b, padding=1, relu=True)
    # A transposed view, read through its strides, against the contiguous array.
    view = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(convolutions.correlate(view, w, b, padding=1, relu=True), whole)
    # One image alone, and one filter alone (other vector lanes, other blocks).
    np.testing.assert_array_equal(convolutions.correlate(x[5:6], w, b, padding=1, relu=True), whole[5:6])
    np.testing.assert_array_equal(convolutions.correlate(x, w[37:38], b[37:38], padding=1, relu=True),
                                  whole[:, 37:38])
    d = rng.standard_normal((7, 40, 9, 9)).astype(dtype)
    dw = convolutions.correlate_weight_derivative(x, d, 3, padding=1)
    d_view = np.ascontiguousarray(d.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(convolutions.correlate_weight_derivative(view, d_view, 3, padding=1), dw)
    np.testing.assert_array_equal(convolutions.correlate_weight_derivative(x, d[:, 3:4], 3, padding=1),
                                  dw[3:4])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bias_and_relu_are_those_of_numpy_nan_included(dtype):
    # The outputs are stored in tiles where the CPU has vectors for them, value by value at
    # the edges (40 filters, 81 positions: both): each must be act(sum + bias) as numpy
    # computes it, np.maximum(v, 0) letting NaN through.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 6, 9, 9)).astype(dtype)
    x[1, 2, 4, 4] = np.nan
    x[2, 0, 0, 8] = np.inf
    w = rng.standard_normal((40, 6, 3, 3)).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    sums = convolutions.correlate(x, w, padding=1)
    assert np.isnan(sums).any() and (sums < 0).any()
    expected = np.maximum(sums + b.reshape(1, -1, 1, 1), 0)
    np.testing.assert_array_equal(convolutions.correlate(x, w, b, padding=1, relu=True), expected)
    np.testing.assert_array_equal(convolutions.correlate(x, w, b, padding=1), sums + b.reshape(1, -1, 1, 1))
    finite = np.isfinite(x).all(axis=(1, 2, 3))
    np.testing.assert_allclose(sums[finite], correlate_reference(x[finite], w, None, 1, 1, False),
                               **tolerance(dtype))


def test_the_same_bits_on_one_thread_as_on_every_core():
    code = ("import numpy as np, convolutions, sys\n"
            "rng = np.random.default_rng(5)\n"
            "for dtype in (np.float32, np.float64):\n"
            "    x = rng.standard_normal((37, 16, 8, 8)).astype(dtype)\n"
            "    w = rng.standard_normal((32, 16, 3, 3)).astype(dtype)\n"
            "    d = rng.standard_normal((37, 32, 8, 8)).astype(dtype)\n"
            "    sys.stdout.buffer.write(convolutions.correlate(x, w, padding=1).tobytes())\n"
            "    sys.stdout.buffer.write(convolutions.correlate_weight_derivative(x, d, 3, padding=1).tobytes())\n")
    outputs = []
    for threads in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr.decode()
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1] == outputs[2]


def test_correlate_does_not_modify_its_arguments():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    d = rng.standard_normal((2, 4, 6, 6))
    copies = [a.copy() for a in (x, w, b, d)]
    convolutions.correlate(x, w, b, padding=1, relu=True)
    convolutions.correlate_weight_derivative(x, d, 3, padding=1)
    for a, c in zip((x, w, b, d), copies):
        np.testing.assert_array_equal(a, c)


def test_empty_batches_and_read_only_inputs():
    x = np.zeros((0, 3, 5, 5))
    assert convolutions.correlate(x, np.ones((4, 3, 3, 3))).shape == (0, 4, 3, 3)
    assert convolutions.correlate_weight_derivative(x, np.zeros((0, 4, 3, 3)), 3).shape == (4, 3, 3, 3)
    y = np.ones((1, 1, 3, 3))
    y.setflags(write=False)
    np.testing.assert_array_equal(convolutions.correlate(y, np.ones((1, 1, 3, 3)))[0, 0], [[9.0]])


X = np.zeros((2, 3, 6, 6))
W = np.zeros((4, 3, 3, 3))
BAD_CORRELATE = {
    "list inputs": (([[1.0]], W), {}, "must be a numpy array"),
    "int inputs": ((X.astype(int), W), {}, "float32 or float64"),
    "mixed dtypes": ((X, W.astype(np.float32)), {}, "dtype float32 but float64"),
    "3-d inputs": ((X[0], W), {}, r"\(K, C, k, k\)"),
    "channels differ": ((X, np.zeros((4, 2, 3, 3))), {}, "the inputs' C = 3"),
    "not square": ((X, np.zeros((4, 3, 3, 2))), {}, r"\(K, C, k, k\)"),
    "bias size": ((X, W), dict(bias=np.zeros(5)), "bias has 5 values, expected 4"),
    "padding": ((X, W), dict(padding=3), "padding 3 out of range"),
    "stride 0": ((X, W), dict(stride=0), "must be >= 1"),
    "kernel too big": ((np.zeros((1, 3, 2, 2)), W), {}, "larger than the padded input"),
}


@pytest.mark.parametrize("name", sorted(BAD_CORRELATE))
def test_correlate_bad_arguments_raise_value_error(name):
    args, kwargs, message = BAD_CORRELATE[name]
    with pytest.raises(ValueError, match=message):
        convolutions.correlate(*args, **kwargs)


BAD_WEIGHT = {
    "wrong output size": ((X, np.zeros((2, 4, 5, 5)), 3), {}, r"expected \(2, K, 4, 4\)"),
    "batch differs": ((X, np.zeros((3, 4, 4, 4)), 3), {}, r"expected \(2, K, 4, 4\)"),
    "mixed dtypes": ((X, np.zeros((2, 4, 4, 4), np.float32), 3), {}, "dtype float32 but float64"),
    "kernel size": ((X, np.zeros((2, 4, 4, 4)), 1.5), {}, "kernel_size must be an integer"),
    "padding": ((X, np.zeros((2, 4, 4, 4)), 3), dict(padding=-1), "padding -1 out of range"),
}


@pytest.mark.parametrize("name", sorted(BAD_WEIGHT))
def test_correlate_weight_derivative_bad_arguments_raise_value_error(name):
    args, kwargs, message = BAD_WEIGHT[name]
    with pytest.raises(ValueError, match=message):
        convolutions.correlate_weight_derivative(*args, **kwargs)
