"""Bad input gets one clear line; nothing is lost to kills, Ctrl-C or divergence; an
interrupted run resumes to the same result as an uninterrupted one."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

import evaluate
import grad_check
import train
from conftest import REPO_ROOT, load_shipped_config
from net import NeuralNet

CONVNET = "convnet1_method1.yaml"


def dump(path, config):
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return str(path)


def with_layer(config, index, **changes):
    """A copy of config whose layer `index` has `changes` (value None deletes the key)."""
    config = dict(config, network=[dict(layer) for layer in config["network"]])
    for key, value in changes.items():
        if value is None:
            config["network"][index].pop(key, None)
        else:
            config["network"][index][key] = value
    return config


def with_dropout(config, index, **keys):
    """A copy of config with a dropout layer 'drop1' inserted at `index`."""
    network = [dict(layer) for layer in config["network"]]
    network.insert(index if index >= 0 else len(network) + 1 + index, dict(name="drop1", type="DROPOUT", **keys))
    return dict(config, network=network)


def conv_config(tmp_path, data):
    config = load_shipped_config(CONVNET)
    config.update(data_path=str(data), checkpoint_file=str(tmp_path / "runs" / "c.npz"),
                  performance_stats=str(tmp_path / "runs" / "c_stats.npy"), display=False)
    return config


# Each row: (id, how to make the input: f(tmp_path, small_npz) -> (script, argv), words the
# one-line message must hold). Config rows write a config; the file name must appear too.
def config_row(mutate):
    def make(tmp_path, data):
        text = mutate(conv_config(tmp_path, data))
        path = tmp_path / "bad.yaml"
        if isinstance(text, str):
            path.write_text(text)
        else:
            dump(path, text)
        return "train", [str(path), "--no-display"]
    return make


def npz_row(arrays):
    def make(tmp_path, data):
        with np.load(data) as f:
            base = {key: f[key] for key in f.files}
        path = tmp_path / "data.npz"
        np.savez(path, **arrays(base))
        config = conv_config(tmp_path, path)
        return "train", [dump(tmp_path / "c.yaml", config), "--no-display"]
    return make


def drop(base, key):
    return {k: v for k, v in base.items() if k != key}


def checkpoint_row(write):
    def make(tmp_path, data):
        config = conv_config(tmp_path, data)
        (tmp_path / "runs").mkdir(exist_ok=True)
        write(tmp_path / "runs" / "c.npz", tmp_path, data)
        return "evaluate", [dump(tmp_path / "c.yaml", config)]
    return make


def truncated_checkpoint(path, tmp_path, data):
    net = NeuralNet(conv_config(tmp_path, data))
    net.Save(str(path))
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 2])


def other_architecture(path, tmp_path, data):
    config = with_layer(conv_config(tmp_path, data), 4, num_channels=256)
    NeuralNet(config).Save(str(path))


BAD_INPUTS = [
    ("not YAML", config_row(lambda c: "network: [\n  - name: x\n  type: FC"), ["bad.yaml", "YAML"]),
    ("not a mapping", config_row(lambda c: "- 1\n- 2\n"), ["bad.yaml", "mapping"]),
    ("python object tag", config_row(lambda c: "network: !!python/object/apply:os.system ['true']\n"),
     ["bad.yaml", "Python object"]),
    ("no network", config_row(lambda c: drop(c, "network")), ["bad.yaml", "'network'"]),
    ("layer without name", config_row(lambda c: with_layer(c, 0, name=None)), ["bad.yaml", "'name'"]),
    ("layer without type", config_row(lambda c: with_layer(c, 0, type=None)), ["bad.yaml", "conv1", "'type'"]),
    ("duplicate names", config_row(lambda c: with_layer(c, 2, name="conv1")), ["bad.yaml", "conv1", "'name'", "two layers"]),
    ("unknown type", config_row(lambda c: with_layer(c, 0, type="CONV")), ["bad.yaml", "conv1", "'type'", "CONV"]),
    ("misspelt layer key", config_row(lambda c: with_layer(c, 0, epsilion=0.1)),
     ["bad.yaml", "conv1", "'epsilion'", "did you mean 'epsilon'"]),
    ("misspelt top-level key", config_row(lambda c: dict(c, max_epoch=3)),
     ["bad.yaml", "'max_epoch'", "did you mean 'max_epochs'"]),
    ("kernel_size as text", config_row(lambda c: with_layer(c, 0, kernel_size="3")),
     ["bad.yaml", "conv1", "'kernel_size'"]),
    ("zero channels", config_row(lambda c: with_layer(c, 0, num_channels=0)),
     ["bad.yaml", "conv1", "'num_channels'"]),
    ("negative kernel", config_row(lambda c: with_layer(c, 1, kernel_size=-2)),
     ["bad.yaml", "maxpool1", "'kernel_size'"]),
    ("momentum 2", config_row(lambda c: with_layer(c, 0, momentum=2)), ["bad.yaml", "conv1", "'momentum'"]),
    ("negative epsilon", config_row(lambda c: with_layer(c, 0, epsilon=-0.1)), ["bad.yaml", "conv1", "'epsilon'"]),
    ("kernel larger than padded input", config_row(lambda c: with_layer(c, 2, kernel_size=13, padding=2)),
     ["bad.yaml", "conv2", "kernel_size"]),
    ("output size not whole for stride", config_row(lambda c: with_layer(c, 0, stride=2, padding=0)),
     ["bad.yaml", "conv1", "'stride'", "not a whole number"]),
    ("pool channels differ", config_row(lambda c: with_layer(c, 1, num_channels=8)),
     ["bad.yaml", "maxpool1", "'num_channels'"]),
    ("unknown convolve method", config_row(lambda c: with_layer(c, 0, convolve_method="method3")),
     ["bad.yaml", "conv1", "'convolve_method'"]),
    ("batch_size as text", config_row(lambda c: dict(c, batch_size="100")), ["bad.yaml", "'batch_size'"]),
    ("augment_rotate out of range", config_row(lambda c: dict(c, augment_rotate=200)),
     ["bad.yaml", "'augment_rotate'", "between 0 and 180"]),
    ("augment_scale as text", config_row(lambda c: dict(c, augment_scale="ten percent")),
     ["bad.yaml", "'augment_scale'", "number"]),
    ("unknown lr_schedule", config_row(lambda c: dict(c, lr_schedule="linear")),
     ["bad.yaml", "'lr_schedule'", "linear", "cosine"]),
    ("step schedule without its period", config_row(lambda c: dict(c, lr_schedule="step")),
     ["bad.yaml", "'lr_step_epochs'", "step"]),
    ("key of another schedule", config_row(lambda c: dict(c, lr_schedule="cosine", lr_step_factor=0.5)),
     ["bad.yaml", "'lr_step_factor'", "cosine"]),
    ("dropout rate 1", config_row(lambda c: with_dropout(c, 4, dropout_rate=1)),
     ["bad.yaml", "drop1", "'dropout_rate'", "below 1"]),
    ("dropout as the last layer", config_row(lambda c: with_dropout(c, -1, dropout_rate=0.5)),
     ["bad.yaml", "drop1", "must be an FC"]),
    ("missing data file", config_row(lambda c: dict(c, data_path="/nonexistent/digits.npz")),
     ["bad.yaml", "'data_path'", "/nonexistent/digits.npz", "data/usps.py"]),
    ("data not an npz", lambda tmp, data: config_row(lambda c: dict(c, data_path=str(REPO_ROOT / "README.md")))(tmp, data),
     ["'data_path'", "README.md", "not a readable"]),
    ("data keys missing", npz_row(lambda b: drop(b, "validation_labels")), ["'data_path'", "validation_labels"]),
    ("images of another size", npz_row(lambda b: dict(b, train=b["train"][:, :200], validation=b["validation"][:, :200])),
     ["'input_image_size_y'", "train"]),
    ("label count differs", npz_row(lambda b: dict(b, train_labels=b["train_labels"][:-1])),
     ["'data_path'", "train_labels"]),
    ("labels not one-hot", npz_row(lambda b: dict(b, train_labels=b["train_labels"] * 0.5)),
     ["'data_path'", "one-hot"]),
    ("checkpoint missing", checkpoint_row(lambda path, tmp, data: None), ["c.npz", "not found", "python train.py"]),
    ("checkpoint truncated", checkpoint_row(truncated_checkpoint), ["c.npz", "damaged"]),
    ("checkpoint of another architecture", checkpoint_row(other_architecture),
     ["c.npz", "fc1_w", "(512, 512)", "(256, 512)"]),
]


@pytest.mark.parametrize("make, words", [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_gets_one_line_naming_the_problem_and_exit_status_2(tmp_path, small_npz, capsys, make, words):
    script, argv = make(tmp_path, small_npz)
    code = {"train": train, "evaluate": evaluate}[script].main(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_numbers_yaml_reads_as_text_still_work(tmp_path, small_npz):
    config = with_layer(conv_config(tmp_path, small_npz), 0, epsilon="1e-3")
    net = NeuralNet(config)
    assert net.layer_[0].epsilon_ == 0.001


def test_grad_check_refuses_a_bad_config_in_one_line(tmp_path, capsys):
    config = with_layer(load_shipped_config("convnet_gradcheck.yaml"), 0, epsilion=1)
    assert grad_check.main([dump(tmp_path / "g.yaml", config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'epsilion'" in err[0]


def test_bad_inputs_in_a_subprocess_print_no_traceback(tmp_path, small_npz):
    for _, make, words in (BAD_INPUTS[2], BAD_INPUTS[8], BAD_INPUTS[-1]):
        script, argv = make(tmp_path, small_npz)
        result = subprocess.run([sys.executable, f"{script}.py", *argv], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and words[-1] in result.stderr


# --- nothing lost ---------------------------------------------------------------------------

def default_sigint():
    """For the children that get SIGINT: a shell's background job (as CI may be) starts with
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def logreg_config(tmp_path, data, **overrides):
    config = load_shipped_config("logreg.yaml")
    config.update(data_path=str(data), checkpoint_file=str(tmp_path / "runs" / "l.npz"),
                  performance_stats=str(tmp_path / "runs" / "l_stats.npy"), display=False, max_epochs=100000)
    config.update(overrides)
    return dump(tmp_path / "l.yaml", config)


def assert_outputs_load(tmp_path, config_path):
    """Every file a run leaves must load whole: stats, checkpoint and last state."""
    runs = tmp_path / "runs"
    stats = runs / "l_stats.npy"
    if stats.exists():
        rows = np.load(stats)
        assert rows.ndim == 2 and rows.shape[1] == 5
    if (runs / "l.npz").exists():
        NeuralNet(config_path).Load()
    if (runs / "l_last.npz").exists():
        with np.load(runs / "l_last.npz") as f:
            assert {"stats", "progress", "output_w"} <= set(f.files)
            f["stats"], f["output_w"]  # reading decompresses: a truncated file fails here


def test_sigkill_at_random_moments_never_leaves_a_half_written_file(tmp_path, small_npz):
    config_path = logreg_config(tmp_path, small_npz)
    rng = random.Random(321)
    kills, saw_files = 0, False
    for attempt in range(24):
        # Resume every time after the first run: each kill also tests the last-state file.
        argv = [sys.executable, "train.py", config_path, "--no-display"] + (["--resume"] if saw_files else [])
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.6, 1.6))  # past start-up, while epochs (and saves) go by
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
        assert process.returncode in (-signal.SIGKILL, 0), process.stderr.read()
        assert_outputs_load(tmp_path, config_path)
        saw_files = saw_files or (tmp_path / "runs" / "l_last.npz").exists()
    assert kills >= 20 and saw_files


def test_ctrl_c_keeps_the_stats_and_says_where_the_best_checkpoint_is(tmp_path, small_npz):
    config_path = logreg_config(tmp_path, small_npz)
    process = subprocess.Popen([sys.executable, "train.py", config_path, "--no-display"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    for line in process.stdout:
        if line.startswith("Epoch   3"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "l.npz" in lines[0] and "--resume" in lines[0]
    stats = np.load(tmp_path / "runs" / "l_stats.npy")
    assert stats.shape[0] >= 3
    assert_outputs_load(tmp_path, config_path)


def test_divergence_stops_in_the_step_naming_epoch_step_and_layer_and_keeps_the_checkpoint(
        tmp_path, small_npz, capsys):
    good = logreg_config(tmp_path, small_npz, max_epochs=1)
    assert train.main([good, "--no-display"]) == 0
    checkpoint = tmp_path / "runs" / "l.npz"
    before = checkpoint.read_bytes()
    capsys.readouterr()
    config = load_shipped_config("net_1layer.yaml")
    config.update(data_path=str(small_npz), checkpoint_file=str(checkpoint),
                  performance_stats=str(tmp_path / "runs" / "d_stats.npy"), display=False)
    config = with_layer(with_layer(config, 0, epsilon=1e300), 1, epsilon=1e300)
    assert train.main([dump(tmp_path / "d.yaml", config), "--no-display"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "epoch 1" in lines[0] and "step" in lines[0] and "'epsilon'" in lines[0]
    assert "layer 'output'" in lines[0] or "layer 'fc1'" in lines[0]
    assert "Epoch" not in captured.out  # stopped inside the first epoch
    assert checkpoint.read_bytes() == before


# The training extras draw random numbers (augmentation, dropout masks) and vary the
# learning rate by epoch: a resumed run must continue all of them where they stopped.
EXTRAS = {"augment_translate": 1.5, "augment_rotate": 10, "augment_scale": 0.1,
          "lr_schedule": "cosine", "lr_min_factor": 0.05}


@pytest.mark.parametrize("extras", [False, True], ids=["plain", "augmentation_dropout_cosine"])
def test_killed_convnet1_resumes_to_the_same_stats_and_checkpoint(tmp_path, subset_npz, extras):
    def config(name):
        c = load_shipped_config(CONVNET)
        c.update(data_path=str(subset_npz), checkpoint_file=str(tmp_path / name / "c.npz"),
                 performance_stats=str(tmp_path / name / "c_stats.npy"), display=False, max_epochs=6)
        if extras:
            c.update(EXTRAS)
            c["network"].insert(4, {"name": "drop1", "type": "DROPOUT", "dropout_rate": 0.25})  # after maxpool2
            c["network"].insert(6, {"name": "drop2", "type": "DROPOUT", "dropout_rate": 0.5})  # after fc1
        return dump(tmp_path / f"{name}.yaml", c)

    whole, broken = config("whole"), config("broken")
    assert train.main([whole, "--no-display"]) == 0
    process = subprocess.Popen([sys.executable, "train.py", broken, "--no-display"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("Epoch   4"):
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert np.load(tmp_path / "broken" / "c_stats.npy").shape[0] in (4, 5)
    assert train.main([broken, "--no-display", "--resume"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "whole" / "c_stats.npy"),
                                  np.load(tmp_path / "broken" / "c_stats.npy"))
    with np.load(tmp_path / "whole" / "c.npz") as a, np.load(tmp_path / "broken" / "c.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_resume_without_a_last_state_says_so(tmp_path, small_npz, capsys):
    config_path = logreg_config(tmp_path, small_npz, max_epochs=2)
    assert train.main([config_path, "--no-display", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "l_last.npz" in err


def test_resume_with_another_seed_is_refused(tmp_path, small_npz, capsys):
    config_path = logreg_config(tmp_path, small_npz, max_epochs=1)
    assert train.main([config_path, "--no-display"]) == 0
    assert train.main([config_path, "--no-display", "--resume", "--seed", "5"]) == 2
    assert "--seed 0" in capsys.readouterr().err


def test_interrupted_run_leaves_no_stats_file_half_written_under_sigint_during_saves(tmp_path, small_npz):
    # Many quick SIGINTs: whatever moment they hit, the files left behind load.
    config_path = logreg_config(tmp_path, small_npz)
    rng = random.Random(7)
    for attempt in range(5):
        process = subprocess.Popen([sys.executable, "train.py", config_path, "--no-display"], cwd=REPO_ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=default_sigint)
        process.stdout.readline()  # the first layer line: training is about to start
        if attempt == 4:
            # On a loaded machine every earlier signal may land before the first epoch
            # is saved: the last one waits for an epoch line, so a stats file must exist.
            line = process.stdout.readline()
            while line and not line.startswith("Epoch"):  # "" is the end of the output
                line = process.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.4))  # epochs of this small run last milliseconds
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode in (130, 0) and "Traceback" not in err
        assert_outputs_load(tmp_path, config_path)
    assert os.path.exists(tmp_path / "runs" / "l_stats.npy")
