"""data/usps.py: content digests, the prepared npz, and the fetcher (mirror and HTTP),
including corrupted and unreachable sources. Everything is written under tmp."""

import functools
import gzip
import hashlib
import http.server
import re
import socket
import threading

import numpy as np
import pytest

from data import usps

NAMES = ("zip.train.gz", "zip.test.gz")


def readme_tables(mirror):
    """{file: (digest, rows, class counts)} parsed from the mirror's README.md."""
    text = (mirror / "README.md").read_text()
    digests = dict(re.findall(r"^\| (zip\.\w+\.gz) \| ([0-9a-f]{64}) \|$", text, re.M))
    counts = {name: (int(rows), [int(c) for c in classes.split()])
              for name, rows, classes in re.findall(r"^\| (zip\.\w+\.gz) \| (\d+) \| ([\d ]+) \|$", text, re.M)}
    assert set(digests) == set(counts) == set(NAMES)
    return {name: (digests[name],) + counts[name] for name in NAMES}


def read_table(path):
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f)


@pytest.fixture(scope="module")
def mirror_tables(usps_mirror):
    return {name: read_table(usps_mirror / name) for name in NAMES}


@pytest.fixture
def no_env_mirror(monkeypatch):
    """prepare() falls back to $USPS_MIRROR when given no mirror: tests of downloads unset it."""
    monkeypatch.delenv("USPS_MIRROR", raising=False)


# ----------------------------------------------------------------------------------------
# digests
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_mirror_files_have_the_readme_digest_rows_and_class_counts(usps_mirror, mirror_tables, name):
    if not (usps_mirror / "README.md").is_file():  # the kit's data/downloads/ holds the files alone
        pytest.skip(f"{usps_mirror} has no README.md giving the files' digests and counts")
    digest, rows, class_counts = readme_tables(usps_mirror)[name]
    table = mirror_tables[name]
    labels, pixels = table[:, 0], table[:, 1:]
    # The README's definition, computed here independently of the module.
    blob = labels.astype(np.uint8).tobytes() + np.round(pixels * 1000).astype("<i2").tobytes()
    assert hashlib.sha256(blob).hexdigest() == digest
    assert usps.content_digest(labels, pixels) == digest
    assert usps.FILES[name] == (rows, digest)
    assert table.shape == (rows, 257)
    assert np.bincount(labels.astype(int), minlength=10).tolist() == class_counts
    verified_labels, verified_pixels = usps.verify(str(usps_mirror / name), name)
    np.testing.assert_array_equal(verified_labels, labels)
    np.testing.assert_array_equal(verified_pixels, pixels)


def test_content_digest_changes_with_one_pixel_or_one_label(mirror_tables):
    table = mirror_tables["zip.test.gz"][:50]
    labels, pixels = table[:, 0].astype(int), table[:, 1:].copy()
    reference = usps.content_digest(labels, pixels)
    pixels[10, 100] += 0.001
    assert usps.content_digest(labels, pixels) != reference
    pixels[10, 100] -= 0.001
    assert usps.content_digest(labels, pixels) == reference
    labels[3] = (labels[3] + 1) % 10
    assert usps.content_digest(labels, pixels) != reference


# ----------------------------------------------------------------------------------------
# the prepared npz
# ----------------------------------------------------------------------------------------

def test_prepared_npz_has_the_right_keys_shapes_pixels_and_one_hot_labels(usps_arrays):
    expected_rows = {"train": 6291, "validation": 1000, "test": 2007}
    assert set(usps_arrays) == {k for name in expected_rows for k in (name, name + "_labels")}
    for name, rows in expected_rows.items():
        x, t = usps_arrays[name], usps_arrays[name + "_labels"]
        assert x.shape == (rows, 256) and t.shape == (rows, 10)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert np.isin(t, [0.0, 1.0]).all() and (t.sum(axis=1) == 1).all()
        assert (x == 0).mean() > 0.3  # background is exactly 0 after scaling


def test_prepared_sets_are_the_published_digits_scaled_to_unit_interval(usps_arrays, mirror_tables):
    test_table = mirror_tables["zip.test.gz"]
    np.testing.assert_allclose(usps_arrays["test"], (test_table[:, 1:] + 1) / 2, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(usps_arrays["test_labels"].argmax(1), test_table[:, 0])
    # train + validation is the whole training file, each digit exactly once.
    train_table = mirror_tables["zip.train.gz"]
    both = np.concatenate([usps_arrays["train"], usps_arrays["validation"]])
    labels = np.concatenate([usps_arrays["train_labels"], usps_arrays["validation_labels"]]).argmax(1)
    expected = (train_table[:, 1:] + 1) / 2
    rows = np.column_stack([labels, np.round(both * 2000)])
    expected_rows = np.column_stack([train_table[:, 0], np.round(expected * 2000)])
    np.testing.assert_array_equal(rows[np.lexsort(rows.T)], expected_rows[np.lexsort(expected_rows.T)])


def test_first_training_digit_is_the_readme_six(usps_arrays):
    # Rows keep file order within each set, so file row 0 is train[0] or validation[0].
    candidates = [(usps_arrays[k][0], usps_arrays[k + "_labels"][0]) for k in ("train", "validation")]
    found = [x for x, t in candidates
             if t.argmax() == 6 and np.allclose(x[x > 0][:3], (np.array([-0.631, 0.862, -0.167]) + 1) / 2)]
    assert len(found) == 1


def test_validation_split_is_fixed_across_preparations_and_mirror_comes_from_env(
        tmp_path, usps_mirror, usps_arrays, monkeypatch):
    monkeypatch.setenv("USPS_MIRROR", str(usps_mirror))  # no mirror argument: $USPS_MIRROR serves
    again = usps.prepare(npz_path=str(tmp_path / "again" / "usps.npz"), base_url="http://127.0.0.1:1/")
    with np.load(again) as f:
        assert set(f.files) == set(usps_arrays)
        for key in f.files:
            np.testing.assert_array_equal(f[key], usps_arrays[key])


def test_prepare_reuses_verified_files_in_its_downloads_folder(tmp_path, usps_mirror, no_env_mirror):
    folder = tmp_path / "downloads"
    copy_mirror(usps_mirror, folder)
    # No mirror and an unreachable URL: only the kept copies can serve.
    usps.prepare(npz_path=str(tmp_path / "data" / "usps.npz"), base_url="http://127.0.0.1:1/", downloads=str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["zip.test.gz", "zip.train.gz"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["usps.npz"]


def test_prepare_replaces_a_damaged_kept_file_from_the_mirror(tmp_path, usps_mirror):
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "zip.test.gz").write_bytes(b"not gzip at all")
    usps.prepare(npz_path=str(tmp_path / "usps.npz"), mirror=str(usps_mirror), downloads=str(folder))
    assert (folder / "zip.test.gz").read_bytes() == (usps_mirror / "zip.test.gz").read_bytes()


@pytest.mark.parametrize("theirs", [b"not gzip at all", None])  # damaged, or the real file, of the user's
def test_a_file_beside_the_npz_the_user_named_is_never_replaced(tmp_path, usps_mirror, theirs):
    folder = tmp_path / "mine"
    folder.mkdir()
    mine = theirs if theirs is not None else (usps_mirror / "zip.train.gz").read_bytes()
    (folder / "zip.train.gz").write_bytes(mine)
    (folder / "zip.train.gz").chmod(0o640)
    assert usps.main(["--mirror", str(usps_mirror), "--out", str(folder / "usps.npz")]) == 0
    assert (folder / "zip.train.gz").read_bytes() == mine
    assert (folder / "zip.train.gz").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in folder.iterdir()) == ["usps.npz", "zip.train.gz"]


def test_ensure_leaves_an_existing_npz_alone(tmp_path):
    path = tmp_path / "usps.npz"
    path.write_bytes(b"whatever")
    assert usps.ensure(str(path), mirror=str(tmp_path / "nowhere")) == str(path)
    assert path.read_bytes() == b"whatever"


# ----------------------------------------------------------------------------------------
# fetching
# ----------------------------------------------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        QuietHandler.requests.append(self.path)


@pytest.fixture
def http_server():
    """serve(directory) -> base URL of a local HTTP server on 127.0.0.1 serving that folder."""
    servers = []

    def serve(directory):
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    QuietHandler.requests = []
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@functools.cache
def corrupted_bytes(path):
    """The gzip'd text of `path` with one pixel of one digit changed (and still well-formed)."""
    with open(path, "rb") as f:
        lines = gzip.decompress(f.read()).decode().splitlines(keepends=True)
    values = lines[5].split()
    old = float(values[100])
    values[100] = f"{old + 0.5 if old < 0 else old - 0.5:.3f}"
    lines[5] = " ".join(values) + "\n"
    return gzip.compress("".join(lines).encode(), compresslevel=1)


def copy_mirror(usps_mirror, folder, corrupt=None):
    """Copy both files into folder; for `corrupt`, re-gzip its text with one pixel changed."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        if name == corrupt:
            data = corrupted_bytes(str(usps_mirror / name))
        else:
            data = (usps_mirror / name).read_bytes()
        (folder / name).write_bytes(data)


def test_fetcher_downloads_from_a_local_http_server(tmp_path, usps_mirror, usps_arrays, http_server, no_env_mirror):
    copy_mirror(usps_mirror, tmp_path / "served")
    base_url = http_server(tmp_path / "served")
    dest = tmp_path / "dest"
    path = usps.prepare(npz_path=str(dest / "usps.npz"), base_url=base_url, downloads=str(tmp_path / "dl"))
    assert sorted(QuietHandler.requests) == ["/zip.test.gz", "/zip.train.gz"]
    with np.load(path) as f:
        for key in f.files:
            np.testing.assert_array_equal(f[key], usps_arrays[key])
    assert sorted(p.name for p in dest.iterdir()) == ["usps.npz"]
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["zip.test.gz", "zip.train.gz"]


@pytest.mark.parametrize("corrupt", NAMES)
@pytest.mark.parametrize("source", ["http", "mirror"])
def test_corrupted_file_is_rejected_and_leaves_nothing_behind(tmp_path, usps_mirror, http_server, no_env_mirror,
                                                              source, corrupt):
    served = tmp_path / "served"
    copy_mirror(usps_mirror, served, corrupt=corrupt)
    assert usps.read_digits(str(served / corrupt))[1].shape[1] == 256  # well-formed: only the digest tells
    dest = tmp_path / "dest"
    kwargs = {"base_url": http_server(served)} if source == "http" else {"mirror": str(served)}
    with pytest.raises(usps.DataError, match="digest"):
        usps.prepare(npz_path=str(dest / "usps.npz"), **kwargs)
    left = sorted(p.name for p in dest.iterdir()) if dest.exists() else []  # a folder made for nothing goes too
    assert corrupt not in left and "usps.npz" not in left
    assert not [name for name in left if name.endswith(".part")]
    # A file that did verify may stay (it will be reused); nothing else.
    assert set(left) <= set(NAMES) - {corrupt}


def test_truncated_download_is_rejected_and_leaves_nothing_behind(tmp_path, usps_mirror, http_server, no_env_mirror):
    served = tmp_path / "served"
    copy_mirror(usps_mirror, served)
    data = (served / "zip.train.gz").read_bytes()
    (served / "zip.train.gz").write_bytes(data[:len(data) // 2])
    dest = tmp_path / "dest"
    with pytest.raises(usps.DataError, match="zip.train.gz"):
        usps.prepare(npz_path=str(dest / "usps.npz"), base_url=http_server(served))
    assert not dest.exists() or list(dest.iterdir()) == []


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_gives_data_error_and_leaves_nothing_behind(tmp_path, no_env_mirror):
    dest = tmp_path / "dest"
    with pytest.raises(usps.DataError, match="cannot download"):
        usps.prepare(npz_path=str(dest / "usps.npz"), base_url=f"http://127.0.0.1:{_closed_port()}/")
    assert not dest.exists() or list(dest.iterdir()) == []


def test_missing_file_on_the_server_gives_data_error(tmp_path, usps_mirror, http_server, no_env_mirror):
    served = tmp_path / "served"
    copy_mirror(usps_mirror, served)
    (served / "zip.test.gz").unlink()
    dest = tmp_path / "dest"
    with pytest.raises(usps.DataError, match="zip.test.gz"):
        usps.prepare(npz_path=str(dest / "usps.npz"), base_url=http_server(served))
    assert not (dest / "usps.npz").exists()


def test_missing_mirror_gives_data_error(tmp_path):
    with pytest.raises(usps.DataError, match="mirror"):
        usps.prepare(npz_path=str(tmp_path / "dest" / "usps.npz"), mirror=str(tmp_path / "empty"))
    assert not (tmp_path / "dest").exists()  # nothing made, not even the folder


def test_main_reports_a_data_error_in_one_line_and_returns_2(tmp_path, capsys, no_env_mirror):
    code = usps.main(["--url", f"http://127.0.0.1:{_closed_port()}/", "--out", str(tmp_path / "usps.npz")])
    assert code == 2  # bad input, as every script exits
    err = capsys.readouterr().err
    assert err.startswith("usps: error:") and len(err.strip().splitlines()) == 1
