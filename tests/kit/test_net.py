"""net.NeuralNet: building from configs, passes, loss, the training loop and checkpoints."""

import contextlib
import io

import numpy as np
import pytest
from conftest import LOGREG, load_shipped_config, small_config, synthetic_npz

from net import NeuralNet
from plumbing.config import load_config
from plumbing.errors import ConfigError

# ----------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------

def test_unknown_layer_type_is_a_config_error_naming_the_layer(tmp_path):
    config = small_config(tmp_path, "unused.npz", network=[
        {"name": "mystery", "type": "RECURRENT", "num_channels": 3},
        dict(LOGREG)])
    with pytest.raises(ConfigError, match="mystery") as info:
        NeuralNet(config)
    assert "RECURRENT" in str(info.value)


@pytest.mark.parametrize("network,words", [
    ([dict(LOGREG), dict(LOGREG)], "layer 'output': key 'name' is used by two layers"),
    ([{"name": "p", "type": "MAXPOOL", "kernel_size": 2}], "must be an FC"),
    ([], "network"),
    ([dict(LOGREG, name=None)], "missing key 'name'"),
    (["output"], "mapping"),
])
def test_malformed_networks_are_config_errors(tmp_path, network, words):
    config = small_config(tmp_path, "unused.npz")
    config["network"] = network
    with pytest.raises(ConfigError, match=words):
        NeuralNet(config)


@pytest.mark.parametrize("key,value", [("batch_size", 0), ("max_epochs", 2.5), ("display", "yes"),
                                       ("data_path", 3), ("input_num_channels", True)])
def test_bad_top_level_settings_are_config_errors_naming_the_key(tmp_path, key, value):
    config = small_config(tmp_path, "unused.npz")
    config[key] = value
    with pytest.raises(ConfigError, match=key):
        NeuralNet(config)


def test_load_config_reports_missing_file_and_bad_yaml_as_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("network:\n  - {name: a, type: FC\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_layers_are_marked_input_and_output_and_chained_by_size():
    net = NeuralNet(load_shipped_config("convnet_gradcheck_deep.yaml"))
    assert [layer.is_input_ for layer in net.layer_] == [True, False, False, False]
    assert [layer.is_output_ for layer in net.layer_] == [False, False, False, True]
    assert net.layer_[2].w_.shape == (4, 4 * 5 * 5)
    assert net.layer_[3].w_.shape == (10, 8 * 8 * 4)


# ----------------------------------------------------------------------------------------
# passes and loss
# ----------------------------------------------------------------------------------------

def test_fprop_and_bprop_shapes_through_a_convnet():
    net = NeuralNet(load_shipped_config("convnet_gradcheck_deep.yaml"))
    x = np.random.default_rng(0).uniform(0, 1, (3, 256))
    states = net.Fprop(x)
    assert [s.shape for s in states] == [(3, 256), (3, 4, 16, 16), (3, 4, 8, 8), (3, 4, 8, 8), (3, 10)]
    np.testing.assert_allclose(states[-1].sum(axis=1), 1.0, rtol=1e-12)
    targets = np.eye(10)[[1, 2, 3]]
    grads = net.Bprop(net.ComputeDeriv(states[-1], targets), states)
    assert len(grads) == 4
    assert grads[1] == (None, None)
    for layer, (dw, db) in zip(net.layer_, grads):
        if layer.has_params_:
            assert dw.shape == layer.w_.shape and db.shape == layer.b_.shape


def test_bprop_of_the_net_matches_central_differences_of_the_cross_entropy():
    net = NeuralNet(load_shipped_config("convnet_gradcheck_deep_method1.yaml"), seed=3)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (2, 256))
    t = np.eye(10)[[4, 7]]
    states = net.Fprop(x)
    grads = net.Bprop(net.ComputeDeriv(states[-1], t), states)
    for layer, (dw, _) in zip(net.layer_, grads):
        if not layer.has_params_:
            continue
        flat = layer.w_.reshape(-1)
        for i in rng.choice(flat.size, 5, replace=False):
            saved = flat[i]
            flat[i] = saved + 1e-6
            plus = net.ComputeLoss(net.Fprop(x)[-1], t)[0]
            flat[i] = saved - 1e-6
            minus = net.ComputeLoss(net.Fprop(x)[-1], t)[0]
            flat[i] = saved
            # dw is averaged over the batch of 2, the loss is summed.
            assert dw.reshape(-1)[i] == pytest.approx((plus - minus) / 2e-6 / 2, rel=1e-5, abs=1e-9)


def test_compute_loss_is_summed_cross_entropy_and_count_of_correct_argmax():
    predictions = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]])
    targets = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    ce, correct = NeuralNet.ComputeLoss(predictions, targets)
    assert ce == pytest.approx(-(np.log(0.7) + np.log(0.3) + np.log(0.25)), rel=1e-12)
    assert correct == 1
    assert isinstance(ce, float) and isinstance(correct, int)


def test_compute_loss_stays_finite_when_a_target_gets_probability_zero():
    ce, correct = NeuralNet.ComputeLoss(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert np.isfinite(ce) and ce > 700  # -log(tiny) ~ 708
    assert correct == 0


def test_compute_deriv_is_predictions_minus_targets():
    p = np.array([[0.2, 0.8], [0.6, 0.4]])
    t = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(NeuralNet.ComputeDeriv(p, t), [[0.2, -0.2], [-0.4, 0.4]], rtol=1e-12)


def test_validate_averages_cross_entropy_and_accuracy_over_all_examples_in_batches(tmp_path):
    net = NeuralNet(small_config(tmp_path, "unused.npz", batch_size=7))
    rng = np.random.default_rng(2)
    x, t = rng.uniform(0, 1, (20, 256)), np.eye(10)[rng.integers(0, 10, 20)]
    p = net.Fprop(x)[-1]
    ce, acc = net.Validate((x, t))
    assert ce == pytest.approx(-np.sum(t * np.log(p)) / 20, rel=1e-12)
    assert acc == pytest.approx(np.mean(p.argmax(1) == t.argmax(1)))


# ----------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------

def _train(config, seed=0, epochs=None):
    net = NeuralNet(config, seed=seed)
    net.Train(max_epochs=epochs, log=io.StringIO())
    return net


def test_same_seed_gives_bit_identical_parameters_after_training(tmp_path):
    data = synthetic_npz(tmp_path / "syn.npz")
    network = [dict(LOGREG, name="hidden", num_channels=20), dict(LOGREG)]
    runs = []
    for run in range(2):
        folder = tmp_path / f"run{run}"
        runs.append(_train(small_config(folder, data, network=network, batch_size=32), seed=5).GetParameters())
    other = _train(small_config(tmp_path / "other", data, network=network, batch_size=32), seed=6).GetParameters()
    assert runs[0].keys() == runs[1].keys() == {"hidden_w", "hidden_b", "output_w", "output_b"}
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    assert not np.array_equal(runs[0]["hidden_w"], other["hidden_w"])


def test_training_uses_every_image_once_per_epoch_with_a_smaller_last_batch(tmp_path, monkeypatch):
    data = synthetic_npz(tmp_path / "syn.npz", num_train=250)
    net = NeuralNet(small_config(tmp_path, data, batch_size=100), seed=0)
    net.LoadData()
    train_x = net.train_[0]
    seen = []
    original = net.Bprop
    monkeypatch.setattr(net, "Bprop", lambda deriv, states: seen.append(states[0].copy()) or original(deriv, states))
    net.Train(max_epochs=2, log=io.StringIO())
    assert [len(b) for b in seen] == [100, 100, 50, 100, 100, 50]
    for epoch in range(2):
        rows = np.concatenate(seen[3 * epoch:3 * epoch + 3])
        # The same multiset of rows as the training set: sort both row-wise.
        np.testing.assert_array_equal(rows[np.lexsort(rows.T)], train_x[np.lexsort(train_x.T)])


def test_stats_rows_are_train_and_validation_cross_entropy_and_accuracy(tmp_path, monkeypatch):
    data = synthetic_npz(tmp_path / "syn.npz", num_train=130)
    net = NeuralNet(small_config(tmp_path, data, batch_size=50), seed=1)
    net.LoadData()
    batches = []
    original = net.Bprop

    def spy(deriv, states):
        predictions = states[-1].copy()
        batches.append((predictions, predictions - deriv))  # deriv = predictions - targets
        return original(deriv, states)

    monkeypatch.setattr(net, "Bprop", spy)
    net.Train(max_epochs=3, log=io.StringIO())
    stats = np.load(tmp_path / "stats.npy")
    assert stats.shape == (3, 5)
    assert np.all(stats[:, 4] == 1.0)  # the constant schedule's learning-rate factor
    for epoch in range(3):
        epoch_batches = batches[3 * epoch:3 * epoch + 3]
        ce = sum(-np.sum(t * np.log(p)) for p, t in epoch_batches) / 130
        correct = sum(np.sum(p.argmax(1) == np.round(t).argmax(1)) for p, t in epoch_batches) / 130
        assert stats[epoch, 0] == pytest.approx(ce, rel=1e-9)
        assert stats[epoch, 1] == pytest.approx(correct, rel=1e-12)
    # After the last epoch nothing changes the weights, so its validation numbers are reproducible.
    assert tuple(stats[-1, 2:4]) == pytest.approx(net.Validate(net.validation_), rel=1e-12)


def test_stats_file_is_rewritten_after_every_epoch(tmp_path, monkeypatch):
    data = synthetic_npz(tmp_path / "syn.npz")
    stats_path = tmp_path / "stats.npy"
    net = NeuralNet(small_config(tmp_path, data), seed=0)
    net.LoadData()
    seen = []
    original = net.Validate

    def spy(dataset):
        # Called once per epoch, before that epoch's row is written.
        seen.append(np.load(stats_path).shape if stats_path.exists() else None)
        return original(dataset)

    monkeypatch.setattr(net, "Validate", spy)
    net.Train(max_epochs=3, log=io.StringIO())
    assert seen == [None, (1, 5), (2, 5)]
    assert np.load(stats_path).shape == (3, 5)
    assert not list(tmp_path.glob("*.part"))


def test_checkpoint_is_written_only_when_validation_accuracy_improves(tmp_path, monkeypatch):
    data = synthetic_npz(tmp_path / "syn.npz")
    net = NeuralNet(small_config(tmp_path, data), seed=0)
    net.LoadData()
    accuracies = iter([0.5, 0.4, 0.7, 0.7, 0.6])
    snapshots, saves = [], []

    def scripted_validate(dataset):
        snapshots.append({k: v.copy() for k, v in net.GetParameters().items()})
        return 1.0, next(accuracies)

    original_save = net.Save
    monkeypatch.setattr(net, "Validate", scripted_validate)
    monkeypatch.setattr(net, "Save", lambda path=None: saves.append(len(snapshots)) or original_save(path))
    best = net.Train(max_epochs=5, log=io.StringIO())
    assert best == 0.7
    assert saves == [1, 3]
    with np.load(tmp_path / "model.npz") as f:
        for key, value in snapshots[2].items():
            np.testing.assert_array_equal(f[key], value)
    # The weights did change after epoch 3, so the checkpoint is not just the final state.
    assert not np.array_equal(snapshots[2]["output_w"], net.layer_[0].w_)


def test_train_without_checkpoint_file_is_a_config_error(tmp_path):
    config = small_config(tmp_path, synthetic_npz(tmp_path / "syn.npz"))
    del config["checkpoint_file"]
    with pytest.raises(ConfigError, match="checkpoint_file"):
        NeuralNet(config).Train(log=io.StringIO())


def test_train_log_follows_a_redirected_stdout(tmp_path):
    # Train(log=...) defaults to stdout; redirecting sys.stdout must capture the epoch lines.
    net = NeuralNet(small_config(tmp_path, synthetic_npz(tmp_path / "syn.npz")))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        net.Train(max_epochs=1)
    assert "Epoch   1" in buffer.getvalue()


def test_convnet1_method1_and_method2_train_to_the_same_stats(tmp_path, subset_npz):
    stats, params = [], []
    for method in (1, 2):
        config = load_shipped_config(f"convnet1_method{method}.yaml")
        config.update(data_path=str(subset_npz), checkpoint_file=str(tmp_path / f"m{method}.npz"),
                      performance_stats=str(tmp_path / f"m{method}_stats.npy"), display=False)
        assert [layer.get("convolve_method") for layer in config["network"] if layer["type"] == "CONVOLUTIONAL"] \
            == [f"method{method}"] * 2
        net = _train(config, seed=0, epochs=2)
        stats.append(np.load(tmp_path / f"m{method}_stats.npy"))
        params.append(net.GetParameters())
    assert stats[0].shape == (2, 5)
    assert stats[0][-1, 3] > 0.3  # it learns something in two epochs
    np.testing.assert_allclose(stats[1], stats[0], rtol=1e-9)
    for key in params[0]:
        np.testing.assert_allclose(params[1][key], params[0][key], rtol=1e-7, atol=1e-10)


# ----------------------------------------------------------------------------------------
# data and checkpoints
# ----------------------------------------------------------------------------------------

def test_save_and_load_round_trip_is_bit_identical(tmp_path):
    config = load_shipped_config("convnet_gradcheck_deep.yaml")
    source = NeuralNet(config, seed=1)
    for layer in source.layer_:
        if layer.has_params_:
            layer.b_ = np.random.default_rng(0).standard_normal(layer.b_.shape)
    path = tmp_path / "sub" / "ckpt.npz"
    source.Save(str(path))
    target = NeuralNet(config, seed=2)
    assert not np.array_equal(target.layer_[0].w_, source.layer_[0].w_)
    target.Load(str(path))
    for key, value in source.GetParameters().items():
        np.testing.assert_array_equal(target.GetParameters()[key], value)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.npz"]  # no temporary left


def test_loading_a_checkpoint_of_another_architecture_is_a_config_error(tmp_path):
    path = tmp_path / "ckpt.npz"
    NeuralNet(load_shipped_config("convnet_gradcheck_deep.yaml")).Save(str(path))
    other = load_shipped_config("convnet_gradcheck_deep.yaml")
    other["network"][2]["kernel_size"] = 3
    other["network"][2]["padding"] = 1
    with pytest.raises(ConfigError, match="conv2_w"):
        NeuralNet(other).Load(str(path))


def test_loading_a_missing_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        NeuralNet(load_shipped_config("logreg.yaml")).Load(str(tmp_path / "nothing.npz"))


def test_load_data_rejects_a_missing_file_and_arrays_of_the_wrong_size(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        NeuralNet(small_config(tmp_path, tmp_path / "nothing.npz")).LoadData()
    bad = tmp_path / "bad.npz"
    np.savez(bad, train=np.zeros((5, 100)), train_labels=np.zeros((5, 10)),
             validation=np.zeros((5, 100)), validation_labels=np.zeros((5, 10)))
    with pytest.raises(ConfigError, match="shape"):
        NeuralNet(small_config(tmp_path, bad)).LoadData()
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, train=np.zeros((5, 256)))
    with pytest.raises(ConfigError, match="lacks the arrays train_labels"):
        NeuralNet(small_config(tmp_path, incomplete)).LoadData()


def class_data(path, classes, channels=1, size=8, n=40, seed=0):
    """A small npz of `classes` classes of channels x size x size images, each class bright in its own rows."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in ("train", "validation", "test"):
        labels = np.arange(n) % classes
        x = rng.uniform(0, 0.2, (n, channels, size, size))
        for i, label in enumerate(labels):
            x[i, label % channels, label % size, (label // size) % size] += 3.0
        arrays[name], arrays[name + "_labels"] = x.reshape(n, -1), np.eye(classes)[labels]
    np.savez(path, **arrays)
    return path


CONV_NET = [{"name": "conv1", "type": "CONVOLUTIONAL", "num_channels": 4, "kernel_size": 3, "padding": 1,
             "init_wt": 0.1, "epsilon": 0.05, "momentum": 0.9},
            {"name": "pool1", "type": "MAXPOOL", "kernel_size": 2, "stride": 2},
            {"name": "output", "type": "FC", "num_channels": None, "init_wt": 0.05, "epsilon": 0.05, "momentum": 0.9}]


@pytest.mark.parametrize("classes,channels", [(5, 2), (100, 3), (20, 1), (2, 3)])
def test_any_number_of_classes_and_channels_trains_and_evaluates(tmp_path, classes, channels):
    data = class_data(tmp_path / "d.npz", classes, channels, n=max(40, 4 * classes))
    network = [dict(layer) for layer in CONV_NET]
    network[-1]["num_channels"] = classes
    net = NeuralNet(small_config(tmp_path, data, network=network, input_image_size_y=8, input_image_size_x=8,
                                 input_num_channels=channels, max_epochs=8, batch_size=20))
    net.LoadData(test=True)
    assert net.train_[1].shape[1] == classes
    states = net.Fprop(net.train_[0][:3])
    assert [s.shape for s in states] == [(3, channels * 64), (3, 4, 8, 8), (3, 4, 4, 4), (3, classes)]
    net.Train(log=io.StringIO())
    _, accuracy = net.Validate(net.test_)
    assert net.stats_[-1][0] < net.stats_[0][0] and accuracy > min(0.9, 3 / classes)  # chance: 1 / classes


@pytest.mark.parametrize("layer_units,classes", [(10, 5), (5, 100), (100, 10)])
def test_a_last_layer_of_another_size_than_the_classes_names_both(tmp_path, layer_units, classes):
    data = class_data(tmp_path / "d.npz", classes)
    config = small_config(tmp_path, data, network=[dict(LOGREG, num_channels=layer_units)], input_image_size_y=8,
                          input_image_size_x=8)
    with pytest.raises(ConfigError, match=f"layer 'output': key 'num_channels' is {layer_units}, but .*d.npz has "
                                          f"{classes} classes"):
        NeuralNet(config).LoadData()


def test_labels_of_different_widths_in_two_sets_are_refused(tmp_path):
    data = class_data(tmp_path / "d.npz", 5)
    arrays = dict(np.load(data))
    arrays["validation_labels"] = np.eye(6)[np.arange(40) % 6]
    np.savez(data, **arrays)
    with pytest.raises(ConfigError, match="'validation_labels' in .*must be one-hot rows of 5, as 'train_labels' has"):
        NeuralNet(small_config(tmp_path, data, network=[dict(LOGREG, num_channels=5)], input_image_size_y=8,
                               input_image_size_x=8)).LoadData()


@pytest.mark.parametrize("empty", ["train", "validation", "test"])
def test_load_data_refuses_an_empty_set_naming_it(tmp_path, empty):
    one_hot = np.eye(10)[np.arange(5) % 10]
    arrays = {name: np.zeros((0 if name == empty else 5, 256)) for name in ("train", "validation", "test")}
    arrays.update({f"{name}_labels": one_hot[:len(arrays[name])] for name in ("train", "validation", "test")})
    path = tmp_path / "empty.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match=f"'{empty}' in .*empty.npz holds no images"):
        NeuralNet(small_config(tmp_path, path)).LoadData(test=True)


# ----------------------------------------------------------------------------------------
# which epoch the checkpoint keeps
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["accuracy", "cross_entropy", "last"])
def test_checkpoint_on_keeps_the_epoch_its_rule_names(tmp_path, subset_npz, rule):
    config = load_shipped_config("convnet1_method1.yaml")
    config.update(data_path=str(subset_npz), checkpoint_file=str(tmp_path / "c.npz"),
                  performance_stats=str(tmp_path / "c_stats.npy"), display=False, checkpoint_on=rule)
    log = io.StringIO()
    net = NeuralNet(config, seed=3)
    net.Train(max_epochs=4, log=log)
    stats = np.load(tmp_path / "c_stats.npy")
    if rule == "accuracy":  # the first epoch with the highest accuracy
        best = int(np.argmax(stats[:, 3]))
        assert "Best validation accuracy" in log.getvalue()
    elif rule == "cross_entropy":
        best = int(np.argmin(stats[:, 2]))
        assert f"Best validation cross entropy {stats[best, 2]:.4f}" in log.getvalue()
    else:  # the last epoch, whatever its figures
        best = len(stats) - 1
        assert f"Last validation cross entropy {stats[best, 2]:.4f}" in log.getvalue()
    assert net.best_epoch_ == best + 1
    # The checkpoint holds that epoch's model: it validates to that epoch's numbers.
    net.Load()
    ce, acc = net.Validate(net.validation_)
    assert acc == stats[best, 3]
    np.testing.assert_allclose(ce, stats[best, 2], rtol=1e-9)


def test_a_bad_checkpoint_on_is_a_config_error_naming_the_key():
    config = load_shipped_config("logreg.yaml")
    config["checkpoint_on"] = "loss"
    with pytest.raises(ConfigError, match="'checkpoint_on'.*accuracy, cross_entropy or last"):
        NeuralNet(config)


@pytest.mark.parametrize("name,command", [("mnist.npz", "python data/mnist.py --out"),
                                          ("mnist_t10k.npz", "python data/mnist.py --test-images-only --out"),
                                          ("cifar100.npz", "python data/cifar100.py --out"),
                                          ("mine.npz", "python data/usps.py --out .*mine.npz makes the USPS file, "
                                                       "data/.name..py --out .*mine.npz another data set's")])
def test_a_missing_data_file_says_which_fetcher_makes_it(tmp_path, name, command):
    with pytest.raises(ConfigError, match=f"{name} does not exist \\({command}"):
        NeuralNet(small_config(tmp_path, tmp_path / name)).LoadData()
