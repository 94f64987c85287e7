"""Submissions that cheat, graded in the sandbox (one run, two at a time): each piece that
cheats does the right thing only if its trick works, so 0 points proves the trick failed.
They delegate to any reference they can find, look for the expected answers, forge results,
write outside, use the network, read /etc/shadow and the other submissions, fork without
end, leave processes behind and flood their output. None of it may leave a trace outside the
sandbox; an honest submission graded beside them still gets 15/15.

Skipped (saying why) where bwrap cannot make the grader's sandbox."""

import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest
from autograde_helpers import (
    checks_of,
    piece_points,
    reference,
    run_autograde,
    sandbox_problem,
    with_regions,
    write_submission,
)
from conftest import REPO_ROOT

LIMITS = ["--timeout", "20", "--cpu", "10", "--memory", "512"]
TOKEN = secrets.token_hex(6)  # in every name an escape would leave, and in the leftover processes' command lines
FC_UP = "output = inputs @ self.w_.T + self.b_"
FC_DOWN = ("if not self.is_input_:\n    dC_by_dinputs = deriv @ self.w_\n"
           "dw = deriv.T @ inputs\ndb = deriv.sum(axis=0)")
CONV_UP = ("outputs = convolutions.convolve(inputs[:, np.newaxis], w_flip[np.newaxis],\n"
           "                                padding=self.padding_).sum(axis=2)")
CONV_DOWN = ("if not self.is_input_:\n"
             "    dC_by_dinputs = convolutions.convolve(deriv[:, :, np.newaxis], w[np.newaxis],\n"
             "                                          padding=k - self.padding_ - 1).sum(axis=1)\n"
             "dw = convolutions.convolve(inputs[:, np.newaxis], deriv_flip[:, :, np.newaxis],\n"
             "                           padding=self.padding_).sum(axis=0)")

STEAL = '''

def _stolen(kind):
    """Every class `kind` this process can load from a file that is not its own: beside it
    (_reference/), up from sys.argv, __file__ and the working folder, on sys.path, where the
    grader is known to live, and wherever the processes it can see run."""
    import glob
    import importlib.util
    import os
    import sys

    name = "fc_layer.py" if kind == "FCLayer" else "conv_layer.py"
    mine = os.path.realpath(__file__)
    starts = [os.getcwd(), os.path.dirname(mine), *sys.path, *GUESSES]
    starts += [os.path.dirname(os.path.abspath(a)) for a in sys.argv if a]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for link in ("cwd", "root", "exe"):
            try:
                starts.append(os.readlink(f"/proc/{pid}/{link}"))
            except OSError:
                pass
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                starts += [a for a in f.read().decode(errors="replace").split("\\0") if a.startswith("/")]
        except OSError:
            pass
    candidates = []
    for start in starts:
        path = os.path.abspath(start or ".")
        while True:
            candidates += [os.path.join(path, name), os.path.join(path, "_reference", name)]
            candidates += glob.glob(os.path.join(path, "*", name))
            if os.path.dirname(path) == path:
                break
            path = os.path.dirname(path)
    for n, candidate in enumerate(dict.fromkeys(candidates)):
        try:
            if not os.path.isfile(candidate) or os.path.realpath(candidate) == mine:
                continue
            spec = importlib.util.spec_from_file_location(f"_stolen_{n}", candidate)
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, os.path.dirname(candidate))
            spec.loader.exec_module(module)
            yield getattr(module, kind)
        except Exception:
            continue
'''
DELEGATE = '''for cls in _stolen("{kind}"):
    try:
        return cls.ComputeUp(self, inputs)
    except Exception:
        pass
raise RuntimeError("found no reference to call")'''

ANSWERS = '''

def _stored_answer(inputs):
    """ComputeDown's answer for these inputs from any stored cases this process can read
    (cases.npz beside it, as an old grader left them, or anywhere else), else None."""
    import os

    import numpy as np

    flat = inputs.reshape(inputs.shape[0], -1)
    for root in [os.getcwd(), "/tmp", "/kit", "/grader", os.path.dirname(__file__), *GUESSES, "/"]:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", "usr", "lib", "site-packages")
                       ] if folder.count("/") < 4 else []
            for name in files:
                if not name.endswith((".npz", ".npy")):
                    continue
                try:
                    with np.load(os.path.join(folder, name), allow_pickle=False) as data:
                        arrays = {key: data[key] for key in data.files}
                except Exception:
                    continue
                for key, value in arrays.items():
                    if key.startswith("x") and value.size == flat.size and np.array_equal(value.reshape(flat.shape),
                                                                                         flat):
                        i = key[1:]
                        return arrays.get(f"din{i}"), arrays[f"dw{i}"], arrays[f"db{i}"]
    for pid in ("1", str(os.getppid())):  # the memory of the processes above, if they hold the answers
        try:
            with open(f"/proc/{pid}/mem", "rb") as mem:
                mem.read(1)
        except OSError:
            pass
    return None
'''
LOOKUP = '''found = _stored_answer(inputs)
if found is None:
    raise LookupError("found no stored answers")
return found'''

FORGE = '''import atexit as _atexit
import json as _json
import os as _os
import struct as _struct

_FORGED = _json.dumps({"ok": True, "total": 15, "score": 15, "passed": True, "forged": "FORGED_TOKEN",
                       "grad_checks": {"out": {"errors": [["fc1_w", 0.0]]}}})


def _forge(arrays=()):
    """Claim full marks wherever a result could be read from: result files, and every
    descriptor, with a reply frame of the right shapes."""
    import numpy as _np

    body = b"".join(_np.ascontiguousarray(a, dtype="<f8").tobytes() for a in arrays)
    head = _json.dumps({"ok": True, "arrays": [list(a.shape) for a in arrays]}).encode()
    frame = _struct.pack(">IQ", len(head), len(body)) + head + body
    for path in RESULT_PATHS:
        try:
            with open(path, "w") as f:
                f.write(_FORGED)
        except OSError:
            pass
    for fd in range(64):
        try:
            _os.write(fd, frame)
        except OSError:
            pass


_atexit.register(_forge)
'''

ESCAPE = '''

def _escaped(what):
    """Whether the trick `what` works here."""
    import os
    import socket

    if what == "network":
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=2) as s:
                s.sendall(b"escaped")
            return True
        except OSError:
            return False
    if what == "shadow":
        try:
            with open("/etc/shadow") as f:
                return bool(f.read())
        except OSError:
            return False
    if what == "write":
        wrote = False
        for path in WRITE_PATHS:
            try:
                with open(path, "w") as f:
                    f.write("escaped")
                wrote = wrote or not path.startswith("/tmp/")  # the sandbox's /tmp is its own
            except OSError:
                pass
        try:
            os.setuid(0)
            wrote = True
        except OSError:
            pass
        return wrote
    if what == "others":
        for path in OTHER_SUBMISSIONS:
            try:
                with open(path) as f:
                    return bool(f.read())
            except OSError:
                pass
        return False
'''

PROCESSES = '''
_SPAWNED = []


def _daemon():
    """Once: a process meant to outlive the piece, which writes outside a little later."""
    import subprocess
    import sys

    if not _SPAWNED:
        code = f"import time\\ntime.sleep(2)\\ntry:\\n    open({LATE_PATH!r}, 'w').write('x')\\nexcept OSError:\\n" \\
               f"    pass\\ntime.sleep(60)  # {MARKER}"
        _SPAWNED.append(subprocess.Popen([sys.executable, "-c", code], start_new_session=True, close_fds=True,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL))


def _bomb(limit=150):
    """Fork until refused (never more than `limit`: this test must stay bounded even if the
    sandbox fails); each child sleeps. Raise unless it got to `limit`."""
    import os
    import time

    born = 0
    while born < limit:
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        born += 1
    if born < limit:
        raise RuntimeError(f"the fork bomb stopped after {born} processes")
'''

FLOOD_STDOUT = '''import sys
chunk = "x" * (1 << 20)
for _ in range(200):  # 400 MB to stdout and stderr
    sys.stdout.write(chunk)
    sys.stderr.write(chunk)
''' + FC_UP
FLOOD_TMP = '''import itertools
wrote = 0
try:
    for n in itertools.count():  # new files until refused: /tmp as a whole is bounded
        with open(f"/tmp/flood{n}", "wb") as f:
            for _ in range(8):
                f.write(b"x" * (1 << 20))
                wrote += 1
        if wrote >= 200:
            break
except OSError:
    pass
if wrote < 200:
    raise OSError(f"could write only {wrote} MB")
''' + CONV_UP
FLOOD_FRAME = '''import os
import struct
for fd in range(3, 64):  # a reply that claims 10 GB of arrays
    try:
        os.write(fd, struct.pack(">IQ", 2, 10 << 30) + b"{}")
    except OSError:
        pass
''' + FC_DOWN


def _fill(code, **values):
    for name, value in values.items():
        code = code.replace(name, repr(value))
    return code


def adversaries(tmp, port):
    """{student: (fc_layer.py, conv_layer.py)}, and the paths an escape would leave."""
    honest = tmp / "submissions" / "honest"
    guesses = [str(REPO_ROOT), "/autograder/source", str(tmp)]
    traces = {"write": [REPO_ROOT / f"escaped_{TOKEN}", tmp / f"escaped_{TOKEN}", Path(f"/tmp/escaped_{TOKEN}")],
              "forged": [tmp / "grades" / f"forged_{TOKEN}.json", REPO_ROOT / f"forged_{TOKEN}.json",
                         Path(f"/tmp/forged_{TOKEN}.json")],
              "late": [tmp / f"late_{TOKEN}"]}
    steal = _fill(STEAL, GUESSES=guesses)
    answers = _fill(ANSWERS, GUESSES=guesses)
    forge = _fill(FORGE, RESULT_PATHS=["result.json", "/tmp/result.json", "/kit/result.json",
                                       "/autograder/results/results.json", *map(str, traces["forged"])])
    forge = forge.replace('"FORGED_TOKEN"', repr(f"forged {TOKEN}"))
    escape = _fill(ESCAPE, PORT=port, WRITE_PATHS=[*map(str, traces["write"]), "/kit/escaped", "/grader/escaped",
                                                     "/escaped", "/usr/escaped"],
                   OTHER_SUBMISSIONS=[str(honest / "conv_layer.py"), str(honest / "fc_layer.py")])
    processes = _fill(PROCESSES, LATE_PATH=str(traces["late"][0]), MARKER=f"left behind {TOKEN}")
    return {
        "honest": (reference("fc_layer.py"), reference("conv_layer.py")),
        "steals_the_reference": (
            with_regions("fc_layer.py", {"FCLayer.ComputeUp": DELEGATE.format(kind="FCLayer")}, append=steal),
            with_regions("conv_layer.py", {"ConvLayer.ComputeUp": DELEGATE.format(kind="ConvLayer")}, append=steal)),
        "reads_the_answers": (
            with_regions("fc_layer.py", {"FCLayer.ComputeDown": LOOKUP}, append=answers),
            with_regions("conv_layer.py", {"ConvLayer.ComputeDown": LOOKUP}, append=answers)),
        "forges_the_result": (
            with_regions("fc_layer.py", {"FCLayer.ComputeUp": "output = np.zeros((inputs.shape[0], "
                                         "self.w_.shape[0]))\n_forge([output])"}, prepend=forge),
            with_regions("conv_layer.py", {
                "ConvLayer.ComputeUp": "outputs = np.zeros((inputs.shape[0], K, inputs.shape[2] + 2 * "
                                       "self.padding_ - k + 1, inputs.shape[3] + 2 * self.padding_ - k + 1))\n"
                                       "_forge([outputs])",
                "ConvLayer.ComputeDown": "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)  # all I may\n"
                                         "except ProcessLookupError:\n    pass  # none but me\n"
                                         "raise RuntimeError('killed every process I could')"}, prepend=forge)),
        "escapes": (
            with_regions("fc_layer.py", {
                "FCLayer.ComputeUp": 'if not _escaped("network"):\n    raise ConnectionError("no network")\n' + FC_UP,
                "FCLayer.ComputeDown": 'if not _escaped("shadow"):\n    raise PermissionError("no /etc/shadow")\n'
                                       + FC_DOWN}, append=escape),
            with_regions("conv_layer.py", {
                "ConvLayer.ComputeUp": 'if not _escaped("write"):\n    raise PermissionError("wrote nothing")\n'
                                       + CONV_UP,
                "ConvLayer.ComputeDown": 'if not _escaped("others"):\n    raise FileNotFoundError("no other '
                                         'submission")\n' + CONV_DOWN}, append=escape)),
        "leaves_processes": (
            with_regions("fc_layer.py", {"FCLayer.ComputeUp": "_daemon()\n" + FC_UP}, append=processes),
            with_regions("conv_layer.py", {"ConvLayer.ComputeUp": "_bomb()\n" + CONV_UP}, append=processes)),
        "floods_output": (
            with_regions("fc_layer.py", {"FCLayer.ComputeUp": FLOOD_STDOUT, "FCLayer.ComputeDown": FLOOD_FRAME}),
            with_regions("conv_layer.py", {"ConvLayer.ComputeUp": FLOOD_TMP})),
    }, traces


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections it gets."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.connections, self.running = 0, True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.socket.accept()
                self.connections += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self.running = False
        self.thread.join()
        self.socket.close()


def _processes_naming(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"no sandbox to test: {problem}")
    tmp = tmp_path_factory.mktemp("adversarial")
    listener = Listener()
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5):
        pass  # the listener takes a connection from outside the sandbox ...
    deadline = time.monotonic() + 5
    while listener.connections < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.connections == 1
    listener.connections = 0  # ... and must get none from inside
    submissions, traces = adversaries(tmp, listener.port)
    paths = [write_submission(tmp / "submissions" / name, *sources) for name, sources in submissions.items()]
    started = time.monotonic()
    try:
        students, lines, run = run_autograde(paths, tmp / "grades", "--jobs", "2", *LIMITS)
    finally:
        listener.close()
    assert run["sandbox"] == "bubblewrap"
    return {"students": students, "lines": lines, "connections": listener.connections, "traces": traces,
            "tmp": tmp, "seconds": time.monotonic() - started}


def _reasons(student, piece):
    return [c["reason"] for c in student["checks"] if c["piece"] == piece and c["check"] != "no loops"]


def test_the_honest_submission_graded_beside_them_gets_full_marks(graded):
    honest = graded["students"]["honest"]
    assert honest["total"] == 15, honest
    assert all(c["passed"] for c in honest["checks"])


def test_delegating_to_any_reference_it_can_find_scores_nothing(graded):
    student = graded["students"]["steals_the_reference"]
    points = piece_points(student)
    assert points["FCLayer.ComputeUp"] == 0 and points["ConvLayer.ComputeUp"] == 0
    assert points["FCLayer.ComputeDown"] == 4 and points["ConvLayer.ComputeDown"] == 6  # the honest pieces
    for piece in ("FCLayer.ComputeUp", "ConvLayer.ComputeUp"):
        assert all("RuntimeError: found no reference to call" in r for r in _reasons(student, piece))


def test_the_stealing_code_does_find_the_reference_outside_the_sandbox(tmp_path):
    """The trick is real: run where the grader's files are in view, it finds and uses them."""
    import importlib.util

    import numpy as np

    source, _ = adversaries(tmp_path, 1)[0]["steals_the_reference"]
    path = tmp_path / "fc_layer.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("adversary_fc_layer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert any(Path(cls.ComputeUp.__code__.co_filename).resolve().parent == REPO_ROOT
               for cls in module._stolen("FCLayer"))
    layer = module.FCLayer({"name": "fc", "type": "FC", "num_channels": 3, "init_wt": 1.0, "epsilon": 0.1})
    layer.Initialize(1, 1, 4, rng=np.random.default_rng(0))
    x = np.arange(8.0).reshape(2, 4)
    assert np.allclose(layer.ComputeUp(x), np.maximum(x @ layer.w_.T + layer.b_, 0))


def test_looking_for_the_expected_answers_finds_none(graded):
    student = graded["students"]["reads_the_answers"]
    points = piece_points(student)
    assert points["FCLayer.ComputeDown"] == 0 and points["ConvLayer.ComputeDown"] == 0
    assert points["FCLayer.ComputeUp"] == 2 and points["ConvLayer.ComputeUp"] == 3
    for piece in ("FCLayer.ComputeDown", "ConvLayer.ComputeDown"):
        assert all("LookupError: found no stored answers" in r for r in _reasons(student, piece))


def test_forged_results_replies_and_exit_hooks_count_for_nothing_and_kill_reaches_no_grader(graded):
    student = graded["students"]["forges_the_result"]
    points = piece_points(student)
    # FC ComputeDown is the reference's but loses its loop point: the forger's loop over the
    # descriptors, registered at import to run at exit, runs in its process too.
    assert points == {"FCLayer.ComputeUp": 0, "FCLayer.ComputeDown": 3, "ConvLayer.ComputeUp": 0,
                      "ConvLayer.ComputeDown": 0}
    assert "for loop at line" in checks_of(student)[("FCLayer.ComputeDown", "no loops")]["reason"]
    for reason in _reasons(student, "FCLayer.ComputeUp") + _reasons(student, "ConvLayer.ComputeUp"):
        assert "differs from the reference" in reason or "malformed reply" in reason, reason
    assert all("killed every process I could" in r for r in _reasons(student, "ConvLayer.ComputeDown"))
    for path in graded["traces"]["forged"]:
        assert not path.exists(), path
    grades = (graded["tmp"] / "grades" / "grades.json").read_text()
    assert f"forged {TOKEN}" not in grades
    assert json.loads(grades)["students"][0]["student"] == "honest"  # the grader's own file, intact


def test_no_network_no_shadow_no_writing_outside_no_other_submissions(graded):
    student = graded["students"]["escapes"]
    assert student["total"] == 0
    checks = checks_of(student)
    assert "ConnectionError: no network" in checks[("FCLayer.ComputeUp", "outputs")]["reason"]
    assert "PermissionError: no /etc/shadow" in checks[("FCLayer.ComputeDown", "weight derivative")]["reason"]
    assert "PermissionError: wrote nothing" in checks[("ConvLayer.ComputeUp", "outputs")]["reason"]
    assert "FileNotFoundError: no other submission" in checks[("ConvLayer.ComputeDown", "weight derivative")]["reason"]
    assert graded["connections"] == 0
    for path in graded["traces"]["write"]:
        assert not path.exists(), path


def test_a_fork_bomb_is_bounded_and_no_process_outlives_its_piece(graded):
    student = graded["students"]["leaves_processes"]
    points = piece_points(student)
    # The daemon's piece did compute its answer; the fork bomb's did not.
    assert points == {"FCLayer.ComputeUp": 2, "FCLayer.ComputeDown": 4, "ConvLayer.ComputeUp": 0,
                      "ConvLayer.ComputeDown": 6}
    reason = checks_of(student)[("ConvLayer.ComputeUp", "outputs")]["reason"]
    born = int(reason.split("the fork bomb stopped after ")[1].split()[0])
    assert born < 64, reason
    assert _processes_naming(f"left behind {TOKEN}") == []
    assert not graded["traces"]["late"][0].exists()
    if os.geteuid() == 0:  # a sandbox user whose grading process is gone must have no process left
        from tools.grader.sandbox import UID_BASE

        left = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/status") as f:
                    uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
            except (OSError, StopIteration):
                continue
            if uid >= UID_BASE and not os.path.exists(f"/proc/{uid - UID_BASE}"):
                left[int(pid)] = uid
        assert left == {}


def test_flooding_stdout_tmp_or_the_reply_channel_is_cut_off(graded):
    student = graded["students"]["floods_output"]
    points = piece_points(student)
    assert points == {"FCLayer.ComputeUp": 0, "FCLayer.ComputeDown": 0, "ConvLayer.ComputeUp": 0,
                      "ConvLayer.ComputeDown": 6}
    checks = checks_of(student)
    assert checks[("FCLayer.ComputeUp", "outputs")]["reason"].startswith("output limit exceeded")
    assert "could write only" in checks[("ConvLayer.ComputeUp", "outputs")]["reason"]
    assert checks[("FCLayer.ComputeDown", "weight derivative")]["reason"] == (
        f"sent a malformed reply ({10 << 30} bytes of arrays (at most 64 MB))")


def test_the_adversaries_are_graded_in_seconds(graded):
    assert graded["seconds"] < 120, graded["lines"]
    assert len(graded["lines"]) == 8
