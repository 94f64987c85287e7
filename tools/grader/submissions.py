"""A student's hand-in: a folder or a zip holding fc_layer.py and conv_layer.py, anywhere
inside it. Read as text, at most MAX_FILE_BYTES a file; the grader never imports it."""

import os
import zipfile
from pathlib import Path

from plumbing.errors import UserError
from tools.course.regions import PIECES

MAX_FILE_BYTES = 1 << 20


class SubmissionError(UserError):
    """A submission that cannot be graded at all (not a folder or zip): bad input."""


def read_submission(path):
    """{file name: source text or an error string prefixed by '!'} for the two student files."""
    path = Path(path)
    found = {}
    if path.is_dir():
        for name in PIECES:
            hits = sorted(p for p in path.rglob(name) if "__MACOSX" not in p.parts and p.is_file())
            if len(hits) > 1:
                found[name] = f"!{len(hits)} files named {name} in the submission"
            elif hits:
                data = hits[0].read_bytes()[:MAX_FILE_BYTES + 1]
                found[name] = data
        return {name: _decode(name, data) for name, data in found.items()}
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                for name in PIECES:
                    members = [m for m in archive.infolist() if not m.is_dir()
                               and os.path.basename(m.filename) == name and "__MACOSX" not in m.filename]
                    if len(members) > 1:
                        found[name] = f"!{len(members)} files named {name} in the zip"
                    elif members:
                        if members[0].file_size > MAX_FILE_BYTES:
                            found[name] = f"!{name} is larger than {MAX_FILE_BYTES} bytes"
                        else:
                            found[name] = archive.read(members[0])
        except (zipfile.BadZipFile, OSError, RuntimeError) as e:
            return {name: f"!the zip cannot be read ({e})" for name in PIECES}
        return {name: _decode(name, data) for name, data in found.items()}
    if path.exists():
        raise SubmissionError(f"{path}: not a folder or a zip file")
    raise SubmissionError(f"{path}: no such file or folder")


def _decode(name, data):
    if isinstance(data, str):
        return data
    if len(data) > MAX_FILE_BYTES:
        return f"!{name} is larger than {MAX_FILE_BYTES} bytes"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"!{name} is not UTF-8 text"
