"""checkpoints.py: files written whole or not at all, checkpoints and the last state."""

import pytest

from plumbing import checkpoints


def test_write_atomically_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "file.bin"
    checkpoints.write_atomically(str(path), lambda f: f.write(b"old"))

    def failing(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoints.write_atomically(str(path), failing)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
