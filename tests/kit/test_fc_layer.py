"""FCLayer: forward pass against an explicit formula, backward pass against central differences."""

import numpy as np
import pytest
from conftest import numeric_gradient, piece

from fc_layer import FCLayer


def make_fc(fan_in_shape=(1, 1, 6), num_channels=4, role="hidden", seed=0):
    layer = FCLayer({"name": "fc", "type": "FC", "num_channels": num_channels, "init_wt": 0.5,
                     "epsilon": 0.1, "momentum": 0.9, "l2_decay": 0.0})
    if role in ("input", "alone"):
        layer.SetAsInput()
    if role in ("output", "alone"):
        layer.SetAsOutput()
    out = layer.Initialize(*fan_in_shape, rng=np.random.default_rng(seed))
    assert out == (1, 1, num_channels)
    layer.b_ = np.random.default_rng(seed + 100).standard_normal(layer.b_.shape)
    return layer


@piece("FCLayer.ComputeUp")
def test_forward_is_relu_of_affine_map_for_hidden_layers():
    layer = make_fc()
    x = np.random.default_rng(1).standard_normal((3, 6))
    out = layer.ComputeUp(x)
    expected = np.array([[max(0.0, sum(x[n, i] * layer.w_[f, i] for i in range(6)) + layer.b_[0, f])
                          for f in range(4)] for n in range(3)])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


@piece("FCLayer.ComputeUp")
def test_forward_of_output_layer_is_softmax_and_flattens_image_inputs():
    layer = make_fc(fan_in_shape=(1, 2, 2), role="output", num_channels=2)
    # One image (C, H, W) = (1, 2, 2), flattened row by row to (1, 2, 3, 4); weights and biases
    # chosen so the two scores are worked out by hand: 1*1 + 2*0 + 3*1 + 4*0 + 0.5 = 4.5 and
    # 1*0 + 2*1 + 3*0 + 4*(-1) + 0 = -2.
    layer.w_ = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    layer.b_ = np.array([[0.5, 0.0]])
    out = layer.ComputeUp(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    p = 1 / (1 + np.exp(-6.5))  # the softmax of (4.5, -2): exp(4.5) / (exp(4.5) + exp(-2))
    assert out.shape == (1, 2)
    np.testing.assert_allclose(out, [[p, 1 - p]], rtol=1e-12)


@piece("FCLayer.ComputeDown")
@pytest.mark.parametrize("input_shape", [(3, 6), (3, 1, 2, 3)])
def test_hidden_relu_layer_derivatives_match_central_differences(input_shape):
    layer = make_fc(fan_in_shape=(2, 3, 1) if len(input_shape) == 4 else (1, 1, 6))
    rng = np.random.default_rng(3)
    x = rng.standard_normal(input_shape)
    r = rng.standard_normal((input_shape[0], 4))
    batch = input_shape[0]

    def loss():
        return np.sum(layer.ComputeUp(x) * r)

    outputs = layer.ComputeUp(x)
    assert 0 < np.count_nonzero(outputs) < outputs.size  # some units on, some off
    d_in, dw, db = layer.ComputeDown(r, outputs, x)
    assert d_in.shape == x.shape and dw.shape == layer.w_.shape and db.shape == layer.b_.shape
    np.testing.assert_allclose(d_in, numeric_gradient(loss, x), rtol=1e-6, atol=1e-8)
    # dw and db are averages over the batch: the summed loss's derivative / batch size.
    np.testing.assert_allclose(dw, numeric_gradient(loss, layer.w_) / batch, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_gradient(loss, layer.b_) / batch, rtol=1e-6, atol=1e-8)


@piece("FCLayer.ComputeDown")
def test_output_softmax_layer_takes_derivative_wrt_softmax_input_and_matches_cross_entropy():
    layer = make_fc(role="output", num_channels=10)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 6))
    targets = np.eye(10)[rng.integers(0, 10, 4)]

    def loss():
        return -np.sum(targets * np.log(layer.ComputeUp(x)))

    predictions = layer.ComputeUp(x)
    d_in, dw, db = layer.ComputeDown(predictions - targets, predictions, x)
    np.testing.assert_allclose(d_in, numeric_gradient(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_gradient(loss, layer.w_) / 4, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_gradient(loss, layer.b_) / 4, rtol=1e-6, atol=1e-8)


@piece("FCLayer.ComputeDown")
def test_input_layer_returns_none_as_input_derivative_but_still_weight_derivatives():
    layer = make_fc(role="input")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6))
    r = rng.standard_normal((2, 4))
    outputs = layer.ComputeUp(x)
    d_in, dw, db = layer.ComputeDown(r, outputs, x)
    assert d_in is None
    np.testing.assert_allclose(dw, numeric_gradient(lambda: np.sum(layer.ComputeUp(x) * r), layer.w_) / 2,
                               rtol=1e-6, atol=1e-8)
    assert db.shape == (1, 4)


@piece("FCLayer.ComputeDown")
def test_compute_down_does_not_modify_its_arguments():
    layer = make_fc()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 6))
    r = rng.standard_normal((3, 4))
    outputs = layer.ComputeUp(x)
    copies = [a.copy() for a in (r, outputs, x, layer.w_, layer.b_)]
    layer.ComputeDown(r, outputs, x)
    for before, after in zip(copies, (r, outputs, x, layer.w_, layer.b_)):
        np.testing.assert_array_equal(before, after)
