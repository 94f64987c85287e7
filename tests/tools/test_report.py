"""tools/report.py: the handout's results table from checkpoints, and the learning curves."""

import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT

import train
from tools.course import report


def _softmax_results(checkpoint, data_path):
    """{split: (CE, accuracy)} of a logistic regression checkpoint, computed here by hand."""
    with np.load(checkpoint) as f:
        w, b = f["output_w"], f["output_b"]
    results = {}
    with np.load(data_path) as data:
        for key in ("train", "validation", "test"):
            z = data[key] @ w.T + b
            z -= z.max(axis=1, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            t = data[key + "_labels"]
            results[key] = (-np.sum(t * log_p) / len(t), np.mean(log_p.argmax(1) == t.argmax(1)))
    return results


@pytest.fixture
def trained_logreg(make_config, small_npz):
    path = make_config("logreg.yaml", small_npz)
    assert train.main([str(path), "--epochs", "3", "--no-display"]) == 0
    return path


def _row(out, name):
    line = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_table_row_holds_the_checkpoints_ce_and_accuracy_on_each_split(trained_logreg, small_npz, tmp_path,
                                                                      capsys):
    assert report.main([str(trained_logreg), "--plot", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    cells = [float(c) for c in _row(out, "logreg")]
    with open(trained_logreg) as f:
        checkpoint = yaml.safe_load(f)["checkpoint_file"]
    expected = _softmax_results(checkpoint, small_npz)
    for i, split in enumerate(("train", "validation", "test")):
        assert cells[2 * i] == pytest.approx(expected[split][0], abs=6e-5)
        assert cells[2 * i + 1] == pytest.approx(expected[split][1], abs=6e-5)


def test_learning_curves_are_drawn_from_the_stats_file(trained_logreg, tmp_path, capsys):
    png = tmp_path / "out" / "curves.png"
    assert report.main([str(trained_logreg), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"learning curves of logreg: {png}" in capsys.readouterr().out
    with open(trained_logreg) as f:
        stats = np.load(yaml.safe_load(f)["performance_stats"])
    model = report.collect(str(trained_logreg), evaluate_model=False)
    np.testing.assert_array_equal(model.stats, stats)
    assert stats.shape == (3, 5)


@pytest.mark.parametrize("shape", [(3, 4), (3, 3), (5,)])
def test_stats_of_another_shape_than_epochs_by_5_are_refused(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.zeros(shape))
    with pytest.raises(report.ConfigError, match=re.escape(f"shape {shape}, not (epochs, 5)")):
        report.load_stats(str(tmp_path / "bad.npy"), "c.yaml")


def _png_width(path):
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk's width


def test_a_third_panel_shows_the_learning_rate_factor_only_when_a_schedule_changed_it(tmp_path):
    stats = np.array([[1.0, 0.5, 1.1, 0.5, 1.0], [0.8, 0.6, 0.9, 0.6, 1.0]])
    constant = report.ModelReport("constant", "c.yaml", stats=stats)
    report.plot_curves([constant], str(tmp_path / "two.png"))
    scheduled = report.ModelReport("step", "s.yaml", stats=np.vstack([stats, [0.7, 0.7, 0.8, 0.7, 0.1]]))
    report.plot_curves([constant, scheduled], str(tmp_path / "three.png"))
    assert _png_width(tmp_path / "three.png") == pytest.approx(1.5 * _png_width(tmp_path / "two.png"), rel=0.01)


def test_an_untrained_model_gets_dashes_and_the_exact_command_to_train_it(trained_logreg, make_config, small_npz,
                                                                          tmp_path, capsys):
    untrained = make_config("net_1layer.yaml", small_npz)
    assert report.main([str(trained_logreg), str(untrained), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "net_1layer") == ["-"] * 6
    assert f"net_1layer: not trained yet; train it with: python train.py {untrained}" in out
    assert not (tmp_path / "runs" / "net_1layer.npz").exists()


def test_latex_table_has_the_same_numbers(trained_logreg, capsys):
    assert report.main([str(trained_logreg), "--no-plot"]) == 0
    markdown = _row(capsys.readouterr().out, "logreg")
    assert report.main([str(trained_logreg), "--no-plot", "--format", "latex"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == r"\begin{tabular}{lrrrrrr}" and lines[-1] == r"\end{tabular}"
    row = next(line for line in lines if line.startswith("logreg &"))
    assert [c.strip() for c in row.rstrip("\\ ").split("&")][1:] == markdown


def test_latex_escapes_underscores_in_model_names(make_config, small_npz):
    model = report.collect(str(make_config("net_1layer.yaml", small_npz)))
    assert r"net\_1layer &" in report.results_table([model], "latex")


@pytest.mark.parametrize("kind", ["missing config", "no checkpoint_file", "damaged stats"])
def test_bad_input_gives_one_line_and_exit_2(kind, trained_logreg, tmp_path, capsys):
    path = tmp_path / "missing.yaml"
    if kind == "no checkpoint_file":
        path = REPO_ROOT / "configs" / "convnet_gradcheck.yaml"
    elif kind == "damaged stats":
        with open(trained_logreg) as f:
            stats = yaml.safe_load(f)["performance_stats"]
        with open(stats, "wb") as f:
            f.write(b"not a numpy file")
        path = trained_logreg
    assert report.main([str(path), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("report.py: error:")


def test_runs_as_a_script_with_help():
    result = subprocess.run([sys.executable, "tools/report.py", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--format" in result.stdout
