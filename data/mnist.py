"""Fetch the MNIST digits (LeCun, Cortes, Burges) and write data/mnist.npz.

    python data/mnist.py [--mirror DIR] [--url URL] [--out PATH] [--no-checksum]
    python data/mnist.py --test-images-only --mirror DIR     # the 10,000 test images alone

The four published files, gzip'd IDX (data/formats.py), each checked against its published MD5:
60,000 training and 10,000 test images of 28x28 gray digits, white on black (0 is background).
mnist.npz: train 55,000, validation 5,000 (drawn from the training file with a fixed seed),
test 10,000; 10 classes; images 1x28x28.

--test-images-only reads the two test files alone (a mirror holding only those, as the
project's does) and splits the 10,000 test images 8,000 / 1,000 / 1,000 (train / validation /
test, fixed seed) into data/mnist_t10k.npz: a net can then be trained and tested on real MNIST
digits, its test accuracy measured on 1,000 digits it never saw (not the published test set's).
"""

import os
import sys

if __package__ in (None, ""):  # run as python data/mnist.py: the kit's helpers are one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plumbing.command_line import start_script

start_script(__name__, "mnist")  # first: Ctrl-C, a closed output: one line

import numpy as np

from data import fetch
from data.formats import read_idx
from plumbing.errors import DataError

FILES = (
    fetch.Source("train-images-idx3-ubyte.gz", md5="f68b3c2dcbeaaa9fbdd348bbdeb94873", size=9912422),
    fetch.Source("train-labels-idx1-ubyte.gz", md5="d53e105ee54ea40749a09fcbcd1e9432", size=28881),
    fetch.Source("t10k-images-idx3-ubyte.gz", md5="9fb629c4189551a2d022fa330f9573f3", size=1648877),
    fetch.Source("t10k-labels-idx1-ubyte.gz", md5="ec29112dd5afa0611ce80d1b7f02629c", size=4542),
)
TEST_ONLY_SPLIT = (8000, 1000, 1000)  # train, validation, test, of the 10,000 test images


def read_pair(paths, images_name, labels_name):
    """(images uint8 (N, 1, 28, 28), labels (N,)) of one images file and its labels file."""
    images, labels = read_idx(paths[images_name]), read_idx(paths[labels_name])
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"{paths[images_name]}: expected IDX unsigned bytes of 3 dimensions (N, rows, columns), "
                        f"got {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{paths[labels_name]}: expected {len(images)} labels (IDX unsigned bytes, 1 dimension) for "
                        f"the images of {images_name}, got {labels.dtype} of shape {labels.shape}")
    return images[:, np.newaxis], labels.astype(np.int64)


def read(paths, args):
    test = read_pair(paths, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    if args.test_images_only:
        return split_test_images(*test)
    return {"train": read_pair(paths, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"), "test": test}


def split_test_images(images, labels, sizes=TEST_ONLY_SPLIT, seed=fetch.SPLIT_SEED):
    """The test images drawn at random with `seed` into train, validation and test sets of
    `sizes` (scaled down in proportion for a file of fewer images), each in file order."""
    counts = np.floor(np.array(sizes) * len(labels) / sum(sizes)).astype(int)
    counts[0] += len(labels) - counts.sum()
    if min(counts) < 1:
        raise DataError(f"{len(labels)} test images are too few to split into train, validation and test")
    order = np.random.default_rng(seed).permutation(len(labels))
    ends = np.cumsum(counts)
    parts = [np.sort(order[start:end]) for start, end in zip(np.r_[0, ends[:-1]], ends)]
    return {name: (images[part], labels[part]) for name, part in zip(("train", "validation", "test"), parts)}


def options(parser):
    parser.add_argument("--test-images-only", action="store_true",
                        help="use only the 10,000 test images, split 8000/1000/1000 (default out: data/mnist_t10k.npz)")


DATASET = fetch.DataSet(
    name="mnist", files=FILES, base_url="https://ossci-datasets.s3.amazonaws.com/mnist/", num_classes=10,
    image_shape=(1, 28, 28), num_validation=5000, read=read, options=options,
    needed=lambda args: FILES[2:] if args.test_images_only else FILES,
    out=lambda args: os.path.join(fetch.DATA_DIR, "mnist_t10k.npz" if args.test_images_only else "mnist.npz"))
main = fetch.command(DATASET)

if __name__ == "__main__":
    fetch.run(main)
