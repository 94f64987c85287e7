"""Reading and writing the kit's files safely (a helper module: no kit imports, plain OSError
and ValueError; the callers say which key or file it was in their own words).

- Inputs are opened only if they are regular files: a FIFO would block for ever, a device
  would never end, a directory is no input.
- An .npy or .npz array is read only once its header (shape, dtype) has been checked, so a
  lying header or a compressed bomb is refused before anything is allocated, and the members
  of an .npz nobody asked for are never decompressed.
- Outputs are written whole or not at all: to a temporary file beside the output, flushed
  to disk, then renamed into place.
"""

import contextlib
import errno
import glob
import math
import os
import secrets
import shutil
import stat
import zipfile

import numpy.lib.format as npy

KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}
O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
NUMBERS = "biuf"  # dtype kinds of numbers: bool, signed, unsigned, float


def file_kind(mode):
    """'a FIFO', 'a directory', ... for an st_mode that is not a regular file."""
    return KINDS.get(stat.S_IFMT(mode), "a special file")


class NotRegularFile(OSError):
    """The path exists but is a FIFO, a device, a directory or a socket."""


def open_regular(path):
    """Open `path` for reading (binary), only if it is a regular file.

    The open itself cannot block: O_NONBLOCK makes a FIFO open at once, and it is then refused.
    Raises OSError (NotRegularFile, FileNotFoundError, ... with strerror saying why)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(0, f"{file_kind(mode)}, not a regular file", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited(path, limit):
    """The bytes of regular file `path`; ValueError if it holds more than `limit` of them."""
    with open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {human_bytes(limit)}")
    return data


def physical_memory():
    """Bytes of memory this machine has (16 GiB when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 16 << 30


def human_bytes(n):
    """1536 -> '1.5 KiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def _header(f):
    """(shape, fortran_order, dtype) of the .npy stream at f, read without the data."""
    version = npy.read_magic(f)
    if version == (1, 0):
        return npy.read_array_header_1_0(f)
    if version in ((2, 0), (3, 0)):
        return npy.read_array_header_2_0(f)
    raise ValueError(f".npy format version {version} is not supported")


def _check(name, shape, dtype, available, limit, accept):
    """Refuse object arrays, ask accept(name, shape, dtype) (it raises to refuse, or returns
    False to skip the array), then refuse sizes beyond what the stream holds or `limit`."""
    if dtype.hasobject:
        raise ValueError(f"'{name}' holds Python objects, not numbers")
    if accept(name, shape, dtype) is False:
        return False
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit:
        raise ValueError(f"'{name}' is {shape} {dtype} ({human_bytes(nbytes)}), larger than {human_bytes(limit)}")
    if nbytes > available:
        raise ValueError(f"'{name}' claims {shape} {dtype} ({human_bytes(nbytes)}), more than the file holds")
    return True


def read_npy(path, accept=lambda name, shape, dtype: True, limit=None):
    """The array of the .npy file `path`, read once its header passed accept(name, shape, dtype)
    ('name' is the file's name). ValueError if it is not an .npy file or refused."""
    with open_regular(path) as f:
        shape, _, dtype = _header(f)
        available = os.fstat(f.fileno()).st_size - f.tell()
        if not _check(os.path.basename(path), shape, dtype, available,
                      physical_memory() if limit is None else limit, accept):
            return None
        f.seek(0)  # read_array reads the header again
        return npy.read_array(f, allow_pickle=False)


def read_npz(path, wanted, accept=lambda name, shape, dtype: True, limit=None):
    """{name: array} of the members of the .npz file `path` named in `wanted`, each read once
    its header passed accept(name, shape, dtype). The other members are never decompressed,
    nor any member larger than `limit` bytes (default: the machine's memory)."""
    limit = physical_memory() if limit is None else limit
    arrays = {}
    with open_regular(path) as f, zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            name = info.filename[:-len(".npy")] if info.filename.endswith(".npy") else None
            if name not in wanted or name in arrays:
                continue
            with archive.open(info) as member:
                shape, _, dtype = _header(member)
            if _check(name, shape, dtype, info.file_size, limit, accept):
                with archive.open(info) as member:  # read_array reads the header again
                    arrays[name] = npy.read_array(member, allow_pickle=False)
    return arrays


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path` (file.name is its path, for a write
    that checks what it wrote), then rename it into place, so `path` always holds a whole file:
    the old one or the new one, never half of one, even if the process is killed or the machine
    loses power in between. The temporary file is named '<name>.<random>.part'; it never
    outlives a failure or a signal (a kill can leave one: see run_files.remove_stale_parts), nor
    do the folders made for `path`. OSError (the first one met) if the folder cannot be made or
    the file written."""
    folder = os.path.dirname(os.path.abspath(path))
    made, tmp = [], None
    try:
        make_folders(folder, made)
        while True:
            # The name is known before the file exists: a signal as os.open returns still
            # leaves the name to remove. 0o666 makes the file as open() makes one, as the
            # umask allows (a TA, or a course's shared folder, reads it).
            tmp = _part_name(folder, os.path.basename(path))
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, 0o666)
                break
            except FileExistsError:
                tmp = None  # somebody else's: never removed
        with open(tmp, "wb", opener=lambda *_: fd) as f:  # f.name is the temporary file's path
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
        tmp = None
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        remove_empty_folders(made)
        raise


def atomic_folder(path, fill):
    """Call fill(folder) on a temporary folder beside `path`, then rename it into place: `path`
    (absent, or an empty folder) is the whole folder or stays as it was. The temporary folder,
    '<name>.<random>.part', never outlives a failure or a signal, nor do the folders made for
    `path`."""
    parent = os.path.dirname(os.path.abspath(path))
    made, tmp = [], None
    try:
        make_folders(parent, made)
        while True:
            tmp = _part_name(parent, os.path.basename(os.path.abspath(path)))  # known before it exists
            try:
                os.mkdir(tmp, 0o777)  # as the umask allows
                break
            except FileExistsError:
                tmp = None
        fill(tmp)
        os.replace(tmp, path)  # over an empty folder too
        tmp = None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        remove_empty_folders(made)
        raise


def _part_name(folder, name):
    """A new temporary name beside an output: '<name>.<8 random hex digits>.part'."""
    return os.path.join(folder, f"{name}.{secrets.token_hex(4)}.part")


def make_folders(folder, made=None):
    """Make `folder` and its missing parents; the list of those made, deepest last: `made`
    itself when given, so that a caller holds every folder from the moment it is made. Each is
    named in the list before it is made, so a signal as os.mkdir returns still leaves it to
    remove_empty_folders. OSError if one cannot be made (those made until then are removed
    again)."""
    made = [] if made is None else made
    start = len(made)
    missing_parts = []
    while not os.path.lexists(folder):
        missing_parts.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    try:
        for part in reversed(missing_parts):
            made.append(part)
            try:
                os.mkdir(part)
            except OSError:
                made.pop()  # not made here: there already, or it cannot be
                raise
    except BaseException:
        remove_empty_folders(made[start:])
        del made[start:]
        raise
    return made


def check_folder_can_be_made(folder):
    """The folder itself, or the nearest of its parents that exists, if `folder` exists or can be
    made there; OSError if not: NotADirectoryError when a part of the path is a file,
    PermissionError when the existing folder is not writable (nothing is made here)."""
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not stat.S_ISDIR(os.stat(existing).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "a part of it is a file, not a folder", existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable", existing)
    return existing


def remove_empty_folders(made):
    """Remove the folders of `made` (as make_folders returned them) that are still empty."""
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def current_umask():
    """The process's umask, read without changing it where the system says it (Linux), else
    set and put back at once."""
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def part_pattern(path):
    """The glob of the temporary files atomic_write makes for `path`."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(glob.escape(folder), glob.escape(name) + ".*.part")


def same_file(a, b):
    """Whether paths a and b name one file (through links too), existing or not."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_regular_or_absent(path):
    """Raise OSError unless `path` is absent or a regular file (links followed): a device node,
    a FIFO or a directory must never be replaced by an output."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent (its folder is checked on its own)
        return
    if not stat.S_ISREG(mode):
        raise NotRegularFile(0, f"{file_kind(mode)}, not a regular file", str(path))


def missing(path):
    """True if nothing at all is at `path` (not even a dangling link or a loop of links)."""
    return not os.path.lexists(path)


def numbers(dtype):
    """Whether arrays of `dtype` hold numbers (not strings, bytes or objects)."""
    return dtype.kind in NUMBERS
