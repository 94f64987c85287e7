"""The files a training run writes: checkpoints, the last state for --resume, and how every
one of them is written (whole or not at all).

A checkpoint is an .npz with one array per parameter, by name (`conv1_w`, `conv1_b`, ...).
The last state, '<checkpoint>_last.npz', holds what an interrupted run needs to go on as if
it had not stopped: parameters, momentum, the statistics so far, progress and the states of
the random generators.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from config import ConfigError


def write_atomically(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place, so
    `path` always holds a whole file: the old one or the new one, never half of one,
    even if the process is killed or the machine loses power in between."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_arrays(path, arrays):
    """Write a dict of arrays to an .npz at `path`, atomically."""
    write_atomically(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path, source):
    """The parameters saved in checkpoint `path`, {name: array}; ConfigError if it is missing
    or damaged. `source` is the config, named in the message with how to train again."""
    if not os.path.exists(path):
        raise ConfigError(f"{source}: checkpoint {path} not found; train the model first "
                          f"(python train.py {source})")
    try:
        with np.load(path, allow_pickle=False) as f:
            return dict(f)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise ConfigError(f"{source}: checkpoint {path} is damaged or not a checkpoint "
                          f"({type(e).__name__}: {e}); train again (python train.py {source})") from None
    except Exception as e:  # zlib and other decoding errors of a truncated file
        raise ConfigError(f"{source}: checkpoint {path} is damaged ({type(e).__name__}: {e}); "
                          f"train again (python train.py {source})") from None


def last_state_path(checkpoint_file):
    """Where a run keeps what --resume needs: beside the checkpoint, '<name>_last.npz'."""
    return os.path.splitext(checkpoint_file)[0] + "_last.npz"


def save_last_state(path, layers, stats, epoch, best_epoch, seed, best_acc, rngs):
    """Write the last state: the layers' parameters and momentum velocities, the (epochs, 5)
    statistics, the progress and the states of the generators `rngs`, atomically."""
    arrays = {}
    for layer in layers:
        arrays.update(layer.GetParameters())
        if layer.has_params_:
            arrays[f"{layer.name_}_w_velocity"] = layer.dw_history_
            arrays[f"{layer.name_}_b_velocity"] = layer.db_history_
    arrays["stats"] = np.array(stats, dtype=np.float64).reshape(-1, 5)
    arrays["progress"] = np.array([epoch, best_epoch, seed], dtype=np.int64)
    arrays["best_acc"] = np.array(best_acc)
    arrays["rng_states"] = np.array(json.dumps([rng.bit_generator.state for rng in rngs]))
    save_arrays(path, arrays)


def load_last_state(path, source, seed, num_rngs, lr_factor):
    """The last state at `path` as a dict: its arrays by name, and 'epoch', 'best_epoch',
    'best_acc', 'best_ce' (the best epoch's validation cross entropy), 'stats' (a list of
    rows) and 'rng_states'. ConfigError if there is none,
    if it is not a last-state file, or if it is not this run's: trained with another seed,
    or with learning-rate factors other than lr_factor(epoch) gives for this run."""
    if not os.path.exists(path):
        raise ConfigError(f"{source}: nothing to resume: {path} not found "
                          f"(it is written after each epoch; run without --resume to start)")
    try:
        with np.load(path, allow_pickle=False) as f:
            state = dict(f)
        epoch, best_epoch, saved_seed = (int(v) for v in state["progress"])
        rng_states = json.loads(str(state["rng_states"]))
        if len(rng_states) != num_rngs:
            raise ValueError(f"{len(rng_states)} generator states, not {num_rngs}")
    except Exception as e:  # truncated or foreign file
        raise ConfigError(f"{source}: cannot resume from {path}: not a last-state file "
                          f"({type(e).__name__}: {e})") from None
    if saved_seed != seed:
        raise ConfigError(f"{source}: {path} was trained with --seed {saved_seed}, not {seed}")
    stats = state["stats"]
    if stats.ndim != 2 or stats.shape != (epoch, 5):
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
    best_ce = float(stats[best_epoch - 1][2]) if 1 <= best_epoch <= epoch else np.inf
    state.update(epoch=epoch, best_epoch=best_epoch, best_acc=float(state["best_acc"]), best_ce=best_ce,
                 stats=[list(row) for row in stats], rng_states=rng_states)
    return state


def restore_layers(layers, state, path, source):
    """Put the parameters and velocities of a last state (as load_last_state returns it)
    back into the layers; ConfigError naming the layer if the file does not match it."""
    for layer in layers:
        layer.SetParameters(state)
        if layer.has_params_:
            for attr, key in (("dw_history_", "_w_velocity"), ("db_history_", "_b_velocity")):
                velocity = state.get(layer.name_ + key)
                if velocity is None or velocity.shape != getattr(layer, attr).shape:
                    raise ConfigError(f"{source}: {path} does not match layer '{layer.name_}'")
                setattr(layer, attr, np.array(velocity, dtype=layer.w_.dtype))
