"""Where a student's code runs (staff only): a bubblewrap sandbox, one per piece.

bubblewrap (`bwrap`, Debian/Ubuntu package `bubblewrap`) is the maintained tool that
Flatpak builds its sandboxes with; it sets up the Linux namespaces, mounts and privilege
drop that our own code would otherwise have to get right. A piece's process sees:

- a read-only /kit: the student kit (the handout's files, every solution region blank, the
  built extension) with the student's one file bound over its blank twin; a read-only
  /grader holding worker.py; read-only the system's /usr (and /bin, /lib ...) and
  the folders of the Python that runs it; a private /tmp and /dev/shm of --output MB each,
  the only places it can write (/ and /dev are read-only); its own /proc and a minimal /dev.
  Nothing else: not the reference kit, not the grader's temporary files or
  --out folder, not the other submissions, not /etc, /home or /root's files.
- no network (a new network namespace holds only its own loopback), no other process (a
  new PID namespace), its own IPC and hostname;
- an unprivileged user: as root, bwrap keeps only the capabilities to change user and
  `setpriv` makes the worker a user ID no account has (2000000000 + the grading process's
  ID: one per grading process, so one submission's processes never share another's process
  budget), with every capability and the bounding set cleared, and no_new_privs. When the
  grader is not root, bwrap maps the grader's own user in a new user namespace, in which
  no further user namespace can be made;
- the limits: --timeout seconds of wall clock for the piece, --cpu seconds of CPU and
  --memory MB of address space per process, files and /tmp of at most --output MB, no core
  files, at most --processes processes. When the piece ends (or the grader dies:
  --die-with-parent) its PID namespace goes, and with it every process it started.

Without bwrap, or where the kernel or a container refuses namespaces, `check_sandbox`
says why, and a grader that runs as root uses the second layer (seccomp_layer.py): the
piece as the unused user ID with no_new_privs and a seccomp filter, the same limits, a
private folder of --output MB (watched by the grader), after `check_seccomp_layer` has seen
that this user can read neither the reference kit nor the submissions. Where neither layer
can be made, the grader refuses to run unless told --unsafe-no-sandbox: then a piece is a
plain process with the same limits, as that unused user ID when the grader is root, in a
temporary folder; it can use the network and read whatever that user can read.
"""

import functools
import json
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from plumbing import runtime
from plumbing.errors import UserError
from tools import KIT
from tools.grader import seccomp_layer
from tools.grader import worker as wire
from tools.grader.worker import FrameError

WORKER = Path(wire.__file__).resolve()
UID_BASE = 2_000_000_000  # far above any account's ID; plus the grading process's ID
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
LAYERS = ("bubblewrap", "seccomp", "none")  # the sandbox's layers, and none (--unsafe-no-sandbox)
WATCH_SECONDS = 0.02  # how often the grader totals what a piece of the second layer has written


@dataclass
class Limits:
    timeout: float = 120.0   # wall clock, seconds, per piece
    cpu: int = 60            # CPU seconds per process
    memory: int = 2048       # MB of address space per process
    output: int = 64         # MB per file written (stderr included) and of /tmp
    processes: int = 64      # processes (and threads) at once


class PieceFailed(Exception):
    """The student's process hung, died or broke the protocol: every check of the piece gets
    0, with this reason."""


class StudentError(Exception):
    """The student's code raised; the message is the worker's ('TypeError: ... (fc_layer.py,
    line 3)')."""


class SandboxUnavailable(UserError):
    """No sandbox can be made here; the message says why (what to install, or that the kernel
    or container refuses namespaces). The grader stops with it, exit status 3."""

    exit_status = 3


class SandboxBroken(SandboxUnavailable):
    """bwrap made a sandbox, but it does not hold what it must (a user, capabilities, the
    network): a fault of the sandbox's own, never a reason to skip its tests."""


def bwrap_path():
    """The bwrap to use: $AUTOGRADE_BWRAP (a path; for tests, or a build of one's own), else
    the one on PATH, else None."""
    return os.environ.get("AUTOGRADE_BWRAP") or shutil.which("bwrap")


@functools.cache
def bwrap_options(bwrap):
    """The options this bwrap knows (from its --help); SandboxUnavailable without the ones
    the sandbox needs (--size came with bubblewrap 0.7, --perms with 0.5)."""
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxUnavailable(f"{bwrap} does not run ({e})") from None
    options = {word for word in text.split() if word.startswith("--")}
    missing = [o for o in ("--size", "--perms", "--die-with-parent", "--unshare-net") if o not in options]
    if missing:
        raise SandboxUnavailable(f"{bwrap} is too old (no {', '.join(missing)}); the sandbox needs bubblewrap 0.7 "
                                 "or newer (Debian 12, Ubuntu 24.04)")
    return frozenset(options)


def sandbox_uid():
    """The unused user ID this grading process runs students' code as (when it is root), or
    None when it is not root (then bwrap maps the grader's own user)."""
    if os.geteuid() != 0:
        return None
    uid = UID_BASE + os.getpid()
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1 << 22  # an account has it (unlikely): the next one that no process ID can reach


def _world_reachable(path):
    """Whether any user can reach `path` (every folder on the way open to others)."""
    import stat

    path = os.path.realpath(path)
    for folder in [path] + [str(p) for p in Path(path).parents]:
        try:
            mode = os.stat(folder).st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


def unsafe_uid():
    """The user ID of a piece without a sandbox: the unused one when the grader is root, else
    None (the grader's own user). SandboxUnavailable when the grader is root and its Python
    is closed to other users: a student's code must never run as root (kill(-1) as root
    ends every process of the machine)."""
    uid = sandbox_uid()
    if uid is not None:
        closed = [p for p in (sys.executable,) + _python_dirs() if not _world_reachable(p)]
        if closed:
            raise SandboxUnavailable(f"even without a sandbox the students' code must not run as root, and no "
                                     f"other user can reach the Python in {closed[0]}; grade with a Python that "
                                     "others can read, or as a user other than root")
    return uid


@functools.cache
def _python_dirs():
    """The folders the sandbox's Python needs beyond /usr: its prefixes and site folders."""
    import site

    import numpy

    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), os.path.dirname(os.path.dirname(numpy.__file__))}
    found.update(site.getsitepackages())
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        found.add(site.getusersitepackages())
    dirs = []
    for path in sorted(os.path.realpath(p) for p in found if p and os.path.isdir(p)):
        if not any(path == d or path.startswith(d.rstrip("/") + "/") for d in SYSTEM_DIRS + tuple(dirs)):
            dirs.append(path)
    return tuple(dirs)


def _refuse_to_expose(path, private):
    """SandboxUnavailable if binding `path` would show one of the `private` folders."""
    real = os.path.realpath(path)
    for folder in private:
        folder = os.path.realpath(folder)
        if real == "/" or folder == real or folder.startswith(real.rstrip("/") + "/"):
            raise SandboxUnavailable(f"the sandbox would show {path}, which holds {folder}: the students' code "
                                     "must not see it; keep the kit, and grade with a Python, outside each other")


def _mounts(private):
    """bwrap's arguments for the system and Python folders (read-only), with the folders on
    the way to them created 0755 (bwrap would make them 0700, closed to an unprivileged user)."""
    args, made = [], {"/tmp", "/proc", "/dev"}

    def parents(path):
        for parent in reversed(Path(path).parents[:-1]):
            if str(parent) not in made and not any(str(parent) == d or str(parent).startswith(d + "/")
                                                   for d in SYSTEM_DIRS):
                args.extend(["--perms", "0755", "--dir", str(parent)])
                made.add(str(parent))

    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args.extend(["--symlink", os.readlink(path), path])
        elif os.path.isdir(path):
            _refuse_to_expose(path, private)
            args.extend(["--ro-bind", path, path])
    for path in _python_dirs():
        _refuse_to_expose(path, private)
        parents(path)
        args.extend(["--ro-bind", path, path])
    return args


def child_environment():
    """The whole environment of a student's process: nothing of the grader's own."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
           "MPLCONFIGDIR": "/tmp", "OMP_NUM_THREADS": "1"}
    env.update(runtime.environment("single_example"))  # one core per piece: pieces run side by side
    return env


def _disk_usage(path):
    """Bytes on disk under `path` (a file or a folder, links not followed)."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0
    total = info.st_blocks * 512
    if os.path.isdir(path) and not os.path.islink(path):
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    pass
    return total


def _processes_of(uid):
    """IDs of the live processes whose real user is `uid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status", encoding="utf-8") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                found.append(int(entry))
                            break
            except OSError:
                pass
    return found


def kill_user(uid):
    """SIGKILL every process of `uid` (an ID only this grading process's pieces use)."""
    for _ in range(20):  # a fork loop may add some while we kill: go round until none is left
        pids = _processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


class Runner:
    """Runs pieces from one run folder: the student kit (blank regions, built extension) and
    the worker, made once per grading run by `prepare`. Picklable: the grading processes get
    a copy and start their own pieces."""

    def __init__(self, root, layer="bubblewrap"):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
        self.root, self.layer = str(root), layer
        self.writable = ()  # the second layer: the machine's folders its user can write (check_seccomp_layer)
        self._rules = None

    def __getstate__(self):  # the filter is a C object: each grading process builds its own
        return dict(self.__dict__, _rules=None)

    @property
    def rules(self):
        """The second layer's seccomp filter (built on first use), or None in the others."""
        if self.layer == "seccomp" and self._rules is None:
            self._rules = seccomp_layer.make_filter()
        return self._rules

    @property
    def sandbox(self):
        """Whether the pieces run in one of the sandbox's layers."""
        return self.layer != "none"

    @classmethod
    def prepare(cls, sandbox=True, kit=KIT, layer=None):
        """A new run folder (removed by `cleanup`) from the reference kit `kit`, for the
        layer `layer` (default bubblewrap, or none when not `sandbox`)."""
        layer = layer or ("bubblewrap" if sandbox else "none")
        if layer == "seccomp" and seccomp_layer.problem():
            raise SandboxUnavailable(seccomp_layer.problem())
        from tools.course.handout import make_handout

        root = Path(tempfile.mkdtemp(prefix="autograde_"))
        try:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                make_handout(root / "kit", None, kit)
            git = root / "kit" / ".git"  # a worktree's pointer to its repository: nothing a piece needs
            if git.is_file():
                git.unlink()
            extensions = [p for p in Path(kit).glob("convolutions*") if p.suffix in (".so", ".pyd")]
            if not extensions:
                raise SandboxUnavailable(f"{kit}: the extension is not built (python setup.py build_ext --inplace)")
            for path in extensions:
                shutil.copy2(path, root / "kit" / path.name)
            (root / "grader").mkdir()
            for path in (WORKER, WORKER.with_name("watch.py")):  # the worker and what it imports
                shutil.copy2(path, root / "grader" / path.name)
            for folder, dirs, files in os.walk(root):
                for name in dirs:
                    os.chmod(os.path.join(folder, name), 0o755)
                for name in files:
                    path = os.path.join(folder, name)
                    os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
            # Outside bubblewrap the pieces' user must reach the kit through this folder (0711:
            # it can enter, not list it); in bubblewrap's sandbox nobody but root sees it.
            os.chmod(root, 0o700 if layer == "bubblewrap" else 0o711)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(root, layer)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def kit(self):
        return os.path.join(self.root, "kit")

    def command(self, piece_dir, filename, limits):
        """(argv, cwd) of a piece's process, the student's file being piece_dir/filename."""
        worker = ["-I", "-B"]  # isolated: no PYTHON* variables, user site or script folder; no .pyc
        if self.layer != "bubblewrap":
            return [sys.executable, *worker, os.path.join(self.root, "grader", WORKER.name), piece_dir,
                    filename], piece_dir
        bwrap = bwrap_path()
        if not bwrap or not os.access(bwrap, os.X_OK):
            raise SandboxUnavailable("bwrap not found (install bubblewrap: apt-get install -y bubblewrap)")
        args = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox", "--die-with-parent", "--new-session"]
        uid = sandbox_uid()
        options = bwrap_options(bwrap)
        if uid is not None:
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP"]
        else:
            args += ["--unshare-user"] + (["--disable-userns"] if "--disable-userns" in options else [])
        # The places a piece can write: /tmp and /dev/shm, tmpfs of --max-output MB each; / and
        # /dev (bwrap's tmpfs, as big as half the memory and the piece's own when the grader is
        # not root) are made read-only once set up. /tmp first: a Python that lives under /tmp
        # is then bound into it, not hidden by it.
        size = str(limits.output << 20)
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
                 "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
        args += _mounts([KIT, self.root, tempfile.gettempdir()])
        args += ["--ro-bind", self.kit, "/kit", "--ro-bind", os.path.join(piece_dir, filename), f"/kit/{filename}",
                 "--ro-bind", os.path.join(self.root, "grader"), "/grader", "--remount-ro", "/dev",
                 "--remount-ro", "/", "--chdir", "/tmp", "--"]
        if uid is not None:
            args += [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}",
                     "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]
        return args + [sys.executable, *worker, f"/grader/{WORKER.name}", "/kit", filename], "/"

    def piece(self, filename, source, limits):
        """A running student process (a context manager) for the student's file `filename`."""
        return Piece(self, filename, source, limits)


class Piece:
    """One student process, spoken to in frames (see worker.py)."""

    def __init__(self, runner, filename, source, limits):
        self.runner, self.limits, self.layer = runner, limits, runner.layer
        self.uid = sandbox_uid() if runner.sandbox else unsafe_uid()
        if self.layer == "seccomp" and self.uid is None:
            raise SandboxUnavailable("the second layer runs the students' code as another user: the grader must "
                                     "run as root")
        self.dir = tempfile.mkdtemp(prefix="piece_", dir=runner.root)
        path = os.path.join(self.dir, filename)
        with open(path, "w", encoding="utf-8") as f:  # the intake's text, read as UTF-8 (source_text.as_utf8)
            f.write(source)
        os.chmod(path, 0o644)
        self._watched = 0.0
        if self.layer != "bubblewrap":
            # The student's folder: the kit's files (links) and the student's file, writable
            # (by the piece's user only: mkdtemp makes it 0700).
            for name in os.listdir(runner.kit):
                if name != filename:
                    os.symlink(os.path.join(runner.kit, name), os.path.join(self.dir, name))
            if self.uid is not None:
                os.chown(self.dir, self.uid, self.uid)
        self.stderr_path = os.path.join(runner.root, os.path.basename(self.dir) + ".stderr")
        argv, cwd = runner.command(self.dir, filename, limits)
        env = child_environment()
        if self.layer != "bubblewrap":  # its own folder for everything a program writes by default
            env.update(HOME=self.dir, TMPDIR=self.dir, MPLCONFIGDIR=self.dir)
        rules = runner.rules
        self.start = time.monotonic()
        self.deadline = self.start + limits.timeout
        processes = limits.processes
        if self.uid is None:  # the grader's own user: its other processes count too
            processes += len(_processes_of(os.getuid()))

        def limit():  # in the child, before bwrap or Python starts
            memory = limits.memory << 20
            output = limits.output << 20
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu, limits.cpu + 1))
            resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
            resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))  # POSIX message queues: none
            if rules is not None:  # the second layer, as the piece's user already (Popen's user=)
                seccomp_layer.confine(rules)

        user = {} if self.layer == "bubblewrap" or self.uid is None else {"user": self.uid, "group": self.uid,
                                                                          "extra_groups": []}
        with open(self.stderr_path, "wb") as err:
            os.chmod(self.stderr_path, 0o600)
            self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=err, preexec_fn=limit,
                                            start_new_session=True, close_fds=True, **user)
        self._in, self._out = self.process.stdin.fileno(), self.process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def seconds(self):
        return time.monotonic() - self.start

    def call(self, header, arrays=(), replies=0):
        """Send one request; return the `replies` arrays of the reply. Raises StudentError
        when the student's code raised, PieceFailed when the process did not answer in time,
        died or sent something that is not a reply."""
        self._send(wire.encode_frame(header, arrays))
        prefix = self._receive(wire.PREFIX.size)
        try:
            head_length, body_length = wire.parse_prefix(prefix)
            reply, got = wire.decode_frame(self._receive(head_length), self._receive(body_length))
        except FrameError as e:
            self.kill()
            raise PieceFailed(f"sent a malformed reply ({e})") from None
        if self.layer == "seccomp":  # what it wrote until it answered counts too, however fast
            self._watched = 0.0
            self._remaining()
        if isinstance(reply.get("error"), str):
            raise StudentError(reply["error"])
        if reply.get("ok") is not True or len(got) != replies:
            self.kill()
            raise PieceFailed("sent a malformed reply (not an answer to the request)")
        return got

    def _remaining(self):
        """Seconds to wait for the piece before looking at it again; PieceFailed when its time
        is up or (second layer) it has written more than its share."""
        now = time.monotonic()
        left = self.deadline - now
        if left <= 0:
            self.kill()
            raise PieceFailed(f"timed out after {self.limits.timeout:g} s (wall clock)")
        if self.layer != "seccomp":
            return left
        if now - self._watched >= WATCH_SECONDS:
            self._watched = now
            written = sum(size for _, size in self._written())
            if written > self.limits.output << 20:
                self.kill()
                raise PieceFailed(f"wrote more than {self.limits.output} MB to files ({written >> 20} MB)")
        return min(left, WATCH_SECONDS)

    def _written(self):
        """(path, bytes on disk) of everything the second layer's piece has written: its folder,
        and what its user owns in the machine's folders every user can write."""
        found = [(self.dir, _disk_usage(self.dir))]
        for folder in self.runner.writable:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_uid == self.uid:
                        found.append((entry.path, _disk_usage(entry.path)))
                except OSError:
                    pass
        return found

    def _send(self, data):
        data = memoryview(data)
        while data:
            _, ready, _ = select.select([], [self._in], [], self._remaining())
            if ready:
                try:
                    data = data[os.write(self._in, data[:1 << 16]):]
                except BrokenPipeError:
                    self._died()

    def _receive(self, size):
        chunks, left = [], size
        while left:
            ready, _, _ = select.select([self._out], [], [], self._remaining())
            if ready:
                chunk = os.read(self._out, min(left, 1 << 20))
                if not chunk:
                    self._died()
                chunks.append(chunk)
                left -= len(chunk)
        return b"".join(chunks)

    def _died(self):
        """Raise PieceFailed with why the process ended before answering."""
        try:
            code = self.process.wait(timeout=max(0.1, min(2.0, self.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            self.kill()
            raise PieceFailed(f"timed out after {self.limits.timeout:g} s (wall clock)") from None
        self.kill()
        # bwrap reports a signal that ended its command as 128 + the signal's number.
        number = -code if code < 0 else (code - 128 if self.layer == "bubblewrap" and 128 < code < 160 else 0)
        if number == signal.SIGXCPU:
            raise PieceFailed(f"CPU time limit ({self.limits.cpu} s) exceeded")
        if number == signal.SIGKILL:
            raise PieceFailed("killed (SIGKILL: CPU or memory limit?)")
        if number == signal.SIGXFSZ:
            raise PieceFailed(f"wrote more than {self.limits.output} MB of output")
        if number:
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            raise PieceFailed(f"crashed ({name})")
        with open(self.stderr_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 2000))
            tail = f.read().decode("utf-8", "replace").strip().splitlines()
        last = tail[-1][:300] if tail else "no message"
        if "MemoryError" in last:
            last += f" (memory limit {self.limits.memory} MB)"
        raise PieceFailed(f"exited with status {code} before reporting ({last})")

    def kill(self):
        """End the piece's processes, all of them."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.uid is not None:
            kill_user(self.uid)

    def close(self):
        """Tell the worker it is done, give it a moment, then kill whatever is left."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=max(0.1, min(2.0, self.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        self.process.wait()
        self.process.stdout.close()
        if self.layer == "seccomp":  # what it left in the machine's open folders goes too
            for path, _ in self._written()[1:]:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            os.unlink(self.stderr_path)
        except OSError:
            pass


# The self-test every grading run starts with: what the sandbox's Python sees of itself.
PROBE = r"""
import json, os, socket
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
interfaces = [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]]
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  "caps": {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
                  "no_new_privs": int(status["NoNewPrivs"]), "interfaces": interfaces, "root": sorted(os.listdir("/")),
                  "kit": sorted(os.listdir("/kit")), "numpy": __import__("numpy").__version__}))
"""


def check_sandbox(runner):
    """The sandbox's own account of itself (a dict) if a sandbox can be made and holds;
    SandboxUnavailable saying why otherwise."""
    if not runner.sandbox:
        raise ValueError("check_sandbox needs a sandbox runner")
    probe_dir = tempfile.mkdtemp(prefix="probe_", dir=runner.root)
    try:
        (Path(probe_dir) / "fc_layer.py").write_text("")
        os.chmod(Path(probe_dir) / "fc_layer.py", 0o644)
        argv, cwd = runner.command(probe_dir, "fc_layer.py", Limits())
        argv = argv[:argv.index(sys.executable)] + [sys.executable, "-I", "-c", PROBE]
        try:
            result = subprocess.run(argv, cwd=cwd, env=child_environment(), capture_output=True, text=True,
                                    timeout=60, start_new_session=True)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SandboxUnavailable(f"bwrap did not run ({e})") from None
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    if result.returncode != 0:
        lines = (result.stderr or "").strip().splitlines()
        raise SandboxUnavailable(lines[-1] if lines else f"bwrap exited with status {result.returncode}")
    report = json.loads(result.stdout)
    uid = sandbox_uid()
    problems = []
    if uid is not None and (report["uid"] != uid or report["gid"] != uid):
        problems.append(f"the sandbox runs as uid {report['uid']}, not {uid}")
    if uid is not None and any(report["caps"].values()):
        problems.append("the sandbox kept capabilities")
    if uid is None and report["caps"]["CapEff"]:
        problems.append("the sandbox kept capabilities")
    if report["no_new_privs"] != 1:
        problems.append("no_new_privs is not set")
    if report["interfaces"] != ["lo"]:
        problems.append(f"the sandbox sees network interfaces {report['interfaces']}")
    if problems:
        raise SandboxBroken("; ".join(problems))
    return report


# The second layer's self-test: who the piece's process is, what it may do, what it can read of
# the files given (argv), and where it can write (find, as that user, the whole machine).
SECCOMP_PROBE = r"""
import json, os, socket, stat, subprocess, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
refused = {}
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    refused["socket"] = False
except OSError:
    refused["socket"] = True
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
refused["unshare"] = libc.unshare(0x10000000 | 0x40000000) != 0  # CLONE_NEWUSER | CLONE_NEWNET
readable = []
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            f.read(1)
        readable.append(path)
    except OSError:
        pass
found = subprocess.run(["find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o",
                        "-writable", "-print0"], capture_output=True).stdout.decode(errors="replace")
folders, files = [], []
for path in filter(None, found.split("\0")):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        continue
    if stat.S_ISDIR(mode) and os.path.realpath(path) not in folders:
        folders.append(os.path.realpath(path))
    elif stat.S_ISREG(mode):
        files.append(path)
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  "caps": {k: int(status[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")},
                  "no_new_privs": int(status["NoNewPrivs"]), "seccomp": int(status["Seccomp"]),
                  "refused": refused, "readable": readable, "writable_folders": folders,
                  "writable_files": files}))
"""


def private_files(paths):
    """The files behind `paths` (files, or folders walked) that a piece must not read."""
    found = []
    for path in map(str, paths):
        if os.path.isdir(path):
            for folder, _, files in os.walk(path):
                found += [os.path.join(folder, name) for name in sorted(files)]
                if len(found) > 2000:
                    break
        elif os.path.exists(path):
            found.append(path)
    return found


def check_seccomp_layer(runner, private=()):
    """The second layer's account of itself (a dict), after checking it holds; the folders its
    user can write become runner.writable. `private`: files and folders its user must not
    read (the reference kit is always among them). SandboxUnavailable saying why not."""
    if runner.layer != "seccomp":
        raise ValueError("check_seccomp_layer needs a runner of the second layer")
    uid = sandbox_uid()
    if uid is None:
        raise SandboxUnavailable("the second layer runs the students' code as another user: the grader must run "
                                 "as root")
    closed = [p for p in (sys.executable,) + _python_dirs() if not _world_reachable(p)]
    if closed:
        raise SandboxUnavailable(f"the pieces' user cannot reach the Python in {closed[0]} (grade with a Python "
                                 "every user can run, as Gradescope's /autograder/venv)")
    secrets = private_files([os.path.join(KIT, "fc_layer.py"), os.path.join(KIT, "conv_layer.py"), *private])
    probe_dir = tempfile.mkdtemp(prefix="probe_", dir=runner.root)
    os.chown(probe_dir, uid, uid)
    rules = runner.rules

    def confine():
        seccomp_layer.confine(rules)

    try:
        result = subprocess.run([sys.executable, "-I", "-c", SECCOMP_PROBE, *secrets], cwd=probe_dir,
                                env=dict(child_environment(), HOME=probe_dir, TMPDIR=probe_dir),
                                capture_output=True, text=True, timeout=120, user=uid, group=uid, extra_groups=[],
                                preexec_fn=confine, start_new_session=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxUnavailable(f"the second layer's process did not start ({e})") from None
    finally:
        kill_user(uid)
        shutil.rmtree(probe_dir, ignore_errors=True)
    if result.returncode != 0:
        lines = (result.stderr or "").strip().splitlines()
        raise SandboxUnavailable(f"the second layer's probe failed ({lines[-1] if lines else result.returncode})")
    report = json.loads(result.stdout)
    problems = []
    if report["uid"] != uid or report["gid"] != uid or report["groups"] not in ([], [uid]):
        problems.append(f"the piece runs as uid {report['uid']}, not {uid}")
    if any(report["caps"].values()):
        problems.append("the piece kept capabilities")
    if report["no_new_privs"] != 1 or report["seccomp"] != 2:
        problems.append("no_new_privs or the seccomp filter is not set")
    problems += [f"{call}() is not refused" for call, refused in report["refused"].items() if not refused]
    if problems:
        raise SandboxBroken("; ".join(problems))
    if report["readable"]:
        raise SandboxUnavailable(f"other users can read {report['readable'][0]}: the second layer needs the "
                                 "reference kit and the submissions closed to them (chmod -R go-rwx)")
    if report["writable_files"]:
        raise SandboxUnavailable(f"every user can write {report['writable_files'][0]}: the second layer cannot "
                                 "bound what a piece writes there (chmod o-w it)")
    runner.writable = tuple(f for f in report["writable_folders"] if not f.startswith(runner.root + "/"))
    return report
