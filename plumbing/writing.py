"""The one writer of every file the kit and its tools write (checkpoints, statistics, the
last state, figures, data sets, the course tools' documents): whole or not at all, made as the
umask allows, and, when it cannot be written, one error that says what is on disk now.

    from plumbing.writing import write_atomically
    write_atomically("runs/logreg_stats.npy", lambda f: np.save(f, stats))
"""

import os

from plumbing.errors import OutputError
from plumbing.files import atomic_folder, atomic_write


def write_atomically(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place
    (files.atomic_write): `path` always holds a whole file, the old one or the new one.
    OutputError naming `path`, the reason and what `path` holds now if it cannot be written:
    whatever went wrong (no space, a quota, a name too long, a folder that cannot be made,
    ...), the old file is unchanged and nothing else is left behind."""
    _saying_what_is_there(atomic_write, path, write, "", "file")


def write_folder_atomically(path, fill):
    """Call fill(folder) on a temporary folder, renamed to `path` at the end (files.atomic_folder):
    `path` is the whole folder or stays as it was. OutputError naming `path`, the reason and
    what is there now if it cannot be written."""
    _saying_what_is_there(atomic_folder, path, fill, "the folder ", "folder")


def _saying_what_is_there(atomic, path, content, what, kind):
    """atomic(path, content), its OSError turned into one OutputError true to the disk."""
    existed = os.path.lexists(path)
    try:
        atomic(path, content)
    except OSError as e:
        now = "what was there is unchanged" if existed else f"no {kind} was made"
        raise OutputError(f"cannot write {what}{path} ({e.strerror or e}); {now}") from None
