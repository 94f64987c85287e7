"""A training run's output files: checked before it starts, locked while it runs.

Before the first step (NeuralNet.Train, through `claimed`):
- the outputs (checkpoint_file, its last state '<name>_last.npz', performance_stats, and
  the display's PNG on a machine without a screen) are different files, none of them an
  input (the config, the data file), each a name short enough for its temporary file, absent
  or a regular file (a device node or a FIFO is never replaced), in a folder that exists (it
  is made if need be) and is writable: a mistake there would otherwise destroy a file after
  a whole epoch of training;
- they are locked: a second run on any of them (another train.py on the same config, or on
  a config that shares a file) stops at once, naming the process that holds them, instead
  of both runs overwriting each other's files;
- the temporary '.part' files a killed run left beside them are removed.
The other tools that write a file (report.py's --plot, play_with_convolutions.py's --out)
check it with `check_output`.
"""

import contextlib
import glob
import os
import sys

from plumbing.checkpoints import last_state_path
from plumbing.display import is_headless, png_path
from plumbing.errors import ConfigError, OutputError
from plumbing.files import (
    NotRegularFile,
    check_folder_can_be_made,
    check_regular_or_absent,
    make_folders,
    part_pattern,
    remove_empty_folders,
    same_file,
)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the checks above still hold
    fcntl = None


# What the kit adds to an output's name: atomic_write's '<name>.<8 random>.part' and the lock's
# '.<name>.lock'. The name must leave room for the longer.
NAME_ROOM = len(".12345678.part")


def check_output(path, what, inputs=(), source=None):
    """Raise ConfigError unless `path` can take an output: a name (not empty, not a folder),
    short enough for its temporary and lock files, absent or a regular file, not one of
    `inputs` ({description: path}), in a writable folder that exists or can be made (it is made
    by the first write, and goes again if that write fails). `what` names it in the message
    ("key 'checkpoint_file'", "--plot")."""
    where = f"{source}: " if source else ""
    name = os.path.basename(str(path))
    if not name or name in (".", ".."):
        raise ConfigError(f"{where}{what}: {str(path)!r} names no file: give a file name")
    try:

        check_regular_or_absent(path)
    except NotRegularFile as e:
        raise ConfigError(f"{where}{what}: {path} is {e.strerror}: an output must be a file "
                          "of its own") from None
    except OSError as e:
        raise ConfigError(f"{where}{what}: cannot write {path} ({e.strerror})") from None
    for description, other in inputs.items() if isinstance(inputs, dict) else inputs:
        if other is not None and same_file(path, other):
            raise ConfigError(f"{where}{what}: {path} is {description}: writing it would destroy it")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        existing = check_folder_can_be_made(folder)  # made by the first write
    except PermissionError as e:
        raise ConfigError(f"{where}{what}: the folder {e.filename} of {path} is not writable") from None
    except OSError as e:
        raise ConfigError(f"{where}{what}: cannot make the folder {folder} for {path} ({e.strerror})") from None
    longest = name_max(existing) - NAME_ROOM
    if len(os.fsencode(name)) > longest:
        raise ConfigError(f"{where}{what}: the name {name[:40]}... is {len(os.fsencode(name))} bytes; this folder "
                          f"takes names of up to {longest} bytes for an output (its temporary file adds "
                          f"{NAME_ROOM})")


def name_max(folder):
    """The longest file name, in bytes, the file system of `folder` takes (255 if it does not say)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):
        return 255


def run_outputs(net, display=False):
    """{what: path} of the files a training run writes, checked (check_output, and distinct):
    the checkpoint, its last state, the stats, and with `display` on a machine without a
    screen the display's PNG."""
    for key in ("checkpoint_file", "performance_stats"):
        if getattr(net.settings_, key) is None:
            raise ConfigError(f"{net.source_}: key '{key}' is needed to train")
    outputs = {"key 'checkpoint_file'": net.settings_.checkpoint_file,
               "the last state of key 'checkpoint_file'": last_state_path(net.settings_.checkpoint_file),
               "key 'performance_stats'": net.settings_.performance_stats}
    if display and is_headless():
        outputs["the display's figure (beside key 'performance_stats')"] = png_path(net.settings_.performance_stats)
    inputs = {"the config itself": net.config_.get("_path"), "the data file (key 'data_path')": net.settings_.data_path}
    for what, path in outputs.items():
        check_output(path, what, inputs, net.source_)
    names = list(outputs)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if same_file(outputs[first], outputs[second]):
                raise ConfigError(f"{net.source_}: {second}: {outputs[second]} is also {first}: each would "
                                  "overwrite the other")
    return outputs


def lock_path(path):
    """The lock of output `path`: a hidden file beside it, there only while a run holds it."""
    folder, name = os.path.split(os.path.realpath(path))  # one lock for every name of the file
    return os.path.join(folder, f".{name}.lock")


class OutputLock:
    """Exclusive locks on output files, taken at once or not at all (ConfigError naming the
    process that holds one). The lock files hold the holder's process id and command line."""

    def __init__(self, paths, source):
        self.paths_, self.source_, self.held_, self.made_ = [lock_path(p) for p in paths], source, [], []

    def __enter__(self):
        try:
            for path in self.paths_:
                self._folder(path)
                self.held_.append((path, self._take(path)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def _take(self, path):
        """The lock at `path`, held; OutputError (nothing of it left) if it cannot be written."""
        try:
            return self._take_file(path)
        except OSError as e:
            output = os.path.join(os.path.dirname(path), os.path.basename(path)[1:-len(".lock")])
            raise OutputError(f"{self.source_}: cannot start: the lock {path} of {output} cannot be written "
                              f"({e.strerror or e}); nothing was trained or written") from None

    def _folder(self, path):
        """Make the lock's folder (the outputs' own) if need be, into self.made_."""
        try:
            make_folders(os.path.dirname(path), self.made_)
        except OSError as e:
            raise OutputError(f"{self.source_}: cannot start: the folder {os.path.dirname(path)} cannot be made "
                              f"({e.strerror or e}); nothing was trained or written") from None

    def _take_file(self, path):
        while True:
            made = not os.path.lexists(path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
                os.close(fd)
                holder = f"process {holder}" if holder else "a process starting up"
                output = os.path.join(os.path.dirname(path), os.path.basename(path)[1:-len(".lock")])
                raise ConfigError(f"{self.source_}: {output} is being written by another training run ({holder}); "
                                  "wait for it to end, or give this run other output files") from None
            # The holder before us removes the file as it lets go: lock the file that is there now.
            try:
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}: {' '.join(sys.argv)}"[:4000].encode())
        except OSError:
            # A full disk or quota: the lock we made goes with us (we hold it: nobody else can).
            if made:
                with contextlib.suppress(OSError):
                    os.remove(path)
            os.close(fd)
            raise
        return fd

    def __exit__(self, *exc):
        while self.held_:
            path, fd = self.held_.pop()
            with contextlib.suppress(OSError):
                os.remove(path)  # while locked: nobody can be holding what is removed
            os.close(fd)
        remove_empty_folders(self.made_)  # a run that wrote nothing leaves no folder either
        self.made_ = []


def remove_stale_parts(paths):
    """Remove the temporary files ('<name>.<random>.part') that a killed run left beside the
    outputs `paths`; only called by the run that holds their locks."""
    for path in paths:
        for part in glob.glob(part_pattern(path)):
            with contextlib.suppress(OSError):
                os.remove(part)


@contextlib.contextmanager
def claimed(net, display=False):
    """While a training run of `net` goes on: its outputs checked, locked, and clear of stale
    temporary files (ConfigError or OutputError before anything is written if they cannot be)."""
    outputs = list(run_outputs(net, display).values())
    if fcntl is None:
        yield
        return
    with OutputLock(outputs, net.source_):
        remove_stale_parts(outputs)
        yield
