"""Every script and tool, stopped as a user stops one: its standard output closed (`>&-`) or a
pipe that goes away (`| head -1`), and Ctrl-C or SIGTERM at random moments from its first
statement (start_script) to its end. Each ends in at most one line, with no traceback; a
signal gives 130 or 143 (or 0 if the work was done first), a closed output 2, a broken pipe
141 (or 0 if nothing was printed after it broke); and the inputs, the outputs and the locks
are as scripts.check_after_fault requires.

The default run sends each signal once per script; `-m slow` sends each at 8 moments.
FAULT_SEED=<n> draws other moments (the seed in use is in each failure's message).
"""

import os
import random
import signal
import subprocess
import sys
import time

import fault_scenarios as scripts
import pytest

SEED = int(os.environ.get("FAULT_SEED", "20261206"))
SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")


def handles_sigterm(pid):
    """Whether process `pid` catches SIGTERM yet: start_script has run."""
    try:
        with open(f"/proc/{pid}/status") as status:
            caught = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return True  # gone: nothing to wait for
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def stopped_run(scenario, root, signum, delay):
    """Run `scenario`, sending `signum` `delay` seconds after start_script ran."""
    argv = scenario.argv(root / "inputs", root / "outputs")
    process = subprocess.Popen([sys.executable, *argv], cwd=root / "inputs", env=scripts.environment(root),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not handles_sigterm(process.pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    return scripts.Run(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def check(scenario, root, run, inputs, outputs_before, expected_status, clean_outputs):
    problems = scripts.check_after_fault(scenario, root, run, inputs, outputs_before, clean_outputs)
    if run.status not in (0, expected_status):
        problems.append(f"exit status {run.status}, not {expected_status} (or 0)")
    return problems


@pytest.fixture(scope="module")
def clean_outputs(tmp_path_factory, small_npz):
    """{scenario name: its outputs after a clean run}, and how long that run took."""
    made = {}
    for scenario in scripts.SCENARIOS:
        root = tmp_path_factory.mktemp(scenario.name)
        scripts.set_up(scenario, root, small_npz)
        started = time.monotonic()
        run = scenario.run(root)
        assert run.status == 0, f"{scenario.name} fails without any fault: {run.stderr}"
        made[scenario.name] = (scripts.snapshot(root / "outputs"), time.monotonic() - started)
    return made


def _signal_cases(moments):
    rng = random.Random(SEED)
    return [(s.name, name, rng.random()) for s in scripts.SCENARIOS for name in SIGNALS for _ in range(moments)]


def _signal_test(name, signal_name, fraction, tmp_path, small_npz, clean_outputs):
    scenario = scripts.BY_NAME[name]
    outputs, seconds = clean_outputs[name]
    scripts.set_up(scenario, tmp_path, small_npz)
    inputs, before = scripts.snapshot(tmp_path / "inputs"), scripts.snapshot(tmp_path / "outputs")
    signum, status = SIGNALS[signal_name]
    delay = fraction * seconds  # a moment within the script's own run time
    run = stopped_run(scenario, tmp_path, signum, delay)
    problems = check(scenario, tmp_path, run, inputs, before, status, outputs)
    assert not problems, (f"{name}: {signal_name} after {delay:.3f} s (FAULT_SEED={SEED}):\n" + "\n".join(problems)
                          + f"\nstderr: {run.stderr[-1500:]}")


@pytest.mark.parametrize("name, signal_name, fraction", _signal_cases(1))
def test_a_signal_at_a_random_moment_ends_in_one_line(name, signal_name, fraction, tmp_path, small_npz,
                                                      clean_outputs):
    _signal_test(name, signal_name, fraction, tmp_path, small_npz, clean_outputs)


@pytest.mark.slow
@pytest.mark.parametrize("name, signal_name, fraction", _signal_cases(8))
def test_signals_at_many_moments_end_in_one_line(name, signal_name, fraction, tmp_path, small_npz, clean_outputs):
    _signal_test(name, signal_name, fraction, tmp_path, small_npz, clean_outputs)


@pytest.mark.parametrize("name", [s.name for s in scripts.SCENARIOS])
def test_a_closed_standard_output_is_one_line_before_any_work(name, tmp_path, small_npz):
    scenario = scripts.BY_NAME[name]
    scripts.set_up(scenario, tmp_path, small_npz)
    inputs, before = scripts.snapshot(tmp_path / "inputs"), scripts.snapshot(tmp_path / "outputs")
    argv = scenario.argv(tmp_path / "inputs", tmp_path / "outputs")
    done = subprocess.run([sys.executable, *argv], cwd=tmp_path / "inputs", env=scripts.environment(tmp_path),
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1),
                          timeout=300)
    run = scripts.Run(done.returncode, "", done.stderr.decode(errors="replace"))
    assert run.status == 2 and run.lines == [f"{scenario.prog}: error: standard output is closed: nothing was "
                                             "done (send it to a file or to /dev/null)"], run.stderr
    assert scripts.snapshot(tmp_path / "outputs") == before and scripts.snapshot(tmp_path / "inputs") == inputs


@pytest.mark.parametrize("name", [s.name for s in scripts.SCENARIOS])
def test_a_pipe_that_goes_away_ends_quietly(name, tmp_path, small_npz, clean_outputs):
    scenario = scripts.BY_NAME[name]
    scripts.set_up(scenario, tmp_path, small_npz)
    inputs, before = scripts.snapshot(tmp_path / "inputs"), scripts.snapshot(tmp_path / "outputs")
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head -c 0`: the reader is gone before the first line
    try:
        run = scenario.run(tmp_path, stdout=write_end)
    finally:
        os.close(write_end)
    assert run.status == 141 and [line for line in run.lines if not line.startswith("bench:")] == [], run.stderr
    problems = scripts.check_after_fault(scenario, tmp_path, run, inputs, before, clean_outputs[name][0])
    assert not [p for p in problems if "lines on stderr" not in p], problems


@pytest.mark.parametrize("name", [s.name for s in scripts.SCENARIOS])
def test_signals_are_handled_before_numpy_loads(name, tmp_path, small_npz):
    """start_script runs before the imports that take most of a script's start (numpy loads in
    about a tenth of a second): the moment the process first catches SIGTERM, numpy is not
    mapped into it yet."""
    scenario = scripts.BY_NAME[name]
    scripts.set_up(scenario, tmp_path, small_npz)
    argv = scenario.argv(tmp_path / "inputs", tmp_path / "outputs")
    process = subprocess.Popen([sys.executable, *argv], cwd=tmp_path / "inputs", env=scripts.environment(tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not handles_sigterm(process.pid):
            time.sleep(0.0005)
        with open(f"/proc/{process.pid}/maps") as maps:
            numpy_loaded = "_multiarray_umath" in maps.read()
    finally:
        process.kill()
        process.wait()
    assert not numpy_loaded, f"{name}: numpy was loaded before the script handled SIGTERM"
