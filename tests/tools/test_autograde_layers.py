"""The sandbox's two layers against pieces that write everywhere they can, flood /dev/shm and
/tmp, read the reference and a classmate's file, open sockets and fork without end:
bubblewrap with the grader as root and as another user, and the second layer (an unused
user, no_new_privs, seccomp) that the Gradescope bundle falls back to under a Docker-like
profile (capabilities dropped, namespace calls refused by a seccomp filter of its own).
Each skips, saying why, where its layer or its grader cannot be made here."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
from autograde_helpers import (
    checks_of,
    open_python,
    piece_points,
    reference,
    run_autograde,
    sandbox_problem,
    with_regions,
    write_submission,
)
from conftest import REPO_ROOT

from tools.grader import command

LIMITS = ["--timeout", "60", "--cpu", "20", "--memory", "512", "--max-output", "64"]
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

TRICKS = '''

def _write(folder, limit_mb=150):
    """MB written into `folder`, in new files of 8 MB until refused or `limit_mb`; they stay."""
    import os

    import time

    chunk, wrote, n = b"x" * (1 << 20), 0, 0
    try:
        while wrote < limit_mb << 20:
            name = f"w_{time.monotonic_ns()}_{n}"  # new names each call: each may write its 150 MB
            fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            n += 1
            try:
                for _ in range(8):
                    wrote += os.write(fd, chunk)
            finally:
                os.close(fd)
    except OSError:
        pass
    return wrote >> 20


_WROTE = {}


def _write_everywhere():
    """{folder: MB} of every folder of the machine a new file can be made in (150 MB tried);
    once per process (the walk takes seconds), later calls say the same."""
    import os
    import subprocess

    if _WROTE:
        return _WROTE

    found = subprocess.run(["find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o",
                            "-type", "d", "-print0"], capture_output=True).stdout.decode(errors="replace")
    wrote = {}
    for folder in filter(None, found.split("\\0")):
        try:
            os.close(os.open(os.path.join(folder, "w_probe"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(os.path.join(folder, "w_probe"))
        except OSError:
            continue
        wrote[folder] = _write(folder)
    _WROTE.update(wrote)
    return wrote


def _trick(what):
    """Whether `what` works here."""
    import os
    import socket

    if what == "steal":
        for path in STEAL_PATHS:
            try:
                with open(path) as f:
                    return "def ComputeUp" in f.read()
            except OSError:
                pass
        return False
    if what == "network":  # the grader's machine listens on 127.0.0.1:PORT
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
            return True
        except OSError:
            return False
    if what == "others":
        for path in OTHER_PATHS:
            try:
                with open(path) as f:
                    return bool(f.read())
            except OSError:
                pass
        return False
    if what == "bomb":
        import time

        born = 0
        while born < 150:
            try:
                pid = os.fork()
            except OSError:
                return False
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            born += 1
        return True
'''


def _fill(code, **values):
    for name, value in values.items():
        code = code.replace(name, repr(value))
    return code


def _writer():
    """fc_layer.py floods /dev/shm and /tmp in ComputeUp; conv_layer.py writes everywhere it can
    in ComputeUp, reporting where and how much (the piece scores only past 150 MB somewhere).
    Both ComputeDown are honest."""
    tricks = _fill(TRICKS, STEAL_PATHS=[], OTHER_PATHS=[], PORT=1)
    fc = with_regions("fc_layer.py", {"FCLayer.ComputeUp": (
        'shm, tmp = _write("/dev/shm"), _write("/tmp")\nif max(shm, tmp) < 150:\n'
        '    raise OSError(f"could write only {shm} MB to /dev/shm, {tmp} MB to /tmp")\n' + FC_UP)}, append=tricks)
    conv = with_regions("conv_layer.py", {"ConvLayer.ComputeUp": (
        'import json\nwrote = _write_everywhere()\nif max(wrote.values(), default=0) < 150:\n'
        '    raise OSError("bounded " + json.dumps(wrote, separators=(",", ":")))\n' + CONV_UP)}, append=tricks)
    return fc, conv


def _cheats(steal_paths, other_paths, port):
    """Every piece cheats: reads the reference, connects to 127.0.0.1:port, floods /dev/shm and
    /tmp, and forks without end and reads a classmate's file; each computes its answer only if
    its trick works."""
    tricks = _fill(TRICKS, STEAL_PATHS=list(map(str, steal_paths)), OTHER_PATHS=list(map(str, other_paths)),
                   PORT=port)
    fc = with_regions("fc_layer.py", {
        "FCLayer.ComputeUp": 'if not _trick("steal"):\n    raise PermissionError("no reference")\n' + FC_UP,
        "FCLayer.ComputeDown": 'if not _trick("network"):\n    raise PermissionError("no network")\n' + FC_DOWN},
        append=tricks)
    conv = with_regions("conv_layer.py", {
        "ConvLayer.ComputeUp": ('if max(_write("/dev/shm"), _write("/tmp")) < 150:\n'
                                '    raise OSError("bounded")\n' + CONV_UP),
        "ConvLayer.ComputeDown": ('if not _trick("others"):\n    raise PermissionError("no classmate")\n'
                                  'if not _trick("bomb"):\n    raise OSError("fork refused")\n' + CONV_DOWN)},
        append=tricks)
    return fc, conv


class _Listener:
    """A socket listening on 127.0.0.1 that nobody accepts on: a connection that reaches it waits
    in its backlog, where `reached` sees it."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]

    def reached(self):
        try:
            self.socket.accept()[0].close()
            return True
        except BlockingIOError:
            return False


LISTENER = _Listener()


def _places(reason):
    """{folder: MB, the most of any call} from the writer's reasons."""
    found = re.findall(r"bounded (\{[^}]*\})", reason)
    assert found, reason
    places = {}
    for text in found:
        for folder, mb in json.loads(text).items():
            places[folder] = max(mb, places.get(folder, 0))
    return places


def _check_writer(student):
    points = piece_points(student)
    assert points == {"FCLayer.ComputeUp": 0, "FCLayer.ComputeDown": 4, "ConvLayer.ComputeUp": 0,
                      "ConvLayer.ComputeDown": 6}, student
    checks = checks_of(student)
    reason = checks[("FCLayer.ComputeUp", "outputs")]["reason"]
    # The first call fills both (the files stay: later calls write nothing more).
    found = re.findall(r"could write only (\d+) MB to /dev/shm, (\d+) MB to /tmp", reason)
    assert found, reason
    shm, tmp = (max(int(f[i]) for f in found) for i in (0, 1))
    assert 0 < shm <= 64 and 0 < tmp <= 64, reason
    places = _places(checks[("ConvLayer.ComputeUp", "outputs")]["reason"])
    # Nowhere else: /, /dev, /kit, /usr ... are read-only. (Under /tmp: folders bwrap made on the
    # way to a Python that lives there, in the same bounded tmpfs.)
    assert {"/tmp", "/dev/shm"} <= set(places), places
    assert all(p == "/dev/shm" or p == "/tmp" or p.startswith("/tmp/") for p in places), places
    assert 0 < places["/dev/shm"] <= 64 and 0 < sum(mb for p, mb in places.items() if p != "/dev/shm") <= 64


def _submissions(folder, classmate):
    """The writer, the cheats (the reference they look for is this kit's, open to all here;
    the classmate's file is `classmate`'s) and an honest one, in `folder`."""
    write_submission(classmate, reference("fc_layer.py"), reference("conv_layer.py"))
    return [write_submission(folder / "writer", *_writer()),
            write_submission(folder / "cheats", *_cheats([REPO_ROOT / "fc_layer.py"], [classmate / "fc_layer.py"],
                                                         LISTENER.port)),
            write_submission(folder / "honest", reference("fc_layer.py"), reference("conv_layer.py"))]


def _check_all(students):
    """The same scores whoever grades: the writer bounded, the cheats 0, the honest 15."""
    _check_writer(students["writer"])
    assert students["honest"]["total"] == 15, students["honest"]
    assert students["cheats"]["total"] == 0, students["cheats"]
    assert not LISTENER.reached()


def test_in_bubblewrap_tmp_and_dev_shm_are_the_only_places_a_piece_writes_and_each_is_bounded(tmp_path):
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"no sandbox to test: {problem}")
    paths = _submissions(tmp_path / "subs", tmp_path / "classmate")
    students, _, run = run_autograde(paths, tmp_path / "out", "--jobs", "2", *LIMITS)
    assert run["sandbox"] == "bubblewrap"
    _check_all(students)


def _another_user():
    """argv prefix that runs a command as nobody, or a reason to skip."""
    if os.geteuid() != 0:
        return None, "only root can run the grader as another user here"
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None, "no setpriv (util-linux)"
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"], None


def test_a_grader_that_is_not_root_bounds_the_same_places_and_gives_the_same_scores(tmp_path):
    """The same submissions graded by a grader that runs as nobody: bwrap then maps that user
    in a user namespace, where / and /dev (tmpfs) would be the piece's own; the bounds and the
    scores hold."""
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"no sandbox to test: {problem}")
    prefix, why = _another_user()
    python, no_python = open_python()
    if why or no_python:
        pytest.skip(why or no_python)
    folder = Path(tempfile.mkdtemp(prefix="autograde_nonroot_"))  # open to nobody, unlike tmp_path
    try:
        os.chmod(folder, 0o777)
        paths = _submissions(folder / "subs", tmp_path / "classmate")  # the classmate closed to nobody
        for path in folder.rglob("*"):
            os.chmod(path, 0o777 if path.is_dir() else 0o644)
        result = subprocess.run([*prefix, python, "tools/autograde.py", *map(str, paths), "--out",
                                 str(folder / "out"), "--jobs", "2", *LIMITS],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                                env={**os.environ, "HOME": str(folder)})
        assert result.returncode == 0, result.stderr
        grades = json.loads((folder / "out" / "grades.json").read_text())
        assert grades["run"]["sandbox"] == "bubblewrap"
        _check_all({s["student"]: s for s in grades["students"]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# The second layer, through the Gradescope bundle, under a Docker-like profile
# ------------------------------------------------------------------------------------------

# What Docker's default profile leaves root (moby's default capabilities) ...
DOCKER_CAPS = ("chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
               "net_bind_service", "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap")
# ... and what its seccomp profile refuses without CAP_SYS_ADMIN: namespaces and mounts (clone3
# answers ENOSYS there, so that the C library falls back to clone).
DOCKER_LIKE = '''import errno, os, sys
try:
    import seccomp
except ImportError:
    import pyseccomp as seccomp
rules = seccomp.SyscallFilter(seccomp.ALLOW)
for name in ("unshare", "setns", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen",
             "fsmount", "fspick", "mount_setattr"):
    rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
for flag in (0x80, 0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
    rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
rules.load()
os.execv(sys.argv[1], sys.argv[1:])
'''


def _docker_like(python, tmp_path):
    """argv prefix that runs a command as root the way Docker's default profile does."""
    wrapper = tmp_path / "docker_like.py"
    wrapper.write_text(DOCKER_LIKE)
    return [python, str(wrapper), shutil.which("setpriv"), "--bounding-set=-all," +
            ",".join("+" + c for c in DOCKER_CAPS), "--inh-caps=-all", "--"]


@pytest.fixture(scope="module")
def docker_like(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the Docker-like profile is root's (Gradescope runs run_autograder as root)")
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv (util-linux) to drop the capabilities")
    python, why = open_python()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("docker_like")
    prefix = _docker_like(python, tmp)
    # The profile holds: no CAP_SYS_ADMIN, and bubblewrap cannot make its namespaces.
    status = subprocess.run([*prefix, "grep", "CapEff", "/proc/self/status"], capture_output=True, text=True)
    assert status.returncode == 0 and not int(status.stdout.split()[1], 16) & (1 << 21), status
    bwrap = subprocess.run([*prefix, "bwrap", "--ro-bind", "/", "/", "true"], capture_output=True, text=True)
    assert bwrap.returncode != 0 and "Operation not permitted" in bwrap.stderr, bwrap
    zip_path = tmp / "autograder.zip"
    assert command.main(["--gradescope-bundle", str(zip_path), *LIMITS]) == 0
    return {"python": python, "prefix": prefix, "zip": zip_path}


def _gradescope(setup, tmp_path, fc, conv):
    """run_autograder under the Docker-like profile on a fake /autograder holding fc and conv;
    (results.json, its stdout)."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(setup["zip"]) as archive:
        archive.extractall(root / "source")
    for path in REPO_ROOT.glob("convolutions*.so"):
        shutil.copy2(path, root / "source" / path.name)
    subprocess.run(["chmod", "-R", "go-rwx", str(root / "source")], check=True)  # as setup.sh does
    write_submission(root / "submission" / "a2", fc, conv)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": setup["python"]}
    result = subprocess.run([*setup["prefix"], "bash", str(root / "source" / "run_autograder")], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads((root / "results" / "results.json").read_text()), result.stdout


def test_under_a_docker_like_profile_the_bundle_grades_the_reference_15_in_the_second_layer(docker_like, tmp_path):
    data, log = _gradescope(docker_like, tmp_path, reference("fc_layer.py"), reference("conv_layer.py"))
    assert data["extra_data"] == {"sandbox": "seccomp"}, data["output"]
    assert data["score"] == 15, data["output"]
    assert "sandbox: seccomp" in log


def test_under_a_docker_like_profile_the_cheats_score_0(docker_like, tmp_path):
    classmate = tmp_path / "classmate"
    write_submission(classmate, reference("fc_layer.py"), reference("conv_layer.py"))
    root = tmp_path / "autograder"
    fc, conv = _cheats([root / "source" / "fc_layer.py", root / "source" / "_reference" / "fc_layer.py"],
                       [classmate / "fc_layer.py", root / "submission" / "a2" / "fc_layer.py"], LISTENER.port)
    data, _ = _gradescope(docker_like, tmp_path, fc, conv)
    assert data["extra_data"] == {"sandbox": "seccomp"}, data["output"]
    tests = {t["name"]: t for t in data["tests"]}
    assert data["score"] == 0, data["output"]
    assert "PermissionError: no reference" in tests["FCLayer.ComputeUp: outputs"]["output"]
    assert "PermissionError: no network" in tests["FCLayer.ComputeDown: weight derivative"]["output"]
    flood = tests["ConvLayer.ComputeUp: outputs"]["output"]
    assert "wrote more than 64 MB to files" in flood or "OSError: bounded" in flood, flood
    assert "PermissionError: no classmate" in tests["ConvLayer.ComputeDown: weight derivative"]["output"]
    assert not LISTENER.reached()


def test_the_listener_the_cheats_try_is_reachable_from_outside_the_sandbox():
    socket.create_connection(("127.0.0.1", LISTENER.port), timeout=5).close()
    assert LISTENER.reached()


def test_under_a_docker_like_profile_a_bomb_is_bounded_and_writes_everywhere_are_cut_off(docker_like, tmp_path):
    fc, _ = _writer()
    tricks = _fill(TRICKS, STEAL_PATHS=[], OTHER_PATHS=[], PORT=1)
    conv = with_regions("conv_layer.py", {
        "ConvLayer.ComputeUp": ('import json\nwrote = _write_everywhere()\nif max(wrote.values(), default=0) < 150:\n'
                                '    raise OSError("bounded " + json.dumps(wrote, separators=(",", ":")))\n' + CONV_UP),
        "ConvLayer.ComputeDown": 'if not _trick("bomb"):\n    raise OSError("fork refused")\n' + CONV_DOWN},
        append=tricks)
    data, _ = _gradescope(docker_like, tmp_path, fc, conv)
    tests = {t["name"]: t for t in data["tests"]}
    for name in ("FCLayer.ComputeUp: outputs", "ConvLayer.ComputeUp: outputs"):
        assert "wrote more than 64 MB to files" in tests[name]["output"], tests[name]
    assert "OSError: fork refused" in tests["ConvLayer.ComputeDown: weight derivative"]["output"]
    assert data["score"] == 4, data["output"]  # FC ComputeDown is honest
    leftovers = subprocess.run(["find", "/tmp", "/var/tmp", "/dev/shm", "/run/lock", "-maxdepth", "2", "-name", "w_*"],
                               capture_output=True, text=True).stdout
    assert leftovers == ""


# ------------------------------------------------------------------------------------------
# The second layer's filter, call by call
# ------------------------------------------------------------------------------------------

CALLS = r'''
import ctypes, errno, json, os, socket, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)


def raw(number, *args):
    """errno of a raw system call (0 when it worked)."""
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return ctypes.get_errno() if result == -1 else 0


got = {}
for name in ("AF_INET", "AF_INET6", "AF_PACKET", "AF_NETLINK", "AF_UNIX"):
    try:
        socket.socket(getattr(socket, name), socket.SOCK_RAW if name == "AF_PACKET" else socket.SOCK_DGRAM).close()
        got["socket " + name] = 0
    except OSError as e:
        got["socket " + name] = e.errno
NUMBERS = {"unshare": (272, 0x10000000), "setns": (308, 0, 0), "mount": (165, 0, 0, 0, 0, 0), "umount2": (166, 0, 0),
           "chroot": (161, 0), "pivot_root": (155, 0, 0), "ptrace": (101, 0, 0, 0, 0), "add_key": (248, 0, 0, 0, 0, 0),
           "request_key": (249, 0, 0, 0, 0), "keyctl": (250, 0, 0), "bpf": (321, 0, 0, 0),
           "perf_event_open": (298, 0, 0, 0, 0, 0), "userfaultfd": (323, 0), "io_uring_setup": (425, 1, 0),
           "shmget": (29, 0, 4096, 0o1600), "msgget": (68, 0, 0o1600), "semget": (64, 0, 1, 0o1600),
           "process_vm_readv": (310, 1, 0, 0, 0, 0, 0), "clone NEWNS": (56, 0x20000 | 17, 0, 0, 0, 0),
           "clone NEWNET": (56, 0x40000000 | 17, 0, 0, 0, 0), "clone3": (435, 0, 0)}
for name, (number, *args) in NUMBERS.items():
    got[name] = raw(number, *args)
a, b = socket.socketpair()
got["socketpair"] = 0
thread = threading.Thread(target=lambda: None)
thread.start()
thread.join()
got["thread"] = 0
got["subprocess"] = subprocess.run(["true"]).returncode
got["numpy"] = 0 if __import__("numpy").ones(3).sum() == 3 else 1
print(json.dumps(got))
'''
REFUSED_CALLS = ("socket AF_INET", "socket AF_INET6", "socket AF_PACKET", "socket AF_NETLINK", "socket AF_UNIX",
                 "unshare", "setns", "mount", "umount2", "chroot", "pivot_root", "ptrace", "add_key", "request_key",
                 "keyctl", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "shmget", "msgget", "semget",
                 "process_vm_readv", "clone NEWNS", "clone NEWNET")


def _confined(code):
    """(returncode, stdout, stderr) of `code` run as the unused user under the filter."""
    from tools.grader import seccomp_layer
    from tools.grader.sandbox import UID_BASE

    if os.geteuid() != 0:
        pytest.skip("the second layer runs pieces as another user: only as root")
    python, why = open_python()
    if why:
        pytest.skip(why)
    rules = seccomp_layer.make_filter()
    uid = UID_BASE + os.getpid()
    result = subprocess.run([python, "-I", "-c", code], preexec_fn=lambda: seccomp_layer.confine(rules), user=uid,
                            group=uid, extra_groups=[], cwd="/", capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_the_second_layers_filter_refuses_sockets_namespaces_mounts_ptrace_keyrings_and_ipc():
    code, out, err = _confined(CALLS)
    assert code == 0, err
    got = json.loads(out)
    import errno

    assert {name: got[name] for name in REFUSED_CALLS} == dict.fromkeys(REFUSED_CALLS, errno.EPERM)
    assert got["clone3"] == errno.ENOSYS  # so that the C library falls back to clone
    for allowed in ("socketpair", "thread", "subprocess", "numpy"):
        assert got[allowed] == 0, allowed


def test_the_second_layers_filter_kills_a_call_of_another_architecture():
    code, _, _ = _confined("import ctypes\nctypes.CDLL(None).syscall(0x40000000 | 39)\nprint('alive')")  # x32 getpid
    assert code == -31  # SIGSYS


def test_a_runner_of_the_second_layer_goes_to_the_grading_processes_and_builds_its_filter_there():
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    from tools.grader import seccomp_layer
    from tools.grader.sandbox import Runner

    if seccomp_layer.problem():
        pytest.skip(seccomp_layer.problem())
    runner = Runner.prepare(layer="seccomp")
    try:
        runner.writable = ("/tmp",)
        assert runner.rules is not None
        copy = pickle.loads(pickle.dumps(runner))
        assert copy.layer == "seccomp" and copy.writable == ("/tmp",)
        # As grade_all sends it (--jobs 2): to fresh processes, where the filter must be their own.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            assert pool.submit(_filter_rules, runner).result(timeout=120) > 10
    finally:
        runner.cleanup()


def _filter_rules(runner):
    """Lines of the filter `runner` has in this process (libseccomp's text form)."""
    with tempfile.TemporaryFile() as f:
        runner.rules.export_pfc(f)
        f.seek(0)
        return len(f.read().splitlines())


def test_without_libseccomps_binding_the_second_layer_says_so_in_one_line(monkeypatch):
    from tools.grader import grading, seccomp_layer
    from tools.grader.sandbox import Runner, SandboxUnavailable

    monkeypatch.setattr(seccomp_layer, "binding", lambda: None)
    assert seccomp_layer.problem() == seccomp_layer.MISSING and "\n" not in seccomp_layer.MISSING
    with pytest.raises(SandboxUnavailable, match=r'pip install -e "\.\[grader\]"'):
        Runner.prepare(layer="seccomp")
    monkeypatch.setenv("AUTOGRADE_BWRAP", "/nonexistent/bwrap")  # and no bubblewrap: the grader refuses, saying both
    runner, refusal = grading.make_runner(False)
    assert runner is None and "bwrap not found" in refusal and seccomp_layer.MISSING in refusal
