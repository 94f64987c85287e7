"""The `dtype` config key: float32 runs end to end in float32, float64 stays the default,
grad_check checks in float64 whatever the config says, and checkpoints cross precisions."""

import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, load_shipped_config, write_config

from net import NeuralNet
from plumbing.errors import ConfigError

CONFIGS = ["logreg.yaml", "net_2layer.yaml", "convnet1_method1.yaml", "convnet1_method2.yaml",
           "convnet3.yaml", "convnet_gradcheck_deep.yaml"]


def _net(config, seed=0):
    with contextlib.redirect_stdout(io.StringIO()):
        return NeuralNet(config, seed=seed)


def _batch(dtype, n=7):
    rng = np.random.default_rng(0)
    x = rng.random((n, 256)).astype(dtype)
    t = np.eye(10, dtype=dtype)[np.arange(n) % 10]
    return x, t


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_array_of_a_training_step_has_the_configs_dtype(name, dtype):
    config = load_shipped_config(name)
    config["dtype"] = dtype
    net = _net(config)
    x, t = _batch(dtype)
    states = net.Fprop(x)
    grads = net.Bprop(net.ComputeDeriv(states[-1], t), states)
    net.Update(grads)
    arrays = list(states) + [g for pair in grads for g in pair if g is not None]
    for layer in net.layer_:
        if layer.has_params_:
            arrays += [layer.w_, layer.b_, layer.dw_history_, layer.db_history_]
    assert {a.dtype for a in arrays} == {np.dtype(dtype)}


def test_float64_is_the_default_and_float32_starts_from_the_same_weights_rounded():
    config = load_shipped_config("convnet1_method1.yaml")
    assert "dtype" not in config
    wide = _net(config)
    config["dtype"] = "float32"
    narrow = _net(config)
    for key, value in wide.GetParameters().items():
        assert value.dtype == np.float64
        np.testing.assert_array_equal(narrow.GetParameters()[key], value.astype(np.float32))


@pytest.mark.parametrize("method", [1, 2])
def test_float32_forward_and_backward_agree_with_float64(method):
    config = load_shipped_config(f"convnet1_method{method}.yaml")
    results = {}
    for dtype in ("float64", "float32"):
        config["dtype"] = dtype
        net = _net(config)
        x, t = _batch(dtype)
        states = net.Fprop(x)
        grads = net.Bprop(net.ComputeDeriv(states[-1], t), states)
        results[dtype] = (states[-1], grads[0][0], grads[2][0])
    for wide, narrow in zip(results["float64"], results["float32"]):
        np.testing.assert_allclose(narrow, wide, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("value", ["float16", "double", 32, True])
def test_a_bad_dtype_is_a_config_error_naming_the_key(value):
    config = load_shipped_config("logreg.yaml")
    config["dtype"] = value
    with pytest.raises(ConfigError, match="'dtype'"):
        NeuralNet(config)


def test_a_checkpoint_loads_into_a_net_of_the_other_precision(tmp_path):
    config = load_shipped_config("convnet_gradcheck_deep.yaml")
    config["dtype"] = "float32"
    source = _net(config, seed=1)
    path = tmp_path / "ckpt.npz"
    source.Save(str(path))
    config["dtype"] = "float64"
    target = _net(config, seed=2)
    target.Load(str(path))
    for key, value in source.GetParameters().items():
        loaded = target.GetParameters()[key]
        assert loaded.dtype == np.float64
        np.testing.assert_array_equal(loaded, value.astype(np.float64))


def test_float32_training_is_repeatable_and_learns(tmp_path, subset_npz):
    path = write_config(tmp_path, "convnet1_method1.yaml", subset_npz, dtype="float32")
    stats = []
    for _ in range(2):
        net = _net(str(path))
        net.Train(max_epochs=2, display=False, log=io.StringIO())
        stats.append(np.load(net.settings_.performance_stats))
        params = net.GetParameters()
        assert {v.dtype for v in params.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(stats[0], stats[1])
    assert stats[0][-1, 3] > 0.3


def test_grad_check_of_a_float32_config_checks_in_float64_and_passes(tmp_path, subset_npz):
    path = write_config(tmp_path, "convnet_gradcheck.yaml", subset_npz, dtype="float32")
    result = subprocess.run([sys.executable, "grad_check.py", str(path)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checking in float64" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "PASSED"
