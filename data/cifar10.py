"""Fetch CIFAR-10 (Krizhevsky, 2009) and write data/cifar10.npz.

    python data/cifar10.py [--mirror DIR] [--url URL] [--out PATH] [--no-checksum]

60,000 colour images of 32x32 in 10 classes (0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer,
5 dog, 6 frog, 7 horse, 8 ship, 9 truck): the published "python version",
cifar-10-python.tar.gz, checked against its published MD5, holding five training batches
(data_batch_1 .. 5, 10,000 images each) and test_batch, read by data/formats.read_cifar.

cifar10.npz: train 45,000, validation 5,000 (fixed seed), test 10,000; 10 classes; images
3x32x32 (red, green, blue planes).
"""

import os
import sys

if __package__ in (None, ""):  # run as python data/cifar10.py: the kit's helpers are one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plumbing.command_line import start_script

start_script(__name__, "cifar10")  # first: Ctrl-C, a closed output: one line

import numpy as np

from data import fetch
from data.formats import read_cifar

ARCHIVE = fetch.Source("cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a", size=170498071)
FOLDER = "cifar-10-batches-py/"
TRAIN_BATCHES = tuple(f"{FOLDER}data_batch_{i}" for i in range(1, 6))
TEST_BATCH = f"{FOLDER}test_batch"


def read(paths, args):
    batches = read_cifar(paths[ARCHIVE.name], TRAIN_BATCHES + (TEST_BATCH,), (b"labels",))

    def joined(names):
        return (np.concatenate([batches[name][0] for name in names]),
                np.concatenate([batches[name][1][b"labels"] for name in names]))

    return {"train": joined(TRAIN_BATCHES), "test": joined((TEST_BATCH,))}


DATASET = fetch.DataSet(name="cifar10", files=(ARCHIVE,), base_url="https://www.cs.toronto.edu/~kriz/",
                        num_classes=10, image_shape=(3, 32, 32), num_validation=5000, read=read)
main = fetch.command(DATASET)

if __name__ == "__main__":
    fetch.run(main)
