"""Fetch CIFAR-100 (Krizhevsky, 2009) and write data/cifar100.npz.

    python data/cifar100.py [--mirror DIR] [--url URL] [--out PATH] [--no-checksum] [--labels fine|coarse]

60,000 colour images of 32x32, each with a fine label (100 classes) and a coarse one (the 20
superclasses that group them): the published "python version", cifar-100-python.tar.gz,
checked against its published MD5, holding cifar-100-python/train (50,000 images) and
cifar-100-python/test (10,000), read by data/formats.read_cifar.

cifar100.npz: train 45,000, validation 5,000 (fixed seed), test 10,000; the 100 fine classes,
or with --labels coarse the 20 superclasses; images 3x32x32 (red, green, blue planes).
"""

import os
import sys

if __package__ in (None, ""):  # run as python data/cifar100.py: the kit's helpers are one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plumbing.command_line import start_script

start_script(__name__, "cifar100")  # first: Ctrl-C, a closed output: one line

from data import fetch
from data.formats import read_cifar

ARCHIVE = fetch.Source("cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85")
TRAIN, TEST = "cifar-100-python/train", "cifar-100-python/test"
CLASSES = {"fine": 100, "coarse": 20}


def read(paths, args):
    key = f"{args.labels}_labels".encode()
    batches = read_cifar(paths[ARCHIVE.name], (TRAIN, TEST), (b"fine_labels", b"coarse_labels"))
    return {name: (batches[member][0], batches[member][1][key]) for name, member in (("train", TRAIN), ("test", TEST))}


def options(parser):
    parser.add_argument("--labels", choices=tuple(CLASSES), default="fine",
                        help="the 100 fine classes (default) or the 20 coarse superclasses")


DATASET = fetch.DataSet(name="cifar100", files=(ARCHIVE,), base_url="https://www.cs.toronto.edu/~kriz/",
                        num_classes=100, image_shape=(3, 32, 32), num_validation=5000, read=read, options=options,
                        classes=lambda args: CLASSES[args.labels])
main = fetch.command(DATASET)

if __name__ == "__main__":
    fetch.run(main)
