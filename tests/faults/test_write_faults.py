"""Every script and tool that writes files, with each of its writes failed in turn by an
errno of each class (tests/faults/inject_errno.c, loaded with LD_PRELOAD): one line, a
non-zero status, no traceback, inputs unchanged, nothing half-written or left behind, and a
message true to what is on disk (scripts.check_after_fault).

The default run fails, for each script, the first call of each kind (open, write, fsync,
rename, mkdir, ...) and its very last call, with the error classes in turn; `-m slow` fails
every call the script makes, and every class at each of those first calls, and adds the
grader (several seconds a run in its sandbox).
"""

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fault_scenarios as scripts
import pytest

ERRNOS = [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.ENAMETOOLONG, errno.EACCES, errno.EROFS, errno.EIO,
          errno.ENOENT, errno.ELOOP, errno.EPERM, errno.EMFILE, errno.ENOTDIR]
WRITERS = [s for s in scripts.SCENARIOS if s.writes]
LIGHT_WRITERS = [s for s in WRITERS if not s.heavy]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD fault injection: Linux")


@pytest.fixture(scope="session")
def injector(tmp_path_factory):
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler for the fault injector (tests/faults/inject_errno.c)")
    out = tmp_path_factory.mktemp("injector") / "inject_errno.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(out), str(Path(__file__).with_name(
        "inject_errno.c")), "-ldl"], check=True)
    return out


@pytest.fixture(scope="session")
def fault_data(small_npz):
    return small_npz


def _fault_env(root, injector, at, error=0, log=None, watched=None):
    env = {"LD_PRELOAD": str(injector), "FAULT_DIR": str(watched or root / "outputs"), "FAULT_AT": str(at),
           "FAULT_ERRNO": str(error)}
    if log:
        env["FAULT_LOG"] = str(log)
    return env


def record(scenario, root, injector, watched=None):
    """A clean run under the injector: the counted calls [(n, op, path)] under `watched`
    (default: the outputs folder) and the outputs made."""
    log = root.parent / f"{root.name}.log"
    run = scenario.run(root, _fault_env(root, injector, 0, log=log, watched=watched))
    assert run.status == 0, f"{scenario.name} fails without any fault: {run.stderr}"
    events = []
    for line in log.read_text().splitlines() if log.exists() else []:
        n, op, path = line.split(" ", 2)
        events.append((int(n), op, re.sub(r"\.[^./]{8}\.part$", ".<random>.part", path)))
    return events, scripts.snapshot(root / "outputs")


def sites(events, every=False):
    """The calls to fail: every one, or the first of each kind and the very last call."""
    if every:
        return [n for n, _, _ in events]
    chosen = {next(n for n, kind, _ in events if kind == op) for op in {op for _, op, _ in events}}
    return sorted(chosen | {events[-1][0]})


def fault_runs(scenario, tmp_path, injector, data, every=False, errors_at_each_kind=False):
    """Run `scenario` once clean, then once per chosen call failed; the problems found."""
    clean = tmp_path / "clean"
    scripts.set_up(scenario, clean, data)
    events, clean_outputs = record(scenario, clean, injector)
    assert events, f"{scenario.name} wrote nothing under its outputs folder: the suite would test nothing"
    plan = [(n, ERRNOS[i % len(ERRNOS)]) for i, n in enumerate(sites(events, every))]
    if errors_at_each_kind:
        plan += [(n, error) for n in sites(events) for error in ERRNOS]
    problems = []
    for i, (n, error) in enumerate(plan):
        root = tmp_path / f"fault{i}"
        scripts.set_up(scenario, root, data)
        inputs, outputs = scripts.snapshot(root / "inputs"), scripts.snapshot(root / "outputs")
        run = scenario.run(root, _fault_env(root, injector, n, error))
        what = next((f"{op} {path}" for m, op, path in events if m == n), "?")
        found = scripts.check_after_fault(scenario, root, run, inputs, outputs, clean_outputs)
        problems += [f"call {n} ({what}) failed with {errno.errorcode[error]}: {p}" for p in found]
        shutil.rmtree(root)
    return problems


@pytest.mark.parametrize("scenario", LIGHT_WRITERS, ids=[s.name for s in LIGHT_WRITERS])
def test_a_failed_write_ends_in_one_true_line_and_leaves_nothing_behind(scenario, tmp_path, injector, fault_data):
    problems = fault_runs(scenario, tmp_path, injector, fault_data)
    assert not problems, "\n".join(problems[:10])


@pytest.mark.slow
@pytest.mark.parametrize("scenario", WRITERS, ids=[s.name for s in WRITERS])
def test_every_write_failed_with_every_error_class(scenario, tmp_path, injector, fault_data):
    problems = fault_runs(scenario, tmp_path, injector, fault_data, every=True, errors_at_each_kind=True)
    assert not problems, "\n".join(problems[:10])


@pytest.mark.parametrize("name", [s.name for s in scripts.SCENARIOS if not s.writes and s.name != "bench"])
def test_the_scripts_that_write_nothing_write_nothing(name, tmp_path, injector, fault_data):
    """The suite leaves them out of the errno runs: they must indeed write no file."""
    scenario = scripts.BY_NAME[name]
    scripts.set_up(scenario, tmp_path, fault_data)
    events, made = record(scenario, tmp_path, injector, watched=tmp_path)  # inputs included
    assert events == [] and made == {}
