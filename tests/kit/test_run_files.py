"""run_files.py and what train.py does with it: outputs checked before any training, locked
while a run goes on, stale temporary files removed; SIGTERM handled as Ctrl-C; a resume
refused, naming the keys and both files, when the config is not the run's."""

import errno
import io
import os
import shutil
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import LOGREG, REPO_ROOT, small_config

import evaluate
import train
from fc_layer import FCLayer
from net import NeuralNet
from plumbing.errors import ConfigError


def dump(path, config):
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return str(path)


def logreg(tmp_path, data, **overrides):
    """A logistic-regression config on `data` writing into tmp_path/runs: epochs of milliseconds."""
    config = small_config(tmp_path, data, max_epochs=1, checkpoint_file=str(tmp_path / "runs" / "l.npz"),
                          performance_stats=str(tmp_path / "runs" / "l_stats.npy"))
    config.update(overrides)
    return config


def one_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- outputs checked before any training ------------------------------------------------------

def data_copy(tmp_path, data):
    path = tmp_path / "d.npz"
    shutil.copy(data, path)
    return path


def device_link(tmp_path):
    """A name for /dev/null in tmp_path (a link: replacing it could never touch /dev/null)."""
    path = tmp_path / "dev"
    os.symlink("/dev/null", path)
    return path


def a_file(path):
    path.write_text("a file, not a folder")
    return path


# Each row: (id, f(tmp_path, data path, config path) -> (config changes, the file that must survive
# unchanged), words of the message).
BAD_OUTPUTS = [
    ("checkpoint is the data file", lambda tmp, data, config: ({"checkpoint_file": str(data)}, data),
     ["key 'checkpoint_file'", "d.npz", "the data file (key 'data_path')"]),
    ("stats is the config", lambda tmp, data, config: ({"performance_stats": str(config)}, config),
     ["key 'performance_stats'", "l.yaml", "the config itself"]),
    ("stats is the checkpoint", lambda tmp, data, config: (
        {"performance_stats": str(tmp / "runs" / "l.npz")}, tmp / "runs" / "l.npz"),
     ["key 'performance_stats'", "l.npz", "also key 'checkpoint_file'"]),
    ("stats is the last state", lambda tmp, data, config: (
        {"performance_stats": str(tmp / "runs" / "l_last.npz")}, tmp / "runs" / "l_last.npz"),
     ["key 'performance_stats'", "l_last.npz", "the last state of key 'checkpoint_file'"]),
    ("checkpoint is a device", lambda tmp, data, config: ({"checkpoint_file": str(device_link(tmp))}, None),
     ["key 'checkpoint_file'", "dev", "a character device"]),
    ("checkpoint's folder is a file", lambda tmp, data, config: (
        {"checkpoint_file": str(a_file(tmp / "f") / "l.npz")}, tmp / "f"),
     ["key 'checkpoint_file'", "a part of it is a file"]),
    ("checkpoint named ''", lambda tmp, data, config: ({"checkpoint_file": ""}, None),
     ["key 'checkpoint_file'", "names no file"]),
    ("stats named as a folder", lambda tmp, data, config: ({"performance_stats": str(tmp / "runs") + "/"}, None),
     ["key 'performance_stats'", "names no file"]),
    ("checkpoint of 250 characters", lambda tmp, data, config: ({"checkpoint_file": str(tmp / ("c" * 246 + ".npz"))},
                                                                None),
     ["key 'checkpoint_file'", "250 bytes", "up to 241 bytes"]),
]


@pytest.mark.parametrize("make, words", [row[1:] for row in BAD_OUTPUTS], ids=[row[0] for row in BAD_OUTPUTS])
def test_a_bad_output_is_refused_before_training_and_its_file_is_left_alone(tmp_path, small_npz, capsys,
                                                                            make, words):
    data = data_copy(tmp_path, small_npz)
    config_path = tmp_path / "l.yaml"
    (tmp_path / "runs").mkdir()
    for name in ("l.npz", "l_last.npz"):  # files a previous run left
        (tmp_path / "runs" / name).write_bytes(b"a previous run's " + name.encode())
    changes, victim = make(tmp_path, data, config_path)
    dump(config_path, logreg(tmp_path, data, **changes))
    before = victim.read_bytes() if victim else None
    assert train.main([str(config_path), "--no-display"]) == 2
    line = one_line(capsys)
    for word in words:
        assert word in line, (word, line)
    assert "Epoch" not in capsys.readouterr().out
    if victim:
        assert victim.read_bytes() == before
    elif (tmp_path / "dev").exists():
        assert stat.S_ISCHR(os.stat(tmp_path / "dev").st_mode)
        assert os.path.islink(tmp_path / "dev")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["l.npz", "l_last.npz"]  # nothing new


def test_the_display_figure_is_checked_before_training_when_there_is_no_screen(tmp_path, small_npz, capsys):
    (tmp_path / "runs" / "l_display.png").mkdir(parents=True)  # where the figure would go: a folder
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz, display=True))
    assert train.main([config]) == 2
    line = one_line(capsys)
    assert "l_display.png" in line and "display" in line and "a directory" in line
    assert "Epoch" not in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["l_display.png"]


@pytest.mark.parametrize("fault", ["open", "write"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.EACCES])
def test_a_lock_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path, small_npz, capsys, monkeypatch,
                                                                       fault, code):
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz))
    real_open = os.open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, *args, **kwargs)

    def failing_truncate(fd, length):
        raise OSError(code, os.strerror(code))

    if fault == "open":
        monkeypatch.setattr(os, "open", failing_open)
    else:
        monkeypatch.setattr(os, "ftruncate", failing_truncate)
    assert train.main([config, "--no-display"]) == 2
    monkeypatch.undo()
    line = one_line(capsys)
    assert "lock" in line and os.strerror(code) in line and "nothing was trained or written" in line
    left = list((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else []
    assert left == [], left  # no lock, no part, no output


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_an_output_in_a_folder_that_is_not_writable_is_refused(tmp_path, small_npz, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz, performance_stats=str(folder / "s.npy")))
    assert train.main([config, "--no-display"]) == 2
    assert "not writable" in one_line(capsys)


def test_a_write_that_fails_is_one_line_and_leaves_the_old_files(tmp_path, small_npz, capsys, monkeypatch):
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz))
    assert train.main([config, "--no-display"]) == 0
    stats = tmp_path / "runs" / "l_stats.npy"
    before = stats.read_bytes()
    capsys.readouterr()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert train.main([config, "--no-display", "--resume", "--epochs", "2"]) == 2
    line = one_line(capsys)
    assert "l_stats.npy" in line and "No space left on device" in line
    assert "after epoch 1" in line and "--resume" in line
    assert stats.read_bytes() == before
    assert not list((tmp_path / "runs").glob("*.part"))


def failing_at(monkeypatch, name, epoch, calls, code=errno.ENOSPC):
    """os.replace fails (`code`) for the output called `name` from its `epoch`-th write on, as a
    disk that fills up would: the new file never takes the old one's place."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(str(dst)) == name:
            calls.append(dst)
            if len(calls) >= epoch:
                raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


# (file that fails, from its n-th write, words the line must hold, words it must not)
FAILED_WRITES = [
    ("l.npz", 2, ["after epoch 2", "best checkpoint (epoch 1", "the last state holds epoch 1"], ["epoch 2,"]),
    ("l_last.npz", 2, ["after epoch 2", "the last state holds epoch 1", "--resume goes on from there"], []),
    ("l_last.npz", 1, ["after epoch 1", "no last state was written"], ["--resume"]),
    ("l_stats.npy", 1, ["before any epoch was saved"], ["--resume"]),
]


@pytest.mark.parametrize("name,nth,words,not_words", FAILED_WRITES)
def test_after_a_failed_write_the_message_says_what_each_file_holds(tmp_path, small_npz, capsys, monkeypatch,
                                                                     name, nth, words, not_words):
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz, max_epochs=3))
    calls = []
    failing_at(monkeypatch, name, nth, calls)
    assert train.main([config, "--no-display"]) == 2
    monkeypatch.undo()
    line = one_line(capsys)
    for word in words:
        assert word in line, (word, line)
    for word in not_words:
        assert word not in line, (word, line)
    assert not list((tmp_path / "runs").glob("*.part"))
    runs = tmp_path / "runs"
    if (runs / "l_stats.npy").exists():  # the stats say what the message says
        done = int(line.split("after epoch ")[1].split(":")[0]) if "after epoch" in line else 0
        assert len(np.load(runs / "l_stats.npy")) == done
    if "--resume goes on" in line or "go on with" in line:
        assert train.main([config, "--no-display", "--resume"]) == 0  # the advice works


# --- locked while a run goes on -----------------------------------------------------------------

def start(config, *extra):
    return subprocess.Popen([sys.executable, "train.py", config, "--no-display", *extra], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(process, epoch):
    for line in process.stdout:
        if line.startswith(f"Epoch {epoch:3d}"):
            return
    pytest.fail(f"the run ended before epoch {epoch}: {process.stderr.read()}")


def test_a_second_run_on_the_same_outputs_is_refused_naming_the_process_that_holds_them(
        tmp_path, small_npz, capsys):
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz, max_epochs=100000))
    first = start(config)
    try:
        wait_for_epoch(first, 1)
        assert train.main([config, "--no-display", "--epochs", "1"]) == 2
        line = one_line(capsys)
        assert f"process {first.pid}" in line and "l.npz" in line and "another training run" in line
        assert first.poll() is None  # the first run goes on, its files its own
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert not list((tmp_path / "runs").glob(".*.lock"))  # the lock files go with the run


def test_a_lock_is_let_go_when_the_run_ends(tmp_path, small_npz):
    from plumbing import run_files

    config = logreg(tmp_path, small_npz)
    net = NeuralNet(config)
    net.Train(log=io.StringIO())
    net.Train(log=io.StringIO())  # its own earlier run holds nothing any more
    with run_files.OutputLock([config["checkpoint_file"]], "l.yaml"):
        with pytest.raises(ConfigError, match=f"process {os.getpid()}"):
            NeuralNet(config).Train(log=io.StringIO())


# --- SIGTERM, and what a killed run leaves ------------------------------------------------------

def test_sigterm_stops_like_ctrl_c_in_one_line_and_the_run_resumes(tmp_path, small_npz, capsys):
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz, max_epochs=100000))
    process = start(config)
    wait_for_epoch(process, 2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "terminated (SIGTERM) after epoch" in lines[0] and "--resume" in lines[0]
    runs = tmp_path / "runs"
    assert not list(runs.glob("*.part")) and not list(runs.glob(".*.lock"))
    done = len(np.load(runs / "l_stats.npy"))
    assert train.main([config, "--no-display", "--resume", "--epochs", str(done + 1)]) == 0
    assert f"Resuming after epoch {done}" in capsys.readouterr().out
    assert len(np.load(runs / "l_stats.npy")) == done + 1


def test_stale_part_files_of_a_killed_run_are_removed_at_the_next_start(tmp_path, small_npz):
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz))
    runs = tmp_path / "runs"
    runs.mkdir()
    stale = [runs / "l.npz.k1ll3d.part", runs / "l_last.npz.x7q2.part", runs / "l_stats.npy.9zz.part"]
    other = runs / "other.npz.k1ll3d.part"  # another run's: not this run's to remove
    for path in stale + [other]:
        path.write_bytes(b"half a file")
    assert train.main([config, "--no-display"]) == 0
    assert [p.name for p in runs.glob("*.part")] == [other.name]


# --- resume: the same run, or a refusal naming what differs -------------------------------------

DROPOUT = {"name": "drop1", "type": "DROPOUT", "dropout_rate": 0.5}
FC1 = {"name": "fc1", "type": "FC", "num_channels": 20, "init_wt": 0.05, "epsilon": 0.02, "momentum": 0.9}
CHANGES = [
    ("batch_size", {"batch_size": 50}, "batch_size (100 in the last state, 50 now)"),
    ("dtype", {"dtype": "float32"}, "dtype ('float64' in the last state, 'float32' now)"),
    ("epsilon", {"network": [dict(LOGREG, epsilon=0.01)]}, "layer 'output' epsilon (0.02 in the last state, 0.01 now)"),
    ("augmentation", {"augment_translate": 1.0}, "augment_translate (0.0 in the last state, 1.0 now)"),
    ("dropout", {"network": [FC1, DROPOUT, dict(LOGREG)]}, "layers (['fc1', 'output'] in the last state, "
                                                           "['fc1', 'drop1', 'output'] now)"),
    ("layers", {"network": [dict(FC1, num_channels=30), dict(LOGREG)]},
     "layer 'fc1' num_channels (20 in the last state, 30 now)"),
    ("checkpoint_on", {"checkpoint_on": "cross_entropy"}, "checkpoint_on ('accuracy' in the last state"),
]


@pytest.mark.parametrize("changes, words", [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_resume_with_another_run_definition_is_refused_naming_the_keys_and_both_files(
        tmp_path, small_npz, capsys, changes, words):
    base = logreg(tmp_path, small_npz)
    if changes.get("network", [{}])[0].get("name") == "fc1":
        base["network"] = [FC1, dict(LOGREG)]
    config = dump(tmp_path / "l.yaml", base)
    assert train.main([config, "--no-display"]) == 0
    capsys.readouterr()
    last = tmp_path / "runs" / "l_last.npz"
    before = last.read_bytes()
    changed = dump(tmp_path / "l.yaml", dict(base, **changes))
    assert train.main([changed, "--no-display", "--resume", "--epochs", "2"]) == 2
    line = one_line(capsys)
    assert words in line and str(last) in line and line.count(changed) >= 2, line
    assert last.read_bytes() == before


def test_resume_with_another_data_file_is_refused(tmp_path, small_npz, capsys):
    from conftest import synthetic_npz

    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz))
    assert train.main([config, "--no-display"]) == 0
    other = dump(tmp_path / "l.yaml", logreg(tmp_path, synthetic_npz(tmp_path / "other.npz")))
    assert train.main([other, "--no-display", "--resume", "--epochs", "2"]) == 2
    assert "data_path (its training or validation images" in one_line(capsys)


def test_resume_with_only_the_epoch_count_or_the_display_changed_goes_on(tmp_path, small_npz, capsys):
    config = logreg(tmp_path, small_npz)
    assert train.main([dump(tmp_path / "l.yaml", config), "--no-display"]) == 0
    moved = tmp_path / "elsewhere.npz"
    shutil.copy(small_npz, moved)  # the same data in another file
    config.update(max_epochs=3, display_after=7, data_path=str(moved))
    assert train.main([dump(tmp_path / "l.yaml", config), "--no-display", "--resume"]) == 0
    assert len(np.load(tmp_path / "runs" / "l_stats.npy")) == 3


# --- the student's unwritten pieces, and what a net is given ------------------------------------

@pytest.mark.parametrize("script", ["train", "evaluate"])
def test_an_unwritten_piece_is_one_line_naming_it_and_its_file(tmp_path, small_npz, capsys, monkeypatch, script):
    config = dump(tmp_path / "l.yaml", logreg(tmp_path, small_npz))
    if script == "evaluate":
        NeuralNet(logreg(tmp_path, small_npz)).Save()

    def unwritten(self, inputs):
        raise NotImplementedError("FCLayer.ComputeUp: write the forward pass in fc_layer.py")

    monkeypatch.setattr(FCLayer, "ComputeUp", unwritten)
    assert {"train": train, "evaluate": evaluate}[script].main([config] + (["--no-display"] if script == "train"
                                                                          else [])) == 1
    line = one_line(capsys)
    assert line == f"{script}.py: error: not written yet: FCLayer.ComputeUp: write the forward pass in fc_layer.py"


def test_a_model_whose_outputs_overflow_is_refused_by_evaluate(tmp_path, small_npz, capsys):
    config = logreg(tmp_path, small_npz)
    net = NeuralNet(config)
    net.layer_[0].w_[:] = 1e308  # finite, but every output overflows
    net.Save()
    assert evaluate.main([dump(tmp_path / "l.yaml", config)]) == 2
    line = one_line(capsys)
    assert "NaN or infinite outputs" in line and "l.npz" in line
    assert "CE" not in capsys.readouterr().out


def test_checkpoint_members_nobody_asked_for_are_never_decompressed(tmp_path, small_npz, capsys):
    import zipfile

    config = logreg(tmp_path, small_npz)
    NeuralNet(config).Save()
    with zipfile.ZipFile(config["checkpoint_file"], "a") as archive:
        # 'junk' says it is a terabyte; reading it would be a MemoryError, or the system's killer.
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (1000000, 131072)})
        archive.writestr("junk.npy", header.getvalue() + bytes(64))
    assert evaluate.main([dump(tmp_path / "l.yaml", config)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("Accuracy: Train")


def test_fprop_casts_float64_images_into_a_float32_network(tmp_path):
    from conftest import load_shipped_config

    config = dict(load_shipped_config("convnet_gradcheck.yaml"), dtype="float32")
    net = NeuralNet(config)
    pixels = net.settings_.input_image_size_y * net.settings_.input_image_size_x * net.settings_.input_num_channels
    images = np.random.default_rng(0).uniform(0, 1, (3, pixels))
    states = net.Fprop(images)
    assert all(state.dtype == np.float32 for state in states)
    expected = net.Fprop(images.astype(np.float32))[-1]
    np.testing.assert_array_equal(states[-1], expected)
