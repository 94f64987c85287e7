"""Fetch small NORB (LeCun, Huang, Bottou 2004) and write data/norb.npz.

    python data/norb.py [--mirror DIR] [--url URL] [--out PATH] [--no-checksum] [--size 32|48|96]

Photographs of 50 toys in 5 classes (0 four-legged animal, 1 human figure, 2 airplane, 3 truck,
4 car), each a stereo pair of 96x96 gray images, 24,300 for training (toy instances 4, 6, 7, 8,
9 of each class) and 24,300 for testing (instances 0, 1, 2, 3, 5): the published gzip'd binary
matrices (data/formats.py), the '-dat' (N x 2 x 96 x 96 bytes) and '-cat' (N int32 classes)
files of each set, checked against the SHA-256 and sizes tensorflow_datasets records for them
(the authors publish none).

norb.npz: train 19,300, validation 5,000 (fixed seed), test 24,300; 5 classes; images 2 x S x S,
the two cameras as two channels, S = --size: 32 by default (each pixel the mean of a 3x3 block:
at 96x96 a set takes 3.6 GB in float64 and an epoch of a convnet takes many times longer).
"""

import os
import sys

if __package__ in (None, ""):  # run as python data/norb.py: the kit's helpers are one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plumbing.command_line import start_script

start_script(__name__, "norb")  # first: Ctrl-C, a closed output: one line

import numpy as np

from data import fetch
from data.formats import read_norb
from plumbing.errors import DataError

TRAIN, TEST = "smallnorb-5x46789x9x18x6x2x96x96-training", "smallnorb-5x01235x9x18x6x2x96x96-testing"
FILES = (
    fetch.Source(f"{TRAIN}-dat.mat.gz", sha256="5ffd6272a07d32695ee1082a26a41a93a37aab8c28da047f8c34ed348d214873",
                 size=131896188),
    fetch.Source(f"{TRAIN}-cat.mat.gz", sha256="2784e542c1922060691090952b6cd6278879a216c90f81476f0f00256d42cdaa",
                 size=348),
    fetch.Source(f"{TEST}-dat.mat.gz", sha256="cf7104eed3e51174d2f65b66d1e5878b9da233b886f161b0d88f4510ba2c7474",
                 size=130799817),
    fetch.Source(f"{TEST}-cat.mat.gz", sha256="ecaf6d5bb8c3bc5eab9cf0258f6d2198dd474e016e374836fc097f2e5ff509ff",
                 size=347),
)
SIZES = (32, 48, 96)


def read_set(paths, stem, size):
    """(images (N, 2, size, size), classes (N,)) of one set: bytes, or block means at a smaller size."""
    dat, cat = paths[f"{stem}-dat.mat.gz"], paths[f"{stem}-cat.mat.gz"]
    images, labels = read_norb(dat), read_norb(cat)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (2, 96, 96):
        raise DataError(f"{dat}: expected a byte matrix N x 2 x 96 x 96 (stereo pairs), got {images.dtype} "
                        f"{' x '.join(map(str, images.shape))}")
    if labels.dtype != np.int32 or labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{cat}: expected an int32 matrix of {len(images)} classes, got {labels.dtype} "
                        f"{' x '.join(map(str, labels.shape))}")
    if size != 96:
        f = 96 // size  # exact blocks: 96 = 3 * 32 = 2 * 48
        sums = images.reshape(len(images), 2, size, f, size, f).sum(axis=(3, 5), dtype=np.uint16)
        images = sums / np.float32(f * f)
    return images, labels.astype(np.int64)


def read(paths, args):
    return {"train": read_set(paths, TRAIN, args.size), "test": read_set(paths, TEST, args.size)}


def options(parser):
    parser.add_argument("--size", type=int, choices=SIZES, default=32,
                        help="image side: 96 as published, or 48 / 32 as means of 2x2 / 3x3 blocks (default 32)")


DATASET = fetch.DataSet(
    name="norb", files=FILES, base_url="https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/", num_classes=5,
    image_shape=(2, 32, 32), num_validation=5000, read=read, options=options,
    shape=lambda args: (2, args.size, args.size))
main = fetch.command(DATASET)

if __name__ == "__main__":
    fetch.run(main)
