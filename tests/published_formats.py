"""Files in the formats the data sets are published in, written here independently of the kit's
readers (data/formats.py): the tests read them back, and the full-size synthetic mirrors the
data sets' measurements use (docs/data.md) are written by this module as a script:

    python tests/published_formats.py DIR [--only mnist,norb,cifar10,cifar100,svhn] [--scale 1.0]

writes, into DIR/<data set>/, each data set's published files with the published counts
(times --scale) of synthetic images: each class a fixed random picture, each image its class's
picture blended with noise, so a net can learn them. The kit reads them with --no-checksum.

The byte layouts follow the publishers' descriptions: IDX big-endian with the magic 0x0000080N;
small NORB's matrices little-endian with the magic 0x1E3D4C5N and at least 3 dimensions;
CIFAR's batches as Python 2's cPickle wrote them (protocol 2, byte-string keys, numpy arrays
rebuilt by numpy.core.multiarray._reconstruct); SVHN's MATLAB v5 files by scipy.io.savemat.
"""

import argparse
import gzip
import io
import os
import struct
import sys
import tarfile

import numpy as np

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
NORB_MAGIC = {"u1": 0x1E3D4C55, "i4": 0x1E3D4C54, "i2": 0x1E3D4C56, "f4": 0x1E3D4C51, "f8": 0x1E3D4C53}


# --- IDX -------------------------------------------------------------------------------------
def idx_bytes(array):
    """The IDX encoding of `array`: 0, 0, type code, ndim, big-endian uint32 dims, big-endian values."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype.str[1:]]
    head = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, raw=None):
    """gzip'd IDX of `array` at path (or the gzip'd bytes `raw` as given)."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(idx_bytes(array) if raw is None else raw)


# --- small NORB ------------------------------------------------------------------------------
def norb_bytes(array):
    """small NORB's encoding: magic, ndim, max(3, ndim) dims (padded with 1), little-endian int32 each,
    then the values little-endian."""
    array = np.asarray(array)
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    head = struct.pack("<ii", NORB_MAGIC[array.dtype.str[1:]], array.ndim) + struct.pack(f"<{len(dims)}i", *dims)
    return head + array.astype(array.dtype.newbyteorder("<")).tobytes()


def write_norb(path, array, raw=None):
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(norb_bytes(array) if raw is None else raw)


# --- CIFAR: Python 2 pickles -----------------------------------------------------------------
def _py2_str(data):
    """A Python 2 str (bytes) as cPickle protocol 2 writes it."""
    return (b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<I", len(data))) + data


def _py2_int(value):
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _py2_value(value):
    if isinstance(value, bytes):
        return _py2_str(value)
    if isinstance(value, (int, np.integer)):
        return _py2_int(int(value))
    if isinstance(value, list):
        return b"]" + (b"(" + b"".join(_py2_value(v) for v in value) + b"e" if value else b"")
    if isinstance(value, np.ndarray):  # how numpy 1.x under Python 2 pickled a uint8 array
        assert value.dtype == np.uint8
        dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"K\x00K\x01\x87R"
                 + b"(K\x03" + _py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        shape = b"(" + b"".join(_py2_int(d) for d in value.shape) + b"t"
        return (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + _py2_str(b"b")
                + b"\x87R" + b"(K\x01" + shape + dtype + b"\x89" + _py2_str(value.tobytes()) + b"tb")
    raise TypeError(type(value))


def py2_pickle(mapping, extra=b""):
    """A dict with bytes keys as Python 2's cPickle.dump(..., protocol=2) wrote it; `extra`:
    opcodes put before STOP's dict is built (a hostile file's payload)."""
    body = b"".join(_py2_str(k) + _py2_value(v) for k, v in mapping.items())
    return b"\x80\x02}(" + body + b"u" + extra + b"."


def tar_gz(path, members):
    """A tar.gz at path holding {name: bytes} (as the CIFAR archives: a folder of files)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def cifar10_members(train, test, folder="cifar-10-batches-py"):
    """{member: pickle} of the CIFAR-10 archive: train a list of 5 (data (N, 3072) uint8, labels),
    test one pair."""
    members = {f"{folder}/readme.html": b"<html></html>",
               f"{folder}/batches.meta": py2_pickle({b"num_cases_per_batch": len(train[0][1]),
                                                      b"label_names": [b"airplane"] * 10, b"num_vis": 3072})}
    batches = [(f"data_batch_{i + 1}", pair) for i, pair in enumerate(train)] + [("test_batch", test)]
    for name, (data, labels) in batches:
        members[f"{folder}/{name}"] = py2_pickle({b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                                                 b"data": data, b"filenames": [b"x.png"] * len(labels)})
    return members


def cifar100_members(train, test, folder="cifar-100-python"):
    """train, test: (data, fine labels, coarse labels)."""
    members = {f"{folder}/meta": py2_pickle({b"fine_label_names": [b"apple"] * 100,
                                             b"coarse_label_names": [b"fruit"] * 20})}
    for name, (data, fine, coarse) in (("train", train), ("test", test)):
        members[f"{folder}/{name}"] = py2_pickle({b"filenames": [b"x.png"] * len(fine), b"batch_label": name.encode(),
                                                 b"fine_labels": [int(v) for v in fine],
                                                 b"coarse_labels": [int(v) for v in coarse], b"data": data})
    return members


# --- SVHN ------------------------------------------------------------------------------------
def write_svhn(path, images, labels):
    """images (N, 3, 32, 32) uint8 and labels 1..10 -> SVHN's .mat: X (32, 32, 3, N), y (N, 1) double."""
    from scipy.io import savemat

    savemat(path, {"X": np.ascontiguousarray(images.transpose(2, 3, 1, 0)),
                   "y": np.asarray(labels, dtype=np.float64).reshape(-1, 1)}, format="5")


# --- synthetic data of the real sizes -------------------------------------------------------
def synthetic(rng, n, shape, classes):
    """(images uint8 (n, *shape), labels (n,)): each class's fixed random picture (the same in every
    call for one shape and number of classes: the training and test files share them), blended with noise."""
    seed = (classes, *shape)
    templates = np.random.default_rng(seed).integers(0, 256, (classes,) + tuple(shape), dtype=np.uint8)
    labels = rng.integers(0, classes, n)
    images = np.empty((n,) + tuple(shape), np.uint8)
    for start in range(0, n, 4096):  # in blocks: a float copy of 24,300 NORB pairs would take 3.6 GB
        part = slice(start, start + 4096)
        noise = rng.integers(0, 256, images[part].shape, dtype=np.uint8)
        images[part] = templates[labels[part]] // 2 + noise // 2
    return images, labels


def write_mirror(folder, name, scale, rng):
    """The published files of data set `name`, synthetic, with the published counts times `scale`."""
    os.makedirs(folder, exist_ok=True)
    count = lambda n: max(10, int(round(n * scale)))  # noqa: E731
    if name == "mnist":
        for stem, n in (("train", 60000), ("t10k", 10000)):
            images, labels = synthetic(rng, count(n), (28, 28), 10)
            write_idx(os.path.join(folder, f"{stem}-images-idx3-ubyte.gz"), images)
            write_idx(os.path.join(folder, f"{stem}-labels-idx1-ubyte.gz"), labels.astype(np.uint8))
    elif name == "norb":
        for stem in ("smallnorb-5x46789x9x18x6x2x96x96-training", "smallnorb-5x01235x9x18x6x2x96x96-testing"):
            images, labels = synthetic(rng, count(24300), (2, 96, 96), 5)
            write_norb(os.path.join(folder, f"{stem}-dat.mat.gz"), images)
            write_norb(os.path.join(folder, f"{stem}-cat.mat.gz"), labels.astype(np.int32))
    elif name == "cifar10":
        pairs = [synthetic(rng, count(10000), (3072,), 10) for _ in range(6)]
        tar_gz(os.path.join(folder, "cifar-10-python.tar.gz"), cifar10_members(pairs[:5], pairs[5]))
    elif name == "cifar100":
        sets = []
        for n in (50000, 10000):
            data, fine = synthetic(rng, count(n), (3072,), 100)
            sets.append((data, fine, fine // 5))
        tar_gz(os.path.join(folder, "cifar-100-python.tar.gz"), cifar100_members(*sets))
    elif name == "svhn":
        for stem, n in (("train", 73257), ("test", 26032)):
            images, digits = synthetic(rng, count(n), (3, 32, 32), 10)
            write_svhn(os.path.join(folder, f"{stem}_32x32.mat"), images, np.where(digits == 0, 10, digits))
    else:
        raise ValueError(name)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write synthetic mirrors of the data sets in their published formats.")
    parser.add_argument("folder")
    parser.add_argument("--only", default="mnist,norb,cifar10,cifar100,svhn")
    parser.add_argument("--scale", type=float, default=1.0, help="counts times this (default: the published counts)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(2015)
    for name in args.only.split(","):
        write_mirror(os.path.join(args.folder, name), name, args.scale, rng)
        print(f"wrote {os.path.join(args.folder, name)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
