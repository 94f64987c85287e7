"""tools/bench.py and its parts (tools/benchmark/): the flop count against hand-computed
numbers, its epoch loop against NeuralNet.Train, its command line, and a --quick run end to
end."""

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, load_shipped_config

from net import NeuralNet
from plumbing.config import load_config
from tools.benchmark import command as bench
from tools.benchmark import configs as bench_configs
from tools.benchmark import convolve as bench_convolve
from tools.benchmark import epochs as bench_epochs
from tools.benchmark import pytorch as bench_torch

# 4x4x1 input -> conv 2 maps 3x3 pad 1 (input layer) -> 4x4x2 -> max 2x2 -> 2x2x2 -> FC 10.
TINY = {
    "input_image_size_y": 4, "input_image_size_x": 4, "input_num_channels": 1,
    "network": [
        {"name": "conv1", "type": "CONVOLUTIONAL", "num_channels": 2, "kernel_size": 3, "padding": 1},
        {"name": "pool1", "type": "MAXPOOL", "kernel_size": 2},
        {"name": "output", "type": "FC", "num_channels": 10},
    ],
}


def test_flops_of_a_tiny_net_match_a_hand_count():
    # conv1: 2 maps x 1 channel x 3x3 x 4x4 outputs = 288 multiply-adds forward; as the input
    # layer it computes only the weight derivative backward (288). Pooling: none.
    # output: 8 inputs x 10 = 80 forward; weight and input derivatives 160 backward.
    assert bench_configs.flops_per_image(TINY) == (2 * (288 + 80), 2 * (288 + 160))
    # 3 training images forward and backward, 2 validation images forward.
    assert bench_configs.epoch_flops(TINY, 3, 2) == 3 * (736 + 896) + 2 * 736 == 6368


def test_flops_of_convnet1_match_a_hand_count():
    forward, backward = bench_configs.flops_per_image(load_shipped_config("convnet1_method1.yaml"))
    conv1, conv2, fc1, out = 16 * 9 * 16 * 16, 32 * 16 * 9 * 8 * 8, 512 * 512, 512 * 10
    assert forward == 2 * (conv1 + conv2 + fc1 + out)
    assert backward == 2 * (conv1 + 2 * (conv2 + fc1 + out))


def test_the_recorded_convolve_calls_are_method_2_s_per_layer(small_npz):
    calls = bench_convolve.record_method2_calls("convnet1_method1", load_shipped_config("convnet1_method1.yaml"),
                                                bench_configs.load_arrays(small_npz), 10)
    # conv1 is the input layer: no input derivative.
    assert sorted((layer, call) for layer, call, *_ in calls) == [
        ("conv1", "forward"), ("conv1", "weight derivative"),
        ("conv2", "forward"), ("conv2", "input derivative"), ("conv2", "weight derivative")]
    assert all(inputs.dtype == np.float64 and inputs.shape[0] == 10 for _, _, inputs, _, _ in calls)


def test_training_configs_are_those_with_data_and_epochs():
    names = list(bench_configs.training_configs())
    assert names[:7] == ["logreg", "net_1layer", "net_2layer", "convnet1_method1", "convnet1_method2",
                         "convnet2", "convnet3"]
    assert not [n for n in names if "gradcheck" in n or n == "lenet"]


def test_the_rows_merge_configs_that_are_the_same_network():
    configs = bench_configs.training_configs()
    groups = bench_epochs.plan_rows({n: configs[n] for n in ("logreg", "convnet1_method1",
                                                              "convnet1_method2")})
    rows = [(row.names, row.method) for group in groups.values() for row in group]
    assert rows == [(["logreg"], ""), (["convnet1_method1", "convnet1_method2"], "method1"),
                    (["convnet1_method1", "convnet1_method2"], "method2")]


def test_every_conv_config_is_timed_in_float32_by_both_methods():
    configs = bench_configs.training_configs()
    groups = bench_epochs.plan_rows({n: configs[n] for n in ("net_2layer", "convnet2", "convnet3")})
    rows = [row for group in groups.values() for row in group]
    assert [(row.names, row.method, bench_epochs.wants_float32(row)) for row in rows] == [
        (["net_2layer"], "", False), (["convnet2"], "method1", True), (["convnet2"], "method2", True),
        (["convnet3"], "method1", True), (["convnet3"], "method2", True)]


def _with_extras():
    """net_1layer with the training extras Train applies per step: augmentation, dropout, float32."""
    network = load_shipped_config("net_1layer.yaml")["network"]
    network.insert(1, {"name": "drop1", "type": "DROPOUT", "dropout_rate": 0.3})
    return {"network": network, "augment_translate": 1.0, "augment_rotate": 10.0, "dtype": "float32"}


@pytest.mark.parametrize("name, overrides", [("convnet1_method2.yaml", {}), ("net_1layer.yaml", _with_extras())],
                         ids=["convnet1_method2", "extras"])
def test_the_benchmark_epoch_is_train_s_epoch(name, overrides, make_config, small_npz, tmp_path):
    """The loop the benchmark times must do what NeuralNet.Train does: after one epoch from
    the same seed, the parameters are the same, bit for bit."""
    config_path = make_config(name, small_npz, **overrides)
    with contextlib.redirect_stdout(io.StringIO()):
        trained = NeuralNet(load_config(config_path), seed=0)
    trained.LoadData()
    trained.Train(max_epochs=1, display=False, log=io.StringIO())
    run = bench_epochs.KitRun(name, load_config(config_path), small_npz, None, tmp_path / "bench")
    assert run.epoch() > 0
    expected, got = trained.GetParameters(), run.net.GetParameters()
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.mark.parametrize("name", ["net_1layer", "convnet1_method2"])
def test_the_torch_model_takes_the_kit_s_steps(name, small_npz, tmp_path):
    """Same forward pass, and after two SGD steps on one batch (momentum, L2 on the weights
    only, per-layer learning rates) the same parameters: the comparison is like for like."""
    torch = pytest.importorskip("torch")
    config = bench_configs.training_configs()[name]
    run = bench_epochs.KitRun(name, config, small_npz, None, tmp_path)
    net = run.net
    params = {k: np.array(v) for k, v in net.GetParameters().items()}
    model = bench_torch.TorchRun(torch, config, params, bench_configs.load_arrays(small_npz), None, torch.float64)
    row = bench_epochs.Row([name], "", config)
    assert bench_torch.check_torch_forward(net, model.validation_probabilities(100), row, []) < 1e-12
    x, t = net.train_[0][:100], net.train_[1][:100]
    images, labels = model.train[0][:100], model.train[1][:100]
    for _ in range(2):
        states = net.Fprop(x)
        net.Update(net.Bprop(net.ComputeDeriv(states[-1], t), states))
        loss = torch.nn.functional.cross_entropy(model.model(images), labels)
        model.optimizer.zero_grad()
        loss.backward()
        model.optimizer.step()
    layers = [m for m in model.model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    kit_layers = [layer for layer in net.layer_ if layer.has_params_]
    assert len(layers) == len(kit_layers)
    for layer, module in zip(kit_layers, layers):
        np.testing.assert_allclose(module.weight.detach().numpy().reshape(layer.w_.shape), layer.w_,
                                   rtol=0, atol=1e-12, err_msg=layer.name_)
        np.testing.assert_allclose(module.bias.detach().numpy(), layer.b_.reshape(-1), rtol=0, atol=1e-12,
                                   err_msg=layer.name_)


@pytest.mark.parametrize("argv, words", [
    (["--only", "lenet"], ["--only", "lenet", "logreg"]),
    (["--repeat", "0"], ["--repeat"]),
    (["--threads", "0"], ["--threads"]),
    (["--bogus"], ["--bogus"]),
])
def test_a_bad_command_line_is_one_line_and_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    for word in words:
        assert word in captured.err


def test_quick_run_prints_the_config_s_row(usps_npz, usps_mirror):
    env = dict(os.environ, MPLBACKEND="Agg", USPS_MIRROR=str(usps_mirror))
    result = subprocess.run([sys.executable, "tools/bench.py", "--quick", "--no-torch", "--only",
                             "convnet1_method1", "--data", str(usps_npz)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| convnet1_method1 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["method1", "method2"]
    for row in rows:
        numbers = [float(cell) for cell in re.findall(r"\|\s*([0-9.]+(?:e[-+]?\d+)?)\s*(?=\|)", row)]
        assert len(numbers) == 2 and min(numbers) > 0, row  # kit float64 and kit float32
    # Each method and dtype as a share of numpy.dot's rate in that dtype.
    shares = re.findall(r"^\| convnet1 \| kit (method[12]) \| (float32|float64) \| [0-9.e+-]+ \| [0-9.e+-]+ \| "
                        r"([0-9.]+)% \|$", result.stdout, re.MULTILINE)
    assert sorted((m, d) for m, d, _ in shares) == [("method1", "float32"), ("method1", "float64"),
                                                   ("method2", "float32"), ("method2", "float64")], result.stdout
    assert all(float(share) > 0 for *_, share in shares)
    assert "| --- |" in result.stdout
    assert "torch" not in result.stdout.split("### Seconds per epoch")[1].split("\n\n")[1]  # no torch columns
    assert "equal |" in result.stdout and "**NO**" not in result.stdout
    assert "MB** peak resident" in result.stdout


def test_quick_run_with_torch_keeps_torch_out_of_the_timing_process(small_npz):
    """torch's OpenMP runtime slows the kit's kernels several times over: the torch side must
    run in the worker, and the process that times the kit must never import it."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    result = subprocess.run([sys.executable, "tools/bench.py", "--quick", "--only", "net_2layer", "--data",
                             str(small_npz)], cwd=REPO_ROOT, env=dict(os.environ, MPLBACKEND="Agg"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bench: torch imported in the process that timed the kit: no" in result.stderr, result.stderr
    assert "in a child process" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("| net_2layer |"))
    kit64, torch64, torch32 = (float(row.split("|")[i]) for i in (3, 4, 5))  # the worker answered
    assert kit64 > 0 and torch64 > 0 and torch32 > 0, row
