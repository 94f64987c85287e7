"""lr_schedule.py and the lr_* keys: the factor per epoch, the stats' fifth column, the
layers' epsilons, resuming, bad keys; and that runs without the new keys are unchanged."""

import io
import json
import math
import re

import numpy as np
import pytest
from conftest import LOGREG, load_shipped_config, small_config, synthetic_npz

import net as net_module
from net import NeuralNet
from plumbing.errors import ConfigError
from plumbing.lr_schedule import lr_multiplier


def test_constant_is_exactly_one_in_every_epoch():
    assert [lr_multiplier(e, 5) for e in range(1, 6)] == [1.0] * 5


def test_step_divides_every_step_epochs_by_the_factor():
    assert [lr_multiplier(e, 7, "step", step_epochs=3) for e in range(1, 8)] == \
        [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, pytest.approx(0.01, rel=1e-15)]
    assert [lr_multiplier(e, 5, "step", step_epochs=2, step_factor=0.5) for e in range(1, 6)] == \
        [1.0, 1.0, 0.5, 0.5, 0.25]


def test_cosine_falls_from_one_towards_the_minimum_over_the_run():
    r = math.sqrt(0.5)  # cos(pi/4)
    hand = [1.0, (1 + r) / 2, 0.5, (1 - r) / 2]  # epochs 1..4 of 4: cos(pi * (epoch - 1) / 4)
    assert [lr_multiplier(e, 4, "cosine") for e in range(1, 5)] == pytest.approx(hand, rel=1e-14)
    assert [lr_multiplier(e, 4, "cosine", min_factor=0.2) for e in range(1, 5)] == \
        pytest.approx([0.2 + 0.8 * h for h in hand], rel=1e-14)
    assert lr_multiplier(1, 1, "cosine") == 1.0


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="linear"):
        lr_multiplier(1, 3, "linear")


# --- in the network -----------------------------------------------------------------------

def config(tmp_path, **keys):
    data = tmp_path / "syn.npz"
    if not data.exists():
        synthetic_npz(data, num_train=120, num_validation=40)
    network = [dict(LOGREG, name="hidden", num_channels=12, epsilon=0.05, l2_decay=0.0), dict(LOGREG, l2_decay=0.0)]
    return small_config(tmp_path, data, network=network, max_epochs=5, batch_size=50,
                        checkpoint_file=str(tmp_path / "m.npz"), performance_stats=str(tmp_path / "s.npy"), **keys)


def test_each_epoch_uses_the_scheduled_epsilons_and_the_stats_record_the_factor(tmp_path, monkeypatch):
    net = NeuralNet(config(tmp_path, lr_schedule="step", lr_step_epochs=2, lr_step_factor=0.5), seed=0)
    net.LoadData()
    used = []
    original = net.Update
    monkeypatch.setattr(net, "Update",
                        lambda grads: used.append([lyr.epsilon_ for lyr in net.layer_]) or original(grads))
    log = io.StringIO()
    net.Train(log=log)
    factors = [1.0, 1.0, 0.5, 0.5, 0.25]
    assert used == [[0.05 * f, 0.02 * f] for f in factors for _ in range(3)]  # 3 steps per epoch
    stats = np.load(tmp_path / "s.npy")
    assert stats.shape == (5, 5) and stats[:, 4].tolist() == factors
    assert "LR x0.25" in log.getvalue().splitlines()[-2]
    assert [lyr.epsilon_ for lyr in net.layer_] == [0.05, 0.02]  # as configured again afterwards


def test_cosine_spans_the_epochs_of_the_run_the_override_when_given(tmp_path):
    net = NeuralNet(config(tmp_path, lr_schedule="cosine", lr_min_factor=0.1), seed=0)
    net.Train(max_epochs=2, log=io.StringIO())  # as train.py --epochs 2
    np.testing.assert_allclose(np.load(tmp_path / "s.npy")[:, 4], [1.0, 0.1 + 0.9 * 0.5], rtol=1e-15)


def _train(c, seed=0, epochs=None):
    net = NeuralNet(c, seed=seed)
    net.Train(max_epochs=epochs, log=io.StringIO())
    return np.load(c["performance_stats"]), net.GetParameters()


def test_every_new_key_at_its_off_value_leaves_a_real_run_bit_identical(tmp_path, small_npz, monkeypatch):
    """The new keys at their defaults, or absent, or the schedule and augmentation code bypassed
    altogether (as before they existed): the same stats and parameters, bit for bit."""
    def shipped(folder, **keys):
        c = load_shipped_config("convnet1_method1.yaml")
        (tmp_path / folder).mkdir()
        c.update(data_path=str(small_npz), checkpoint_file=str(tmp_path / folder / "c.npz"),
                 performance_stats=str(tmp_path / folder / "s.npy"), display=False, **keys)
        return c

    off = {"augment_translate": 0, "augment_rotate": 0.0, "augment_scale": 0, "augment_elastic_alpha": 0,
           "weight_average": 0, "lr_schedule": "constant"}
    runs = [_train(shipped("absent"), epochs=2), _train(shipped("off", **off), epochs=2)]
    with monkeypatch.context() as m:
        m.setattr(NeuralNet, "_set_learning_rates", lambda self, factor: None)
        m.setattr(net_module, "augment", lambda *args: pytest.fail("augmentation ran while off"))
        runs.append(_train(shipped("bypassed"), epochs=2))
    (stats, params) = runs[0]
    assert stats.shape == (2, 5) and np.all(stats[:, 4] == 1.0)
    for other_stats, other_params in runs[1:]:
        np.testing.assert_array_equal(other_stats, stats)
        assert other_params.keys() == params.keys()
        for key in params:
            np.testing.assert_array_equal(other_params[key], params[key])


def test_a_schedule_changes_the_run(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    plain, _ = _train(config(tmp_path / "a"))
    step, _ = _train(config(tmp_path / "b", lr_schedule="step", lr_step_epochs=1))
    np.testing.assert_array_equal(step[0], plain[0])  # epoch 1: factor 1 in both
    assert not np.array_equal(step[1:, :4], plain[1:, :4])


def test_resuming_with_another_schedule_or_epoch_count_is_refused(tmp_path):
    c = config(tmp_path, lr_schedule="cosine")
    NeuralNet(c, seed=0).Train(max_epochs=2, log=io.StringIO())
    with pytest.raises(ConfigError, match="cannot resume.*--epochs"):
        NeuralNet(c, seed=0).Train(max_epochs=4, resume=True, log=io.StringIO())
    with pytest.raises(ConfigError, match="cannot resume"):
        NeuralNet(config(tmp_path, lr_schedule="step", lr_step_epochs=1), seed=0).Train(
            max_epochs=2, resume=True, log=io.StringIO())
    NeuralNet(c, seed=0).Train(max_epochs=2, resume=True, log=io.StringIO())  # the same run: fine


@pytest.mark.parametrize("key,change,words", [
    ("stats", lambda a: a[:, :4], "its statistics have shape (1, 4), not (1, 5)"),
    ("rng_states", lambda a: np.array(json.dumps(json.loads(str(a))[:2])), "2 generator states, not 4"),
])
def test_a_last_state_of_another_layout_is_refused_by_name(tmp_path, key, change, words):
    c = config(tmp_path)
    net = NeuralNet(c, seed=0)
    net.Train(max_epochs=1, log=io.StringIO())
    path = net.LastStatePath()
    with np.load(path) as f:
        state = dict(f)
    state[key] = change(state[key])
    np.savez(path, **state)
    with pytest.raises(ConfigError, match=re.escape(words)):
        NeuralNet(c, seed=0).Train(max_epochs=2, resume=True, log=io.StringIO())


@pytest.mark.parametrize("keys,words", [
    ({"lr_schedule": "linear"}, "key 'lr_schedule' must be one of constant, step, cosine, got 'linear'"),
    ({"lr_schedule": "step"}, "key 'lr_step_epochs' is needed with lr_schedule step"),
    ({"lr_schedule": "step", "lr_step_epochs": 0}, "key 'lr_step_epochs' must be >= 1"),
    ({"lr_schedule": "step", "lr_step_epochs": 2.5}, "key 'lr_step_epochs' must be an integer"),
    ({"lr_schedule": "step", "lr_step_epochs": 2, "lr_step_factor": 0}, "key 'lr_step_factor' must be above 0"),
    ({"lr_schedule": "step", "lr_step_epochs": 2, "lr_min_factor": 0.1}, "key 'lr_min_factor' has no effect"),
    ({"lr_schedule": "cosine", "lr_min_factor": 1.5}, "key 'lr_min_factor' must be between 0 and 1"),
    ({"lr_schedule": "cosine", "lr_step_epochs": 3}, "key 'lr_step_epochs' has no effect with lr_schedule cosine"),
    ({"lr_step_factor": 0.5}, "key 'lr_step_factor' has no effect with lr_schedule constant"),
    ({"lr_schedule": 3}, "key 'lr_schedule' must be a string"),
    ({"lr_shedule": "step"}, "unknown key 'lr_shedule' (did you mean 'lr_schedule'?)"),
])
def test_bad_schedule_keys_are_config_errors_naming_the_key(tmp_path, keys, words):
    c = config(tmp_path, **keys)
    c["_path"] = "bad.yaml"
    with pytest.raises(ConfigError) as info:
        NeuralNet(c)
    assert str(info.value).startswith("bad.yaml: ") and words in str(info.value)
