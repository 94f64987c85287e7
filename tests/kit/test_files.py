"""files.py: inputs opened only if regular (never blocking), arrays read only after their
header, outputs written whole or not at all."""

import io
import os
import time
import zipfile

import numpy as np
import pytest

from plumbing import files


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def header_claiming(shape, descr="<f8"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_open_regular_refuses_a_fifo_at_once_without_blocking(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    start = time.perf_counter()
    with pytest.raises(files.NotRegularFile, match="a FIFO, not a regular file"):
        files.open_regular(path)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("path, words", [("/dev/null", "a character device"), (".", "a directory")])
def test_open_regular_names_what_else_a_path_is(path, words):
    with pytest.raises(files.NotRegularFile, match=words):
        files.open_regular(path)


def test_open_regular_reads_a_regular_file(tmp_path):
    (tmp_path / "f").write_bytes(b"data")
    with files.open_regular(tmp_path / "f") as f:
        assert f.read() == b"data"


def test_a_loop_of_links_is_not_called_missing(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    assert not files.missing(tmp_path / "a") and files.missing(tmp_path / "c")
    with pytest.raises(OSError, match="symbolic links"):
        files.open_regular(tmp_path / "a")


def test_read_limited_refuses_more_than_its_limit(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 11)
    assert files.read_limited(tmp_path / "f", 11) == b"x" * 11
    with pytest.raises(ValueError, match="larger than 10 bytes"):
        files.read_limited(tmp_path / "f", 10)


def test_read_npz_reads_only_the_members_asked_for(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, a=np.arange(3.0), b=np.ones((2, 2)))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("huge.npy", header_claiming((10 ** 6, 10 ** 6)) + bytes(64))  # 8 TB, it says
    seen = []
    arrays = files.read_npz(path, {"a", "b"}, lambda name, shape, dtype: seen.append((name, shape)))
    assert sorted(arrays) == ["a", "b"] and sorted(seen) == [("a", (3,)), ("b", (2, 2))]
    np.testing.assert_array_equal(arrays["b"], np.ones((2, 2)))


def test_read_npz_refuses_a_member_larger_than_its_limit_or_than_its_entry(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, a=np.zeros(1000))
    with pytest.raises(ValueError, match="larger than 4.0 KiB"):
        files.read_npz(path, {"a"}, limit=4096)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.npy", header_claiming((10 ** 9,)) + bytes(64))
    with pytest.raises(ValueError, match="more than the file holds"):
        files.read_npz(path, {"a"})


def test_an_accept_that_returns_false_skips_the_member(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, a=np.zeros(3), b=np.ones(3))
    assert list(files.read_npz(path, {"a", "b"}, lambda name, shape, dtype: name != "a")) == ["b"]


def test_read_npy_checks_the_header_before_reading(tmp_path):
    path = tmp_path / "s.npy"
    path.write_bytes(header_claiming((10 ** 8, 5)) + bytes(80))
    with pytest.raises(ValueError, match="more than the file holds"):
        files.read_npy(path)
    np.save(path, np.ones((2, 5)))
    np.testing.assert_array_equal(files.read_npy(path), np.ones((2, 5)))
    with open(path, "wb") as f:
        np.savez(f, stats=np.ones((2, 5)))  # an .npz is a zip, not an .npy
    with pytest.raises(ValueError):
        files.read_npy(path)


def test_object_arrays_are_refused_before_unpickling(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        files.read_npy(path)


def test_atomic_write_leaves_the_old_file_and_no_part_when_writing_fails(tmp_path):
    path = tmp_path / "out.bin"
    files.atomic_write(path, lambda f: f.write(b"old"))

    def failing(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        files.atomic_write(path, failing)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_the_part_pattern_matches_atomic_writes_temporary_files(tmp_path):
    import glob

    path = tmp_path / "we[ird] name.npz"
    (tmp_path / "we[ird] name.npz.abc123.part").write_bytes(b"")
    (tmp_path / "other.npz.abc123.part").write_bytes(b"")
    assert [os.path.basename(p) for p in glob.glob(files.part_pattern(path))] == ["we[ird] name.npz.abc123.part"]


def test_same_file_sees_through_links_and_relative_names(tmp_path, monkeypatch):
    (tmp_path / "a").write_bytes(b"")
    os.link(tmp_path / "a", tmp_path / "hard")
    os.symlink(tmp_path / "a", tmp_path / "soft")
    monkeypatch.chdir(tmp_path)
    assert files.same_file("a", tmp_path / "a") and files.same_file("hard", "a") and files.same_file("soft", "a")
    assert files.same_file("new", tmp_path / "new") and not files.same_file("a", "new")


def test_human_bytes():
    assert [files.human_bytes(n) for n in (5, 1536, 3 << 30)] == ["5 bytes", "1.5 KiB", "3.0 GiB"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o000, 0o666)])
def test_atomic_write_makes_a_file_as_the_umask_allows_not_0600(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        assert files.current_umask() == umask
        files.atomic_write(tmp_path / "out.npy", lambda f: f.write(b"x"))
    finally:
        os.umask(previous)
    assert (tmp_path / "out.npy").stat().st_mode & 0o777 == mode


def test_every_output_of_a_training_run_is_made_as_the_umask_allows(tmp_path, small_npz):
    from conftest import write_config

    import train

    previous = os.umask(0o022)
    try:
        assert train.main([str(write_config(tmp_path, "logreg.yaml", small_npz)), "--no-display", "--epochs", "1"]) == 0
    finally:
        os.umask(previous)
    outputs = [p for p in (tmp_path / "runs").iterdir() if p.is_file()]
    assert outputs and all(p.stat().st_mode & 0o777 == 0o644 for p in outputs), \
        {p.name: oct(p.stat().st_mode & 0o777) for p in outputs}


@pytest.mark.parametrize("make", ["make_folders", "atomic_write", "atomic_folder"])
def test_a_signal_as_a_folder_is_made_leaves_no_folder(tmp_path, monkeypatch, make):
    """Ctrl-C right as os.mkdir returns (the folder is there, the call has not yet returned
    to the code that made it): the folder is still removed."""
    import os as os_module

    from plumbing import files

    real_mkdir = os_module.mkdir

    def mkdir_then_signal(path, *args, **kwargs):
        real_mkdir(path, *args, **kwargs)
        if not str(path).endswith(".part"):
            raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "mkdir", mkdir_then_signal)
    target = tmp_path / "a" / "b"
    with pytest.raises(KeyboardInterrupt):
        if make == "make_folders":
            files.make_folders(str(target))
        elif make == "atomic_write":
            files.atomic_write(str(target / "f.npy"), lambda f: f.write(b"x"))
        else:
            files.atomic_folder(str(target / "kit"), lambda folder: None)
    assert list(tmp_path.iterdir()) == []
