"""data/fetch.py and the five fetchers (mnist, norb, cifar10, cifar100, svhn) on small mirrors in the
published formats: the npz each writes, downloads that resume or restart, checksums, --no-checksum,
and bad files (truncated, another magic number, a wrong checksum, labels out of range): one line,
exit status 2, nothing left behind."""

import argparse
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest
from published_formats import write_mirror

from data import cifar10, cifar100, fetch, mnist, norb, svhn
from data.formats import read_cifar, read_idx, read_norb, read_svhn
from plumbing.errors import DataError

MODULES = {"mnist": mnist, "norb": norb, "cifar10": cifar10, "cifar100": cifar100, "svhn": svhn}
SCALE = 0.004  # 240 MNIST training images, 97 NORB pairs, ...


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory):
    """{data set: folder of its published files, synthetic, small}."""
    root = tmp_path_factory.mktemp("mirrors")
    rng = np.random.default_rng(31)
    for name in MODULES:
        write_mirror(str(root / name), name, SCALE, rng)
    return {name: root / name for name in MODULES}


def published(name, folder):
    """{set: (uint8 images (N, C, H, W), labels)} read from the mirror's files by the readers
    (tested against the published layouts in test_formats.py), the test set as published."""
    f = lambda n: str(folder / n)  # noqa: E731
    if name == "mnist":
        return {s: (read_idx(f(f"{s}-images-idx3-ubyte.gz"))[:, None], read_idx(f(f"{s}-labels-idx1-ubyte.gz")))
                for s in ("train", "t10k")}
    if name == "norb":
        return {s: (read_norb(f(f"{norb.TRAIN if s == 'train' else norb.TEST}-dat.mat.gz")),
                    read_norb(f(f"{norb.TRAIN if s == 'train' else norb.TEST}-cat.mat.gz"))) for s in ("train", "t10k")}
    if name == "svhn":
        return {"train": read_svhn(f("train_32x32.mat")), "t10k": read_svhn(f("test_32x32.mat"))}
    if name == "cifar10":
        batches = read_cifar(f("cifar-10-python.tar.gz"), cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,), (b"labels",))
        join = lambda ns: (np.concatenate([batches[n][0] for n in ns]),  # noqa: E731
                           np.concatenate([batches[n][1][b"labels"] for n in ns]))
        return {"train": join(cifar10.TRAIN_BATCHES), "t10k": join((cifar10.TEST_BATCH,))}
    batches = read_cifar(f("cifar-100-python.tar.gz"), (cifar100.TRAIN, cifar100.TEST), (b"fine_labels",))
    return {"train": (batches[cifar100.TRAIN][0], batches[cifar100.TRAIN][1][b"fine_labels"]),
            "t10k": (batches[cifar100.TEST][0], batches[cifar100.TEST][1][b"fine_labels"])}


def run(name, *argv):
    return MODULES[name].main(list(map(str, argv)))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_fetcher_writes_the_kit_npz_from_its_published_files(tmp_path, mirrors, name, capsys):
    out = tmp_path / "out" / f"{name}.npz"
    assert run(name, "--mirror", mirrors[name], "--no-checksum", "--out", out, "--size", "96") == 0 \
        if name == "norb" else run(name, "--mirror", mirrors[name], "--no-checksum", "--out", out) == 0
    said = capsys.readouterr().out
    assert "--no-checksum: the files are read as given, not checked" in said
    source = published(name, mirrors[name])
    dataset = MODULES[name].DATASET
    classes = dataset.num_classes
    with np.load(out) as f:
        arrays = {key: f[key] for key in f.files}
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    assert sorted(os.listdir(mirrors[name])) == sorted(s.name for s in dataset.files)
    pixels = int(np.prod(source["train"][0].shape[1:]))
    for key in ("train", "validation", "test"):
        x, t = arrays[key], arrays[key + "_labels"]
        assert x.dtype == np.float32 and x.shape[1] == pixels and 0 <= x.min() and x.max() <= 1
        assert t.shape == (len(x), classes) and (t.sum(axis=1) == 1).all() and np.isin(t, (0, 1)).all()
    # The test set is the published one, in order, scaled byte / 255.
    images, labels = source["t10k"]
    np.testing.assert_array_equal(arrays["test"], (images.reshape(len(images), -1) / np.float32(255)))
    np.testing.assert_array_equal(arrays["test_labels"].argmax(1), labels)
    # Train + validation: the training file, each image once, the validation part of the documented size.
    images, labels = source["train"]
    assert len(arrays["validation"]) == fetch.validation_size(len(labels), dataset.num_validation)
    both = np.concatenate([arrays["train"], arrays["validation"]])
    both_labels = np.concatenate([arrays["train_labels"], arrays["validation_labels"]]).argmax(1)
    weights = np.random.default_rng(0).integers(1, 1000, pixels + 1)  # a row's key: exact in int64
    rows = np.column_stack([both_labels, np.round(both * 255)]).astype(np.int64) @ weights
    expected = np.column_stack([labels, images.reshape(len(images), -1)]).astype(np.int64) @ weights
    np.testing.assert_array_equal(np.sort(rows), np.sort(expected))


def test_the_validation_split_is_fixed(tmp_path, mirrors):
    for out in ("a.npz", "b.npz"):
        assert run("mnist", "--mirror", mirrors["mnist"], "--no-checksum", "--out", tmp_path / out) == 0
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        np.testing.assert_array_equal(a["validation"], b["validation"])


def test_validation_size_is_documented_size_or_a_tenth_of_a_small_file():
    assert fetch.validation_size(60000, 5000) == 5000 and fetch.validation_size(24300, 5000) == 5000
    assert fetch.validation_size(9999, 5000) == 999 and fetch.validation_size(5, 5000) == 1


def test_cifar100_coarse_labels_give_20_classes(tmp_path, mirrors):
    assert run("cifar100", "--mirror", mirrors["cifar100"], "--no-checksum", "--labels", "coarse",
               "--out", tmp_path / "c.npz") == 0
    source = read_cifar(str(mirrors["cifar100"] / "cifar-100-python.tar.gz"), (cifar100.TEST,), (b"coarse_labels",))
    with np.load(tmp_path / "c.npz") as f:
        assert f["train_labels"].shape[1] == 20
        np.testing.assert_array_equal(f["test_labels"].argmax(1), source[cifar100.TEST][1][b"coarse_labels"])


def test_norb_32_is_the_mean_of_3x3_blocks(tmp_path, mirrors):
    assert run("norb", "--mirror", mirrors["norb"], "--no-checksum", "--out", tmp_path / "n.npz") == 0
    images = read_norb(str(mirrors["norb"] / f"{norb.TEST}-dat.mat.gz"))
    with np.load(tmp_path / "n.npz") as f:
        test = f["test"].reshape(-1, 2, 32, 32)
    np.testing.assert_allclose(test[:, 1, 4, 7], images[:, 1, 12:15, 21:24].mean(axis=(1, 2)) / 255, rtol=1e-6)


def test_published_checksums_are_checked_and_a_mismatch_leaves_nothing(tmp_path, mirrors, capsys):
    out = tmp_path / "out" / "mnist.npz"
    assert run("mnist", "--mirror", mirrors["mnist"], "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bytes, the published" in err and "--no-checksum" in err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    # Of the published size, another content: the digests tell.
    path = mirrors["mnist"] / "t10k-labels-idx1-ubyte.gz"
    for kind in ("md5", "sha256"):
        source = fetch.Source(path.name, size=path.stat().st_size, **{kind: "0" * (32 if kind == "md5" else 64)})
        with pytest.raises(DataError, match=f"{kind} [0-9a-f]+ is not the published {path.name}'s"):
            fetch.check_published(str(path), source, str(path))
        right = {kind: getattr(hashlib, kind)(path.read_bytes()).hexdigest()}
        fetch.check_published(str(path), fetch.Source(path.name, size=path.stat().st_size, **right), str(path))


# --- bad files: each data set, each fault -------------------------------------------------------
def fault_files(name, folder, fault):
    """Damage the mirror copy in `folder` the way `fault` says; return the file damaged."""
    files = sorted(s.name for s in MODULES[name].DATASET.files)
    target = folder / files[-1]
    data = target.read_bytes()
    if fault == "truncated":
        target.write_bytes(data[:len(data) * 2 // 3])
    elif fault == "magic":
        raw = gzip.decompress(data) if target.suffix == ".gz" and name != "cifar10" and name != "cifar100" else None
        if raw is not None:
            target.write_bytes(gzip.compress(b"\x13\x13" + raw[2:]))
        else:  # a tar.gz or a .mat: their first bytes are the magic
            target.write_bytes(b"\x13\x13" + data[2:])
    elif fault == "labels":
        bad_labels(name, folder)
    return target


def bad_labels(name, folder):
    """Rewrite one label file of the mirror with a label beyond the classes."""
    from published_formats import cifar10_members, cifar100_members, tar_gz, write_idx, write_norb, write_svhn

    if name == "mnist":
        labels = read_idx(str(folder / "t10k-labels-idx1-ubyte.gz"))
        labels[3] = 10
        write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    elif name == "norb":
        path = folder / f"{norb.TEST}-cat.mat.gz"
        labels = read_norb(str(path))
        labels[3] = 5
        write_norb(path, labels)
    elif name == "svhn":
        images, digits = read_svhn(str(folder / "test_32x32.mat"))
        labels = np.where(digits == 0, 10, digits)
        labels[3] = 11
        write_svhn(folder / "test_32x32.mat", images, labels)
    elif name == "cifar10":
        batches = read_cifar(str(folder / "cifar-10-python.tar.gz"), cifar10.TRAIN_BATCHES + (cifar10.TEST_BATCH,),
                             (b"labels",))
        pairs = [(batches[n][0].reshape(-1, 3072), batches[n][1][b"labels"]) for n in cifar10.TRAIN_BATCHES]
        test = batches[cifar10.TEST_BATCH]
        labels = test[1][b"labels"].copy()
        labels[3] = 10
        tar_gz(folder / "cifar-10-python.tar.gz", cifar10_members(pairs, (test[0].reshape(-1, 3072), labels)))
    else:
        batches = read_cifar(str(folder / "cifar-100-python.tar.gz"), (cifar100.TRAIN, cifar100.TEST),
                             (b"fine_labels", b"coarse_labels"))
        sets = [(batches[n][0].reshape(-1, 3072), batches[n][1][b"fine_labels"].copy(),
                 batches[n][1][b"coarse_labels"]) for n in (cifar100.TRAIN, cifar100.TEST)]
        sets[1][1][3] = 100
        tar_gz(folder / "cifar-100-python.tar.gz", cifar100_members(*sets))


@pytest.mark.parametrize("fault", ["truncated", "magic", "labels"])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_bad_file_is_one_line_exit_2_and_leaves_nothing(tmp_path, mirrors, name, fault, capsys):
    import shutil

    folder = tmp_path / "mirror"
    shutil.copytree(mirrors[name], folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    fault_files(name, folder, fault)
    damaged = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "out" / f"{name}.npz"
    assert run(name, "--mirror", folder, "--no-checksum", "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{name}: error:") and "Traceback" not in err
    assert ("out of range" in err) if fault == "labels" else (str(folder) in err)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == damaged != before  # the mirror untouched


# --- downloads ---------------------------------------------------------------------------------
class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from `folder`; honours Range unless `ranges` is False; `cut` > 0 closes the
    connection after that many bytes of a response that announced them all."""

    folder, ranges, cut, requests = None, True, 0, []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = os.path.join(self.folder, self.path.lstrip("/"))
        RangeHandler.requests.append((self.path, self.headers.get("Range")))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        asked = self.headers.get("Range")
        if asked and self.ranges:
            start = int(asked.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if RangeHandler.cut:
            self.wfile.write(body[:RangeHandler.cut])
            RangeHandler.cut = 0
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    RangeHandler.requests, RangeHandler.ranges, RangeHandler.cut = [], True, 0
    RangeHandler.folder = str(tmp_path / "served")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def served_dataset(tmp_path, mirrors):
    """The MNIST mirror served, and a DataSet whose published checksums are those files'."""
    import shutil

    shutil.copytree(mirrors["mnist"], tmp_path / "served")
    sources = tuple(fetch.Source(s.name, md5=hashlib.md5((tmp_path / "served" / s.name).read_bytes()).hexdigest())
                    for s in mnist.FILES)
    return mnist.DATASET.__class__(**{**mnist.DATASET.__dict__, "files": sources, "needed": None})


def prepare(dataset, tmp_path, url):
    args = argparse.Namespace(test_images_only=False)
    return fetch.prepare(dataset, args, base_url=url, downloads=str(tmp_path / "dl"), out=str(tmp_path / "m.npz"))


def test_a_download_that_stops_resumes_where_it_stopped(tmp_path, mirrors, server, capsys):
    dataset = served_dataset(tmp_path, mirrors)
    RangeHandler.cut = 1000  # the first file stops after 1000 bytes
    with pytest.raises(DataError, match="connection ended after 1000 bytes of .*kept in .*next run resumes it"):
        prepare(dataset, tmp_path, server)
    folder = tmp_path / "dl" / "mnist"
    assert [p.name for p in folder.iterdir()] == [dataset.files[0].name + ".part"]
    assert not (tmp_path / "m.npz").exists()
    prepare(dataset, tmp_path, server)
    out = capsys.readouterr().out
    assert "resuming" in out and "at 1000 bytes of" in out
    assert RangeHandler.requests[1] == ("/" + dataset.files[0].name, "bytes=1000-")
    for s in dataset.files:
        assert (folder / s.name).read_bytes() == (tmp_path / "served" / s.name).read_bytes()
    assert not list(folder.glob("*.part")) and (tmp_path / "m.npz").is_file()


def test_a_server_that_cannot_resume_gives_the_whole_file_again(tmp_path, mirrors, server, capsys):
    dataset = served_dataset(tmp_path, mirrors)
    RangeHandler.cut = 1000
    with pytest.raises(DataError):
        prepare(dataset, tmp_path, server)
    RangeHandler.ranges = False
    prepare(dataset, tmp_path, server)
    assert "the server cannot resume: from the start" in capsys.readouterr().out
    name = dataset.files[0].name
    assert (tmp_path / "dl" / "mnist" / name).read_bytes() == (tmp_path / "served" / name).read_bytes()


def test_downloads_say_their_size_and_are_verified(tmp_path, mirrors, server, capsys):
    dataset = served_dataset(tmp_path, mirrors)
    prepare(dataset, tmp_path, server)
    out = capsys.readouterr().out
    size = (tmp_path / "served" / dataset.files[0].name).stat().st_size
    from plumbing.files import human_bytes

    assert f"downloading {server}{dataset.files[0].name} ({human_bytes(size)})" in out
    assert out.count("checksum verified") == 4


def test_a_download_with_a_wrong_checksum_is_removed(tmp_path, mirrors, server, capsys):
    dataset = served_dataset(tmp_path, mirrors)
    (tmp_path / "served" / dataset.files[1].name).write_bytes(b"\x1f\x8b other bytes")
    with pytest.raises(DataError, match="is not the published"):
        prepare(dataset, tmp_path, server)
    left = sorted(p.name for p in (tmp_path / "dl" / "mnist").iterdir())
    assert left == [dataset.files[0].name]  # the one verified before it stays, for the next run
    assert not (tmp_path / "m.npz").exists()


def test_an_unreachable_server_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fetch, "DOWNLOADS", str(tmp_path / "dl"))  # never the kit's data/downloads/
    code = mnist.main(["--url", "http://127.0.0.1:1/", "--out", str(tmp_path / "m.npz")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot download" in err and "--mirror" in err
    assert not (tmp_path / "m.npz").exists()
