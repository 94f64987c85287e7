"""Reading a prepared data file (data/usps.npz) into the arrays a network trains on, checked.

The file holds, for each set (train, validation, test), the images `<set>` (N, pixels) and
their labels `<set>_labels`, one-hot rows of 10. Everything wrong with it is reported as a
ConfigError naming the config key 'data_path' and the file: a network must never train on
images of the wrong size, labels that are not one-hot, or NaN.
"""

import os

import numpy as np

from config import ConfigError


def load_sets(path, names, pixels, dtype, source):
    """{name: (images (N, pixels), one-hot labels (N, 10))} for every set in `names`, read
    from the .npz at `path` in `dtype`. The USPS file (usps.npz) is prepared on first use.
    `source` is the config, named in every message."""
    if not os.path.exists(path):
        if os.path.basename(path) != "usps.npz":
            raise ConfigError(f"{source}: key 'data_path': {path} does not exist "
                              f"(python data/usps.py --out {path} makes the USPS file)")
        from data import usps  # only here: fetching needs the network code

        usps.ensure(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [key for name in names for key in (name, name + "_labels") if key not in f.files]
            if missing:
                raise ConfigError(f"{source}: key 'data_path': {path} lacks the arrays "
                                  f"{', '.join(missing)} (python data/usps.py --out {path} rewrites it)")
            sets = {name: (f[name], f[name + "_labels"]) for name in names}
    except ConfigError:
        raise
    except Exception as e:  # not a zip, truncated, pickled: any of numpy's many errors
        raise ConfigError(f"{source}: key 'data_path': {path} is not a readable .npz data file "
                          f"({type(e).__name__})") from None
    for name, (x, t) in sets.items():
        if x.ndim != 2 or x.shape[1] != pixels:
            raise ConfigError(f"{source}: key 'input_image_size_y'/'input_image_size_x'/"
                              f"'input_num_channels': '{name}' in {path} has images of shape "
                              f"{x.shape[1:]}, the config says {pixels} pixels per image")
        one_hot = t.ndim == 2 and t.shape[1] == 10 and np.all((t == 0) | (t == 1)) and np.all(t.sum(axis=1) == 1)
        if t.shape[0] != x.shape[0] or not one_hot:
            raise ConfigError(f"{source}: key 'data_path': '{name}_labels' in {path} must be one-hot "
                              f"rows of 10, one per image; got shape {t.shape} for {x.shape[0]} images")
        if not np.all(np.isfinite(x)):
            raise ConfigError(f"{source}: key 'data_path': '{name}' in {path} holds NaN or infinity")
    dtype = np.dtype(dtype)
    return {name: tuple(np.asarray(a, dtype=dtype) for a in arrays) for name, arrays in sets.items()}
