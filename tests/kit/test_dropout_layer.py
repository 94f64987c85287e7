"""DropoutLayer: identity at evaluation, inverted dropout in training, derivatives through the
same mask; in the network: train/eval switching, seeding, bad keys, the activation display."""

import contextlib
import io

import numpy as np
import pytest
from conftest import numeric_gradient

from dropout_layer import DropoutLayer
from grad_check import THRESHOLD, check_gradients
from net import NeuralNet
from plumbing.display import ActivationDisplay
from plumbing.errors import ConfigError


def make_dropout(rate, role="hidden", in_shape=(4, 4, 3), seed=0):
    layer = DropoutLayer({"name": "drop", "type": "DROPOUT", "dropout_rate": rate})
    if role == "input":
        layer.SetAsInput()
    with contextlib.redirect_stdout(io.StringIO()):
        assert layer.Initialize(*in_shape) == in_shape
    layer.rng_ = np.random.default_rng(seed)
    return layer


def test_evaluation_mode_is_the_identity_both_ways():
    layer = make_dropout(0.5)
    assert layer.training_ is False  # the default: grad checks and evaluation see no dropout
    x = np.random.default_rng(0).standard_normal((3, 3, 4, 4))
    out = layer.ComputeUp(x)
    np.testing.assert_array_equal(out, x)
    d = np.random.default_rng(1).standard_normal(x.shape)
    d_in, dw, db = layer.ComputeDown(d, out, x)
    np.testing.assert_array_equal(d_in, d)
    assert dw is None and db is None and not layer.GetParameters()


def test_training_mode_drops_about_the_rate_and_scales_the_kept_units():
    layer = make_dropout(0.3)
    layer.training_ = True
    x = np.full((50, 2000), 2.0)
    out = layer.ComputeUp(x)
    dropped = out == 0
    assert dropped.mean() == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(out[~dropped], 2.0 / 0.7, rtol=1e-15)
    assert out.mean() == pytest.approx(2.0, rel=0.02)  # inverted dropout keeps the expectation
    second = layer.ComputeUp(x)
    assert not np.array_equal(second == 0, dropped)  # a new mask every call


def test_a_rate_of_zero_keeps_everything_while_training():
    layer = make_dropout(0.0)
    layer.training_ = True
    x = np.random.default_rng(0).standard_normal((2, 48))
    np.testing.assert_array_equal(layer.ComputeUp(x), x)


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (2, 48)])
def test_derivatives_go_through_the_same_mask_as_central_differences_say(shape):
    layer = make_dropout(0.4)
    layer.training_ = True
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    r = rng.standard_normal(shape)

    def loss():
        layer.rng_ = np.random.default_rng(7)  # the same mask on every call
        return np.sum(r * layer.ComputeUp(x))

    numeric = numeric_gradient(loss, x)
    layer.rng_ = np.random.default_rng(7)
    out = layer.ComputeUp(x)  # the forward pass whose mask ComputeDown uses
    d_in, _, _ = layer.ComputeDown(r, out, x)
    np.testing.assert_allclose(d_in, numeric, rtol=1e-7, atol=1e-9)
    assert np.any(d_in == 0) and np.any(d_in != 0)


def test_float32_inputs_stay_float32_and_the_input_layer_returns_no_input_derivative():
    layer = make_dropout(0.5, role="input")
    layer.training_ = True
    x = np.ones((4, 48), dtype=np.float32)
    out = layer.ComputeUp(x)
    assert out.dtype == np.float32
    assert layer.ComputeDown(np.ones_like(out), out, x) == (None, None, None)


@pytest.mark.parametrize("rate,words", [
    (1.0, "must be below 1.0"), (-0.1, "must be >= 0.0"), ("half", "must be a number"),
    (True, "must be a number"), (None, "missing key 'dropout_rate'"),
])
def test_bad_rates_are_refused_naming_the_layer_and_key(rate, words):
    proto = {"name": "drop1", "type": "DROPOUT"}
    if rate is not None:
        proto["dropout_rate"] = rate
    with pytest.raises(ConfigError, match=f"layer 'drop1': .*{words}"):
        DropoutLayer(proto)


# --- in the network -----------------------------------------------------------------------

FC = {"type": "FC", "init_wt": 0.1, "epsilon": 0.05, "momentum": 0.9}
NETWORK = [
    {"name": "conv1", "type": "CONVOLUTIONAL", "num_channels": 3, "kernel_size": 3, "padding": 1,
     "init_wt": 0.1, "epsilon": 0.05, "momentum": 0.9},
    {"name": "pool1", "type": "MAXPOOL", "kernel_size": 2},
    {"name": "drop1", "type": "DROPOUT", "dropout_rate": 0.25},
    dict(FC, name="fc1", num_channels=16),
    {"name": "drop2", "type": "DROPOUT", "dropout_rate": 0.5},
    dict(FC, name="output", num_channels=10),
]


def config(tmp_path, network=NETWORK, **keys):
    rng = np.random.default_rng(0)
    data = tmp_path / "syn.npz"
    if not data.exists():
        arrays = {}
        for name, n in (("train", 90), ("validation", 30), ("test", 10)):
            labels = rng.integers(0, 10, n)
            arrays[name], arrays[name + "_labels"] = rng.uniform(0, 1, (n, 256)), np.eye(10)[labels]
        np.savez(data, **arrays)
    c = {"max_epochs": 2, "batch_size": 30, "data_path": str(data), "display": False,
         "checkpoint_file": str(tmp_path / "m.npz"), "performance_stats": str(tmp_path / "s.npy"),
         "network": [dict(layer) for layer in network]}
    c.update(keys)
    return c


def quiet_net(c, seed=0):
    with contextlib.redirect_stdout(io.StringIO()):
        return NeuralNet(c, seed=seed)


def test_train_drops_units_in_training_steps_only(tmp_path, monkeypatch):
    net = quiet_net(config(tmp_path))
    net.LoadData()
    seen = []
    original = net.Fprop

    def spy(inputs):
        states = original(inputs)
        seen.append((net.layer_[2].training_, np.mean(states[3] == 0) - np.mean(states[2] == 0)))
        return states

    monkeypatch.setattr(net, "Fprop", spy)
    net.Train(log=io.StringIO())
    training = [extra for flag, extra in seen if flag]
    evaluation = [extra for flag, extra in seen if not flag]
    assert len(training) == 6 and len(evaluation) == 2  # 3 steps, then one validation batch of 30
    assert all(extra > 0.1 for extra in training)  # about a quarter of the pool outputs more are 0
    assert all(extra == 0 for extra in evaluation)
    assert not any(layer.training_ for layer in net.layer_)  # evaluation mode afterwards


def test_the_masks_come_from_the_seed(tmp_path):
    params = []
    for folder, seed in (("a", 3), ("b", 3), ("c", 4)):
        (tmp_path / folder).mkdir()
        net = quiet_net(config(tmp_path / folder), seed=seed)
        net.Train(log=io.StringIO())
        params.append(net.GetParameters())
    np.testing.assert_array_equal(params[0]["fc1_w"], params[1]["fc1_w"])
    assert not np.array_equal(params[0]["fc1_w"], params[2]["fc1_w"])
    # Adding dropout leaves the weights' initialization alone (its generator is separate).
    plain = quiet_net(config(tmp_path, network=[layer for layer in NETWORK if layer["type"] != "DROPOUT"]), seed=3)
    np.testing.assert_array_equal(plain.layer_[0].w_, quiet_net(config(tmp_path), seed=3).layer_[0].w_)


def test_gradient_check_and_validation_see_no_dropout(tmp_path):
    net = quiet_net(config(tmp_path))
    results = check_gradients(net, np.random.default_rng(0), log=io.StringIO())
    assert results and all(error < THRESHOLD for _, error in results)
    net.LoadData()
    assert net.Validate(net.validation_) == net.Validate(net.validation_)


@pytest.mark.parametrize("network,words", [
    (NETWORK + [{"name": "drop3", "type": "DROPOUT", "dropout_rate": 0.5}], "the last layer ('drop3') must be an FC"),
    ([dict(NETWORK[2], dropout_rate=1)] + NETWORK[3:], "layer 'drop1': key 'dropout_rate' must be below 1.0"),
    ([dict(NETWORK[2], rate=0.5)] + NETWORK[3:], "layer 'drop1': unknown key 'rate'"),
])
def test_bad_dropout_layers_are_config_errors_naming_file_and_layer(tmp_path, network, words):
    c = config(tmp_path, network=network)
    c["_path"] = "bad.yaml"
    with pytest.raises(ConfigError) as info:
        quiet_net(c)
    assert str(info.value).startswith("bad.yaml: ") and words in str(info.value)


def test_the_activation_display_draws_a_net_with_dropout(tmp_path):
    net = quiet_net(config(tmp_path))
    log = io.StringIO()
    viewer = ActivationDisplay(net, log)
    x = np.random.default_rng(0).uniform(0, 1, (2, 256))
    viewer.show(x, net.Fprop(x))
    assert (tmp_path / "s_display.png").read_bytes()[:4] == b"\x89PNG"
