"""tools/robustness.py: validation error on distorted copies of the validation images, the same
copies for every model, computed here by hand; never the test set; bad input in one line."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

import train
from data.augment import augment
from net import NeuralNet
from tools.course import robustness


@pytest.fixture
def trained_logreg(make_config, small_npz):
    path = make_config("logreg.yaml", small_npz)
    assert train.main([str(path), "--epochs", "3", "--no-display"]) == 0
    return path


def _error_by_hand(checkpoint, images, labels):
    with np.load(checkpoint) as f:
        w, b = f["output_w"], f["output_b"]
    return 100 * np.mean((images @ w.T + b).argmax(axis=1) != labels.argmax(axis=1))


def _row(out, name):
    line = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
    return [float(cell.strip().rstrip(" %")) for cell in line.strip("|").split("|")[1:]]


def test_each_error_is_the_models_on_copies_drawn_from_the_seed(trained_logreg, small_npz, capsys):
    assert robustness.main([str(trained_logreg), "--copies", "3", "--seed", "7"]) == 0
    clean, affine, elastic, mean = _row(capsys.readouterr().out, trained_logreg.stem)
    checkpoint = NeuralNet(str(trained_logreg)).settings_.checkpoint_file
    with np.load(small_npz) as data:
        images, labels = data["validation"], data["validation_labels"]
    assert clean == pytest.approx(_error_by_hand(checkpoint, images, labels), abs=0.005)
    for name, found in (("affine", affine), ("elastic", elastic)):
        rng = np.random.default_rng(7)
        copies = np.concatenate([augment(images, rng, robustness.DISTORTIONS[name], (1, 16, 16)) for _ in range(3)])
        assert found == pytest.approx(_error_by_hand(checkpoint, copies, np.concatenate([labels] * 3)), abs=0.005)
    assert mean == pytest.approx((affine + elastic) / 2, abs=0.0005)
    assert affine > clean  # the distortions make the digits harder for a linear model


def test_two_models_see_the_same_copies_and_another_seed_others(trained_logreg, monkeypatch, capsys):
    seen = []
    original = NeuralNet.Validate
    monkeypatch.setattr(NeuralNet, "Validate", lambda self, data: seen.append(data[0].copy()) or original(self, data))
    robustness.main([str(trained_logreg), str(trained_logreg), "--copies", "2"])
    robustness.main([str(trained_logreg), "--copies", "2", "--seed", "1"])
    first, second, other = seen[:3], seen[3:6], seen[6:]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[0], other[0])  # the clean images
    assert not np.array_equal(first[1], other[1])


def test_the_test_set_is_never_read(trained_logreg, monkeypatch, capsys):
    asked = []
    original = NeuralNet.LoadData
    monkeypatch.setattr(NeuralNet, "LoadData", lambda self, test=False: asked.append(test) or original(self, test))
    assert robustness.main([str(trained_logreg), "--copies", "1"]) == 0
    assert asked == [False]


@pytest.mark.parametrize("extra,words", [
    (["--copies", "0"], "--copies must be at least 1"),
    (["SECOND", "--checkpoint", "x.npz"], "--checkpoint goes with one config"),
    (["--checkpoint", "missing.npz"], "missing.npz"),
])
def test_bad_input_is_one_line_and_exit_2_before_the_table(trained_logreg, extra, words):
    args = [sys.executable, str(REPO_ROOT / "tools" / "robustness.py"), str(trained_logreg)]
    args += [str(trained_logreg) if a == "SECOND" else a for a in extra]
    run = subprocess.run(args, capture_output=True, text=True, cwd=trained_logreg.parent, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("robustness.py: ") and words in run.stderr and len(run.stderr.splitlines()) == 1
