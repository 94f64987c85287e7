"""BatchNormLayer: the forward pass against a plain loop over channels, the derivatives against
central differences in both modes, the running statistics, and the layer in a network: grad
check, checkpoints, --resume and seeds bit for bit, bad keys."""

import contextlib
import io

import numpy as np
import pytest
from conftest import numeric_gradient
from test_dropout_layer import config, quiet_net

import grad_check
from batchnorm_layer import EPS, BatchNormLayer
from grad_check import THRESHOLD, check_gradients
from net import NeuralNet
from plumbing.errors import ConfigError


def make_bn(shape=(4, 4, 3), role="hidden", decay=0.9, dtype=np.float64):
    proto = {"name": "bn", "type": "BATCHNORM", "epsilon": 0.1, "stats_decay": decay}
    layer = BatchNormLayer(proto)
    layer.dtype_ = np.dtype(dtype)
    if role == "input":
        layer.SetAsInput()
    with contextlib.redirect_stdout(io.StringIO()):
        assert layer.Initialize(*shape) == shape
    return layer


def reference(x, gamma, beta, mean=None, var=None):
    """Channel by channel, in loops: x (N, C, H, W) or (N, C)."""
    x4 = x.reshape(x.shape[0], x.shape[1], -1)
    out = np.empty_like(x4)
    for c in range(x4.shape[1]):
        values = x4[:, c, :]
        m = values.mean() if mean is None else mean[c]
        v = ((values - values.mean()) ** 2).mean() if var is None else var[c]
        out[:, c, :] = gamma[c] * (values - m) / np.sqrt(v + EPS) + beta[c]
    return out.reshape(x.shape)


@pytest.mark.parametrize("shape,x_shape", [((4, 4, 3), (5, 3, 4, 4)), ((1, 1, 6), (7, 6)), ((4, 4, 3), (5, 48))])
def test_training_forward_standardises_each_channel_over_the_batch(shape, x_shape):
    layer = make_bn(shape)
    rng = np.random.default_rng(0)
    layer.w_ = rng.uniform(0.5, 2, layer.w_.shape)
    layer.b_ = rng.standard_normal(layer.b_.shape)
    x = 3 + 2 * rng.standard_normal(x_shape)
    layer.training_ = True
    out = layer.ComputeUp(x)
    assert out.shape == x.shape
    as_maps = x.reshape(x.shape[0], shape[2], -1)
    np.testing.assert_allclose(out, reference(as_maps, layer.w_[0], layer.b_[0]).reshape(x.shape), rtol=1e-12)


def test_the_running_statistics_move_towards_the_batch_and_evaluation_uses_them():
    layer = make_bn((2, 2, 3), decay=0.75)
    rng = np.random.default_rng(1)
    x = 5 + 3 * rng.standard_normal((6, 3, 2, 2))
    layer.training_ = True
    layer.ComputeUp(x)
    maps = x.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(layer.running_mean_[0], 0.25 * maps.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var_[0], 0.75 + 0.25 * maps.var(axis=1, ddof=1), rtol=1e-12)
    layer.training_ = False
    out = layer.ComputeUp(x)
    np.testing.assert_allclose(out, reference(x, layer.w_[0], layer.b_[0], layer.running_mean_[0],
                                              layer.running_var_[0]), rtol=1e-12)
    # At evaluation an example's output does not depend on the others in its batch.
    np.testing.assert_array_equal(layer.ComputeUp(x[:1]), out[:1])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape,x_shape", [((3, 3, 2), (4, 2, 3, 3)), ((1, 1, 5), (6, 5))])
def test_derivatives_agree_with_central_differences(training, shape, x_shape):
    layer = make_bn(shape)
    rng = np.random.default_rng(2)
    layer.w_ = rng.uniform(0.5, 2, layer.w_.shape)
    layer.b_ = rng.standard_normal(layer.b_.shape)
    layer.running_mean_ = rng.standard_normal(layer.running_mean_.shape)
    layer.running_var_ = rng.uniform(0.5, 2, layer.running_var_.shape)
    layer.training_ = training
    x = rng.standard_normal(x_shape)
    r = rng.standard_normal(x_shape)

    def loss():
        return np.sum(r * layer.ComputeUp(x))

    numeric_x = numeric_gradient(loss, x)
    numeric_gamma = numeric_gradient(loss, layer.w_)
    numeric_beta = numeric_gradient(loss, layer.b_)
    out = layer.ComputeUp(x)
    d_in, dgamma, dbeta = layer.ComputeDown(r, out, x)
    np.testing.assert_allclose(d_in, numeric_x, rtol=1e-6, atol=1e-8)
    # The kit's parameter derivatives are averages over the batch.
    np.testing.assert_allclose(dgamma * x.shape[0], numeric_gamma, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dbeta * x.shape[0], numeric_beta, rtol=1e-6, atol=1e-8)


def test_float32_stays_float32_and_the_input_layer_returns_no_input_derivative():
    layer = make_bn((2, 2, 3), role="input", dtype=np.float32)
    layer.training_ = True
    x = np.random.default_rng(0).standard_normal((4, 12)).astype(np.float32)
    out = layer.ComputeUp(x)
    assert out.dtype == np.float32 and layer.running_var_.dtype == np.float32
    d_in, dgamma, dbeta = layer.ComputeDown(np.ones_like(out), out, x)
    assert d_in is None and dgamma.dtype == np.float32 and dbeta.shape == (1, 3)


@pytest.mark.parametrize("proto,words", [
    ({"num_channels": 3}, "unknown key 'num_channels'"), ({"init_wt": 0.1}, "unknown key 'init_wt'"),
    ({"stats_decay": 1}, "'stats_decay' must be below 1.0"), ({"stats_decay": -0.5}, "must be >= 0.0"),
    ({"epsilon": None}, "'epsilon'"),
])
def test_bad_keys_are_refused_naming_the_layer_and_key(proto, words):
    full = {"name": "bn1", "type": "BATCHNORM", "epsilon": 0.1, **proto}
    full = {k: v for k, v in full.items() if v is not None}
    with pytest.raises(ConfigError, match=f"layer 'bn1': .*{words}"):
        BatchNormLayer(full)


# --- in the network -----------------------------------------------------------------------

BN = {"type": "BATCHNORM", "epsilon": 0.05, "momentum": 0.9}
NETWORK = [
    {"name": "conv1", "type": "CONVOLUTIONAL", "num_channels": 3, "kernel_size": 3, "padding": 1,
     "init_wt": 0.1, "epsilon": 0.05, "momentum": 0.9},
    dict(BN, name="bn1"),
    {"name": "pool1", "type": "MAXPOOL", "kernel_size": 2},
    {"name": "fc1", "type": "FC", "num_channels": 16, "init_wt": 0.1, "epsilon": 0.05, "momentum": 0.9},
    dict(BN, name="bn2"),
    {"name": "output", "type": "FC", "num_channels": 10, "init_wt": 0.1, "epsilon": 0.05, "momentum": 0.9},
]


def test_grad_check_checks_the_training_mode_and_finds_a_wrong_derivative(tmp_path, monkeypatch):
    for method in ("method1", "method2"):
        network = [dict(NETWORK[0], convolve_method=method)] + NETWORK[1:]
        net = quiet_net(config(tmp_path, network=network))
        results = check_gradients(net, np.random.default_rng(0), log=io.StringIO())
        assert [name for name, _ in results if name.startswith("bn")] == ["bn1_w", "bn1_b", "bn2_w", "bn2_b"]
        assert all(error < THRESHOLD for _, error in results)
        assert net.layer_[1].training_ and not net.layer_[0].training_
    # The derivative of evaluation mode, used while training: the conv layer below shows it.
    original = BatchNormLayer.ComputeDown

    def evaluation_derivative(self, d, outputs, inputs):
        self.training_ = False
        try:
            return original(self, d, outputs, inputs)
        finally:
            self.training_ = True

    monkeypatch.setattr(BatchNormLayer, "ComputeDown", evaluation_derivative)
    net = quiet_net(config(tmp_path, network=NETWORK))
    errors = dict(check_gradients(net, np.random.default_rng(0), log=io.StringIO()))
    assert errors["conv1_w"] > THRESHOLD and errors["fc1_w"] > THRESHOLD


def test_the_grad_check_script_passes_on_a_config_with_batch_norm(tmp_path):
    import yaml

    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, network=NETWORK)), encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = grad_check.main([str(path)])
    assert status == 0 and out.getvalue().rstrip().endswith("PASSED")


def _train(c, seed=0, **kwargs):
    net = quiet_net(c, seed=seed)
    net.Train(log=io.StringIO(), **kwargs)
    return net


def test_checkpoints_keep_the_running_statistics_and_evaluation_reproduces_validation(tmp_path):
    net = _train(config(tmp_path, network=NETWORK, checkpoint_on="cross_entropy", max_epochs=3))
    saved = np.load(tmp_path / "m.npz")
    assert {"bn1_mean", "bn1_var", "bn2_mean", "bn2_var"} <= set(saved.files)
    assert not np.allclose(saved["bn1_var"], 1)  # trained, not the initial statistics
    fresh = quiet_net(config(tmp_path, network=NETWORK, checkpoint_on="cross_entropy"))
    fresh.Load()
    fresh.LoadData()
    stats = np.load(tmp_path / "s.npy")
    assert fresh.Validate(fresh.validation_)[0] == pytest.approx(stats[net.best_epoch_ - 1, 2], rel=1e-12)
    # A checkpoint without them is refused, naming the layer and the array.
    np.savez(tmp_path / "old.npz", **{k: saved[k] for k in saved.files if k != "bn2_var"})
    with pytest.raises(ConfigError, match="bn2_var"):
        fresh.Load(str(tmp_path / "old.npz"))


def test_a_resumed_run_and_the_same_seed_are_the_uninterrupted_run_bit_for_bit(tmp_path):
    for folder in "abc":
        (tmp_path / folder).mkdir()
    whole = _train(config(tmp_path / "a", network=NETWORK, max_epochs=4))
    cfg = config(tmp_path / "b", network=NETWORK, max_epochs=4)
    _train(cfg, max_epochs=2)
    resumed = _train(cfg, resume=True)
    for k, v in whole.GetParameters().items():
        np.testing.assert_array_equal(resumed.GetParameters()[k], v)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "s.npy"), np.load(tmp_path / "b" / "s.npy"))
    other = _train(config(tmp_path / "c", network=NETWORK, max_epochs=4), seed=1)
    assert not np.array_equal(other.GetParameters()["bn1_mean"], whole.GetParameters()["bn1_mean"])


def test_weight_average_with_batch_norm_is_a_config_error_naming_both(tmp_path):
    c = config(tmp_path, network=NETWORK, weight_average=0.9)
    c["_path"] = "bad.yaml"
    with pytest.raises(ConfigError, match="^bad.yaml: key 'weight_average' .* BATCHNORM layer \\('bn1'\\)"):
        NeuralNet(c)
