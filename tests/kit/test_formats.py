"""data/formats.py: each reader on files written here in the published format (tests/published_formats.py,
independent of the readers): every header field, the byte order, the label conventions, and damaged
or hostile files refused in one line."""

import gzip
import struct

import numpy as np
import pytest
from published_formats import (
    cifar10_members,
    cifar100_members,
    idx_bytes,
    norb_bytes,
    py2_pickle,
    tar_gz,
    write_idx,
    write_norb,
    write_svhn,
)

from data import formats
from plumbing.errors import DataError

RNG = np.random.default_rng(30)


# --- IDX -------------------------------------------------------------------------------------
def test_idx_header_is_the_published_layout_byte_for_byte():
    # The MNIST page: 0x00000803, then 60000, 28, 28 as big-endian 32-bit integers.
    head = idx_bytes(np.zeros((3, 28, 28), np.uint8))[:16]
    assert head == bytes.fromhex("00000803" "00000003" "0000001c" "0000001c")


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_idx_reads_every_type_in_big_endian_order(tmp_path, dtype):
    array = (RNG.integers(-100, 100, (4, 3, 2)) if dtype != "u1" else RNG.integers(0, 256, (4, 3, 2)))
    array = array.astype(dtype)
    if dtype == ">i4":
        array.flat[0] = 0x01020304  # a value whose bytes differ in either order
    write_idx(tmp_path / "a.gz", array)
    got = formats.read_idx(str(tmp_path / "a.gz"))
    assert got.shape == (4, 3, 2) and got.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got, array)


def test_idx_labels_of_one_dimension(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "l.gz", labels)
    assert idx_bytes(labels)[:8] == bytes.fromhex("00000801" "0000000a")
    np.testing.assert_array_equal(formats.read_idx(str(tmp_path / "l.gz")), labels)


# --- small NORB ------------------------------------------------------------------------------
def test_norb_header_is_the_published_layout_byte_for_byte():
    # The small NORB page: magic 0x1E3D4C55 (byte matrix), ndim 4, then the dims, little-endian int32.
    head = norb_bytes(np.zeros((3, 2, 96, 96), np.uint8))[:24]
    assert head == bytes.fromhex("554c3d1e" "04000000" "03000000" "02000000" "60000000" "60000000")
    # A 1-dimensional matrix (the -cat files) still has 3 dims, padded with 1.
    assert norb_bytes(np.zeros(7, np.int32))[:20] == bytes.fromhex("544c3d1e" "01000000" "07000000" "01000000"
                                                                    "01000000")


@pytest.mark.parametrize("dtype", ["u1", "<i4", "<i2", "<f4", "<f8"])
def test_norb_reads_every_type_in_little_endian_order(tmp_path, dtype):
    array = RNG.integers(0, 120, (5, 2, 3, 4)).astype(dtype)
    if dtype == "<i4":
        array.flat[0] = 0x01020304
    write_norb(tmp_path / "m.gz", array)
    got = formats.read_norb(str(tmp_path / "m.gz"))
    assert got.shape == array.shape
    np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("shape", [(6,), (6, 4)])
def test_norb_drops_the_padding_of_matrices_below_three_dimensions(tmp_path, shape):
    array = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    write_norb(tmp_path / "c.gz", array)
    assert formats.read_norb(str(tmp_path / "c.gz")).shape == shape


# --- CIFAR -----------------------------------------------------------------------------------
def cifar_pair(n, classes=10):
    return RNG.integers(0, 256, (n, 3072), dtype=np.uint8), RNG.integers(0, classes, n)


def test_cifar_batches_are_read_as_python_2_pickled_them_planes_in_order(tmp_path):
    train = [cifar_pair(4) for _ in range(5)]
    test = cifar_pair(3)
    tar_gz(tmp_path / "c.tar.gz", cifar10_members(train, test))
    names = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"]
    batches = formats.read_cifar(str(tmp_path / "c.tar.gz"), names, (b"labels",))
    for name, (data, labels) in zip(names, train + [test]):
        images, got = batches[name]
        assert images.shape == (len(labels), 3, 32, 32) and images.dtype == np.uint8
        # A row: the 1024 red values, then green, then blue, each plane row-major.
        np.testing.assert_array_equal(images[:, 0, 0, :], data[:, :32])
        np.testing.assert_array_equal(images[:, 1, 0, 0], data[:, 1024])
        np.testing.assert_array_equal(images[:, 2, 31, 31], data[:, 3071])
        np.testing.assert_array_equal(got[b"labels"], labels)


def test_cifar100_fine_and_coarse_labels_both_read(tmp_path):
    data, fine = cifar_pair(6, 100)
    coarse = RNG.integers(0, 20, 6)
    test = cifar_pair(2, 100) + (np.array([19, 0]),)
    tar_gz(tmp_path / "c.tar.gz", cifar100_members((data, fine, coarse), test))
    batches = formats.read_cifar(str(tmp_path / "c.tar.gz"), ("cifar-100-python/train",),
                                 (b"fine_labels", b"coarse_labels"))
    images, labels = batches["cifar-100-python/train"]
    np.testing.assert_array_equal(labels[b"fine_labels"], fine)
    np.testing.assert_array_equal(labels[b"coarse_labels"], coarse)
    np.testing.assert_array_equal(images.reshape(6, -1), data)


def test_a_pickle_that_calls_anything_else_is_refused_before_the_call(tmp_path):
    marker = tmp_path / "ran"
    # What a hostile batch would hold: os.system("touch <marker>") as it loads.
    payload = b"cos\nsystem\n" + b"(" + b"U" + bytes([len(f"touch {marker}")]) + f"touch {marker}".encode() + b"tR0"
    member = {"cifar-10-batches-py/test_batch": py2_pickle({b"data": cifar_pair(1)[0], b"labels": [1]}, payload)}
    tar_gz(tmp_path / "c.tar.gz", member)
    with pytest.raises(DataError, match="os.system, which a CIFAR batch never holds"):
        formats.read_cifar(str(tmp_path / "c.tar.gz"), list(member), (b"labels",))
    assert not marker.exists()


# --- SVHN ------------------------------------------------------------------------------------
def test_svhn_label_10_is_the_digit_0_and_pixels_land_in_place(tmp_path):
    images = RNG.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    labels = np.array([10, 1, 9, 10, 5])
    write_svhn(tmp_path / "s.mat", images, labels)
    got_images, digits = formats.read_svhn(str(tmp_path / "s.mat"))
    np.testing.assert_array_equal(digits, [0, 1, 9, 0, 5])
    np.testing.assert_array_equal(got_images, images)


def test_svhn_file_is_matlab_v5_with_x_as_32_32_3_n():
    import io

    from scipy.io import loadmat  # the writer's layout, read back by scipy alone

    buffer = io.BytesIO()
    images = RNG.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    write_svhn(buffer, images, [3, 10])
    assert buffer.getvalue()[:10] == b"MATLAB 5.0"
    mat = loadmat(io.BytesIO(buffer.getvalue()))
    assert mat["X"].shape == (32, 32, 3, 2) and mat["y"].shape == (2, 1)
    assert mat["X"][4, 7, 2, 1] == images[1, 2, 4, 7]  # X(row, column, channel, image)


@pytest.mark.parametrize("label", [0, 11])
def test_svhn_labels_out_of_range_are_refused(tmp_path, label):
    write_svhn(tmp_path / "s.mat", np.zeros((2, 3, 32, 32), np.uint8), [1, label])
    with pytest.raises(DataError, match=f"label {label} of image 1 is out of range 1..10"):
        formats.read_svhn(str(tmp_path / "s.mat"))


# --- damaged files: every reader, every way ---------------------------------------------------
def gz(data):
    return gzip.compress(data, compresslevel=1)


IDX = idx_bytes(np.zeros((4, 5, 5), np.uint8))
NORB = norb_bytes(np.zeros((4, 2, 3, 3), np.uint8))
DAMAGED = {
    # name: (reader, file bytes, words of the message)
    "idx truncated data": (formats.read_idx, gz(IDX[:-3]), "truncated"),
    "idx truncated header": (formats.read_idx, gz(IDX[:9]), "truncated in its header"),
    "idx bytes left over": (formats.read_idx, gz(IDX + b"\0"), "left over"),
    "idx other magic": (formats.read_idx, gz(b"\x00\x00\x07\x03" + IDX[4:]), "not an IDX file"),
    "idx gzip cut short": (formats.read_idx, gz(IDX)[:-10], "not a readable gzip'd IDX file"),
    "idx not gzip": (formats.read_idx, IDX, "not a readable gzip'd IDX file"),
    "idx header claims terabytes": (formats.read_idx, gz(bytes.fromhex("00000803ffffffffffffffff00000010")),
                                    "more than half this machine's memory"),
    "norb truncated data": (formats.read_norb, gz(NORB[:-1]), "truncated"),
    "norb other magic": (formats.read_norb, gz(struct.pack("<i", 0x1E3D4C50) + NORB[4:]), "not a NORB binary matrix"),
    "norb big-endian magic": (formats.read_norb, gz(struct.pack(">i", 0x1E3D4C55) + NORB[4:]),
                              "not a NORB binary matrix"),
    "norb bytes left over": (formats.read_norb, gz(NORB + b"\0\0"), "left over"),
    "norb negative dims": (formats.read_norb, gz(NORB[:8] + struct.pack("<i", -4) + NORB[12:]), "negative"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_files_are_one_line_naming_the_file(tmp_path, case):
    reader, data, words = DAMAGED[case]
    path = tmp_path / "file.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match=words) as info:
        reader(str(path))
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["truncated", "not a tar", "member missing", "data not an array", "labels short"])
def test_damaged_cifar_archives_are_one_line(tmp_path, case):
    path = tmp_path / "c.tar.gz"
    name = "cifar-10-batches-py/test_batch"
    good = py2_pickle({b"data": cifar_pair(2)[0], b"labels": [1, 2]})
    if case == "truncated":
        tar_gz(path, {name: good})
        path.write_bytes(path.read_bytes()[:-40])
    elif case == "not a tar":
        path.write_bytes(gz(b"hello"))
    elif case == "member missing":
        tar_gz(path, {"cifar-10-batches-py/other": good})
    elif case == "data not an array":
        tar_gz(path, {name: py2_pickle({b"data": [1, 2], b"labels": [1, 2]})})
    else:
        tar_gz(path, {name: py2_pickle({b"data": cifar_pair(2)[0], b"labels": [1]})})
    with pytest.raises(DataError) as info:
        formats.read_cifar(str(path), (name,), (b"labels",))
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_a_damaged_mat_file_is_one_line(tmp_path):
    write_svhn(tmp_path / "s.mat", np.zeros((2, 3, 32, 32), np.uint8), [1, 2])
    data = (tmp_path / "s.mat").read_bytes()
    (tmp_path / "s.mat").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match="s.mat") as info:
        formats.read_svhn(str(tmp_path / "s.mat"))
    assert "\n" not in str(info.value)
