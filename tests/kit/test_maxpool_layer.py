"""MaxPoolLayer: forward pass against numpy, backward pass against central differences."""

import numpy as np
import pytest
from conftest import numeric_gradient
from references import fitting_size

from maxpool_layer import MaxPoolLayer
from plumbing.errors import ConfigError


def make_pool(k, stride=None, padding=0, in_shape=(6, 6, 3), role="hidden"):
    proto = {"name": "pool", "type": "MAXPOOL", "kernel_size": k, "padding": padding}
    if stride is not None:
        proto["stride"] = stride
    layer = MaxPoolLayer(proto)
    if role == "input":
        layer.SetAsInput()
    out = layer.Initialize(*in_shape)
    return layer, out


def distinct_inputs(shape, seed):
    """A random permutation of distinct values: no ties anywhere, so the max is differentiable."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(np.prod(shape), dtype=float)).reshape(shape) / 10.0 - 3.0


def test_stride_defaults_to_kernel_size_and_2x2_pooling_halves_the_maps():
    layer, out = make_pool(2, in_shape=(6, 4, 3))
    assert out == (3, 2, 3)
    x = distinct_inputs((2, 3, 6, 4), 0)
    expected = x.reshape(2, 3, 3, 2, 2, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(layer.ComputeUp(x), expected)
    np.testing.assert_array_equal(layer.ComputeUp(x.reshape(2, -1)), expected)  # flat inputs too


@pytest.mark.parametrize("k,stride,padding", [(2, 2, 0), (2, 1, 1), (3, 2, 1), (3, 1, 0), (3, 3, 1), (4, 2, 2)])
def test_input_derivatives_match_central_differences(k, stride, padding):
    # Maps about 7x6 on which the windows end on the last padded pixel (the layer refuses others).
    size_y = fitting_size(7, k, stride, padding)
    size_x = fitting_size(size_y + 1, k, stride, padding)
    layer, out = make_pool(k, stride, padding, in_shape=(size_y, size_x, 2))
    x = distinct_inputs((2, 2, size_y, size_x), k + stride + padding)
    outputs = layer.ComputeUp(x)
    assert outputs.shape == (2,) + (out[2], out[0], out[1])
    r = np.random.default_rng(1).standard_normal(outputs.shape)
    d_in, dw, db = layer.ComputeDown(r, outputs, x)
    assert dw is None and db is None
    numeric = numeric_gradient(lambda: np.sum(layer.ComputeUp(x) * r), x, eps=1e-4)
    np.testing.assert_allclose(d_in, numeric, rtol=1e-6, atol=1e-8)


def test_flat_inputs_get_flat_input_derivatives():
    layer, _ = make_pool(2, in_shape=(4, 4, 2))
    x = distinct_inputs((3, 32), 2)
    outputs = layer.ComputeUp(x)
    d_in, _, _ = layer.ComputeDown(np.ones(outputs.shape), outputs, x)
    assert d_in.shape == x.shape
    assert d_in.sum() == outputs.size


def test_ties_send_the_derivative_to_one_input_only():
    layer, _ = make_pool(2, in_shape=(4, 4, 1))
    x = np.zeros((1, 1, 4, 4))  # USPS background: every window ties
    outputs = layer.ComputeUp(x)
    d_in, _, _ = layer.ComputeDown(np.ones(outputs.shape), outputs, x)
    assert d_in.sum() == 4.0
    assert np.count_nonzero(d_in) == 4


def test_input_layer_returns_no_derivatives():
    layer, _ = make_pool(2, role="input")
    x = distinct_inputs((1, 3, 6, 6), 3)
    outputs = layer.ComputeUp(x)
    assert layer.ComputeDown(np.ones(outputs.shape), outputs, x) == (None, None, None)


def test_padding_above_half_the_kernel_is_a_config_error():
    with pytest.raises(ConfigError, match="pool"):
        make_pool(3, 2, 2)


def test_kernel_larger_than_padded_input_is_a_config_error():
    with pytest.raises(ConfigError, match=r"layer 'pool': key 'kernel_size'/'stride'/'padding': output size "
                                          r"\(3 \+ 2\*0 - 4\) / 1 \+ 1 along y is 0, not a whole number >= 1"):
        make_pool(4, 1, 0, in_shape=(3, 8, 1))


@pytest.mark.parametrize("k,stride,padding,in_shape,axis", [(2, 2, 0, (7, 6, 1), "y"), (3, 2, 1, (6, 7, 1), "y"),
                                                             (3, 3, 1, (7, 5, 1), "x"), (4, 2, 2, (8, 7, 1), "x")])
def test_windows_that_leave_input_rows_out_are_a_config_error(k, stride, padding, in_shape, axis):
    # (n + 2p - k) / s + 1 not whole: the last rows or columns would be silently dropped.
    with pytest.raises(ConfigError, match=rf"layer 'pool': .* along {axis} is [0-9.]+, not a whole number >= 1"):
        make_pool(k, stride, padding, in_shape=in_shape)
