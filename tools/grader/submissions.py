"""A student's hand-in, read before anything of it runs: a folder or a zip holding fc_layer.py
and conv_layer.py anywhere inside it (zips inside a folder are read too). The one place the
grader reads a submission; it never imports it. docs/grading.md ("What is read") has the
rules and the reason a student sees for each:

- Only regular files, never through a symbolic link: each folder is opened relative to the
  one above it with O_NOFOLLOW, each file checked with lstat and again, once open, with
  fstat. A link (absolute or relative, to a file or a folder, dangling or not) is not
  followed; a FIFO, a device or a socket is not opened for reading.
- Sizes are checked before a byte is read: a file's from the file system, a zip member's
  from the zip's header; and at most one byte more than the bound is ever read.
- Source is decoded as Python decodes it (tools/course/source_text.py).
- A zip is read member by member under the same rules: links, special files, encrypted
  members, paths that leave the zip ('..', absolute) and members too large are refused;
  nothing is extracted to disk.
- Where a name occurs more than once, the copy graded is the one with the most pieces
  written (differing from the blank handout), then the shallowest, then the first by path;
  the others are named in the notes.
"""

import collections
import os
import stat
import zipfile
from dataclasses import dataclass

from plumbing.errors import UserError
from plumbing.files import file_kind, human_bytes
from tools.course.regions import PIECES, find_regions
from tools.course.source_text import MAX_FILE_BYTES, SourceError, as_utf8, decode_source

MAX_ZIP_BYTES = 64 << 20   # a zip: the submission itself or one inside a folder
MAX_ENTRIES = 20000        # folder entries and zip members looked at, in all
MAX_DEPTH = 32             # folders deep
NOT_HAND_IN = "__MACOSX"   # macOS's copies of the files' attributes, named like the files
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


class SubmissionError(UserError):
    """A submission that cannot be graded at all (not a folder or zip): bad input."""


@dataclass
class Copy:
    """One file named like a student file, found in a submission."""
    name: str          # "fc_layer.py" or "conv_layer.py"
    where: str         # its place in the submission, for messages ("a2/fc_layer.py", "a2.zip:fc_layer.py")
    depth: int         # folders above it inside the submission (a zip's own folder counted)
    order: int         # found in this order
    text: str = None   # the decoded source, or None when refused
    problem: str = ""  # why it was refused
    written: int = 0   # pieces whose region differs from the blank handout's

    def describe(self):
        total = len(PIECES[self.name])
        if self.written == 0:
            return "blank"
        return "all pieces written" if self.written == total else f"{self.written} of {total} pieces written"


class _Reader:
    def __init__(self):
        self.copies = []
        self.skipped = []   # what was not looked into, for messages: links, zips in zips, too-large zips
        self.entries = 0
        self.stopped = False

    def count(self):
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            self.stopped = True
        return not self.stopped

    def add(self, name, where, depth, data=None, problem=""):
        copy = Copy(name, where, depth, len(self.copies))
        if not problem:
            try:
                copy.text = as_utf8(decode_source(data, where))
                copy.written = _written(copy.text, name)
            except SourceError as e:
                problem = str(e)
        copy.problem = problem
        self.copies.append(copy)

    # Folders -------------------------------------------------------------------------
    def walk(self, root_fd):
        """Every entry of the open folder root_fd, never through a link, a level at a time (the
        shallow files first, whatever a deep .git or venv holds)."""
        queue = collections.deque([()])
        while queue and not self.stopped:
            parts = queue.popleft()
            dir_fd = self.open_folder(root_fd, parts)
            if dir_fd is None:
                continue
            try:
                self.folder(dir_fd, "".join(p + "/" for p in parts), len(parts), parts, queue)
            finally:
                os.close(dir_fd)

    def open_folder(self, root_fd, parts):
        """A descriptor of the folder root/parts, each step opened from the one above it
        without following a link; None (and named) if that fails."""
        fd = os.dup(root_fd)
        try:
            for part in parts:
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = sub
        except OSError as e:  # e.g. made a link since it was looked at
            os.close(fd)
            self.skipped.append(f"{'/'.join(parts)}/ ({e.strerror})")
            return None
        return fd

    def folder(self, dir_fd, prefix, depth, parts, queue):
        with os.scandir(dir_fd) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            if not self.count():
                return
            where = prefix + name
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError as e:
                if name in PIECES:
                    self.add(name, where, depth, problem=f"{where} cannot be read ({e.strerror})")
                continue
            if stat.S_ISLNK(st.st_mode):
                self.link(dir_fd, name, where, depth)
            elif stat.S_ISDIR(st.st_mode):
                if name == NOT_HAND_IN:
                    continue
                if depth + 1 >= MAX_DEPTH:
                    self.skipped.append(f"{where}/ (more than {MAX_DEPTH} folders deep)")
                    continue
                queue.append(parts + (name,))
            elif name in PIECES:
                data, problem = self.read_file(dir_fd, name, where, st)
                self.add(name, where, depth, data, problem)
            elif name.lower().endswith(".zip") and stat.S_ISREG(st.st_mode):
                if st.st_size > MAX_ZIP_BYTES:
                    self.skipped.append(f"{where} ({human_bytes(st.st_size)}, more than the "
                                        f"{human_bytes(MAX_ZIP_BYTES)} a zip may be)")
                    continue
                try:
                    fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
                except OSError as e:
                    self.skipped.append(f"{where} ({e.strerror})")
                    continue
                with os.fdopen(fd, "rb") as f:
                    if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                        self.read_zip(f, where + ":", depth)

    def link(self, dir_fd, name, where, depth):
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            target = "?"
        if name in PIECES:
            self.add(name, where, depth, problem=f"{where} is a symbolic link (to {target}): only regular files "
                     "are read, never through a link; hand in the file itself")
        else:
            self.skipped.append(f"{where} (a symbolic link to {target}: links are not followed)")

    @staticmethod
    def read_file(dir_fd, name, where, st):
        """(bytes, "") of a regular file, or (None, why not); its size checked before reading."""
        if not stat.S_ISREG(st.st_mode):
            return None, f"{where} is {file_kind(st.st_mode)}, not a regular file: not read"
        if st.st_size > MAX_FILE_BYTES:
            return None, _too_large(where, st.st_size)
        try:
            fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            return None, f"{where} cannot be read ({e.strerror})"
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)  # what was opened, which may not be what was looked at
            if not stat.S_ISREG(st.st_mode):
                return None, f"{where} is {file_kind(st.st_mode)}, not a regular file: not read"
            if st.st_size > MAX_FILE_BYTES:
                return None, _too_large(where, st.st_size)
            os.set_blocking(fd, True)
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return None, _too_large(where, len(data))
        return data, ""

    # Zips ----------------------------------------------------------------------------
    def read_zip(self, fileobj, prefix, depth):
        """The members of the zip open in `fileobj` named like a student file."""
        label = prefix.rstrip(":") or "the zip"
        try:
            archive = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
            self.skipped.append(f"{label} (not a zip that can be read: {e})")
            return
        with archive:
            for info in archive.infolist():
                if not self.count():
                    return
                self.member(archive, info, prefix, depth)

    def member(self, archive, info, prefix, depth):
        path = info.filename.replace("\\", "/")  # some Windows tools write backslashes
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts or NOT_HAND_IN in parts or info.is_dir():
            return
        name = parts[-1]
        where = prefix + path
        mode = info.external_attr >> 16
        if name.lower().endswith(".zip") and name not in PIECES:
            self.skipped.append(f"{where} (a zip inside a zip is not opened)")
            return
        if name not in PIECES:
            return
        here = depth + len(parts) - 1
        if path.startswith("/") or ".." in parts or (len(parts[0]) > 1 and parts[0][1] == ":"):
            self.add(name, where, here, problem=f"{where}: a path in the zip that leaves its folder ('..' or "
                     "absolute): not read")
        elif stat.S_ISLNK(mode):
            target = _bounded_read(archive, info, 4096)[0] if info.file_size <= 4096 else b"?"
            self.add(name, where, here, problem=f"{where} is a symbolic link in the zip (to "
                     f"{target.decode('utf-8', 'replace') if target else '?'}): only regular files are read, "
                     "never through a link; hand in the file itself")
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            self.add(name, where, here, problem=f"{where} is {file_kind(mode)} in the zip, not a regular file: "
                     "not read")
        elif info.flag_bits & 0x1:
            self.add(name, where, here, problem=f"{where} is encrypted in the zip: not read")
        elif info.file_size > MAX_FILE_BYTES:
            self.add(name, where, here, problem=_too_large(where, info.file_size) + " (the zip's header says so)")
        else:
            data, problem = _bounded_read(archive, info, MAX_FILE_BYTES)
            self.add(name, where, here, data, problem and f"{where} cannot be read from the zip ({problem})")


def _bounded_read(archive, info, limit):
    """(bytes, "") of a zip member, reading at most limit + 1 bytes, or (None, why not)."""
    try:
        with archive.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as e:
        return None, str(e) or type(e).__name__
    if len(data) > limit:
        return None, f"more than {human_bytes(limit)} once uncompressed, though its header said less"
    return data, ""


def _listed(items, most=5):
    shown = "; ".join(items[:most])
    return shown + (f"; and {len(items) - most} more" if len(items) > most else "")


def _too_large(where, size):
    return f"{where} is {human_bytes(size)}, more than the {human_bytes(MAX_FILE_BYTES)} a file may be: not read"


def _written(text, name):
    """How many of the file's pieces differ from the blank handout (the blank's region still
    raises NotImplementedError; comments aside)."""
    try:
        found, _ = find_regions(text, name, PIECES[name])
    except (SyntaxError, ValueError):
        return 0
    written = 0
    for regions in found.values():
        code = "\n".join(line for r in regions for line in r.lines if not line.strip().startswith("#"))
        written += bool(code.strip()) and "NotImplementedError" not in code
    return written


def _choose(name, copies, skipped, notes):
    """The text graded for `name` (or '!' and the reason), from its copies; notes name the rest."""
    usable = [c for c in copies if c.text is not None]
    refused = [c for c in copies if c.text is None]
    if not usable:
        if refused:
            return "!" + "; ".join(c.problem for c in refused)
        return f"!no {name} in the submission" + (f" (not looked into: {_listed(skipped)})" if skipped else "")
    ranked = sorted(usable, key=lambda c: (-c.written, c.depth, c.where, c.order))
    chosen = ranked[0]
    if len(copies) > 1:
        others = []
        for c in ranked[1:]:
            if c.text == chosen.text:
                others.append(f"{c.where} (the same text)")
            elif (c.written, c.depth) == (chosen.written, chosen.depth):
                others.append(f"{c.where} ({c.describe()}, as deep: a tie, broken by path order)")
            else:
                others.append(f"{c.where} ({c.describe()})")
        others += [f"{c.where} (refused: {c.problem})" for c in refused]
        notes.append(f"{len(copies)} files named {name} in the submission: graded {chosen.where} "
                     f"({chosen.describe()}); the rule: most pieces written, then the shallowest, then the first "
                     f"by path; not graded: {'; '.join(others)}")
    return chosen.text


def read_submission(path, notes=None):
    """{file name: source text, or '!' and why not} for the two student files of the
    submission `path` (a folder or a zip; the path itself may be a link, staff's own).
    Appends to `notes` what a student should know (duplicates, links not followed).
    Raises SubmissionError if `path` is neither a folder nor a zip."""
    notes = [] if notes is None else notes
    reader = _Reader()
    path = os.fspath(path)
    if os.path.isdir(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            reader.walk(fd)
        finally:
            os.close(fd)
    elif os.path.isfile(path):
        try:
            f = open(path, "rb")
        except OSError as e:
            raise SubmissionError(f"{path}: cannot be read ({e.strerror})") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if not zipfile.is_zipfile(f):
                raise SubmissionError(f"{path}: not a folder or a zip file")
            if size > MAX_ZIP_BYTES:
                why = f"the zip is {human_bytes(size)}, more than the {human_bytes(MAX_ZIP_BYTES)} a zip may be"
                return {name: "!" + why for name in PIECES}
            reader.read_zip(f, "", 0)
    elif os.path.lexists(path):
        raise SubmissionError(f"{path}: not a folder or a zip file")
    else:
        raise SubmissionError(f"{path}: no such file or folder")
    if reader.stopped:
        notes.append(f"stopped looking after {MAX_ENTRIES} files and folders")
    if reader.skipped:
        notes.append("not looked into: " + _listed(reader.skipped))
    found = {}
    for name in PIECES:
        copies = [c for c in reader.copies if c.name == name]
        found[name] = _choose(name, copies, reader.skipped, notes)
    return found
