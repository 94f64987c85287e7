"""train.py, evaluate.py and grad_check.py end to end, in-process through main(argv) and
once as real subprocesses, on a small slice of the real USPS data. All outputs go to tmp."""

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import CONFIG_DIR, REPO_ROOT

import evaluate
import grad_check
import train
from fc_layer import FCLayer

SCRIPTS = {"train": train, "evaluate": evaluate, "grad_check": grad_check}
SLOW_CONFIGS = {"convnet2.yaml", "convnet3.yaml"}  # full-size deep nets: several seconds each
SHIPPED_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))


def test_every_expected_config_is_shipped():
    assert {"logreg.yaml", "convnet_gradcheck.yaml", "convnet_gradcheck_deep.yaml",
            "convnet_gradcheck_deep_method1.yaml", "convnet1_method1.yaml",
            "convnet1_method2.yaml"} <= set(SHIPPED_CONFIGS)


def _read_stats_and_checkpoint(config_path):
    with open(config_path) as f:
        config = yaml.safe_load(f)
    return config, np.load(config["performance_stats"]), config["checkpoint_file"]


@pytest.mark.parametrize("name", ["logreg.yaml", "convnet_gradcheck_deep_method1.yaml"])
def test_train_main_runs_one_epoch_and_writes_stats_and_checkpoint(make_config, small_npz, tmp_path, name):
    config_path = make_config(name, small_npz, max_epochs=10, batch_size=100)
    assert train.main([str(config_path), "--epochs", "1", "--no-display"]) == 0
    config, stats, checkpoint = _read_stats_and_checkpoint(config_path)
    assert stats.shape == (1, 5)  # --epochs overrides max_epochs
    assert 0 <= stats[0, 1] <= 1 and 0 <= stats[0, 3] <= 1
    assert os.path.exists(checkpoint)
    assert not list((tmp_path / "runs").glob("*.part"))


def test_train_main_same_seed_gives_the_same_checkpoint_and_another_seed_does_not(make_config, small_npz):
    config_path = make_config("net_1layer.yaml", small_npz)
    checkpoints = []
    for seed in ("3", "3", "4"):
        assert train.main([str(config_path), "--epochs", "1", "--no-display", "--seed", seed]) == 0
        _, _, checkpoint = _read_stats_and_checkpoint(config_path)
        with np.load(checkpoint) as f:
            checkpoints.append({key: f[key] for key in f.files})
    for key in checkpoints[0]:
        np.testing.assert_array_equal(checkpoints[0][key], checkpoints[1][key])
    assert not np.array_equal(checkpoints[0]["fc1_w"], checkpoints[2]["fc1_w"])


def test_evaluate_main_prints_ce_and_accuracy_of_the_checkpoint_on_all_three_sets(
        make_config, small_npz, capsys):
    config_path = make_config("logreg.yaml", small_npz)
    assert train.main([str(config_path), "--epochs", "2", "--no-display"]) == 0
    capsys.readouterr()
    assert evaluate.main([str(config_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("CE      : Train")
    assert lines[-1].startswith("Accuracy: Train")
    words = lines[-1].split()
    accuracies = {words[i]: float(words[i + 1]) for i in (1, 3, 5)}
    # Independent check: logistic regression by hand with the checkpoint's weights.
    _, _, checkpoint = _read_stats_and_checkpoint(config_path)
    with np.load(checkpoint) as f:
        w, b = f["output_w"], f["output_b"]
    with np.load(small_npz) as data:
        for label, key in (("Train", "train"), ("Val", "validation"), ("Test", "test")):
            predicted = (data[key] @ w.T + b).argmax(axis=1)
            expected = np.mean(predicted == data[key + "_labels"].argmax(axis=1))
            assert accuracies[label] == pytest.approx(expected, abs=6e-5)
    assert accuracies["Val"] > 0.5  # two epochs of logistic regression learn the digits


def test_evaluate_main_accepts_another_checkpoint(make_config, small_npz, tmp_path, capsys):
    config_path = make_config("logreg.yaml", small_npz)
    other = tmp_path / "other.npz"
    np.savez(other, output_w=np.zeros((10, 256)), output_b=np.zeros((1, 10)))
    assert evaluate.main([str(config_path), "--checkpoint", str(other)]) == 0
    out = capsys.readouterr().out
    # Uniform predictions: cross entropy log(10) everywhere.
    assert f"CE      : Train {np.log(10):.4f} Val {np.log(10):.4f} Test {np.log(10):.4f}" in out


def test_evaluate_before_training_says_the_checkpoint_is_missing(make_config, small_npz, capsys):
    config_path = make_config("logreg.yaml", small_npz)
    assert evaluate.main([str(config_path)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and len(err.strip().splitlines()) == 1


def test_evaluate_on_a_config_without_checkpoint_file_fails_cleanly(tmp_path, small_npz, capsys):
    # The grad-check configs have no checkpoint_file: evaluate must say so, not crash.
    with open(CONFIG_DIR / "convnet_gradcheck.yaml") as f:
        config = yaml.safe_load(f)
    config["data_path"] = str(small_npz)
    path = tmp_path / "no_checkpoint.yaml"
    path.write_text(yaml.safe_dump(config))
    assert evaluate.main([str(path)]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CONFIGS else n
                                  for n in SHIPPED_CONFIGS])
def test_grad_check_passes_on_every_shipped_config(name, capsys):
    assert grad_check.main([str(CONFIG_DIR / name)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "PASSED"
    assert "FAILED" not in out


def test_grad_check_fails_on_a_layer_with_a_wrong_weight_derivative(monkeypatch, capsys):
    original = FCLayer.ComputeDown

    def broken(self, dC_by_doutputs, outputs, inputs):
        d_in, dw, db = original(self, dC_by_doutputs, outputs, inputs)
        return d_in, dw * 1.01, db

    monkeypatch.setattr(FCLayer, "ComputeDown", broken)
    assert grad_check.main([str(CONFIG_DIR / "logreg.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "output_w" in out
    assert "PASSED" not in out
    assert "output_b" not in out.split("FAILED", 1)[1]  # only the broken derivative is blamed


def test_grad_check_fails_on_a_wrong_input_derivative(monkeypatch, capsys):
    # net_1layer: the output layer's input derivative feeds fc1's weight derivative.
    original = FCLayer.ComputeDown

    def broken(self, dC_by_doutputs, outputs, inputs):
        d_in, dw, db = original(self, dC_by_doutputs, outputs, inputs)
        return (None if d_in is None else d_in * 0.99), dw, db

    monkeypatch.setattr(FCLayer, "ComputeDown", broken)
    assert grad_check.main([str(CONFIG_DIR / "net_1layer.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAILED: gradient for fc1_w" in out and "FAILED: gradient for output_w" not in out


def test_grad_check_report_lines_follow_a_redirected_stdout(capsys):
    assert grad_check.main([str(CONFIG_DIR / "logreg.yaml")]) == 0
    out = capsys.readouterr().out
    assert "gradient for output_w looks OK" in out


def test_train_epoch_lines_follow_a_redirected_stdout(make_config, small_npz, capsys):
    config_path = make_config("logreg.yaml", small_npz)
    assert train.main([str(config_path), "--epochs", "1", "--no-display"]) == 0
    out = capsys.readouterr().out
    assert "Epoch   1" in out and "Best validation accuracy" in out


# ----------------------------------------------------------------------------------------
# bad input: a one-line message on stderr, a non-zero exit code, no traceback
# ----------------------------------------------------------------------------------------

def _bad_config(kind, tmp_path, small_npz):
    if kind == "missing config file":
        return tmp_path / "does_not_exist.yaml"
    if kind == "yaml syntax error":
        path = tmp_path / "broken.yaml"
        path.write_text("max_epochs: 1\nnetwork:\n  - {name: output, type: FC\n")
        return path
    with open(CONFIG_DIR / "logreg.yaml") as f:
        config = yaml.safe_load(f)
    config.update(data_path=str(small_npz), checkpoint_file=str(tmp_path / "c.npz"),
                  performance_stats=str(tmp_path / "s.npy"), display=False)
    config["network"].insert(0, {"name": "weird", "type": "DROPOUT"})
    path = tmp_path / "unknown_type.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("kind,words", [("missing config file", "cannot read"),
                                        ("yaml syntax error", "not valid YAML"),
                                        ("unknown layer type", "weird")])
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_bad_input_gives_nonzero_exit_and_one_line_message(script, kind, words, tmp_path, small_npz, capsys):
    path = _bad_config(kind, tmp_path, small_npz)
    assert SCRIPTS[script].main([str(path)]) != 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{script}.py: error:") and words in lines[0]
    assert "Traceback" not in captured.err


def test_train_refuses_zero_epochs(make_config, small_npz):
    with pytest.raises(SystemExit) as info:
        train.main([str(make_config("logreg.yaml", small_npz)), "--epochs", "0"])
    assert info.value.code == 2


# ----------------------------------------------------------------------------------------
# real processes
# ----------------------------------------------------------------------------------------

def _run(args, **kwargs):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_each_script_runs_as_a_subprocess_with_exit_code_0(make_config, small_npz, usps_mirror, tmp_path):
    config_path = make_config("logreg.yaml", small_npz)
    result = _run(["train.py", config_path, "--epochs", "1", "--no-display"])
    assert result.returncode == 0, result.stderr
    assert "Epoch   1" in result.stdout
    result = _run(["evaluate.py", config_path])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("Accuracy: Train")
    result = _run(["grad_check.py", CONFIG_DIR / "convnet_gradcheck.yaml"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("PASSED")
    png = tmp_path / "conv.png"
    result = _run(["play_with_convolutions.py", "--out", png])
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    npz = tmp_path / "prepared" / "usps.npz"
    result = _run(["data/usps.py", "--mirror", usps_mirror, "--out", npz])
    assert result.returncode == 0, result.stderr
    with np.load(npz) as f:
        assert f["train"].shape == (6291, 256)


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    result = _run(["train.py", tmp_path / "missing.yaml"])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_with_display_on_a_headless_machine_writes_a_png_and_says_so_once(make_config, small_npz, tmp_path):
    config_path = make_config("convnet_gradcheck_deep_method1.yaml", small_npz, display=True, display_after=2,
                              batch_size=100)
    result = _run(["train.py", config_path, "--epochs", "2"])
    assert result.returncode == 0, result.stderr
    runs = tmp_path / "runs"  # where the stats file is
    assert (runs / "convnet_gradcheck_deep_method1_stats.npy").exists()
    pngs = list(runs.glob("*_display.png"))
    assert len(pngs) == 1, sorted(p.name for p in runs.iterdir())
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    said = [line for line in result.stdout.splitlines() if "no screen" in line]
    assert len(said) == 1, result.stdout  # drawn 6 times (every 2nd of 6 steps, 2 epochs), said once
    assert str(pngs[0]) in said[0]
    assert not list(runs.glob("*.part"))
