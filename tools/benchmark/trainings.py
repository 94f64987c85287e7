"""Whole trainings in child processes (sections 5 and 6 of the report): `python train.py`
on copies of the configs whose checkpoint and stats files point into a temporary folder
(runs/ is never touched), with its wall time and peak resident memory."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from tools.benchmark.configs import CONFIG_DIR, KIT


def write_training_copy(name, tmpdir, data_path=None):
    """A copy of configs/<name>.yaml that writes its checkpoint and stats into tmpdir."""
    with open(CONFIG_DIR / f"{name}.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    folder = Path(tmpdir) / name
    folder.mkdir(parents=True, exist_ok=True)
    config.update(checkpoint_file=str(folder / f"{name}.npz"),
                  performance_stats=str(folder / f"{name}_stats.npy"), display=False)
    if data_path is not None:
        config["data_path"] = str(data_path)
    path = folder / f"{name}.yaml"
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


# Starts the measured child and reports its wall time and ru_maxrss. Why a go-between: Linux
# carries a process's peak RSS across exec, so a child forked straight from this process
# (hundreds of MB by now) would report at least this process's size. Forked from this small
# interpreter instead, the child's own peak is what is left.
_REAPER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
with open(report, "w") as f:
    f.write(f"{elapsed} {usage.ru_maxrss}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_child(args, tmpdir):
    """Run `python args...` in the kit's folder: (wall seconds, exit status, peak RSS in MB,
    output)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    report = Path(tmpdir) / "child_usage.txt"
    report.unlink(missing_ok=True)
    with tempfile.TemporaryFile(dir=tmpdir) as out:
        # -I -S: the go-between imports nothing it does not need, so it stays small.
        status = subprocess.run([sys.executable, "-I", "-S", "-c", _REAPER, str(report), sys.executable]
                                + [str(a) for a in args], cwd=KIT, env=env, stdout=out,
                                stderr=subprocess.STDOUT).returncode
        out.seek(0)
        output = out.read().decode(errors="replace")
    try:
        elapsed, maxrss = report.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return float("nan"), status or 1, float("nan"), output
    # Linux gives ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return float(elapsed), status, int(maxrss) * scale / 2 ** 20, output


def write_subset(arrays, limit, tmpdir):
    """The --quick subset, the first `limit` = (training, validation) images, as a data file
    for the child trainings (written once)."""
    path = Path(tmpdir) / "subset.npz"
    if not path.exists():
        subset = {}
        for name, n in zip(("train", "validation"), limit):
            subset[name], subset[name + "_labels"] = (a[:n] for a in arrays[name])
        # A data file has all three sets; evaluate.py would read the test set.
        subset["test"], subset["test_labels"] = (a[:limit[1]] for a in arrays["validation"])
        np.savez(path, **subset)
    return path
