"""ConvLayer: both methods against an explicit cross-correlation loop and central
differences, and against each other, at strides 1 to 3 and every padding; method 1's
derivatives the same bits whatever the memory layout it is given; input sizes on which the
windows do not end on the last padded pixel refused with a ConfigError."""

import numpy as np
import pytest
from conftest import methods, numeric_gradient, piece
from references import fitting_size

from conv_layer import ConvLayer
from plumbing.errors import ConfigError


def fitting_shape(k, stride, padding, channels, near=(7, 6)):
    """(H, W, C) about `near` (H and W different) on which the windows end on the last padded
    pixel: the layer refuses sizes that would leave input rows out."""
    size_y = fitting_size(near[0], k, stride, padding)
    size_x = fitting_size(near[1], k, stride, padding)
    if size_x == size_y:
        size_x = fitting_size(size_y + 1, k, stride, padding)
    return size_y, size_x, channels


def make_conv(method, k=3, stride=1, padding=0, in_shape=(7, 7, 2), num_channels=3, role="hidden", seed=0):
    layer = ConvLayer({"name": "c", "type": "CONVOLUTIONAL", "num_channels": num_channels,
                       "kernel_size": k, "stride": stride, "padding": padding, "convolve_method": f"method{method}",
                       "init_wt": 0.3, "epsilon": 0.1, "momentum": 0.9, "l2_decay": 0.0})
    if role == "input":
        layer.SetAsInput()
    if role == "output":
        layer.SetAsOutput()
    layer.Initialize(*in_shape, rng=np.random.default_rng(seed))
    layer.b_ = np.random.default_rng(seed + 1).uniform(-0.2, 0.2, layer.b_.shape)
    return layer


def cross_correlation_reference(x, w, b, k, s, p):
    """out[n, f, y, x] = b[f] + sum_{c,i,j} w[f, c, i, j] * in[n, c, s*y + i - p, s*x + j - p]."""
    n_img, n_ch, h, wd = x.shape
    w = w.reshape(-1, n_ch, k, k)
    out_y, out_x = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    out = np.zeros((n_img, w.shape[0], out_y, out_x))
    for n in range(n_img):
        for f in range(w.shape[0]):
            for y in range(out_y):
                for xx in range(out_x):
                    total = b[0, f]
                    for c in range(n_ch):
                        for i in range(k):
                            for j in range(k):
                                iy, ix = s * y + i - p, s * xx + j - p
                                if 0 <= iy < h and 0 <= ix < wd:
                                    total += w[f, c, i, j] * x[n, c, iy, ix]
                    out[n, f, y, xx] = total
    return out


@pytest.mark.parametrize("method", methods("ConvLayer.ComputeUp"))
@pytest.mark.parametrize("k,stride,padding", [(3, 1, 0), (3, 2, 1), (3, 3, 2), (5, 1, 2), (5, 2, 4), (2, 2, 1)])
def test_forward_matches_cross_correlation_loop(method, k, stride, padding):
    in_y, in_x, _ = in_shape = fitting_shape(k, stride, padding, 2)
    layer = make_conv(method, k, stride, padding, in_shape=in_shape)
    x = np.random.default_rng(2).standard_normal((2, 2, in_y, in_x))
    pre = cross_correlation_reference(x, layer.w_, layer.b_, k, stride, padding)
    out = layer.ComputeUp(x)
    assert out.shape == pre.shape == (2, 3, (in_y + 2 * padding - k) // stride + 1,
                                      (in_x + 2 * padding - k) // stride + 1)
    np.testing.assert_allclose(out, np.maximum(pre, 0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", methods("ConvLayer.ComputeUp"))
def test_initialize_returns_output_size_and_accepts_flat_inputs(method):
    layer = make_conv(method, k=3, stride=2, padding=1, in_shape=(7, 5, 2))
    assert (layer.output_size_y_, layer.output_size_x_) == (4, 3)
    x = np.random.default_rng(3).standard_normal((2, 2 * 7 * 5))
    np.testing.assert_array_equal(layer.ComputeUp(x), layer.ComputeUp(x.reshape(2, 2, 7, 5)))


def _check_gradients(layer, x, seed=0):
    rng = np.random.default_rng(seed)
    outputs = layer.ComputeUp(x)
    assert 0 < np.count_nonzero(outputs) < outputs.size  # the ReLU passes some units, not all
    r = rng.standard_normal(outputs.shape)

    def loss():
        return np.sum(layer.ComputeUp(x) * r)

    d_in, dw, db = layer.ComputeDown(r, outputs, x)
    batch = x.shape[0]
    assert dw.shape == layer.w_.shape and db.shape == layer.b_.shape
    np.testing.assert_allclose(dw, numeric_gradient(loss, layer.w_) / batch, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, numeric_gradient(loss, layer.b_) / batch, rtol=1e-5, atol=1e-7)
    if layer.is_input_:
        assert d_in is None
    else:
        assert d_in.shape == x.shape
        np.testing.assert_allclose(d_in, numeric_gradient(loss, x), rtol=1e-5, atol=1e-7)


GRADIENT_CASES = [(k, s, p) for k in (3, 5) for s in (1, 2) for p in range(k)]


@pytest.mark.parametrize("method", methods("ConvLayer.ComputeDown"))
@pytest.mark.parametrize("k,stride,padding", GRADIENT_CASES)
def test_derivatives_match_central_differences(method, k, stride, padding):
    in_y, in_x, _ = in_shape = fitting_shape(k, stride, padding, 2)
    layer = make_conv(method, k, stride, padding, in_shape=in_shape, num_channels=3, seed=k + stride + padding)
    x = np.random.default_rng(10 * k + stride).standard_normal((2, 2, in_y, in_x))
    _check_gradients(layer, x, seed=padding)


@pytest.mark.parametrize("method", methods("ConvLayer.ComputeDown"))
@pytest.mark.parametrize("in_channels,out_channels", [(1, 1), (1, 4), (3, 2), (4, 5)])
def test_derivatives_match_central_differences_for_channel_counts(method, in_channels, out_channels):
    layer = make_conv(method, 3, 1, 1, in_shape=(5, 5, in_channels), num_channels=out_channels,
                      seed=in_channels * out_channels)
    x = np.random.default_rng(in_channels).standard_normal((3, in_channels, 5, 5))
    _check_gradients(layer, x, seed=out_channels)


@pytest.mark.parametrize("method", methods("ConvLayer.ComputeDown"))
@pytest.mark.parametrize("stride", [1, 2])
def test_input_layer_returns_none_as_input_derivative(method, stride):
    layer = make_conv(method, 3, stride, 1, role="input")
    x = np.random.default_rng(4).standard_normal((2, 2, 7, 7))
    _check_gradients(layer, x)


def _same_weights_pair(k, stride, padding, in_shape, num_channels, role="hidden"):
    one = make_conv(1, k, stride, padding, in_shape=in_shape, num_channels=num_channels, role=role)
    two = make_conv(2, k, stride, padding, in_shape=in_shape, num_channels=num_channels, role=role, seed=77)
    two.w_, two.b_ = one.w_.copy(), one.b_.copy()
    return one, two


METHOD_CASES = [(k, s, p) for k in (2, 3, 5) for s in (1, 2, 3) for p in range(k)]


@piece("ConvLayer.ComputeDown")
@pytest.mark.parametrize("k,stride,padding", METHOD_CASES)
def test_method2_matches_method1_outputs_and_derivatives(k, stride, padding):
    in_y, in_x, _ = in_shape = fitting_shape(k, stride, padding, 3, near=(9, 8))
    one, two = _same_weights_pair(k, stride, padding, in_shape, num_channels=4)
    rng = np.random.default_rng(k * 100 + stride * 10 + padding)
    x = rng.standard_normal((3, 3, in_y, in_x))
    out1, out2 = one.ComputeUp(x), two.ComputeUp(x)
    np.testing.assert_allclose(out2, out1, rtol=1e-10, atol=1e-13)
    d_out = rng.standard_normal(out1.shape)
    for a, b in zip(one.ComputeDown(d_out, out1, x), two.ComputeDown(d_out, out2, x)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("method", methods("ConvLayer.ComputeDown"))
def test_output_layer_applies_softmax_over_all_units_and_passes_derivatives_unchanged(method):
    layer = make_conv(method, 3, 1, 1, in_shape=(5, 5, 2), num_channels=3, role="output", seed=4)
    x = np.random.default_rng(4).standard_normal((2, 2, 5, 5))
    pre = cross_correlation_reference(x, layer.w_, layer.b_, 3, 1, 1)  # no ReLU: softmax instead
    e = np.exp(pre.reshape(2, -1) - pre.reshape(2, -1).max(axis=1, keepdims=True))
    out = layer.ComputeUp(x)
    np.testing.assert_allclose(out, (e / e.sum(axis=1, keepdims=True)).reshape(pre.shape), rtol=1e-10)
    # The net gives an output layer derivatives w.r.t. its softmax input: no ReLU mask.
    d_out = np.random.default_rng(5).standard_normal(out.shape)
    d_in, dw, db = layer.ComputeDown(d_out, out, x)
    np.testing.assert_allclose(db.reshape(-1), d_out.sum(axis=(0, 2, 3)) / 2, rtol=1e-12)
    twin = make_conv(3 - method, 3, 1, 1, in_shape=(5, 5, 2), num_channels=3, role="output", seed=4)
    twin.w_, twin.b_ = layer.w_.copy(), layer.b_.copy()
    for a, b in zip((d_in, dw, db), twin.ComputeDown(d_out, out, x)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@piece("ConvLayer.ComputeDown")
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_method2_matches_method1_as_input_layer_with_flat_inputs(stride):
    size = fitting_size(10, 3, stride, 1)
    one, two = _same_weights_pair(3, stride, 1, (size, size, 1), num_channels=2, role="input")
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((4, size * size))
    out1, out2 = one.ComputeUp(x), two.ComputeUp(x)
    np.testing.assert_allclose(out2, out1, rtol=1e-10, atol=1e-13)
    d_out = rng.standard_normal(out1.shape)
    r1, r2 = one.ComputeDown(d_out, out1, x), two.ComputeDown(d_out, out2, x)
    assert r1[0] is None and r2[0] is None
    np.testing.assert_allclose(r2[1], r1[1], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(r2[2], r1[2], rtol=1e-10, atol=1e-13)


def test_kernel_larger_than_padded_input_is_a_config_error():
    with pytest.raises(ConfigError, match=r"layer 'c': key 'kernel_size'/'stride'/'padding': output size "
                                          r"\(3 \+ 2\*0 - 5\) / 1 \+ 1 along y is -1, not a whole number >= 1"):
        make_conv(1, k=5, padding=0, in_shape=(3, 8, 1))


@pytest.mark.parametrize("method", [1, 2])
@pytest.mark.parametrize("k,stride,padding,in_shape,axis", [(3, 2, 1, (8, 7, 1), "y"), (5, 2, 2, (7, 8, 1), "x"),
                                                             (3, 3, 0, (9, 10, 2), "x"), (2, 2, 1, (5, 6, 1), "y")])
def test_windows_that_leave_input_rows_out_are_a_config_error(method, k, stride, padding, in_shape, axis):
    # (n + 2p - k) / s + 1 not whole: the last rows or columns would be silently dropped, so
    # Initialize refuses it, naming the layer, the keys and the axis.
    with pytest.raises(ConfigError, match=rf"layer 'c': key 'kernel_size'/'stride'/'padding': output size "
                                          rf".* along {axis} is [0-9.]+, not a whole number >= 1"):
        make_conv(method, k, stride, padding, in_shape=in_shape)


@piece("ConvLayer.ComputeDown")
def test_method2_refuses_inputs_too_small_for_its_weight_derivative():
    # 3 + 2*1 >= 5 is fine for method 1, but method 2 needs 3 + 1 >= 5.
    make_conv(1, k=5, padding=1, in_shape=(3, 3, 1))
    with pytest.raises(ConfigError, match="method2"):
        make_conv(2, k=5, padding=1, in_shape=(3, 3, 1))


# Every kernel size, stride and padding; the three roles in turn (each role meets every k and s).
STRIDE_CASES = [(k, s, p, ("hidden", "input", "output")[(k + s + p) % 3]) for k in (2, 3, 5) for s in (2, 3)
                for p in range(k)]


@pytest.mark.parametrize("k,stride,padding,role", STRIDE_CASES)
def test_method1_at_a_stride_matches_method2_and_central_differences(k, stride, padding, role):
    # Method 1 reads every stride in place going up; going down it puts the derivatives on the
    # stride-1 grid (zeros where the stride skipped an output) for the input derivative. All
    # of it against method 2 and against central differences: outputs, dC/dinputs, dw, db.
    in_y, in_x, _ = in_shape = fitting_shape(k, stride, padding, 2, near=(8, 7))
    one, two = _same_weights_pair(k, stride, padding, in_shape, num_channels=3, role=role)
    rng = np.random.default_rng(1000 * k + 100 * stride + 10 * padding + len(role))
    x = rng.standard_normal((2, 2, in_y, in_x))
    out1, out2 = one.ComputeUp(x), two.ComputeUp(x)
    assert out1.shape == (2, 3, (in_y + 2 * padding - k) // stride + 1, (in_x + 2 * padding - k) // stride + 1)
    np.testing.assert_allclose(out1, out2, rtol=1e-10, atol=1e-13)
    d_out = rng.standard_normal(out1.shape)
    got, want = one.ComputeDown(d_out, out1, x), two.ComputeDown(d_out, out2, x)
    for a, b in zip(got, want, strict=True):
        if b is None:
            assert a is None and role == "input"
        else:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    if role == "output":
        # The net gives an output layer derivatives w.r.t. its softmax input: those of a loss
        # of the pre-activations (the loop reference's, which the outputs matched above).
        def loss():
            return np.sum(_pre_activations(one, x) * d_out)
    else:
        def loss():
            return np.sum(one.ComputeUp(x) * d_out)
    d_in, dw, db = got
    np.testing.assert_allclose(dw, numeric_gradient(loss, one.w_) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, numeric_gradient(loss, one.b_) / 2, rtol=1e-5, atol=1e-7)
    if role != "input":
        np.testing.assert_allclose(d_in, numeric_gradient(loss, x), rtol=1e-5, atol=1e-7)


def _pre_activations(layer, x):
    """The layer's outputs before the softmax: its forward pass, which the loop reference has
    checked above, without the activation (numpy's, so that central differences stay quick)."""
    k, s, p = layer.kernel_size_, layer.stride_, layer.padding_
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))), (k, k),
                                                       axis=(2, 3))[:, :, ::s, ::s]
    w = layer.w_.reshape(layer.num_channels_, x.shape[1], k, k)
    return np.einsum("ncyxij,fcij->nfyx", windows, w) + layer.b_.reshape(1, -1, 1, 1)


def _transposed_copy(a):
    """a's values in a view whose last two axes are swapped in memory (not C-contiguous)."""
    view = np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    assert not view.flags.c_contiguous and np.array_equal(view, a)
    return view


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("role", ["hidden", "input", "output"])
@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (5, 1, 2), (3, 2, 1), (2, 3, 1), (5, 2, 0)])
def test_method1_gives_the_same_bits_for_a_contiguous_and_a_transposed_view_deriv(k, stride, padding, role, dtype):
    # The net hands ComputeDown whatever the layer above made: a view, in any memory layout.
    # The sums are added in one documented order whatever the layout, so every bit agrees;
    # maps of 13x12 and more positions make an order-dependent sum show.
    in_y, in_x, _ = in_shape = fitting_shape(k, stride, padding, 3, near=(27, 25))
    layer = make_conv(1, k, stride, padding, in_shape=in_shape, num_channels=5, role=role, seed=k * stride)
    layer.w_, layer.b_ = layer.w_.astype(dtype), layer.b_.astype(dtype)
    rng = np.random.default_rng(k + 10 * stride + 100 * padding)
    x = rng.standard_normal((4, 3, in_y, in_x)).astype(dtype)
    out = layer.ComputeUp(x)
    d_out = rng.standard_normal(out.shape).astype(dtype) * 1000 ** rng.uniform(-1, 1, out.shape).astype(dtype)
    want = layer.ComputeDown(d_out, out, x)
    for d_view, out_view, x_view in [(_transposed_copy(d_out), out, x), (_transposed_copy(d_out), _transposed_copy(out),
                                                                         _transposed_copy(x))]:
        got = layer.ComputeDown(d_view, out_view, x_view)
        for a, b in zip(got, want, strict=True):
            if b is None:
                assert a is None and role == "input"
                continue
            assert a.dtype == b.dtype == dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()

