"""tools/analyze.py: units, connections and weights per layer, against the lecture's LeNet
table, a brute-force count of dependencies, and the parameters of built networks."""

import csv
import io
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import CONFIG_DIR, REPO_ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from conv_layer import ConvLayer
from fc_layer import FCLayer
from maxpool_layer import MaxPoolLayer
from net import NeuralNet
from tools.course import analyze

# The lecture's table, as the issue gives it.
LENET_TABLE = """\
| layer | units | connections | weights |
| --- | --- | --- | --- |
| C1 | 4704 | 117,600 | 150 |
| S2 | 1176 | 4704 | 0 |
| C3 | 1600 | 240,000 | 2400 |
| S4 | 400 | 1600 | 0 |
| F5 | 120 | 48,000 | 48,000 |
| F6 | 84 | 10,080 | 10,080 |
| output | 10 | 840 | 840 |"""


def _table_lines(out):
    return [line for line in out.splitlines() if line.startswith("|")]


def test_lenet_config_reproduces_the_lectures_table_exactly(capsys):
    args = [str(CONFIG_DIR / "lenet.yaml"), "--columns", "layer,units,connections,weights", "--no-total"]
    assert analyze.main(args) == 0
    assert _table_lines(capsys.readouterr().out) == LENET_TABLE.splitlines()


def test_lenet_config_is_32x32x1_with_the_lectures_layer_types():
    with open(CONFIG_DIR / "lenet.yaml") as f:
        config = yaml.safe_load(f)
    assert (config["input_image_size_y"], config["input_image_size_x"], config["input_num_channels"]) == (32, 32, 1)
    assert [(layer["name"], layer["type"]) for layer in config["network"]] == [
        ("C1", "CONVOLUTIONAL"), ("S2", "MAXPOOL"), ("C3", "CONVOLUTIONAL"), ("S4", "MAXPOOL"),
        ("F5", "FC"), ("F6", "FC"), ("output", "FC")]


def _brute_force_connections(layer, in_shape):
    """Count (input unit, output unit) pairs where changing the input changes the output."""
    y, x, c = in_shape
    rng = np.random.default_rng(0)
    inputs = rng.uniform(0.0, 1.0, (1, c, y, x))
    if layer.has_params_:
        # Positive weights and a large bias: every pre-activation is positive, so the ReLU
        # passes every change and no sum of changes can cancel.
        layer.w_ = rng.uniform(0.5, 1.5, layer.w_.shape)
        layer.b_ = np.full(layer.b_.shape, 100.0)
    base = layer.ComputeUp(inputs)
    count = 0
    for i in range(inputs.size):
        changed = inputs.copy()
        changed.reshape(-1)[i] += 1000.0  # large: also becomes the max of every window it is in
        count += np.count_nonzero(layer.ComputeUp(changed) != base)
    return count


def _whole(n, k, s, p):
    """Whether n inputs give a whole number (>= 1) of outputs: the only sizes the kit builds."""
    return n + 2 * p >= k and (n + 2 * p - k) % s == 0


def _built(layer, in_shape):
    out = layer.Initialize(*in_shape, rng=np.random.default_rng(1))
    return analyze.count_layer(layer, in_shape, tuple(out))


@settings(max_examples=40, deadline=None)
@given(n_y=st.integers(1, 7), n_x=st.integers(1, 7), c=st.integers(1, 2), filters=st.integers(1, 2),
       k=st.integers(1, 4), s=st.integers(1, 3), data=st.data())
def test_conv_connections_match_a_brute_force_count_with_any_padding(n_y, n_x, c, filters, k, s, data):
    p = data.draw(st.integers(0, k - 1))
    if not _whole(n_y, k, s, p) or not _whole(n_x, k, s, p):
        return  # the kit refuses a window that leaves input rows out
    layer = ConvLayer({"name": "conv", "type": "CONVOLUTIONAL", "num_channels": filters, "kernel_size": k,
                       "stride": s, "padding": p, "convolve_method": "method1", "init_wt": 0.1, "epsilon": 0.1})
    counted = _built(layer, (n_y, n_x, c))
    assert counted.connections == _brute_force_connections(layer, (n_y, n_x, c))
    assert counted.weights == filters * c * k * k and counted.biases == filters


@settings(max_examples=30, deadline=None)
@given(n_y=st.integers(1, 7), n_x=st.integers(1, 7), c=st.integers(1, 2), k=st.integers(1, 4),
       s=st.integers(1, 3), data=st.data())
def test_maxpool_connections_match_a_brute_force_count_with_any_padding(n_y, n_x, c, k, s, data):
    p = data.draw(st.integers(0, k // 2))
    if not _whole(n_y, k, s, p) or not _whole(n_x, k, s, p):
        return  # the kit refuses a window that leaves input rows out
    layer = MaxPoolLayer({"name": "pool", "type": "MAXPOOL", "kernel_size": k, "stride": s, "padding": p})
    counted = _built(layer, (n_y, n_x, c))
    assert counted.connections == _brute_force_connections(layer, (n_y, n_x, c))
    assert counted.weights == 0 and counted.parameters == 0


def test_fc_connections_match_a_brute_force_count():
    layer = FCLayer({"name": "fc", "type": "FC", "num_channels": 3, "init_wt": 0.1, "epsilon": 0.1})
    counted = _built(layer, (2, 3, 2))
    assert counted.connections == _brute_force_connections(layer, (2, 3, 2)) == 3 * 12
    assert counted.size == "1x1" and counted.units == 3


@pytest.mark.parametrize("name", ["convnet2.yaml", "convnet3.yaml", "lenet.yaml", "net_2layer.yaml"])
def test_sizes_and_parameters_are_those_of_the_built_network(name, capsys):
    net = NeuralNet(str(CONFIG_DIR / name))
    size = net.settings_.input_image_size_y * net.settings_.input_image_size_x * net.settings_.input_num_channels
    states = net.Fprop(np.zeros((1, size)))
    capsys.readouterr()
    _, counts = analyze.analyze(str(CONFIG_DIR / name))
    assert [c.name for c in counts] == [layer.name_ for layer in net.layer_]
    for count, state in zip(counts, states[1:]):
        assert count.units == state.size
        shape = state.shape[1:] if state.ndim == 4 else (state.shape[1], 1, 1)
        assert (count.channels, count.size_y, count.size_x) == shape
    totals = analyze.totals(counts)
    assert totals["parameters"] == sum(p.size for p in net.GetParameters().values())
    assert totals["weights"] == sum(p.size for k, p in net.GetParameters().items() if k.endswith("_w"))


def test_default_table_has_every_column_and_a_total_row_and_explains_each_layer(capsys):
    assert analyze.main([str(CONFIG_DIR / "convnet2.yaml"), "--explain"]) == 0
    out = capsys.readouterr().out
    lines = _table_lines(out)
    assert lines[0] == "| " + " | ".join(analyze.COLUMNS.values()) + " |"
    _, counts = analyze.analyze(str(CONFIG_DIR / "convnet2.yaml"))
    assert len(lines) == 2 + len(counts) + 1 and lines[-1].startswith("| total |")
    for count in counts:
        assert f"- {count.name}: " in out and f"= {analyze.fmt(count.connections)} connections" in out


def test_csv_output_has_plain_numbers_that_add_up(capsys):
    assert analyze.main([str(CONFIG_DIR / "convnet2.yaml"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    *layers, total = rows
    assert total["layer"] == "total"
    for column in ("units", "connections", "weights", "weights + biases"):
        assert int(total[column]) == sum(int(row[column]) for row in layers)


def test_thousands_separators_start_at_ten_thousand():
    assert [analyze.fmt(n) for n in (0, 9999, 10000, 1234567)] == ["0", "9999", "10,000", "1,234,567"]


@pytest.mark.parametrize("args,words", [
    (["missing.yaml"], "cannot read config"),
    ([str(CONFIG_DIR / "logreg.yaml"), "--columns", "layer,bogus"], "unknown column 'bogus'"),
    ([str(CONFIG_DIR / "logreg.yaml"), "--format", "xml"], "invalid choice"),
])
def test_bad_input_gives_one_line_and_exit_2(args, words, capsys):
    try:
        code = analyze.main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err


def test_a_config_with_an_unknown_layer_type_names_the_layer_without_a_traceback(tmp_path):
    path = tmp_path / "weird.yaml"
    path.write_text(yaml.safe_dump({"network": [{"name": "drop", "type": "DROPOUT"}]}))
    result = subprocess.run([sys.executable, "tools/analyze.py", str(path)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "drop" in result.stderr


def test_help_exits_0():
    result = subprocess.run([sys.executable, "tools/analyze.py", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "connections" in result.stdout


ANSWER_KEY = REPO_ROOT / "docs" / "answer-key.md"


def _section(title):
    text = ANSWER_KEY.read_text()
    return text.split(f"## {title}")[1].split("\n## ")[0]


def test_the_answer_keys_question_8_is_what_analyze_prints_for_convnet2():
    section = _section("Part 2, question 8")
    (iy, ix, ic), counts = analyze.analyze(str(CONFIG_DIR / "convnet2.yaml"))
    assert analyze.markdown(analyze.table_rows(counts, list(analyze.COLUMNS))) in section
    assert f"input {iy}x{ix}x{ic} = {analyze.fmt(iy * ix * ic)} units" in section
    assert [line[2:] for line in section.splitlines() if line.startswith("- ")] == [c.how for c in counts]


def test_the_answer_keys_question_9_totals_are_what_analyze_counts():
    rows = [line for line in _section("Part 2, question 9").splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| model | weights | biases | weights + biases |"
    for row in rows[1:]:
        model, weights, biases, parameters = (cell.strip() for cell in row.strip("|").split("|"))
        sums = analyze.totals(analyze.analyze(str(CONFIG_DIR / f"{model}.yaml"))[1])
        assert (weights, biases, parameters) == (analyze.fmt(sums["weights"]),
                                                 analyze.fmt(sums["parameters"] - sums["weights"]),
                                                 analyze.fmt(sums["parameters"]))
    assert len(rows) == 7


def test_a_dropout_unit_is_counted_as_connected_to_its_own_input(tmp_path):
    fc = {"type": "FC", "init_wt": 0.1, "epsilon": 0.1}
    network = [
        {"name": "conv1", "type": "CONVOLUTIONAL", "num_channels": 3, "kernel_size": 3, "padding": 1,
         "init_wt": 0.1, "epsilon": 0.05, "momentum": 0.9},
        {"name": "pool1", "type": "MAXPOOL", "kernel_size": 2},
        {"name": "drop1", "type": "DROPOUT", "dropout_rate": 0.25},
        dict(fc, name="fc1", num_channels=16),
        {"name": "drop2", "type": "DROPOUT", "dropout_rate": 0.5},
        dict(fc, name="output", num_channels=10),
    ]
    _, counts = analyze.analyze({"display": False, "network": network})
    drop1 = next(c for c in counts if c.name == "drop1")
    assert (drop1.type, drop1.units, drop1.connections, drop1.parameters) == ("dropout 0.25", 192, 192, 0)
    assert [c.units for c in counts] == [768, 192, 192, 16, 16, 10]


def test_a_batch_norm_unit_is_counted_with_its_channel_s_gamma_and_beta(tmp_path):
    network = [
        {"name": "conv1", "type": "CONVOLUTIONAL", "num_channels": 3, "kernel_size": 3, "padding": 1,
         "init_wt": 0.1, "epsilon": 0.05, "momentum": 0.9},
        {"name": "bn1", "type": "BATCHNORM", "epsilon": 0.05},
        {"name": "output", "type": "FC", "num_channels": 10, "init_wt": 0.1, "epsilon": 0.1},
    ]
    _, counts = analyze.analyze({"display": False, "network": network})
    bn1 = next(c for c in counts if c.name == "bn1")
    # Its running mean and variance are statistics, not trained parameters.
    assert (bn1.type, bn1.units, bn1.connections, bn1.parameters) == ("batch norm", 768, 768, 6)
