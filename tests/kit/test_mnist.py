"""data/mnist.py on the real MNIST files of the project's mirror (../shared/data/mnist/: the test images,
the test labels and the training labels, as published): the reader's counts are the README's, the
files pass their published checksums, and --test-images-only splits the 10,000 test images
8000 / 1000 / 1000. Skipped, saying why, where the mirror is absent; nothing here downloads."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

from data import fetch, mnist
from data.formats import read_idx


def mirror():
    """$MNIST_MIRROR, else <repo>/../shared/data/mnist."""
    return Path(os.environ.get("MNIST_MIRROR") or REPO_ROOT.parent / "shared" / "data" / "mnist")


@pytest.fixture(scope="module")
def real():
    folder = mirror()
    names = [s.name for s in mnist.FILES[1:]]
    if not all((folder / name).is_file() for name in names + ["README.md"]):
        pytest.skip(f"no MNIST mirror at {folder} (set MNIST_MIRROR to a folder holding README.md and "
                    f"{', '.join(names)}); these tests never download")
    return folder


@pytest.fixture(scope="module")
def readme(real):
    text = (real / "README.md").read_text()
    counts = dict(re.findall(r"(test|training) class counts (?:0\.\.9 )?are ([\d\s]+?)[;.]", " ".join(text.split())))
    first = re.search(r"first ten test labels are ([\d ]+);", " ".join(text.split())).group(1)
    md5s = dict(re.findall(r"^\| (?:\(absent\) )?(\S+\.gz) \| .*? \| ([0-9a-f]{32}) \|", text, re.M))
    return {"test": [int(c) for c in counts["test"].split()], "train": [int(c) for c in counts["training"].split()],
            "first": [int(c) for c in first.split()], "md5": md5s}


def test_the_published_md5s_are_the_readme_ones(readme):
    assert {s.name: s.md5 for s in mnist.FILES} == readme["md5"]


@pytest.mark.parametrize("index", [1, 2, 3])
def test_the_real_files_pass_their_published_checksums_and_sizes(real, index):
    source = mnist.FILES[index]
    fetch.check_published(str(real / source.name), source, source.name)


def test_the_real_test_images_and_labels_read_with_the_readme_counts(real, readme):
    images = read_idx(str(real / "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(str(real / "t10k-labels-idx1-ubyte.gz"))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == readme["test"]
    assert labels[:10].tolist() == readme["first"]
    # White digits on black: the border is background, the centre is ink.
    assert images[:, 0, :].max() == 0 and images[:, 10:18, 10:18].mean() > 60


def test_the_real_training_labels_read_with_the_readme_counts(real, readme):
    labels = read_idx(str(real / "train-labels-idx1-ubyte.gz"))
    assert labels.shape == (60000,) and np.bincount(labels, minlength=10).tolist() == readme["train"]


def test_test_images_only_splits_the_10000_8000_1000_1000(real, tmp_path, capsys):
    out = tmp_path / "mnist_t10k.npz"
    assert mnist.main(["--mirror", str(real), "--test-images-only", "--out", str(out)]) == 0
    assert "train 8000, validation 1000, test 1000" in capsys.readouterr().out
    images = read_idx(str(real / "t10k-images-idx3-ubyte.gz")).reshape(10000, -1)
    labels = read_idx(str(real / "t10k-labels-idx1-ubyte.gz"))
    with np.load(out) as f:
        arrays = {key: f[key] for key in f.files}
    sizes = {key: len(arrays[key]) for key in ("train", "validation", "test")}
    assert sizes == {"train": 8000, "validation": 1000, "test": 1000}
    every = np.concatenate([arrays[key] for key in sizes])
    every_labels = np.concatenate([arrays[key + "_labels"] for key in sizes]).argmax(1)
    np.testing.assert_array_equal(np.sort(np.round(every * 255).astype(np.uint8) @ np.arange(784) % 9973),
                                  np.sort(images.astype(np.int64) @ np.arange(784) % 9973))
    assert np.bincount(every_labels, minlength=10).tolist() == np.bincount(labels, minlength=10).tolist()


def test_test_images_only_split_is_fixed_and_proportional():
    labels = np.arange(500) % 10
    images = np.arange(500 * 4, dtype=np.uint8).reshape(500, 1, 2, 2)
    a, b = mnist.split_test_images(images, labels), mnist.split_test_images(images, labels)
    assert [len(a[k][1]) for k in ("train", "validation", "test")] == [400, 50, 50]
    for key in a:
        np.testing.assert_array_equal(a[key][0], b[key][0])
