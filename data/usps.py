"""Fetch the USPS digits and prepare data/usps.npz, the file every config reads.

The data are the USPS digits as published with "The Elements of Statistical Learning":
zip.train.gz (7291 digits) and zip.test.gz (2007 digits), gzip'd text, one digit per line:
the label, then 256 gray values in [-1, 1] (16x16, row-major, -1 is background).

    python data/usps.py                      # download from the book's datasets page
    python data/usps.py --mirror DIR         # or copy from a local mirror (also: USPS_MIRROR=DIR)

Every file is checked against a content digest before it is used, and every file this
writes appears whole or not at all (written beside its place, then renamed). The published
files are kept in data/downloads/, apart from the npz (and from any file beside an --out).

usps.npz holds train (6291, 256), validation (1000, 256), test (2007, 256), pixels in [0, 1],
and train_labels, validation_labels, test_labels, one-hot (N, 10). The 1000 validation
digits are drawn at random from the training file with a fixed seed, so everyone has
the same split.
"""

import gzip
import hashlib
import io
import os
import sys
import urllib.error
import urllib.request

if __package__ in (None, ""):  # run as python data/usps.py: the kit's helpers are one folder up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from plumbing.command_line import start_script

start_script(__name__, "usps")  # first: Ctrl-C, a closed output: one line

import numpy as np

from data import fetch
from plumbing.command_line import OneLineParser, entry_point
from plumbing.errors import DataError
from plumbing.files import (
    make_folders,
    open_regular,
    remove_empty_folders,
)
from plumbing.writing import write_atomically

BASE_URL = "https://hastie.su.domains/ElemStatLearn/datasets/"
FILES = {
    # name: (rows, content sha256 as defined in content_digest)
    "zip.train.gz": (7291, "bb8c5577af2800d9a092a9516d927235e3eb00a05bf99fe8b76b432f12f748ae"),
    "zip.test.gz": (2007, "ea677dd5aa43643ea8a81f2fd0f1e24ea2a8bfdd4613a16fc075ae9cf2b4760b"),
}
NUM_VALIDATION = 1000
SPLIT_SEED = 321
DEFAULT_NPZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "usps.npz")
# Where the published files are kept once fetched: the kit's own folder, never beside an --out
# the user named (a zip.train.gz there may be theirs).
DOWNLOADS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "downloads")




def content_digest(labels, pixels):
    """sha256 of the data, independent of number formatting and compression."""
    blob = labels.astype(np.uint8).tobytes() + np.round(pixels * 1000).astype("<i2").tobytes()
    return hashlib.sha256(blob).hexdigest()


def read_digits(path, shown=None):
    """Read one USPS .gz file: returns (labels (N,) int, pixels (N, 256) in [-1, 1]).
    `shown` names it in messages (default `path`): the mirror file or URL a copy came from."""
    shown = path if shown is None else shown
    try:
        with open_regular(path) as raw, gzip.open(raw, "rt") as f:
            table = np.loadtxt(f, ndmin=2)
    except (OSError, EOFError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise DataError(f"{shown}: not a readable USPS file ({reason})") from None
    if table.shape[1] != 257:
        raise DataError(f"{shown}: expected 257 numbers per line (label + 16x16 pixels), got {table.shape[1]}")
    return table[:, 0].astype(np.int64), table[:, 1:]


def verify(path, name, shown=None):
    """Read `path` as the USPS file `name` and check its rows and content digest."""
    shown = path if shown is None else shown
    rows, digest = FILES[name]
    labels, pixels = read_digits(path, shown)
    if len(labels) != rows:
        raise DataError(f"{shown}: {len(labels)} digits, expected {rows} for {name}")
    if content_digest(labels, pixels) != digest:
        raise DataError(f"{shown}: content digest does not match the published {name}; file rejected")
    return labels, pixels


def _fetch_one(name, dest, mirror=None, base_url=BASE_URL):
    """Place a verified copy of `name` at `dest`, from `mirror` (a directory) or `base_url`:
    whole or not at all (writing.write_atomically)."""
    source = os.path.join(mirror, name) if mirror else base_url.rstrip("/") + "/" + name

    def fetch(f):
        try:
            stream = open_regular(source) if mirror else urllib.request.urlopen(source, timeout=60)
        except (urllib.error.URLError, OSError) as e:
            raise _unreadable(source, mirror, e) from None
        with stream:
            while True:
                try:
                    chunk = stream.read(1 << 20)
                except (urllib.error.URLError, OSError) as e:
                    raise _unreadable(source, mirror, e) from None
                if not chunk:
                    break
                f.write(chunk)  # an OSError here is the copy's: write_atomically names it
        f.flush()
        verify(f.name, name, shown=source)

    write_atomically(dest, fetch)
    print(f"usps: {name} from {source}: verified")


def _unreadable(source, mirror, error):
    if mirror:
        return DataError(f"cannot read {source} from the mirror ({error.strerror})")
    return DataError(f"cannot download {source} ({getattr(error, 'reason', error)}); "
                     "use --mirror DIR or USPS_MIRROR=DIR for a local copy")


def prepare(npz_path=DEFAULT_NPZ, mirror=None, base_url=BASE_URL, downloads=None):
    """Fetch and verify both files (kept in `downloads`: default $USPS_DOWNLOADS, else
    data/downloads/), then write npz_path. Returns npz_path."""
    mirror = mirror if mirror is not None else os.environ.get("USPS_MIRROR") or None
    downloads = downloads or os.environ.get("USPS_DOWNLOADS") or DOWNLOADS
    check_npz_path(npz_path, mirror, downloads)
    made, data = [], {}
    try:
        try:
            make_folders(downloads, made)
        except OSError as e:
            raise DataError(f"cannot write {downloads} ({e.strerror})") from None
        for name in FILES:
            local = os.path.join(downloads, name)
            try:
                labels, pixels = verify(local, name)
            except DataError:
                # Missing or damaged: fetch it again.
                _fetch_one(name, local, mirror, base_url)
                labels, pixels = verify(local, name)
            data[name] = (labels, (pixels + 1) / 2)  # [-1, 1] -> [0, 1], background 0
    except BaseException:
        remove_empty_folders(made)  # a downloads folder made for nothing goes again
        raise

    labels, pixels = data["zip.train.gz"]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    val, train = order[:NUM_VALIDATION], np.sort(order[NUM_VALIDATION:])
    val = np.sort(val)
    test_labels, test_pixels = data["zip.test.gz"]
    arrays = dict(train=pixels[train], train_labels=fetch.one_hot(labels[train], 10),
                  validation=pixels[val], validation_labels=fetch.one_hot(labels[val], 10),
                  test=test_pixels, test_labels=fetch.one_hot(test_labels, 10))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomically(npz_path, lambda f: f.write(buffer.getvalue()))
    print(f"usps: wrote {npz_path} (train {len(train)}, validation {len(val)}, test {len(test_labels)})")
    return npz_path


def check_npz_path(npz_path, mirror, downloads):
    """The npz can be written at npz_path (its folder made by the write if need be), and writing
    it destroys no file it is made from: the copies kept in `downloads`, the mirror's."""
    sources = [os.path.join(downloads, name) for name in FILES]
    fetch.check_npz_path(npz_path, sources + ([os.path.join(mirror, name) for name in FILES] if mirror else []))


def ensure(npz_path=DEFAULT_NPZ, mirror=None):
    """Make sure npz_path exists, preparing it on first use."""
    if not os.path.exists(npz_path):
        print(f"usps: {npz_path} not found; preparing it")
        prepare(npz_path, mirror)
    return npz_path


@entry_point("usps")
def main(argv=None):
    parser = OneLineParser(prog="usps.py", description="Fetch USPS and write the kit's usps.npz.")
    parser.add_argument("--mirror", help="directory holding zip.train.gz and zip.test.gz "
                        "(default: $USPS_MIRROR, else download)")
    parser.add_argument("--url", default=BASE_URL, help="where to download from (default: %(default)s)")
    parser.add_argument("--out", default=DEFAULT_NPZ, help="the npz to write (default: %(default)s)")
    args = parser.parse_args(argv)
    prepare(args.out, args.mirror, args.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
