"""layer.py: settings, activations, the momentum-SGD update and parameter round trips."""

import numpy as np
import pytest

from conv_layer import ConvLayer
from fc_layer import FCLayer
from maxpool_layer import MaxPoolLayer
from plumbing.errors import ConfigError


def fc_proto(**overrides):
    proto = {"name": "fc", "type": "FC", "num_channels": 4, "init_wt": 0.1, "epsilon": 0.1,
             "momentum": 0.9, "l2_decay": 0.0}
    proto.update(overrides)
    return proto


def make_fc(fan_in=5, **overrides):
    layer = FCLayer(fc_proto(**overrides))
    layer.Initialize(1, 1, fan_in, rng=np.random.default_rng(0))
    return layer


def test_update_is_momentum_sgd_with_l2_decay_on_weights_only_over_two_steps():
    layer = make_fc(epsilon=0.1, momentum=0.9, l2_decay=0.01)
    rng = np.random.default_rng(1)
    layer.b_ = rng.standard_normal(layer.b_.shape)  # non-zero, to see that b is not decayed
    w0, b0 = layer.w_.copy(), layer.b_.copy()
    dw1, db1 = rng.standard_normal(w0.shape), rng.standard_normal(b0.shape)
    dw2, db2 = rng.standard_normal(w0.shape), rng.standard_normal(b0.shape)

    layer.Update(dw1, db1)
    vw1 = -0.1 * (dw1 + 0.01 * w0)
    vb1 = -0.1 * db1
    w1, b1 = w0 + vw1, b0 + vb1
    np.testing.assert_allclose(layer.w_, w1, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.b_, b1, rtol=1e-13, atol=1e-15)

    layer.Update(dw2, db2)
    vw2 = 0.9 * vw1 - 0.1 * (dw2 + 0.01 * w1)
    vb2 = 0.9 * vb1 - 0.1 * db2
    np.testing.assert_allclose(layer.w_, w1 + vw2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(layer.b_, b1 + vb2, rtol=1e-13, atol=1e-15)


def test_update_does_not_modify_the_callers_derivatives():
    layer = make_fc(l2_decay=0.5)
    dw, db = np.ones(layer.w_.shape), np.ones(layer.b_.shape)
    layer.Update(dw, db)
    assert (dw == 1).all() and (db == 1).all()


def test_momentum_and_l2_decay_default_to_zero():
    proto = fc_proto()
    del proto["momentum"], proto["l2_decay"]
    layer = FCLayer(proto)
    layer.Initialize(1, 1, 3, rng=np.random.default_rng(0))
    w0 = layer.w_.copy()
    dw = np.full(w0.shape, 2.0)
    layer.Update(dw, np.zeros(layer.b_.shape))
    layer.Update(dw, np.zeros(layer.b_.shape))
    np.testing.assert_allclose(layer.w_, w0 - 2 * 0.1 * 2.0, rtol=1e-13)


def test_initialize_scales_normal_weights_by_init_wt_and_zeroes_biases():
    small = make_fc(fan_in=400, num_channels=50, init_wt=0.01)
    big = make_fc(fan_in=400, num_channels=50, init_wt=1.0)
    np.testing.assert_allclose(big.w_ * 0.01, small.w_, rtol=1e-12)  # same rng, same draws
    assert abs(big.w_.std() - 1.0) < 0.05
    assert small.w_.shape == (50, 400) and small.b_.shape == (1, 50)
    assert (small.b_ == 0).all()


def test_get_set_parameters_round_trip_is_bit_identical():
    source = make_fc()
    source.b_ = np.random.default_rng(2).standard_normal(source.b_.shape)
    params = {k: v.copy() for k, v in source.GetParameters().items()}
    assert set(params) == {"fc_w", "fc_b"}
    target = FCLayer(fc_proto())
    target.Initialize(1, 1, 5, rng=np.random.default_rng(99))
    assert not np.array_equal(target.w_, source.w_)
    target.SetParameters(params)
    np.testing.assert_array_equal(target.w_, source.w_)
    np.testing.assert_array_equal(target.b_, source.b_)
    # A copy: changing the dict later leaves the layer alone.
    params["fc_w"][0, 0] += 1.0
    assert target.w_[0, 0] == source.w_[0, 0]


@pytest.mark.parametrize("key,shape", [("fc_w", (4, 6)), ("fc_w", (5, 4)), ("fc_b", (4,)), ("fc_b", (1, 5))])
def test_set_parameters_with_a_wrong_shape_raises_config_error(key, shape):
    layer = make_fc()
    params = dict(layer.GetParameters())
    params[key] = np.zeros(shape)
    with pytest.raises(ConfigError, match=key):
        layer.SetParameters(params)


def test_set_parameters_with_a_missing_key_raises_config_error():
    layer = make_fc()
    with pytest.raises(ConfigError, match="fc_b"):
        layer.SetParameters({"fc_w": layer.w_})


def test_layer_without_parameters_has_empty_parameters_and_ignores_update():
    pool = MaxPoolLayer({"name": "p", "type": "MAXPOOL", "kernel_size": 2})
    pool.Initialize(4, 4, 2)
    assert pool.GetParameters() == {}
    pool.SetParameters({})
    pool.Update(None, None)


def test_relu_for_hidden_layers_and_softmax_for_the_output_layer():
    layer = make_fc()
    z = np.array([[-1.0, 0.0, 2.0, 3.0], [1000.0, 1001.0, -5.0, 0.5]])
    np.testing.assert_array_equal(layer.ApplyActivation(z), [[0, 0, 2, 3], [1000, 1001, 0, 0.5]])
    layer.SetAsOutput()
    p = layer.ApplyActivation(z)
    e = np.exp(z[0])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-12)
    # Large inputs do not overflow: exp(1000) is inf but softmax is finite.
    np.testing.assert_allclose(p[1, :2], [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-12)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)


def test_activation_derivative_masks_relu_and_passes_output_derivatives_unchanged():
    layer = make_fc()
    d = np.array([[1.0, 2.0, 3.0]])
    outputs = np.array([[0.0, 0.5, 2.0]])
    np.testing.assert_array_equal(layer.ComputeActivationDeriv(d, outputs), [[0.0, 2.0, 3.0]])
    layer.SetAsOutput()
    np.testing.assert_array_equal(layer.ComputeActivationDeriv(d, outputs), d)


BAD_SETTINGS = {
    "missing num_channels": dict(num_channels=None),
    "missing epsilon": dict(epsilon=None),
    "num_channels 0": dict(num_channels=0),
    "num_channels float": dict(num_channels=2.5),
    "num_channels bool": dict(num_channels=True),
    "negative epsilon": dict(epsilon=-0.1),
    "epsilon bool": dict(epsilon=False),
    "epsilon text": dict(epsilon="fast"),
    "epsilon nan": dict(epsilon=float("nan")),
    "negative momentum": dict(momentum=-0.5),
    "infinite l2_decay": dict(l2_decay=float("inf")),
}


@pytest.mark.parametrize("name", list(BAD_SETTINGS))
def test_bad_layer_settings_raise_config_error_naming_the_layer_and_key(name):
    change = BAD_SETTINGS[name]
    proto = fc_proto(name="hidden7")
    for key, value in change.items():
        if value is None:
            del proto[key]
        else:
            proto[key] = value
    with pytest.raises(ConfigError) as info:
        FCLayer(proto)
    message = str(info.value)
    assert "hidden7" in message and list(change)[0] in message


def test_numbers_written_as_text_like_yaml_1e_minus_3_are_read_as_floats():
    layer = FCLayer(fc_proto(epsilon="1e-3", l2_decay="2e-4"))
    assert layer.epsilon_ == pytest.approx(1e-3) and layer.l2_decay_ == pytest.approx(2e-4)


@pytest.mark.parametrize("proto", [
    {"name": "c", "type": "CONVOLUTIONAL", "num_channels": 2, "kernel_size": 3, "padding": 3,
     "init_wt": 0.1, "epsilon": 0.1},
    {"name": "c", "type": "CONVOLUTIONAL", "num_channels": 2, "kernel_size": 3, "convolve_method": "method3",
     "init_wt": 0.1, "epsilon": 0.1},
    {"name": "c", "type": "CONVOLUTIONAL", "num_channels": 2, "kernel_size": 3, "stride": 0,
     "init_wt": 0.1, "epsilon": 0.1},
    {"name": "c", "type": "MAXPOOL", "kernel_size": 3, "padding": 2},
])
def test_conv_and_pool_settings_out_of_range_raise_config_error(proto):
    cls = ConvLayer if proto["type"] == "CONVOLUTIONAL" else MaxPoolLayer
    with pytest.raises(ConfigError, match="'c'"):
        cls(proto)
