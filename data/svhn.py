"""Fetch SVHN's cropped digits (Netzer et al., 2011) and write data/svhn.npz.

    python data/svhn.py [--mirror DIR] [--url URL] [--out PATH] [--no-checksum]

House numbers from Google Street View, cropped to 32x32 colour images of one digit each:
train_32x32.mat (73,257 digits) and test_32x32.mat (26,032), MATLAB v5 files (X: 32 x 32 x 3
x N bytes, y: labels 1 to 10, where 10 is the digit 0), checked against the MD5s torchvision
checks (the data set's page publishes none) and the sizes tensorflow_datasets records. The
531,131 "extra" digits are not used.

svhn.npz: train 68,257, validation 5,000 (fixed seed), test 26,032; 10 classes, label = the
digit (0 for SVHN's 10); images 3x32x32 (red, green, blue planes).
"""

import os
import sys

if __package__ in (None, ""):  # run as python data/svhn.py: the kit's helpers are one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plumbing.command_line import start_script

start_script(__name__, "svhn")  # first: Ctrl-C, a closed output: one line

from data import fetch
from data.formats import read_svhn

FILES = (fetch.Source("train_32x32.mat", md5="e26dedcc434d2e4c54c9b2d4a06d8373", size=182040794),
         fetch.Source("test_32x32.mat", md5="eb5a983be6a315427106f1b164d9cef3", size=64275384))


def read(paths, args):
    return {"train": read_svhn(paths["train_32x32.mat"]), "test": read_svhn(paths["test_32x32.mat"])}


DATASET = fetch.DataSet(name="svhn", files=FILES, base_url="http://ufldl.stanford.edu/housenumbers/",
                        num_classes=10, image_shape=(3, 32, 32), num_validation=5000, read=read)
main = fetch.command(DATASET)

if __name__ == "__main__":
    fetch.run(main)
