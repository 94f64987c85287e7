"""Helpers the grader's tests share (a helper module, not a test file): submissions made
from the reference files, whether a sandbox can be made here, and one grading run."""

import functools
import json
import subprocess
import sys

from conftest import REPO_ROOT

from tools.course.regions import marked_regions

STUDENT_FILES = ("fc_layer.py", "conv_layer.py")


def reference(name):
    return (REPO_ROOT / name).read_text()


def with_regions(name, codes, append="", prepend=""):
    """The reference file `name` with the regions of `codes` ({piece: code}) replaced, `prepend`
    put before its first class and `append` after its end."""
    source = reference(name)
    lines = source.splitlines(keepends=True)
    for region in reversed(marked_regions(source, name)):
        if region.piece in codes:
            marker = lines[region.first - 2]
            indent = marker[:len(marker) - len(marker.lstrip())]
            lines[region.first - 1:region.last] = [indent + line + "\n" for line in codes[region.piece].splitlines()]
    source = "".join(lines) + append
    return source.replace("\nclass ", "\n" + prepend + "\n\nclass ", 1) if prepend else source


def write_submission(folder, fc=None, conv=None):
    """A submission folder holding the given sources (None: the file is left out)."""
    folder.mkdir(parents=True)
    for name, text in zip(STUDENT_FILES, (fc, conv)):
        if text is not None:
            (folder / name).write_text(text)
    return folder


@functools.cache
def sandbox_problem():
    """None if the grader can make its sandbox here, else why not (for a skip message). A
    sandbox that bwrap makes but that does not hold raises SandboxBroken: a failure."""
    from tools.grader.sandbox import Runner, SandboxBroken, SandboxUnavailable, check_sandbox

    try:
        runner = Runner.prepare(sandbox=True)
    except SandboxUnavailable as e:
        return str(e)
    try:
        check_sandbox(runner)
    except SandboxBroken:
        raise
    except SandboxUnavailable as e:
        return f"bwrap cannot make the grader's sandbox here: {e}"
    finally:
        runner.cleanup()
    return None


def unsafe_problem():
    """None if the grader may run without a sandbox here, else why not."""
    from tools.grader.sandbox import SandboxUnavailable, unsafe_uid

    try:
        unsafe_uid()
    except SandboxUnavailable as e:
        return str(e)
    return None


def run_autograde(paths, out, *options, timeout=900):
    """Grade `paths` in one run of tools/autograde.py (a subprocess); returns
    ({student: graded dict}, stdout lines, grades.json's "run")."""
    result = subprocess.run([sys.executable, "tools/autograde.py", *map(str, paths), "--out", str(out), *options],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    with open(out / "grades.json") as f:
        grades = json.load(f)
    return {s["student"]: s for s in grades["students"]}, result.stdout.strip().splitlines(), grades["run"]


def checks_of(student):
    return {(c["piece"], c["check"]): c for c in student["checks"]}


def piece_points(student):
    """{piece: points} of a graded student."""
    points = {}
    for c in student["checks"]:
        points[c["piece"]] = points.get(c["piece"], 0) + c["points"]
    return points


def _open_to_all(path):
    """Whether every user can reach and run `path` (each folder on the way open to others)."""
    import os
    import stat
    from pathlib import Path

    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [real, *real.parents])


OPEN_PACKAGES = ("numpy>=2.0", "scipy>=1.10", "pyyaml>=6.0", "matplotlib>=3.7", "pyseccomp>=0.1.2")


@functools.cache
def open_python():
    """(a Python every user can run, holding the grader's packages and pyseccomp, or None;
    why not). This test's own when it is open to all (and has pyseccomp), else a venv made once
    per session from the system's Python of the same version (about 20 s with pip's cache;
    removed at exit): the grader as another user, and the pieces of the second layer, must run it."""
    import atexit
    import os
    import shutil
    import tempfile

    import tools.grader.sandbox as sandbox
    from tools.grader import seccomp_layer

    if seccomp_layer.binding() and all(_open_to_all(p) for p in (sys.executable, *sandbox._python_dirs())):
        return sys.executable, None
    given = os.environ.get("AUTOGRADE_OPEN_PYTHON")  # one made beforehand (python -m venv; pip install ...)
    if given:
        return given, None
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin:/bin")
    if not system or not _open_to_all(system):
        return None, f"this Python is closed to other users and there is no {version} open to them"
    folder = tempfile.mkdtemp(prefix="autograde_open_python_")
    atexit.register(shutil.rmtree, folder, True)
    os.chmod(folder, 0o755)
    made = subprocess.run([system, "-m", "venv", f"{folder}/venv"], capture_output=True, text=True)
    if made.returncode == 0:
        made = subprocess.run([f"{folder}/venv/bin/pip", "install", "-q", *OPEN_PACKAGES], capture_output=True,
                              text=True, timeout=600)
    if made.returncode != 0:
        return None, f"could not make a venv others can run: {(made.stderr or made.stdout).strip()[-200:]}"
    return f"{folder}/venv/bin/python", None
