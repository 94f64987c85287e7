"""Bad input gets one clear line; nothing is lost to kills, Ctrl-C or divergence; an
interrupted run resumes to the same result as an uninterrupted one."""

import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT, load_shipped_config

import evaluate
import grad_check
import play_with_convolutions
import train
from data import usps
from net import NeuralNet
from tools.course import report

SCRIPTS = {"train": train, "evaluate": evaluate, "grad_check": grad_check, "play": play_with_convolutions,
           "report": report, "usps": usps}
MESSAGE_LIMIT = 600  # characters: a message is one readable line, whatever the value it quotes

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


def with_layer_inserted(config, index, **layer):
    """A copy of config with `layer` inserted at `index`."""
    network = [dict(entry) for entry in config["network"]]
    network.insert(index, layer)
    return dict(config, network=network)


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
        if isinstance(text, bytes):
            path.write_bytes(text)
        elif isinstance(text, str):
            path.write_text(text)
        else:
            dump(path, text)
        return "train", [str(path), "--no-display"]
    return make


def argv_row(script, argv):
    """A command line of `script`: argv(tmp_path, data) -> its arguments."""
    def make(tmp_path, data):
        return script, [str(a) for a in argv(tmp_path, data)]
    return make


def fifo(path):
    """A FIFO at `path`, with a thread that opens its other end for a moment after 3 s: a
    reader blocked on it (the old code) then sees an empty file and goes on, instead of
    hanging the suite for ever. A reader that refuses FIFOs never waits for it."""
    os.mkfifo(path)

    def unblock():
        time.sleep(3)
        for _ in range(100):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader waiting (ENXIO), or the FIFO is gone
                pass
            time.sleep(0.1)

    threading.Thread(target=unblock, daemon=True).start()
    return path


def link_loop(path):
    """A symbolic link at `path` to a link that points back at it."""
    os.symlink(str(path) + ".other", path)
    os.symlink(path, str(path) + ".other")
    return path


def alias_bomb(levels=6):
    """batch_size's value: aliases of aliases, 9**levels strings once written out."""
    anchors = ['&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]']
    anchors += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "batch_size: [" + ", ".join(anchors) + "]\n"


def png_header(width, height):
    """The bytes of a PNG that says it is width x height pixels (its pixels cut short)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def big_png(path):
    path.write_bytes(png_header(10000, 10000))
    return path


def tiny_png(path, height, width):
    import matplotlib.image
    matplotlib.image.imsave(path, np.full((height, width), 0.5), cmap="gray")
    return path


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


def checkpoint_with(path, tmp_path, data, **changes):
    """The checkpoint of a new convnet1, with the arrays `changes` in place of its own (an
    array given as bytes is written as that member's whole .npy file)."""
    params = NeuralNet(conv_config(tmp_path, data)).GetParameters()
    params.update(changes)
    raw = {name: value for name, value in params.items() if isinstance(value, bytes)}
    np.savez(path, **{name: value for name, value in params.items() if name not in raw})
    with zipfile.ZipFile(path, "a") as archive:
        for name, blob in raw.items():
            archive.writestr(name + ".npy", blob)


def npy_claiming(shape):
    """An .npy file whose header says `shape` (float64), followed by 64 bytes of data only."""
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


BAD_INPUTS = [
    ("not YAML", config_row(lambda c: "network: [\n  - name: x\n  type: FC"), ["bad.yaml", "YAML"]),
    ("not a mapping", config_row(lambda c: "- 1\n- 2\n"), ["bad.yaml", "mapping"]),
    ("python object tag", config_row(lambda c: "network: !!python/object/apply:os.system ['true']\n"),
     ["bad.yaml", "Python object"]),
    ("no network", config_row(lambda c: drop(c, "network")), ["bad.yaml", "'network'"]),
    ("layer without name", config_row(lambda c: with_layer(c, 0, name=None)), ["bad.yaml", "'name'"]),
    ("layer without type", config_row(lambda c: with_layer(c, 0, type=None)), ["bad.yaml", "conv1", "'type'"]),
    ("duplicate names", config_row(lambda c: with_layer(c, 2, name="conv1")),
     ["bad.yaml", "conv1", "'name'", "two layers"]),
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
    ("batch norm given num_channels",
     config_row(lambda c: with_layer_inserted(c, 1, name="bn1", type="BATCHNORM", epsilon=0.1, num_channels=16)),
     ["bad.yaml", "bn1", "'num_channels'"]),
    ("batch norm with weight_average",
     config_row(lambda c: dict(with_layer_inserted(c, 1, name="bn1", type="BATCHNORM", epsilon=0.1),
                               weight_average=0.99)),
     ["bad.yaml", "bn1", "'weight_average'", "BATCHNORM"]),
    ("missing data file", config_row(lambda c: dict(c, data_path="/nonexistent/digits.npz")),
     ["bad.yaml", "'data_path'", "/nonexistent/digits.npz", "data/usps.py"]),
    ("data not an npz",
     lambda tmp, data: config_row(lambda c: dict(c, data_path=str(REPO_ROOT / "README.md")))(tmp, data),
     ["'data_path'", "README.md", "not a readable"]),
    ("data keys missing", npz_row(lambda b: drop(b, "validation_labels")), ["'data_path'", "validation_labels"]),
    ("images of another size",
     npz_row(lambda b: dict(b, train=b["train"][:, :200], validation=b["validation"][:, :200])),
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


def report_row(stats=None, plot=None):
    """tools/report.py on convnet1 (not trained): stats(path) writes its stats file; plot(tmp)
    gives --plot (None: --no-plot)."""
    def make(tmp_path, data):
        config = dump(tmp_path / "c.yaml", conv_config(tmp_path, data))
        (tmp_path / "runs").mkdir(exist_ok=True)
        if stats:
            stats(tmp_path / "runs" / "c_stats.npy")
        return "report", [config] + (["--plot", str(plot(tmp_path))] if plot else ["--no-plot"])
    return make


def npz_as_stats(path):
    with open(path, "wb") as f:  # np.savez on a name would add '.npz' to it
        np.savez(f, stats=np.ones((2, 5)))


def a_file(path):
    path.write_text("a file, not a folder")
    return path


def usps_row(mirror_files):
    """data/usps.py --mirror <tmp>/mirror --out <tmp>/prepared/usps.npz, the mirror holding
    mirror_files(folder) (nothing if None)."""
    def make(tmp_path, data):
        mirror = tmp_path / "mirror"
        mirror.mkdir()
        mirror_files(mirror)
        return "usps", ["--mirror", str(mirror), "--out", str(tmp_path / "prepared" / "usps.npz")]
    return make


def convnet_argv(*extra):
    return lambda tmp, data: [dump(tmp / "c.yaml", conv_config(tmp, data)), "--no-display", *extra]


MORE_BAD_INPUTS = [
    ("config not UTF-8", config_row(lambda c: "max_epochs: 1\n# caf\xe9\n".encode("latin-1")),
     ["bad.yaml", "UTF-8", "0xe9", "line 2"]),
    ("config is a FIFO", lambda tmp, data: ("train", [str(fifo(tmp / "bad.yaml")), "--no-display"]),
     ["bad.yaml", "FIFO"]),
    ("config of 300 KB", config_row(lambda c: dict(c, batch_size=[0] * 50000)), ["bad.yaml", "64.0 KiB"]),
    ("a long list value", config_row(lambda c: dict(c, batch_size=list(range(3000)))),
     ["bad.yaml", "'batch_size'", "[0, 1, 2", " ..."]),
    ("YAML alias bomb", config_row(lambda c: alias_bomb()), ["bad.yaml", "line 1", "aliases"]),
    ("type as a list", config_row(lambda c: with_layer(c, 0, type=["FC"])), ["bad.yaml", "conv1", "'type'", "['FC']"]),
    ("name: 5", config_row(lambda c: with_layer(c, 0, name=5)),
     ["bad.yaml", "network entry 0", "'name'", "letters", "got 5"]),
    ("layer name with NUL", config_row(lambda c: with_layer(c, 0, name="conv\0one")),
     ["bad.yaml", "network entry 0", "'name'", "letters", "\\x00"]),
    ("integer beyond 64 bits", config_row(lambda c: with_layer(c, 4, num_channels=2 ** 70)),
     ["bad.yaml", "fc1", "'num_channels'", "2**63"]),
    ("number beyond any float", config_row(lambda c: with_layer(c, 0, epsilon=10 ** 400)),
     ["bad.yaml", "conv1", "'epsilon'", "finite"]),
    ("a billion channels", config_row(lambda c: with_layer(c, 4, num_channels=10 ** 9)),
     ["bad.yaml", "fc1", "'num_channels'", "memory"]),
    ("--seed -5", argv_row("train", convnet_argv("--seed", "-5")), ["--seed", "-5", "2**63"]),
    ("--seed 2**63", argv_row("train", convnet_argv("--seed", str(2 ** 63))), ["--seed", str(2 ** 63)]),
    ("unknown option", argv_row("train", convnet_argv("--bogus")), ["train.py", "--bogus"]),
    ("data file is a FIFO", lambda tmp, data: config_row(lambda c: dict(c, data_path=str(fifo(tmp / "d.npz"))))(
        tmp, data), ["bad.yaml", "'data_path'", "d.npz", "FIFO"]),
    ("data file is a loop of links", lambda tmp, data: config_row(
        lambda c: dict(c, data_path=str(link_loop(tmp / "d.npz"))))(tmp, data),
     ["bad.yaml", "'data_path'", "d.npz", "symbolic links"]),
    ("checkpoint is a FIFO", checkpoint_row(lambda path, tmp, data: fifo(path)), ["c.npz", "FIFO"]),
    ("checkpoint is a loop of links", checkpoint_row(lambda path, tmp, data: link_loop(path)),
     ["c.npz", "symbolic links"]),
    ("checkpoint holds text", checkpoint_row(lambda p, t, d: checkpoint_with(p, t, d, conv1_w=np.full((16, 9), "w"))),
     ["c.npz", "conv1", "'conv1_w'", "not numbers"]),
    ("checkpoint holds NaN",
     checkpoint_row(lambda p, t, d: checkpoint_with(p, t, d, output_b=np.full((1, 10), np.nan))),
     ["c.npz", "'output_b'", "NaN"]),
    ("checkpoint member claims a terabyte",
     checkpoint_row(lambda p, t, d: checkpoint_with(p, t, d, fc1_w=npy_claiming((1000000, 131072)))),
     ["c.npz", "'fc1_w'", "(1000000, 131072)", "(512, 512)"]),
    ("stats file is an .npz", report_row(stats=npz_as_stats), ["c.yaml", "'performance_stats'", "c_stats.npy"]),
    ("--plot in a folder that is a file",
     report_row(stats=lambda path: np.save(path, np.ones((2, 5))), plot=lambda tmp: a_file(tmp / "f") / "p.png"),
     ["--plot", "p.png", "a file, not a folder"]),
    ("1x1 image", argv_row("play", lambda tmp, data: [tiny_png(tmp / "dot.png", 1, 1), "--out", tmp / "o.png"]),
     ["dot.png", "1x1", "at least 2x2"]),
    ("10000x10000 image", argv_row("play", lambda tmp, data: [big_png(tmp / "big.png"), "--out", tmp / "o.png"]),
     ["big.png", "10000x10000", "megapixels"]),
    ("damaged mirror file", usps_row(lambda m: (m / "zip.train.gz").write_bytes(b"not gzip")),
     ["mirror/zip.train.gz", "not a readable USPS file"]),
    ("mirror file is a FIFO", usps_row(lambda m: fifo(m / "zip.train.gz")), ["mirror/zip.train.gz", "FIFO"]),
    ("usps.npz under a file",
     lambda tmp, data: ("usps", ["--mirror", str(tmp), "--out", str(a_file(tmp / "f") / "u.npz")]),
     ["u.npz", "a file, not a folder"]),
    ("a key given twice", config_row(lambda c: "max_epochs: 3\nbatch_size: 10\nmax_epochs: 5\n"),
     ["bad.yaml", "'max_epochs'", "twice", "lines 1 and 3"]),
    ("the loader's own key", config_row(lambda c: dict(c, _path="other.yaml")), ["bad.yaml", "'_path'"]),
    ("an empty validation set", lambda tmp, data: config_row(lambda c: dict(c, data_path=str(empty_set(tmp))))(
        tmp, data), ["bad.yaml", "'data_path'", "'validation'", "no images"]),
]


def empty_set(tmp_path):
    """A data file of the right shapes whose validation set has no images."""
    path = tmp_path / "empty.npz"
    labels = np.eye(10)[np.arange(20) % 10]
    np.savez(path, train=np.zeros((20, 256)), train_labels=labels,
             validation=np.zeros((0, 256)), validation_labels=labels[:0])
    return path


def run_main(script, argv):
    """main(argv) of a script or tool: its exit status, also when argparse exits."""
    try:
        return SCRIPTS[script].main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("make, words", [row[1:] for row in BAD_INPUTS + MORE_BAD_INPUTS],
                         ids=[row[0] for row in BAD_INPUTS + MORE_BAD_INPUTS])
def test_bad_input_gets_one_line_naming_the_problem_and_exit_status_2(tmp_path, small_npz, capsys, make, words):
    script, argv = make(tmp_path, small_npz)
    code = run_main(script, argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert len(lines[0]) < MESSAGE_LIMIT, lines[0][:MESSAGE_LIMIT]
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
    for _ in range(24):
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


@pytest.mark.parametrize("init_wt", [1e300, 1e200])  # the two layers' product overflows in the first forward pass
def test_divergence_before_any_update_blames_the_initial_weights_not_the_learning_rate(
        tmp_path, small_npz, capsys, init_wt):
    config = load_shipped_config("net_1layer.yaml")
    config.update(data_path=str(small_npz), checkpoint_file=str(tmp_path / "runs" / "w.npz"),
                  performance_stats=str(tmp_path / "runs" / "w_stats.npy"), display=False)
    config = with_layer(with_layer(config, 0, init_wt=init_wt), 1, init_wt=init_wt)
    assert train.main([dump(tmp_path / "w.yaml", config), "--no-display"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "before any update" in lines[0] and "'init_wt'" in lines[0] and "'epsilon'" not in lines[0]


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
