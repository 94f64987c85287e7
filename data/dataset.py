"""Reading a prepared data file (data/usps.npz, data/mnist.npz, ...) into the arrays a network
trains on, checked.

The file holds, for each set (train, validation, test), the images `<set>` (N, pixels) and
their labels `<set>_labels`, one-hot rows of as many columns as the data set has classes (the
same in every set). Everything wrong with it is reported as a
ConfigError naming the config key 'data_path' and the file: a network must never train on
images of the wrong size, labels that are not one-hot, or NaN.
"""

import os
import zipfile
import zlib

import numpy as np

from plumbing.errors import ConfigError
from plumbing.files import missing, numbers, physical_memory, read_npz


def load_sets(path, names, pixels, dtype, source):
    """{name: (images (N, pixels), one-hot labels (N, classes))} for every set in `names`, read
    from the .npz at `path` in `dtype`. The USPS file (usps.npz) is prepared on first use.
    `source` is the config, named in every message. Each array is read only once its header
    says it has the shape the config asks for (and fits in memory, as the copy in `dtype` must
    too); nothing else in the file is decompressed."""
    if missing(path):
        if os.path.basename(path) != "usps.npz":
            raise ConfigError(f"{source}: key 'data_path': {path} does not exist ({maker(path)})")
        from data import usps  # only here: fetching needs the network code

        usps.ensure(path)
    wanted = [key for name in names for key in (name, name + "_labels")]

    def accept(key, shape, kind):
        if not numbers(kind):
            raise ConfigError(f"{source}: key 'data_path': '{key}' in {path} holds {kind} values, not numbers")
        if not key.endswith("_labels") and (len(shape) != 2 or shape[1] != pixels):
            raise ConfigError(f"{source}: key 'input_image_size_y'/'input_image_size_x'/"
                              f"'input_num_channels': '{key}' in {path} has images of shape "
                              f"{shape[1:]}, the config says {pixels} pixels per image")

    try:
        # Half the memory per array: each is copied once more into `dtype`.
        arrays = read_npz(path, wanted, accept, limit=physical_memory() // 2)
    except ConfigError:
        raise
    except OSError as e:
        if e.strerror:  # not a regular file, unreadable, a loop of links: the system's word for it
            raise ConfigError(f"{source}: key 'data_path': cannot read {path} ({e.strerror})") from None
        raise ConfigError(f"{source}: key 'data_path': {path} is not a readable .npz data file "
                          f"({type(e).__name__})") from None
    except (ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, MemoryError) as e:
        raise ConfigError(f"{source}: key 'data_path': {path} is not a readable .npz data file "
                          f"({type(e).__name__})") from None
    absent = [key for key in wanted if key not in arrays]
    if absent:
        raise ConfigError(f"{source}: key 'data_path': {path} lacks the arrays "
                          f"{', '.join(absent)} ({maker(path)})")
    sets = {name: (arrays[name], arrays[name + "_labels"]) for name in names}
    classes = arrays[names[0] + "_labels"].shape[-1] if arrays[names[0] + "_labels"].ndim == 2 else 0
    for name, (x, t) in sets.items():
        if x.shape[0] == 0:
            raise ConfigError(f"{source}: key 'data_path': '{name}' in {path} holds no images: "
                              f"a network needs some to {'train on' if name == 'train' else 'be measured on'}")
        one_hot = t.ndim == 2 and t.shape[1] == classes >= 2 and np.all((t == 0) | (t == 1)) and \
            np.all(t.sum(axis=1) == 1)
        if t.shape[0] != x.shape[0] or not one_hot:
            width = (f"of {classes}, as '{names[0]}_labels' has" if name != names[0] else
                     "of one column per class (at least 2)")
            raise ConfigError(f"{source}: key 'data_path': '{name}_labels' in {path} must be one-hot rows "
                              f"{width}, one per image; got shape {t.shape} for {x.shape[0]} images")
        if not np.all(np.isfinite(x)):
            raise ConfigError(f"{source}: key 'data_path': '{name}' in {path} holds NaN or infinity")
    dtype = np.dtype(dtype)
    return {name: tuple(np.asarray(a, dtype=dtype) for a in arrays) for name, arrays in sets.items()}


# The fetcher of each data file the kit knows, by the name it writes.
FETCHERS = {"usps.npz": "usps", "mnist.npz": "mnist", "mnist_t10k.npz": "mnist --test-images-only",
            "norb.npz": "norb", "cifar10.npz": "cifar10", "cifar100.npz": "cifar100", "svhn.npz": "svhn"}


def maker(path):
    """How to make the data file `path`, in words."""
    fetcher = FETCHERS.get(os.path.basename(path))
    if fetcher is None:
        return f"python data/usps.py --out {path} makes the USPS file, data/<name>.py --out {path} another data set's"
    script, *flags = fetcher.split()
    return f"python data/{script}.py {' '.join(flags + ['--out', path])} makes it"
