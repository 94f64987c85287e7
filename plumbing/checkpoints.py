"""The files a training run writes: checkpoints, the last state for --resume, and how every
one of them is written (whole or not at all).

A checkpoint is an .npz with one array per parameter, by name (`conv1_w`, `conv1_b`, ...).
The last state, '<checkpoint>_last.npz', holds what an interrupted run needs to go on as if
it had not stopped: parameters, momentum, the statistics so far, progress, the states of
the random generators, and the run's fingerprint (everything that defines it: a resume
with another batch size, dtype, epsilon, dropout, augmentation or layer would be a mixed
run that looks like a resumed one, so it is refused).

Both are read member by member, each only once its header says it is what this network
expects (files.read_npz): nothing else in the zip is decompressed.
"""

import hashlib
import json
import os
import zipfile
import zlib

import numpy as np

from plumbing.errors import ConfigError
from plumbing.files import NotRegularFile, missing, numbers, read_npz
from plumbing.settings import SETTINGS, shown
from plumbing.writing import write_atomically

# Settings a resumed run may change: how long it goes on, what it shows, where its files are.
RESUMABLE = ("max_epochs", "display", "display_after", "data_path", "checkpoint_file", "performance_stats")
# A layer's settings, as attributes ('<key>_'): those it has make its part of the fingerprint.
LAYER_SETTINGS = ("type", "num_channels", "kernel_size", "stride", "padding", "conv_method", "init_wt",
                  "epsilon", "momentum", "l2_decay", "dropout_rate")
TEXT_LIMIT = 1 << 20  # bytes of the last state's JSON members (generator states, fingerprint)
DIFFERENCES_SHOWN = 4




def save_arrays(path, arrays):
    """Write a dict of arrays to an .npz at `path`, atomically."""
    write_atomically(path, lambda f: np.savez(f, **arrays))


def expected_parameters(layers, velocities=False):
    """{array name: (layer, shape)} of the parameters (and momentum velocities) of `layers`."""
    expected = {}
    for layer in layers:
        for name, array in layer.GetParameters().items():  # w and b, and e.g. a batch norm's statistics
            expected[name] = (layer, array.shape)
        if layer.has_params_ and velocities:
            for suffix, array in (("_w", layer.w_), ("_b", layer.b_)):
                expected[layer.name_ + suffix + "_velocity"] = (layer, array.shape)
    return expected


def _read(path, wanted, accept, what, source):
    """read_npz, with every way a file can be unreadable as one ConfigError naming it."""
    if missing(path):
        raise FileNotFoundError(path)
    try:
        return read_npz(path, wanted, accept)
    except ConfigError:
        raise
    except (NotRegularFile, PermissionError, IsADirectoryError) as e:
        raise ConfigError(f"{source}: cannot read {what} {path} ({e.strerror})") from None
    except OSError as e:
        if e.errno is not None and e.strerror:  # ELOOP, EIO, ...: the file system's word
            raise ConfigError(f"{source}: cannot read {what} {path} ({e.strerror})") from None
        raise ConfigError(f"{source}: {what} {path} is damaged or not a {what} ({type(e).__name__}: {e}); "
                          f"train again (python train.py {source})") from None
    except (ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error) as e:
        raise ConfigError(f"{source}: {what} {path} is damaged or not a {what} ({type(e).__name__}: {e}); "
                          f"train again (python train.py {source})") from None


def load_checkpoint(path, source, layers):
    """The parameters of `layers` saved in checkpoint `path`, {name: array}, checked from
    the headers of its members before they are read: present, numbers, of the shapes the
    layers have; and then finite. ConfigError otherwise, naming the config `source`, the
    checkpoint and the layer, with how to train again."""
    expected = expected_parameters(layers)

    def accept(name, shape, dtype):
        layer, want = expected[name]
        if not numbers(dtype):
            raise ConfigError(f"{source}: checkpoint {path}: layer '{layer.name_}': parameter '{name}' holds "
                              f"{dtype} values, not numbers; train again (python train.py {source})")
        if shape != want:
            raise ConfigError(f"{source}: checkpoint {path}: layer '{layer.name_}': parameter '{name}' has shape "
                              f"{shape} in the checkpoint, the config gives {want}")

    try:
        params = _read(path, expected, accept, "checkpoint", source)
    except FileNotFoundError:
        raise ConfigError(f"{source}: checkpoint {path} not found; train the model first "
                          f"(python train.py {source})") from None
    for name, (layer, _) in expected.items():
        if name not in params:
            raise ConfigError(f"{source}: checkpoint {path}: layer '{layer.name_}': parameter '{name}' missing "
                              "from the checkpoint")
        if not np.all(np.isfinite(params[name])):
            raise ConfigError(f"{source}: checkpoint {path}: layer '{layer.name_}': parameter '{name}' holds NaN "
                              f"or infinity; train again (python train.py {source})")
    return params


def last_state_path(checkpoint_file):
    """Where a run keeps what --resume needs: beside the checkpoint, '<name>_last.npz'."""
    return os.path.splitext(checkpoint_file)[0] + "_last.npz"


def run_fingerprint(net):
    """What defines a run, as plain values: every setting but those a resumed run may change
    (RESUMABLE), each layer's settings, and a digest of the training and validation data
    (another data file, or another dtype of it, is another run)."""
    run = {key: getattr(net.settings_, key) for key in SETTINGS if key not in RESUMABLE}
    run["layers"] = [layer.name_ for layer in net.layer_]
    for layer in net.layer_:
        run[f"layer '{layer.name_}'"] = {key: getattr(layer, key + "_") for key in LAYER_SETTINGS
                                         if hasattr(layer, key + "_")}
    digest = hashlib.sha256()
    for images, labels in (net.train_, net.validation_):
        digest.update(np.ascontiguousarray(images))
        digest.update(np.ascontiguousarray(labels))
    run["data_path"] = f"data {digest.hexdigest()[:16]}"
    return json.loads(json.dumps(run))  # as it reads back from the file: lists, not tuples


def run_differences(saved, run):
    """['batch_size (100 in the last state, 50 now)', ...]: where fingerprints `saved` and
    `run` differ, one entry per setting (per layer setting: "layer 'fc1' epsilon (...)")."""
    def both(was, now):
        return f"({shown(was)} in the last state, {shown(now)} now)"

    differences = []
    for key in list(saved) + [k for k in run if k not in saved]:
        was, now = saved.get(key), run.get(key)
        if was == now:
            continue
        if key == "data_path":
            differences.append("data_path (its training or validation images or labels are not those the run "
                               "was trained on)")
        elif isinstance(was, dict) and isinstance(now, dict):
            differences += [f"{key} {sub} {both(was.get(sub), now.get(sub))}"
                            for sub in list(was) + [k for k in now if k not in was] if was.get(sub) != now.get(sub)]
        elif key.startswith("layer '"):
            differences.append(f"{key} ({'not in the last state' if was is None else 'not in this config'})")
        else:
            differences.append(f"{key} {both(was, now)}")
    return differences


def save_last_state(path, layers, stats, epoch, best_epoch, seed, best_acc, rngs, run, extra=None):
    """Write the last state: the layers' parameters and momentum velocities, the (epochs, 5)
    statistics, the progress, the states of the generators `rngs`, the run's fingerprint
    `run` (run_fingerprint) and the arrays of the dict `extra` (e.g. a weight average's;
    read back by read_extra), atomically."""
    arrays = dict(extra or {})
    for layer in layers:
        arrays.update(layer.GetParameters())
        if layer.has_params_:
            arrays[f"{layer.name_}_w_velocity"] = layer.dw_history_
            arrays[f"{layer.name_}_b_velocity"] = layer.db_history_
    arrays["stats"] = np.array(stats, dtype=np.float64).reshape(-1, 5)
    arrays["progress"] = np.array([epoch, best_epoch, seed], dtype=np.int64)
    arrays["best_acc"] = np.array(best_acc)
    arrays["rng_states"] = np.array(json.dumps([rng.bit_generator.state for rng in rngs]))
    arrays["run"] = np.array(json.dumps(run))
    save_arrays(path, arrays)


def _progress(path, source):
    """The small members of the last state at `path`, checked: {'stats', 'progress', 'best_acc',
    'rng_states', 'run'}; ConfigError if there is none or it is not a last-state file."""
    shapes = {"progress": (3,), "best_acc": (), "rng_states": (), "run": ()}

    def accept(name, shape, dtype):
        if name in ("rng_states", "run"):  # JSON text
            fits = dtype.kind == "U" and shape == () and dtype.itemsize <= TEXT_LIMIT
        else:
            fits = numbers(dtype) and (shape == shapes[name] if name in shapes else len(shape) <= 2)
        if not fits:
            raise ValueError(f"'{name}' is {shape} {dtype}")

    try:
        state = _read(path, ("stats", *shapes), accept, "last-state file", source)
        absent = [name for name in ("stats", *shapes) if name not in state]
        if absent:
            raise ValueError(f"no {', '.join(absent)}")
        return state
    except FileNotFoundError:
        raise ConfigError(f"{source}: nothing to resume: {path} not found "
                          f"(it is written after each epoch; run without --resume to start)") from None
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{source}: cannot resume from {path}: not a last-state file of this kit "
                          f"({e}); run without --resume to start again") from None


def resume_from(path, source, layers, seed, rngs, run, lr_factor):
    """Put the last state at `path` back: the layers' parameters and velocities and the
    generators' states, and return {'epoch', 'best_epoch', 'best_acc', 'best_ce' (the best
    epoch's validation cross entropy), 'stats' (a list of rows)}. ConfigError, naming the
    config `source` and the file, if there is none, if it is not a last-state file, or if it
    is not this run's: another seed, another fingerprint than `run` (the keys that differ are
    named), or learning-rate factors other than lr_factor(epoch) gives for this run."""
    state = _progress(path, source)
    try:
        epoch, best_epoch, saved_seed = (int(v) for v in state["progress"])
        rng_states = json.loads(str(state["rng_states"]))
        saved_run = json.loads(str(state["run"]))
        if not isinstance(saved_run, dict) or not isinstance(rng_states, list):
            raise ValueError("its settings or generator states are not JSON of this kit")
        if len(rng_states) != len(rngs):
            raise ValueError(f"{len(rng_states)} generator states, not {len(rngs)}")
    except ValueError as e:
        raise ConfigError(f"{source}: cannot resume from {path}: not a last-state file "
                          f"({type(e).__name__}: {e})") from None
    if saved_seed != seed:
        raise ConfigError(f"{source}: {path} was trained with --seed {saved_seed}, not {seed}")
    differences = run_differences(saved_run, run)
    if differences:
        more = len(differences) - DIFFERENCES_SHOWN
        raise ConfigError(f"{source}: cannot resume from {path}: it is a run with other settings: "
                          + "; ".join(differences[:DIFFERENCES_SHOWN]) + (f"; and {more} more" if more > 0 else "")
                          + f" (resume with the config it was trained with, or run {source} without --resume "
                            "to start again)")
    stats = state["stats"]
    if stats.shape != (epoch, 5):
        raise ConfigError(f"{source}: cannot resume from {path}: its statistics have shape "
                          f"{stats.shape}, not ({epoch}, 5)")
    # Another schedule (or another --epochs under cosine) would not be the interrupted run.
    done = list(stats[:, 4])
    planned = [lr_factor(e) for e in range(1, len(done) + 1)]
    if not np.allclose(done, planned, rtol=1e-12, atol=0):
        raise ConfigError(f"{source}: cannot resume: the finished epochs used learning-rate factors "
                          f"{', '.join(f'{v:.4g}' for v in done)}, this config and epoch count give "
                          f"{', '.join(f'{v:.4g}' for v in planned)} (resume with the same lr_schedule "
                          f"keys and --epochs)")
    _restore_layers(path, source, layers)
    for rng, rng_state in zip(rngs, rng_states):
        rng.bit_generator.state = rng_state
    best_ce = float(stats[best_epoch - 1][2]) if 1 <= best_epoch <= epoch else np.inf
    return dict(epoch=epoch, best_epoch=best_epoch, best_acc=float(state["best_acc"]), best_ce=best_ce,
                stats=[list(row) for row in stats])


def read_extra(path, source, shapes):
    """The arrays that save_last_state's `extra` wrote to the last state at `path`, {name:
    array} for the names of `shapes` ({name: shape}), each read only once its header matches;
    ConfigError naming the file and the array otherwise."""
    def accept(name, shape, dtype):
        if not numbers(dtype) or shape != shapes[name]:
            raise ConfigError(f"{source}: cannot resume from {path}: '{name}' is {shape} {dtype}, "
                              f"this run's is {shapes[name]}")

    arrays = _read(path, shapes, accept, "last-state file", source)
    for name in shapes:
        if name not in arrays:
            raise ConfigError(f"{source}: cannot resume from {path}: no '{name}' in it")
    return arrays


def _restore_layers(path, source, layers):
    """Put the parameters and velocities of the last state at `path` back into the layers,
    each read only once its header matches the layer."""
    expected = expected_parameters(layers, velocities=True)

    def accept(name, shape, dtype):
        if not numbers(dtype) or shape != expected[name][1]:
            raise ConfigError(f"{source}: {path} does not match layer '{expected[name][0].name_}' "
                              f"('{name}' is {shape} {dtype}, the layer's is {expected[name][1]})")

    arrays = _read(path, expected, accept, "last-state file", source)
    for name, (layer, _) in expected.items():
        if name not in arrays:
            raise ConfigError(f"{source}: {path} does not match layer '{layer.name_}' (no '{name}')")
    for layer in layers:
        layer.SetParameters(arrays)
        if layer.has_params_:
            layer.dw_history_ = np.array(arrays[layer.name_ + "_w_velocity"], dtype=layer.w_.dtype)
            layer.db_history_ = np.array(arrays[layer.name_ + "_b_velocity"], dtype=layer.w_.dtype)
