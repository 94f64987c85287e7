"""plumbing/weight_average.py and the weight_average key: the average's arithmetic, the averaged
weights being what validation and the checkpoint see, and a resumed run the same bit for bit."""

import io

import numpy as np
import pytest
from test_augment import config

from net import NeuralNet
from plumbing.errors import ConfigError
from plumbing.weight_average import WeightAverage


def test_the_average_is_the_exponential_moving_average_of_the_steps():
    rng = np.random.default_rng(0)
    start = {"a_w": rng.standard_normal((3, 4)).astype(np.float32), "a_b": np.zeros((1, 3), np.float32)}
    average = WeightAverage(start, 0.9)
    steps = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in start.items()} for _ in range(5)]
    for step in steps:
        average.update(step)
    for key in start:
        # Closed form: d^n a0 + (1 - d) sum_k d^(n - k) w_k.
        expected = 0.9 ** 5 * start[key].astype(np.float64)
        for k, step in enumerate(steps, 1):
            expected += 0.1 * 0.9 ** (5 - k) * step[key].astype(np.float64)
        np.testing.assert_allclose(average.averages_[key], expected, rtol=1e-12)
        assert average.averages_[key].dtype == np.float64
    start["a_w"][:] = 7  # the average keeps its own copy
    assert not np.any(average.averages_["a_w"] == 7)


def test_restore_puts_back_what_arrays_gave_and_refuses_other_shapes():
    average = WeightAverage({"a_w": np.ones((2, 2))}, 0.5)
    other = WeightAverage({"a_w": np.zeros((2, 2))}, 0.5)
    other.restore(average.arrays())
    np.testing.assert_array_equal(other.averages_["a_w"], 1.0)
    with pytest.raises(ValueError, match="'a_w_average' is missing"):
        other.restore({})
    with pytest.raises(ValueError, match=r"'a_w_average' is \(3,\), not \(2, 2\)"):
        other.restore({"a_w_average": np.ones(3)})
    with pytest.raises(ValueError, match="decay must be above 0 and below 1"):
        WeightAverage({}, 1.0)


def _train(cfg, seed=0, **kwargs):
    net = NeuralNet(cfg, seed=seed)
    net.Train(log=io.StringIO(), **kwargs)
    return net


def test_validation_and_the_checkpoint_see_the_average_training_goes_on_with_its_own(tmp_path, monkeypatch):
    cfg = config(tmp_path, weight_average=0.8, checkpoint_on="cross_entropy", max_epochs=3)
    steps = []
    original = NeuralNet.Update

    def recording(self, grads):
        original(self, grads)
        steps.append({k: v.copy() for k, v in self.GetParameters().items()})

    epoch_averages = []
    end_epoch = NeuralNet._end_epoch

    def snapshot(self, epoch, row):
        epoch_averages.append({k: v.copy() for k, v in self.average_.averages_.items()})
        end_epoch(self, epoch, row)

    net = NeuralNet(cfg, seed=0)
    start = {k: v.copy() for k, v in net.GetParameters().items()}
    monkeypatch.setattr(NeuralNet, "Update", recording)
    monkeypatch.setattr(NeuralNet, "_end_epoch", snapshot)
    net.Train(log=io.StringIO())
    # The average of every step's trained weights, computed here on its own.
    expected = {k: v.astype(np.float64) for k, v in start.items()}
    for step in steps:
        for k in expected:
            expected[k] = 0.8 * expected[k] + 0.2 * step[k]
    for k in expected:
        np.testing.assert_allclose(net.average_.averages_[k], expected[k], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(net.GetParameters()[k], steps[-1][k])  # training's own, unchanged
    # The last epoch's validation row is the averaged weights' ...
    stats = np.load(tmp_path / "s.npy")
    for layer in net.layer_:
        layer.SetParameters(net.average_.averages_)
    assert tuple(stats[-1, 2:4]) == net.Validate(net.validation_)
    # ... and the checkpoint holds the average at the best epoch, not the trained weights.
    saved = np.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(epoch_averages[-1]["hidden_w"], net.average_.averages_["hidden_w"])
    for k in expected:
        np.testing.assert_array_equal(saved[k], epoch_averages[net.best_epoch_ - 1][k].astype(saved[k].dtype))


def test_a_resumed_run_with_an_average_is_the_uninterrupted_one_bit_for_bit(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    keys = dict(weight_average=0.9, checkpoint_on="cross_entropy", max_epochs=4)
    whole = _train(config(tmp_path / "a", **keys))
    cfg = config(tmp_path / "b", **keys)
    _train(cfg, max_epochs=2)
    resumed = _train(cfg, resume=True)
    for k, v in whole.average_.averages_.items():
        np.testing.assert_array_equal(resumed.average_.averages_[k], v)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "s.npy"), np.load(tmp_path / "b" / "s.npy"))
    a, b = np.load(tmp_path / "a" / "m.npz"), np.load(tmp_path / "b" / "m.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_an_average_changes_the_validation_figures_and_off_is_the_plain_run(tmp_path):
    for folder in "abc":
        (tmp_path / folder).mkdir()
    plain = np.load(_train(config(tmp_path / "a")).settings_.performance_stats)
    off = np.load(_train(config(tmp_path / "b", weight_average=0)).settings_.performance_stats)
    averaged = np.load(_train(config(tmp_path / "c", weight_average=0.9)).settings_.performance_stats)
    np.testing.assert_array_equal(off, plain)
    np.testing.assert_array_equal(averaged[:, :2], plain[:, :2])  # the same training ...
    assert not np.array_equal(averaged[:, 2], plain[:, 2])  # ... validated with other weights


@pytest.mark.parametrize("value,words", [(1, "must be >= 0 and below 1"), (-0.1, "must be >= 0 and below 1"),
                                         ("x", "must be a finite number")])
def test_bad_weight_average_is_a_config_error_naming_the_key(tmp_path, value, words):
    with pytest.raises(ConfigError, match=f"'weight_average' {words}"):
        NeuralNet(config(tmp_path, weight_average=value))
