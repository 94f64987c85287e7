"""Readers of the formats the data sets are published in (a helper module: numpy, scipy and the
standard library only; every problem is a DataError naming the file, in one line).

- IDX (MNIST), gzip'd: 2 zero bytes, a type byte (0x08 unsigned byte, 0x09 signed byte, 0x0B
  int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then each dimension
  as a big-endian uint32, then the values, big-endian, row-major.
- small NORB's binary matrices, gzip'd: the magic number (int32, little-endian: 0x1E3D4C55 byte,
  0x1E3D4C54 int32, 0x1E3D4C56 int16, 0x1E3D4C51 float32, 0x1E3D4C53 float64), the number of
  dimensions (int32), the dimensions (int32 each, at least 3 of them: a matrix of fewer dimensions
  is padded with 1s), then the values, little-endian, row-major.
- The CIFAR python batches: Python pickles in a tar.gz, each a dict with bytes keys (b'data': an
  (N, 3072) uint8 array, each row the red, green and blue 32x32 planes; b'labels', or
  b'fine_labels' and b'coarse_labels': lists of ints). A pickle can run any code as it loads, so
  these are read by an unpickler that builds only dicts, lists, numbers, bytes and numpy arrays.
- SVHN's cropped digits: MATLAB v5 .mat files holding X (32, 32, 3, N) uint8 and y (N, 1), labels
  1 to 10, 10 standing for the digit 0.

Every reader checks that the file holds exactly what its header says (a truncated file or one
with bytes left over is refused) and refuses a header that claims more than this machine's memory.
"""

import gzip
import io
import math
import pickle
import tarfile
import zlib

import numpy as np
from numpy._core.multiarray import _reconstruct

from plumbing.errors import DataError
from plumbing.files import human_bytes, open_regular, physical_memory

IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
NORB_TYPES = {0x1E3D4C55: np.dtype("u1"), 0x1E3D4C54: np.dtype("<i4"), 0x1E3D4C56: np.dtype("<i2"),
              0x1E3D4C51: np.dtype("<f4"), 0x1E3D4C53: np.dtype("<f8")}
GZIP_ERRORS = (OSError, EOFError, zlib.error)
MAT_MAGIC = b"MATLAB 5.0 MAT-file"  # the text header of a v5 .mat file begins so


def _reason(error):
    return error.strerror if isinstance(error, OSError) and error.strerror else (str(error) or type(error).__name__)


def _read_exactly(f, count, shown, what):
    """`count` bytes of f, and nothing after them: DataError if there are fewer or more."""
    limit = physical_memory() // 2
    if count > limit:
        raise DataError(f"{shown}: its header claims {what} of {human_bytes(count)}, more than half this "
                        f"machine's memory ({human_bytes(limit)}); not a file of this data set")
    data = f.read(count)
    if len(data) < count:
        raise DataError(f"{shown}: truncated: {what} needs {count} bytes after the header, the file holds "
                        f"{len(data)}")
    if f.read(1):
        raise DataError(f"{shown}: bytes left over after the {what} its header announces")
    return data


def read_idx(path, shown=None):
    """The array in the gzip'd IDX file at `path` (native byte order)."""
    shown = path if shown is None else shown
    try:
        with open_regular(path) as raw, gzip.open(raw) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_TYPES:
                raise DataError(f"{shown}: not an IDX file (magic number {head.hex() or 'missing'}; an IDX file "
                                "starts 0000 then a type byte 08, 09, 0b, 0c, 0d or 0e)")
            dtype, ndim = IDX_TYPES[head[2]], head[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataError(f"{shown}: truncated in its header ({ndim} dimensions announced)")
            shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
            data = _read_exactly(f, math.prod(shape) * dtype.itemsize, shown, f"an array of shape {shape}")
    except GZIP_ERRORS as e:
        raise DataError(f"{shown}: not a readable gzip'd IDX file ({_reason(e)})") from None
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_norb(path, shown=None):
    """The array in small NORB's gzip'd binary matrix file at `path` (its true dimensions: the
    padding 1s of a matrix of fewer than 3 dimensions dropped)."""
    shown = path if shown is None else shown
    try:
        with open_regular(path) as raw, gzip.open(raw) as f:
            head = f.read(8)
            magic = int.from_bytes(head[:4], "little") if len(head) >= 4 else None
            if magic not in NORB_TYPES:
                raise DataError(f"{shown}: not a NORB binary matrix (magic number "
                                f"{'missing' if magic is None else hex(magic)}; expected one of "
                                f"{', '.join(hex(m) for m in NORB_TYPES)})")
            ndim = int.from_bytes(head[4:8], "little", signed=True) if len(head) == 8 else -1
            if not 1 <= ndim <= 16:
                raise DataError(f"{shown}: a NORB matrix of {ndim} dimensions: not a file of this data set")
            dims = f.read(4 * max(3, ndim))
            if len(dims) < 4 * max(3, ndim):
                raise DataError(f"{shown}: truncated in its header ({ndim} dimensions announced)")
            shape = tuple(int(d) for d in np.frombuffer(dims, "<i4")[:ndim])
            if min(shape) < 0:
                raise DataError(f"{shown}: a negative dimension in its header {shape}")
            dtype = NORB_TYPES[magic]
            data = _read_exactly(f, math.prod(shape) * dtype.itemsize, shown, f"an array of shape {shape}")
    except GZIP_ERRORS as e:
        raise DataError(f"{shown}: not a readable gzip'd NORB file ({_reason(e)})") from None
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


class BatchUnpickler(pickle.Unpickler):
    """Builds what a CIFAR batch holds and nothing else: a pickle that names any other callable
    (os.system, say) is refused before it is called."""

    # numpy 1's name of _reconstruct, which the published batches use, is numpy 2's numpy._core.
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR batch never holds")
        return self.ALLOWED[module, name]


def read_cifar(path, members, label_keys, shown=None):
    """{member: (images uint8 (N, 3, 32, 32), {key: labels int (N,)})} for the named members of
    the CIFAR python tar.gz at `path`; label_keys such as (b'labels',) or (b'fine_labels',
    b'coarse_labels')."""
    shown = path if shown is None else shown
    batches = {}
    try:
        with open_regular(path) as raw, tarfile.open(fileobj=raw, mode="r:gz") as archive:
            for info in archive:
                if info.name not in members or info.name in batches:
                    continue
                where = f"{shown}: {info.name}"
                if not info.isfile():
                    raise DataError(f"{where}: not a regular file in the archive")
                data = _read_exactly(archive.extractfile(info), info.size, where, "a pickled batch")
                try:
                    batch = BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
                except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                        KeyError, MemoryError, ImportError) as e:
                    raise DataError(f"{where}: not a CIFAR batch ({_reason(e)})") from None
                batches[info.name] = _cifar_batch(batch, label_keys, where)
    except (tarfile.TarError, *GZIP_ERRORS) as e:
        raise DataError(f"{shown}: not a readable tar.gz of CIFAR batches ({_reason(e)})") from None
    absent = [name for name in members if name not in batches]
    if absent:
        raise DataError(f"{shown}: the archive lacks {', '.join(absent)}")
    return batches


def _cifar_batch(batch, label_keys, where):
    if not isinstance(batch, dict) or b"data" not in batch:
        raise DataError(f"{where}: not a CIFAR batch (no b'data' in it)")
    images = batch[b"data"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        shape = getattr(images, "shape", type(images).__name__)
        raise DataError(f"{where}: b'data' must be an (N, 3072) uint8 array, got {shape} "
                        f"{getattr(images, 'dtype', '')}".rstrip())
    labels = {}
    for key in label_keys:
        values = batch.get(key)
        if not isinstance(values, (list, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in values):
            raise DataError(f"{where}: {key!r} must be a list of integers")
        if len(values) != len(images):
            raise DataError(f"{where}: {len(values)} {key!r} for {len(images)} images")
        labels[key] = np.asarray(values, dtype=np.int64).reshape(-1)
    return images.reshape(-1, 3, 32, 32), labels


def read_svhn(path, shown=None):
    """(images uint8 (N, 3, 32, 32), digits int (N,) 0..9) from an SVHN cropped-digits .mat file,
    its label 10 read as the digit 0."""
    shown = path if shown is None else shown
    from scipy.io import loadmat  # only here: scipy.io takes a while to load
    from scipy.io.matlab import MatReadError

    try:
        with open_regular(path) as f:
            head = f.read(len(MAT_MAGIC))
            if head != MAT_MAGIC:
                raise DataError(f"{shown}: not a MATLAB v5 .mat file (it starts {head[:16]!r}, not {MAT_MAGIC!r})")
            f.seek(0)
            mat = loadmat(f, variable_names=("X", "y"))
    except (OSError, ValueError, TypeError, EOFError, KeyError, IndexError, MemoryError, NotImplementedError,
            MatReadError, zlib.error) as e:
        raise DataError(f"{shown}: not a readable MATLAB v5 .mat file ({_reason(e)})") from None
    images, labels = mat.get("X"), mat.get("y")
    if images is None or labels is None:
        raise DataError(f"{shown}: lacks the variable {'X' if images is None else 'y'} of SVHN's .mat files")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{shown}: X must be a 32 x 32 x 3 x N uint8 array, got {' x '.join(map(str, images.shape))} "
                        f"{images.dtype}")
    if labels.size != images.shape[3] or not np.issubdtype(labels.dtype, np.number):
        raise DataError(f"{shown}: y must hold one label per image ({images.shape[3]}), got {labels.size}")
    labels = labels.reshape(-1).astype(np.int64)
    bad = (labels < 1) | (labels > 10)
    if bad.any():
        raise DataError(f"{shown}: label {labels[bad][0]} of image {int(np.argmax(bad))} is out of range 1..10 "
                        "(10 stands for the digit 0)")
    # MATLAB's X(row, column, channel, image) -> (image, channel, row, column).
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), labels % 10
