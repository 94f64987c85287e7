"""The grader on Gradescope (staff only): the autograder bundle, and what runs in it.

python tools/autograde.py --gradescope-bundle autograder.zip [--timeout S] [--cpu S] [--memory MB]
                          [--max-output MB] [--visibility V] [--unsafe-no-sandbox]

writes the zip that Gradescope's "Autograder Specifications" ask for: at its root
`setup.sh` (run once, as root, when Gradescope builds the image: python3, pip, venv, a C
compiler, bubblewrap and libseccomp from apt; numpy, cython, pyyaml, matplotlib, scipy and
pyseccomp from pip, in a venv at /autograder/venv; then the extension is built) and `run_autograder` (run for each
submission: grades /autograder/submission into /autograder/results/results.json), beside
them the reference kit and its tools, which Gradescope unpacks to /autograder/source. The
limits and flags given are written into run_autograder.

results.json holds, as the specification defines them, `score` (the total), `execution_time`
(seconds), `output` (the summary line and notes), `stdout_visibility` ("hidden": the
grader's own log is for staff), `visibility`, and `tests`: one per check of the points
table, each with `name`, `number`, `score`, `max_score`, `status` ("passed" or "failed",
as grades.csv says: a check paid in part, "no loops" in proportion, is passed with its
partial score), `output` (the reason) and `visibility`; `extra_data.sandbox` names the
sandbox's layer that graded (bubblewrap, or seccomp where the container refuses namespaces).
The submission folder is read as the local grader reads a folder
(tools/grader/submissions.py): a zip uploaded as it is is read member by member. A
submission that cannot be graded (no sandbox, a crash of the grader) still gets a
results.json: score 0 and the reason, on every check.
$AUTOGRADER_ROOT (or --root) moves /autograder elsewhere and $AUTOGRADER_PYTHON the Python,
so that the tests run run_autograder on a folder of their own.
"""

import fnmatch
import json
import os
import secrets
import shlex
import sys
import time
import zipfile
from pathlib import Path

from plumbing.errors import UserError
from plumbing.writing import write_atomically
from tools import KIT
from tools.course.handout import EXCLUDED_DIRS, EXCLUDED_FILES
from tools.grader import grading, results

# What setup.sh installs, and why (docs/grading.md).
APT_PACKAGES = ("python3", "python3-pip", "python3-venv", "python3-dev", "build-essential", "bubblewrap",
                "libseccomp2")
PIP_PACKAGES = ("setuptools>=64", "numpy>=2.0", "cython>=3.0", "pyyaml>=6.0", "matplotlib>=3.7", "scipy>=1.10",
                "pyseccomp>=0.1.2")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu).
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# Python and a C compiler for the kit's extension; bubblewrap, the sandbox every piece of a
# submission runs in, and libseccomp (pyseccomp reaches it) for its second layer, where the
# container refuses namespaces.
apt-get install -y {apt}
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install --upgrade pip
"$ROOT/venv/bin/pip" install {pip}
cd "$ROOT/source"
# Built for any machine of the architecture: Gradescope may grade on another machine than
# the one that builds this image.
KIT_NO_NATIVE=1 "$ROOT/venv/bin/python" setup.py build_ext --inplace
# The reference solutions are for root's eyes only (it matters where no sandbox can be made).
chmod -R go-rwx "$ROOT/source"
"$ROOT/venv/bin/python" "$ROOT/source/tools/autograde.py" --gradescope-run --check-only --root "$ROOT" {flags} || true
"""

# What run_autograder writes when the grader stopped before writing a result (printf's %s: its exit status).
NOT_GRADED = ('{"score": 0, "execution_time": 0, "output": "Not graded: the autograder stopped (exit status %s) '
              'before it wrote a result. Nothing of this submission was graded; please tell the course staff.", '
              '"stdout_visibility": "hidden", "tests": []}')

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission, as root: it grades $ROOT/submission and writes
# $ROOT/results/results.json, whatever happens.
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}}"
mkdir -p "$ROOT/results"
rm -f "$ROOT/results/results.json"
# The submission for root's eyes only: where the sandbox is its second layer, file permissions
# are what keeps it from the pieces.
chmod -R go-rwx "$ROOT/submission" 2>/dev/null
"$PYTHON" "$ROOT/source/tools/autograde.py" --gradescope-run --root "$ROOT" {flags}
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
  printf '{not_graded}\\n' "$status" > "$ROOT/results/results.json"
fi
exit 0
"""


def bundle_files(kit=KIT):
    """Relative paths (posix) of the kit files the bundle carries: the kit with its staff
    tools, without tests, hidden files, build products, data or run outputs."""
    kit = Path(kit)
    found = []
    for folder, dirs, files in os.walk(kit):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in EXCLUDED_DIRS
                         and not d.endswith(".egg-info") and not (here / d).is_symlink()
                         and not (here == kit and d == "tests"))
        for name in sorted(files):
            path = here / name
            if not name.startswith(".") and not any(fnmatch.fnmatch(name, p) for p in EXCLUDED_FILES) \
                    and not path.is_symlink():
                found.append(path.relative_to(kit).as_posix())
    return found


def _flags(limits, unsafe, visibility):
    flags = ["--timeout", f"{limits.timeout:g}", "--cpu", str(limits.cpu), "--memory", str(limits.memory),
             "--max-output", str(limits.output), "--visibility", visibility]
    return " ".join(shlex.quote(f) for f in flags + (["--unsafe-no-sandbox"] if unsafe else []))


def write_bundle(zip_path, limits, unsafe=False, visibility="visible", kit=KIT):
    """Write the autograder zip; return the number of files in it."""
    flags = _flags(limits, unsafe, visibility)
    scripts = {"setup.sh": SETUP_SH.format(apt=" ".join(APT_PACKAGES),
                                           pip=" ".join(shlex.quote(p) for p in PIP_PACKAGES), flags=flags),
               "run_autograder": RUN_AUTOGRADER.format(flags=flags, not_graded=NOT_GRADED)}
    files = bundle_files(kit)

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in scripts.items():
                info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
                info.external_attr = 0o100755 << 16  # executable, as Gradescope runs them
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text)
            for rel in files:
                archive.write(Path(kit) / rel, rel)

    write_atomically(zip_path, write)
    return len(files) + len(scripts)


def bundle_main(zip_path, limits, unsafe, visibility):
    zip_path = Path(zip_path)
    if zip_path.suffix.lower() != ".zip" or not zip_path.parent.is_dir():
        raise UserError(f"{zip_path}: the bundle must be a .zip in an existing folder")
    count = write_bundle(zip_path, limits, unsafe, visibility)
    print(f"wrote {zip_path} ({count} files: setup.sh, run_autograder and the kit); upload it as the "
          "assignment's autograder (docs/grading.md)")
    if unsafe:
        print(f"autograde.py: warning: this bundle grades {grading.UNSAFE_WARNING[8:]}", file=sys.stderr)
    return 0


def _tests(checks, visibility):
    return [{"name": f"{c['piece']}: {c['check']}", "number": str(n), "score": c["points"],
             "max_score": c["max_points"], "status": "passed" if c.get("passed") else "failed",
             "output": c["reason"], "visibility": visibility} for n, c in enumerate(checks, start=1)]


def results_json(graded, seconds, visibility="visible"):
    """Gradescope's results.json (a dict) of one graded submission."""
    output = "\n".join([results.summary_line(graded)] + [f"note: {n}" for n in graded["notes"]])
    return {"score": graded["total"], "execution_time": int(round(seconds)), "output": output,
            "visibility": visibility, "stdout_visibility": "hidden", "tests": _tests(graded["checks"], visibility)}


def failure_json(reason, seconds, visibility="visible"):
    """results.json of a submission the grader could not grade: 0 on every check, with the reason."""
    checks = [{"piece": piece, "check": check, "points": 0.0, "max_points": points, "reason": f"not graded: {reason}"}
              for piece, check, points in grading.POINTS]
    return {"score": 0.0, "execution_time": int(round(seconds)),
            "output": f"Not graded: {reason}. Please tell the course staff.", "visibility": visibility,
            "stdout_visibility": "hidden", "tests": _tests(checks, visibility)}


def _write_json(path, data):
    text = json.dumps(data, indent=1)
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def run_main(root, limits, unsafe, visibility, check_only=False):
    """Grade root/submission into root/results/results.json; exit status 0 whatever happens
    to the submission (its result says it). check_only: just say whether a sandbox can be
    made (setup.sh's last line, for the image's build log)."""
    root = Path(root)
    start = time.monotonic()
    if check_only:
        runner, sandbox = grading.make_runner(unsafe)
        print(f"autograde.py: sandbox: {sandbox}" if runner else f"autograde.py: error: {sandbox}")
        if runner:
            runner.cleanup()
        return 0 if runner else 3
    results = root / "results" / "results.json"
    try:
        submission = root / "submission"
        if not submission.is_dir():
            raise FileNotFoundError(f"no submission folder at {submission}")
        runner, sandbox = grading.make_runner(unsafe, private=[submission])
        if runner is None:
            data = failure_json(sandbox, time.monotonic() - start, visibility)
        else:
            seed = secrets.randbelow(1 << 31)
            try:
                graded = grading.grade(submission, limits, seed, runner)
            finally:
                runner.cleanup()
            graded["student"] = "submission"
            data = results_json(graded, time.monotonic() - start, visibility)
            data["extra_data"] = {"sandbox": sandbox}  # which layer graded (docs/grading.md)
            print(f"seed {seed}, sandbox: {sandbox}")
            print(json.dumps(graded, indent=1, default=float))
    except Exception as e:
        data = failure_json(f"the grader failed ({type(e).__name__}: {e})", time.monotonic() - start, visibility)
    _write_json(results, data)
    print(data["output"])
    return 0
