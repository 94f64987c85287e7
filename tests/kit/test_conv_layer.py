"""ConvLayer: both methods against an explicit cross-correlation loop and central
differences, and against each other."""

import numpy as np
import pytest

from conftest import numeric_gradient
from conv_layer import ConvLayer
from plumbing.errors import ConfigError


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


@pytest.mark.parametrize("method", [1, 2])
@pytest.mark.parametrize("k,stride,padding", [(3, 1, 0), (3, 2, 1), (3, 3, 2), (5, 1, 2), (5, 2, 4), (2, 2, 1)])
def test_forward_matches_cross_correlation_loop(method, k, stride, padding):
    layer = make_conv(method, k, stride, padding, in_shape=(7, 6, 2))
    x = np.random.default_rng(2).standard_normal((2, 2, 7, 6))
    pre = cross_correlation_reference(x, layer.w_, layer.b_, k, stride, padding)
    out = layer.ComputeUp(x)
    assert out.shape == pre.shape == (2, 3, (7 + 2 * padding - k) // stride + 1, (6 + 2 * padding - k) // stride + 1)
    np.testing.assert_allclose(out, np.maximum(pre, 0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", [1, 2])
def test_initialize_returns_output_size_and_accepts_flat_inputs(method):
    layer = make_conv(method, k=3, stride=2, padding=1, in_shape=(8, 6, 2))
    assert (layer.output_size_y_, layer.output_size_x_) == (4, 3)
    x = np.random.default_rng(3).standard_normal((2, 2 * 8 * 6))
    np.testing.assert_array_equal(layer.ComputeUp(x), layer.ComputeUp(x.reshape(2, 2, 8, 6)))


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


@pytest.mark.parametrize("method", [1, 2])
@pytest.mark.parametrize("k,stride,padding", GRADIENT_CASES)
def test_derivatives_match_central_differences(method, k, stride, padding):
    layer = make_conv(method, k, stride, padding, in_shape=(7, 6, 2), num_channels=3, seed=k + stride + padding)
    x = np.random.default_rng(10 * k + stride).standard_normal((2, 2, 7, 6))
    _check_gradients(layer, x, seed=padding)


@pytest.mark.parametrize("method", [1, 2])
@pytest.mark.parametrize("in_channels,out_channels", [(1, 1), (1, 4), (3, 2), (4, 5)])
def test_derivatives_match_central_differences_for_channel_counts(method, in_channels, out_channels):
    layer = make_conv(method, 3, 1, 1, in_shape=(5, 5, in_channels), num_channels=out_channels,
                      seed=in_channels * out_channels)
    x = np.random.default_rng(in_channels).standard_normal((3, in_channels, 5, 5))
    _check_gradients(layer, x, seed=out_channels)


@pytest.mark.parametrize("method", [1, 2])
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


@pytest.mark.parametrize("k,stride,padding", METHOD_CASES)
def test_method2_matches_method1_outputs_and_derivatives(k, stride, padding):
    in_shape = (9, 8, 3)
    one, two = _same_weights_pair(k, stride, padding, in_shape, num_channels=4)
    rng = np.random.default_rng(k * 100 + stride * 10 + padding)
    x = rng.standard_normal((3, 3, 9, 8))
    out1, out2 = one.ComputeUp(x), two.ComputeUp(x)
    np.testing.assert_allclose(out2, out1, rtol=1e-10, atol=1e-13)
    d_out = rng.standard_normal(out1.shape)
    for a, b in zip(one.ComputeDown(d_out, out1, x), two.ComputeDown(d_out, out2, x)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("method", [1, 2])
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


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_method2_matches_method1_as_input_layer_with_flat_inputs(stride):
    one, two = _same_weights_pair(3, stride, 1, (10, 10, 1), num_channels=2, role="input")
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((4, 100))
    out1, out2 = one.ComputeUp(x), two.ComputeUp(x)
    np.testing.assert_allclose(out2, out1, rtol=1e-10, atol=1e-13)
    d_out = rng.standard_normal(out1.shape)
    r1, r2 = one.ComputeDown(d_out, out1, x), two.ComputeDown(d_out, out2, x)
    assert r1[0] is None and r2[0] is None
    np.testing.assert_allclose(r2[1], r1[1], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(r2[2], r1[2], rtol=1e-10, atol=1e-13)


def test_kernel_larger_than_padded_input_is_a_config_error():
    with pytest.raises(ConfigError, match="'c'"):
        make_conv(1, k=5, padding=0, in_shape=(3, 8, 1))


def test_method2_refuses_inputs_too_small_for_its_weight_derivative():
    # 3 + 2*1 >= 5 is fine for method 1, but method 2 needs 3 + 1 >= 5.
    make_conv(1, k=5, padding=1, in_shape=(3, 3, 1))
    with pytest.raises(ConfigError, match="method2"):
        make_conv(2, k=5, padding=1, in_shape=(3, 3, 1))


def _method1_step(layer, x, d_out, training, chunk_bytes):
    layer.training_, layer.patch_matrix_.chunk_bytes_ = training, chunk_bytes
    out = layer.ComputeUp(x)
    return out, layer.ComputeDown(d_out, out, x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (5, 2, 2), (2, 3, 0)])
@pytest.mark.parametrize("chunk_images", [1, 2, 4])
def test_method1_training_step_keeps_its_patches_and_chunks_its_input_derivative_to_the_same_bits(
        k, stride, padding, chunk_images, dtype):
    # A training step keeps the forward pass's patches for the weight derivative, and makes
    # the input derivative a few images at a time (here 1, 2 or 4 of 5: the last chunk
    # shorter; float32 in one product). Both give exactly the numbers of one im2col and one
    # product per pass, and those match central differences.
    layer = make_conv(1, k, stride, padding, in_shape=(9, 8, 3), num_channels=4, seed=k * stride)
    layer.patch_matrix_.in_place_ = False  # the patch matrix, as for strides above 1
    rng = np.random.default_rng(k + 10 * chunk_images)
    x = rng.standard_normal((5, 3, 9, 8)).astype(dtype)
    d_out = rng.standard_normal((5, 4, layer.output_size_y_, layer.output_size_x_)).astype(dtype)
    layer.w_, layer.b_ = layer.w_.astype(dtype), layer.b_.astype(dtype)
    per_image = layer.w_.shape[1] * layer.output_size_y_ * layer.output_size_x_ * x.itemsize
    plain_out, plain = _method1_step(layer, x, d_out, training=False, chunk_bytes=1 << 40)
    assert layer.patch_matrix_.kept_ is None
    layer.training_ = True
    assert layer.ComputeUp(x) is not None and layer.patch_matrix_.kept_[0] is x
    out, step = _method1_step(layer, x, d_out, training=True, chunk_bytes=chunk_images * per_image)
    assert layer.patch_matrix_.kept_ is None  # taken by ComputeDown: no batch of patches held after
    np.testing.assert_array_equal(out, plain_out)
    for got, want in zip(step, plain):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    if dtype == np.float64:
        layer.training_ = False
        _check_gradients(layer, x)


def test_method1_uses_kept_patches_only_for_the_inputs_they_came_from():
    # ComputeDown given other inputs than the last ComputeUp (a copy, even with equal values)
    # makes their patches anew: the derivatives are those of the inputs it was given.
    layer = make_conv(1, 3, 1, 1, in_shape=(6, 6, 2), num_channels=3, seed=5)
    rng = np.random.default_rng(6)
    x, other = rng.standard_normal((2, 2, 2, 6, 6))
    d_out = rng.standard_normal((2, 3, 6, 6))
    out_other = layer.ComputeUp(other)
    want = layer.ComputeDown(d_out, out_other, other)
    layer.training_ = True
    layer.ComputeUp(x)
    got = layer.ComputeDown(d_out, out_other, other.copy())
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,padding,num_channels,is_input,is_output", [
    (3, 1, 16, False, False), (5, 2, 33, False, False), (3, 0, 4, True, False), (2, 1, 10, False, True)])
def test_method1_read_in_place_gives_the_numbers_of_the_patch_matrix(k, padding, num_channels, is_input,
                                                                     is_output, dtype):
    # Stride 1 reads the patches in place; the patch matrix is the other way to the same sums.
    results = []
    for in_place in (True, False):
        layer = make_conv(1, k, 1, padding, in_shape=(9, 8, 17), num_channels=num_channels, seed=k)
        assert layer.patch_matrix_.in_place_
        layer.patch_matrix_.in_place_ = in_place
        layer.is_input_, layer.is_output_ = is_input, is_output
        layer.w_, layer.b_ = layer.w_.astype(dtype), (layer.b_ + 0.01).astype(dtype)
        rng = np.random.default_rng(7)
        x = rng.standard_normal((6, 17, 9, 8)).astype(dtype)
        out = layer.ComputeUp(x)
        d_out = rng.standard_normal(out.shape).astype(dtype)
        results.append((out,) + layer.ComputeDown(d_out, out, x))
    for got, want in zip(*results):
        if want is None:
            assert got is None and is_input
            continue
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **(dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else
                                                 dict(rtol=1e-11, atol=1e-12)))


def test_method1_with_a_stride_uses_the_patch_matrix():
    assert not make_conv(1, 3, 2, 1, in_shape=(9, 8, 3)).patch_matrix_.in_place_
