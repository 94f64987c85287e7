"""Shared fixtures, and the student kit's "not implemented yet". The repository on sys.path,
the test process tuned by runtime.py (role single_example), the USPS data (prepared once per
session from the local mirror into a temporary directory), small slices of it, configs
written into tmp_path with absolute paths (tests never write into data/ or runs/),
numeric_gradient and small synthetic networks. The kernels' references are in
tests/references.py.

In the student kit the four pieces start as `raise NotImplementedError("<piece>: ...")`. A test
that fails because one of them is not written yet (the error raised in the test, or a script it
runs saying `not implemented yet: <piece>`) is reported as xfailed with the reason
"not implemented yet: <piece>", not as a failure; any other failure stays a failure. Where every
piece is written (the reference kit) this changes nothing. `--piece NAME` runs the layer tests of
one piece (the tests marked `piece`).
"""

import functools
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
# Another build of the compiled kernels to test instead of the one in the kit's folder (a folder
# holding convolutions*.so): .ci/run runs the kernels' tests against clang's build this way.
if os.environ.get("KIT_KERNELS_DIR"):
    sys.path.insert(0, os.path.abspath(os.environ["KIT_KERNELS_DIR"]))

from plumbing import runtime

# Before numpy is imported: the tests multiply small matrices, one example or a few at a
# time, where OpenBLAS's threads cost more than they give. Results do not depend on it.
runtime.configure("single_example")
# No screen in CI: matplotlib must draw to files.
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import yaml

CONFIG_DIR = REPO_ROOT / "configs"
SLICE_SIZES = {"train": 600, "validation": 200, "test": 200}
SUBSET_SIZES = {"train": 1500, "validation": 500, "test": 200}
KEYS = ("train", "validation", "test")

# The student's pieces, where they are, and the layer tests of each (test file, and which of its
# tests: `forward` ones check ComputeUp only; a conv test checks method 2 when its `method`
# parameter is 2 or its name says method2).
PIECE_FILES = {"FCLayer.ComputeUp": "fc_layer.py", "FCLayer.ComputeDown": "fc_layer.py",
               "ConvLayer.ComputeUp": "conv_layer.py", "ConvLayer.ComputeDown": "conv_layer.py"}


# A test of one piece carries the mark `piece` with the piece's name (`@piece("FCLayer.ComputeUp")`,
# or `method2(...)` on a conv test's `method` parameter); `--piece NAME` runs the tests so marked.
piece = pytest.mark.piece


def methods(name):
    """The `method` parameter of a conv layer test: method 1 (the kit's), and method 2 marked as
    a test of the student's piece `name`."""
    return [1, pytest.param(2, marks=piece(name))]


PIECE_NAMES = "|".join(re.escape(piece) for piece in PIECE_FILES)
# How an unwritten piece shows: the blank's raise in the source, its error, a script's line.
BLANK_RAISE = re.compile(rf"raise NotImplementedError\(\s*[\"']({PIECE_NAMES}):")
NOT_WRITTEN = re.compile(rf"(?:not implemented yet|not written yet|NotImplementedError): ({PIECE_NAMES})\b")


def unwritten_pieces(kit=REPO_ROOT):
    """The pieces whose blank (`raise NotImplementedError("<piece>: ...")`) is still in their file."""
    found = set()
    for name in set(PIECE_FILES.values()):
        path = Path(kit) / name
        if path.is_file():
            found.update(BLANK_RAISE.findall(path.read_text()))
    return found


UNWRITTEN = unwritten_pieces()


def pytest_addoption(parser):
    parser.addoption("--piece", choices=sorted(PIECE_FILES), action="append", default=[],
                     help="run only the layer tests of this piece of the assignment (may be repeated)")
    parser.addoption("--kernels", choices=("compiled", "numpy"), default=os.environ.get("KIT_KERNELS", "compiled"),
                     help="the kernels `import convolutions` gives the whole run: the compiled module (default) or "
                          "its numpy version, convolutions.py (default: $KIT_KERNELS if set)")


def pytest_configure(config):
    """--kernels numpy: the numpy version in sys.modules before any test imports the kit."""
    config.addinivalue_line("markers", "compiled_only(reason): checks the compiled kernels themselves "
                            "(skipped with --kernels numpy)")
    if config.getoption("--kernels") == "numpy" and getattr(sys.modules.get("convolutions"), "COMPILED", True):
        import importlib.util

        spec = importlib.util.spec_from_file_location("convolutions", REPO_ROOT / "convolutions.py")
        module = importlib.util.module_from_spec(spec)
        module.WHY = None  # asked for: no notice
        spec.loader.exec_module(module)
        sys.modules["convolutions"] = module


def numpy_kernels():
    """Whether this run's kernels are the numpy version (--kernels numpy)."""
    import convolutions

    return convolutions.COMPILED is not True


def pytest_runtest_setup(item):
    for mark in item.iter_markers("compiled_only"):
        if numpy_kernels():
            pytest.skip(f"compiled kernels only: {mark.args[0]}")


def pytest_collection_modifyitems(config, items):
    pieces = config.getoption("--piece")
    if not pieces:
        return
    keep, drop = [], []
    for item in items:
        chosen = any(mark.args[0] in pieces for mark in item.iter_markers("piece"))
        (keep if chosen else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def _piece_methods():
    """[(class, method name, piece)] of the unwritten pieces (none if the kit cannot be imported:
    the tests then say why themselves)."""
    try:
        from conv_layer import ConvLayer
        from fc_layer import FCLayer
    except ImportError:
        return []
    classes = {"FCLayer": FCLayer, "ConvLayer": ConvLayer}
    return [(classes[piece.split(".")[0]], piece.split(".")[1], piece) for piece in sorted(UNWRITTEN)]


@pytest.fixture(scope="session")
def _downloads_root(tmp_path_factory):
    return tmp_path_factory.mktemp("usps-downloads")


_DOWNLOADS_MADE = itertools.count()


@pytest.fixture(autouse=True)
def _usps_downloads(monkeypatch, _downloads_root):
    """USPS's published files, once fetched, go to a folder of the test's own, never to the
    kit's data/downloads/, and files one test fetched never serve another (the folder is made
    only by a test that fetches: data/usps.py makes it)."""
    monkeypatch.setenv("USPS_DOWNLOADS", str(_downloads_root / str(next(_DOWNLOADS_MADE))))


@pytest.fixture(autouse=True)
def _unwritten_seen(request, monkeypatch):
    """In a kit with unwritten pieces, note each one a test reaches: its NotImplementedError as
    it is raised (in the test's own process, whatever catches it), and what the scripts the test
    runs print (their `not implemented yet: <piece>`)."""
    seen = request.node.unwritten_seen_ = []
    if not UNWRITTEN:
        yield
        return
    for cls, name, piece in _piece_methods():
        monkeypatch.setattr(cls, name, _noting(getattr(cls, name), piece, seen))
    communicate = subprocess.Popen.communicate

    def recorded(self, *args, **kwargs):
        out = communicate(self, *args, **kwargs)
        seen.extend(text if isinstance(text, str) else text.decode(errors="replace") for text in out if text)
        return out

    monkeypatch.setattr(subprocess.Popen, "communicate", recorded)
    yield


def _noting(method, piece, seen):
    @functools.wraps(method)
    def noted(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except NotImplementedError as e:
            if str(e).startswith(f"{piece}:"):
                seen.append(f"NotImplementedError: {e}")
            raise
    return noted


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure caused by an unwritten piece becomes an xfail saying which piece."""
    outcome = yield
    report = outcome.get_result()
    if not UNWRITTEN or not report.failed or call.excinfo is None:
        return
    texts = [*getattr(item, "unwritten_seen_", []), report.longreprtext, report.capstdout, report.capstderr]
    pieces = [p for text in texts for p in NOT_WRITTEN.findall(text) if p in UNWRITTEN]
    if pieces:
        report.outcome = "skipped"
        report.wasxfail = f"not implemented yet: {pieces[0]}"


def pytest_terminal_summary(terminalreporter):
    """How many tests wait for each unwritten piece, in one line each."""
    waiting = {}
    for report in terminalreporter.stats.get("xfailed", []):
        reason = getattr(report, "wasxfail", "")
        if reason.startswith("not implemented yet: "):
            waiting[reason] = waiting.get(reason, 0) + 1
    if waiting:
        terminalreporter.write_sep("-", "expected until you write these pieces (xfailed)")
        for reason in sorted(waiting, key=lambda r: list(PIECE_FILES).index(r.split(": ", 1)[1])):
            piece = reason.split(": ", 1)[1]
            terminalreporter.write_line(f"{reason} ({PIECE_FILES[piece]}): {waiting[reason]} "
                                        f"test{'s' if waiting[reason] > 1 else ''}")


def mirror_dir():
    """Where the tests find USPS's published files: $USPS_MIRROR (relative paths taken from the
    repo root), else the kit's data/downloads/ (what data/usps.py fetched), else a mirror at
    <repo>/../shared/data/usps. (path or None, whether USPS_MIRROR named it)."""
    env = os.environ.get("USPS_MIRROR")
    if env:
        path = Path(env)
        return (path if path.is_absolute() else REPO_ROOT / path).resolve(), True
    for path in (REPO_ROOT / "data" / "downloads", REPO_ROOT.parent / "shared" / "data" / "usps"):
        if all((path / name).is_file() for name in ("zip.train.gz", "zip.test.gz")):
            return path.resolve(), False
    return None, False


# What a test that needs USPS says when it cannot have it, in the kit's own terms.
NO_USPS = ("USPS is not here: no data/usps.npz and no data/downloads/ in the kit, and USPS_MIRROR is not set "
           "(python data/usps.py fetches it; USPS_MIRROR=DIR names a folder holding zip.train.gz and zip.test.gz)")


@pytest.fixture(scope="session")
def usps_mirror():
    """A folder holding zip.train.gz and zip.test.gz (skips, saying where they would be, if none)."""
    path, explicit = mirror_dir()
    if explicit and not all((path / name).is_file() for name in ("zip.train.gz", "zip.test.gz")):
        pytest.fail(f"USPS_MIRROR={os.environ['USPS_MIRROR']} does not hold zip.train.gz and zip.test.gz")
    if path is None:
        pytest.skip(NO_USPS)
    return path


@pytest.fixture(scope="session")
def usps_npz(tmp_path_factory):
    """The full prepared data file: made once by data.usps.prepare from the published files, or
    the kit's own data/usps.npz when they are not here (copied: the tests never write into data/)."""
    from data import usps

    path = tmp_path_factory.mktemp("usps_full") / "usps.npz"
    mirror, explicit = mirror_dir()
    if explicit and not all((mirror / name).is_file() for name in ("zip.train.gz", "zip.test.gz")):
        pytest.fail(f"USPS_MIRROR={os.environ['USPS_MIRROR']} does not hold zip.train.gz and zip.test.gz")
    if mirror is not None:
        returned = usps.prepare(npz_path=str(path), mirror=str(mirror),
                                downloads=str(tmp_path_factory.mktemp("usps_full_downloads")))
        assert Path(returned) == path
    elif (REPO_ROOT / "data" / "usps.npz").is_file():
        shutil.copy(REPO_ROOT / "data" / "usps.npz", path)
    else:
        pytest.skip(NO_USPS)
    return path


@pytest.fixture(scope="session")
def usps_arrays(usps_npz):
    with np.load(usps_npz) as f:
        return {key: f[key] for key in f.files}


def _write_slice(arrays, path, sizes):
    sliced = {}
    for key in KEYS:
        sliced[key] = arrays[key][:sizes[key]]
        sliced[key + "_labels"] = arrays[key + "_labels"][:sizes[key]]
    np.savez(path, **sliced)
    return path


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory, usps_arrays):
    """600 train / 200 validation / 200 test digits of the real data, for script tests."""
    return _write_slice(usps_arrays, tmp_path_factory.mktemp("usps_small") / "small.npz", SLICE_SIZES)


@pytest.fixture(scope="session")
def subset_npz(tmp_path_factory, usps_arrays):
    """1500 train / 500 validation / 200 test digits, for short real trainings."""
    return _write_slice(usps_arrays, tmp_path_factory.mktemp("usps_subset") / "subset.npz", SUBSET_SIZES)


def load_shipped_config(name):
    with open(CONFIG_DIR / name) as f:
        return yaml.safe_load(f)


def write_config(tmp_path, name, data_path, **overrides):
    """Copy shipped config `name` into tmp_path with absolute data/checkpoint/stats paths
    (all in tmp_path), display off unless overridden; return the new file's path."""
    config = load_shipped_config(name)
    stem = Path(name).stem
    config.update(data_path=str(data_path),
                  checkpoint_file=str(tmp_path / "runs" / f"{stem}.npz"),
                  performance_stats=str(tmp_path / "runs" / f"{stem}_stats.npy"),
                  display=False)
    config.update(overrides)
    path = tmp_path / f"{stem}.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


@pytest.fixture
def make_config(tmp_path):
    """make_config(shipped name, data_path, **overrides) -> path of a config in tmp_path."""
    def make(name, data_path, **overrides):
        return write_config(tmp_path, name, data_path, **overrides)
    return make


def numeric_gradient(f, array, eps=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of `array` (changed in place)."""
    grad = np.zeros(array.shape)
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array)
    g = grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        g[i] = (plus - minus) / (2 * eps)
    return grad


# Small networks on synthetic data (test_net, test_lr_schedule, test_augment).

LOGREG = {"name": "output", "type": "FC", "num_channels": 10, "init_wt": 0.05, "epsilon": 0.02,
          "momentum": 0.9, "l2_decay": 0.0001}


def small_config(tmp_path, data_path, network=None, **overrides):
    config = {"max_epochs": 2, "batch_size": 100, "data_path": str(data_path),
              "checkpoint_file": str(tmp_path / "model.npz"),
              "performance_stats": str(tmp_path / "stats.npy"), "display": False,
              "network": network or [dict(LOGREG)]}
    config.update(overrides)
    return config


def synthetic_npz(path, num_train=250, num_validation=60, seed=0):
    """Random 'digits' whose label decides which pixels are bright: learnable and fast."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, n in (("train", num_train), ("validation", num_validation), ("test", 40)):
        labels = rng.integers(0, 10, n)
        x = rng.uniform(0, 0.3, (n, 256))
        for i, label in enumerate(labels):
            x[i, label * 25:(label + 1) * 25] += 0.7
        arrays[name] = x
        arrays[name + "_labels"] = np.eye(10)[labels]
    np.savez(path, **arrays)
    return path
