"""What every data set's fetcher shares: getting its published files, checking them, and
writing the kit's npz. data/mnist.py, norb.py, cifar10.py, cifar100.py and svhn.py each
describe their data set (a DataSet: files, checksums, reader, shape, classes) and hand it to
`command`; data/formats.py reads the published formats.

    python data/<name>.py                  # download into data/downloads/<name>/, write data/<name>.npz
    python data/<name>.py --mirror DIR     # read the published files from a folder instead
    python data/<name>.py --url URL        # download from elsewhere;  --out PATH: write the npz there
    python data/<name>.py --no-checksum    # a course's own files in the published format (other counts)

Files:
- A mirror's files are read where they are, never copied or changed.
- A download goes to '<name>.part' in data/downloads/<data set>/ and is renamed once whole and
  checked. If it stops (network, Ctrl-C), the part stays there, and the next run asks the server
  for the rest (an HTTP range) or starts again if the server cannot. A file that fails its
  checksum, or cannot be read, is removed: nothing half-made is ever used or left as whole.
- The npz appears whole or not at all (plumbing.writing.write_atomically).

The npz: `train`, `validation`, `test` (N, C*H*W) float32, each row an image laid out as
(C, H, W) as the layers read it, pixels scaled to [0, 1] (byte / 255, as usps.npz's are: 0 is
the darkest); `<set>_labels` (N, classes) one-hot rows, float32. The validation images are drawn
from the training file with a fixed seed (SPLIT_SEED), so everyone has the same split.
"""

import dataclasses
import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable

import numpy as np

from plumbing.command_line import OneLineParser, entry_point
from plumbing.errors import DataError
from plumbing.files import (
    check_folder_can_be_made,
    check_regular_or_absent,
    human_bytes,
    make_folders,
    open_regular,
    remove_empty_folders,
    same_file,
)
from plumbing.writing import write_atomically

SPLIT_SEED = 321  # as usps.py's
DATA_DIR = os.path.dirname(os.path.abspath(__file__))
DOWNLOADS = os.path.join(DATA_DIR, "downloads")
CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Source:
    """One published file and what its publisher (or a maintained index of it) gives to check it."""

    name: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None  # bytes, where published: said before a download, checked after


@dataclasses.dataclass(frozen=True)
class DataSet:
    """A data set as a fetcher knows it.

    read(paths, args) -> {'train': (images, labels), 'test': ..., and optionally 'validation'},
    images uint8 (N, C, H, W), labels int (N,) in 0..classes-1; `paths` maps each needed file's
    name to a readable path. needed(args) -> the Sources to fetch (default: all of `files`).
    classes(args), shape(args) -> the number of classes and (C, H, W) (default: the fields).
    """

    name: str
    files: tuple
    base_url: str
    num_classes: int
    image_shape: tuple
    num_validation: int
    read: Callable
    options: Callable = lambda parser: None  # adds the data set's own options to the parser
    needed: Callable = None
    classes: Callable = None
    shape: Callable = None
    out: Callable = None  # args -> default npz path

    def files_for(self, args):
        return tuple(self.needed(args)) if self.needed else self.files

    def classes_for(self, args):
        return self.classes(args) if self.classes else self.num_classes

    def shape_for(self, args):
        return tuple(self.shape(args)) if self.shape else self.image_shape

    def default_out(self, args):
        return self.out(args) if self.out else os.path.join(DATA_DIR, f"{self.name}.npz")


# --- checking files --------------------------------------------------------------------------
def file_digests(path):
    """(md5, sha256) hex digests of the file at `path`, read once."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            md5.update(block)
            sha256.update(block)
    return md5.hexdigest(), sha256.hexdigest()


def check_published(path, source, shown):
    """DataError unless the file at `path` has the size and checksums published for `source`."""
    try:
        size = os.path.getsize(path)
        md5, sha256 = file_digests(path)
    except OSError as e:
        raise DataError(f"cannot read {shown} ({e.strerror})") from None
    if source.size is not None and size != source.size:
        raise DataError(f"{shown}: {size} bytes, the published {source.name} has {source.size}; file rejected "
                        "(a course's own files in this format: --no-checksum)")
    for kind, actual, expected in (("md5", md5, source.md5), ("sha256", sha256, source.sha256)):
        if expected is not None and actual != expected:
            raise DataError(f"{shown}: {kind} {actual} is not the published {source.name}'s ({expected}); "
                            "file rejected (a course's own files in this format: --no-checksum)")


# --- getting files ---------------------------------------------------------------------------
def _say(prog, text):
    print(f"{prog}: {text}", flush=True)


def download(url, dest, prog):
    """Download `url` to `dest`, through `dest`.part, resuming a part an earlier run left.
    The part stays if the transfer stops (so the next run resumes it); `dest` appears only whole."""
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part is already all of it (or more): start again
            os.remove(part)
            return download(url, dest, prog)
        raise DataError(f"cannot download {url} (HTTP {e.code} {e.reason}); use --mirror DIR for a local copy") \
            from None
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"cannot download {url} ({getattr(e, 'reason', e)}); use --mirror DIR for a "
                        "local copy") from None
    with response:
        resumed = have and response.status == 206
        length = response.headers.get("Content-Length")
        total = (have if resumed else 0) + int(length) if length and length.isdigit() else None
        size = human_bytes(total) if total is not None else "size not given by the server"
        if resumed:
            _say(prog, f"resuming {url} at {human_bytes(have)} of {size}")
        else:
            _say(prog, f"downloading {url} ({size})" + (" (the server cannot resume: from the start)"
                                                          if have else ""))
        try:
            with open(part, "ab" if resumed else "wb") as f:
                shutil.copyfileobj(response, f, CHUNK)
        except (OSError, http.client.HTTPException) as e:
            got = os.path.getsize(part) if os.path.exists(part) else 0
            raise DataError(f"cannot download {url} ({getattr(e, 'strerror', None) or e}) after "
                            f"{human_bytes(got)}; the part is kept in {part} and the next run resumes it") from None
    got = os.path.getsize(part)
    if total is not None and got < total:
        raise DataError(f"cannot download {url}: the connection ended after {human_bytes(got)} of "
                        f"{human_bytes(total)}; the part is kept in {part} and the next run resumes it")
    os.replace(part, dest)


def obtain(source, folder, mirror, base_url, check, prog):
    """The path of a checked copy of `source`: the mirror's file itself (read in place), or the
    copy kept in `folder`, downloaded from `base_url` if it is missing or fails its check."""
    if mirror:
        path = os.path.join(mirror, source.name)
        try:
            open_regular(path).close()
        except OSError as e:
            raise DataError(f"cannot read {path} from the mirror ({e.strerror})") from None
        if check:
            check_published(path, source, path)
        return path
    path = os.path.join(folder, source.name)
    if os.path.isfile(path):
        try:
            if check:
                check_published(path, source, path)
            return path
        except DataError:
            os.remove(path)  # damaged: fetch it again
    made = []
    try:
        try:
            make_folders(folder, made)
            check_regular_or_absent(path)
        except OSError as e:
            raise DataError(f"cannot write {path} ({e.strerror})") from None
        url = base_url.rstrip("/") + "/" + source.name
        try:
            download(url, path, prog)
        except OSError as e:
            raise DataError(f"cannot write {path} ({e.strerror})") from None
    except BaseException:
        remove_empty_folders(made)  # a folder made for a download that left nothing in it goes again
        raise
    if check:
        try:
            check_published(path, source, url)
        except DataError:
            os.remove(path)
            raise
        _say(prog, f"{source.name}: checksum verified")
    return path


# --- the npz ---------------------------------------------------------------------------------
def one_hot(labels, classes, dtype=np.float64):
    """(N,) labels 0..classes-1 -> (N, classes) rows with a single 1."""
    return np.eye(classes, dtype=dtype)[labels]


def validation_size(num_train, num_validation):
    """How many of num_train training images are drawn for validation: num_validation, or a
    tenth of them (at least 1) when there are fewer than twice num_validation (a course's subset)."""
    return num_validation if num_train >= 2 * num_validation else max(1, num_train // 10)


def split_validation(images, labels, num_validation, seed=SPLIT_SEED):
    """(train, validation) of (images, labels): validation_size(N, num_validation) images drawn
    at random with `seed`, each set in file order."""
    num_validation = validation_size(len(labels), num_validation)
    if len(labels) < 2:
        raise DataError(f"the training file holds {len(labels)} images: too few to draw some for validation "
                        "and keep some to train on")
    order = np.random.default_rng(seed).permutation(len(labels))
    val, train = np.sort(order[:num_validation]), np.sort(order[num_validation:])
    return (images[train], labels[train]), (images[val], labels[val])


def check_npz_path(npz_path, sources):
    """The npz can be written at npz_path (its folder made by the write if need be), and writing
    it destroys none of the files it is made from."""
    if any(same_file(npz_path, source) for source in sources):
        raise DataError(f"{npz_path}: is one of the files it is made from; give the npz another name")
    try:
        check_regular_or_absent(npz_path)
        check_folder_can_be_made(os.path.dirname(os.path.abspath(npz_path)))  # made by the write
    except OSError as e:
        reason = "a part of it is a file, not a folder" if isinstance(e, (FileExistsError, NotADirectoryError)) \
            else e.strerror
        raise DataError(f"cannot write {npz_path} ({reason})") from None


def write_npz(npz_path, arrays):
    """Write `arrays` to npz_path (an .npz as np.savez_compressed writes one, at zlib's fastest
    level: the default level takes minutes for CIFAR's 600 MB of pixels), whole or not at all."""
    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for key, value in arrays.items():
                with archive.open(key + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)

    write_atomically(npz_path, write)  # OutputError saying what is there if it cannot be written


def kit_arrays(sets, classes, shape, shown):
    """The npz's arrays from {set: (uint8 images (N, C, H, W), int labels (N,))}."""
    arrays = {}
    for name, (images, labels) in sets.items():
        if images.shape[1:] != tuple(shape):
            raise DataError(f"{shown}: '{name}' images are {images.shape[1:]} (C, H, W), expected {tuple(shape)}")
        bad = (labels < 0) | (labels >= classes)
        if bad.any():
            raise DataError(f"{shown}: label {labels[bad][0]} of '{name}' image {int(np.argmax(bad))} is out of "
                            f"range 0..{classes - 1}")
        arrays[name] = (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32, copy=False)
        arrays[name + "_labels"] = one_hot(labels, classes, np.float32)
    return arrays


def prepare(dataset, args, mirror=None, base_url=None, downloads=None, check=True, out=None):
    """Fetch (or read from `mirror`) the files `args` asks for, check them unless `check` is
    False, read them, and write the npz (default data/<name>.npz). Returns its path."""
    prog = dataset.name
    out = out or dataset.default_out(args)
    folder = os.path.join(downloads or DOWNLOADS, dataset.name)
    sources = dataset.files_for(args)
    check_npz_path(out, [os.path.join(mirror or folder, source.name) for source in sources])
    if not check:
        _say(prog, "--no-checksum: the files are read as given, not checked against the published checksums")
    paths = {s.name: obtain(s, folder, mirror, base_url or dataset.base_url, check, prog) for s in sources}
    try:
        sets = dataset.read(paths, args)
    except DataError:
        if not mirror and not check:  # a download that is no file of this format: not kept
            for path in paths.values():
                os.remove(path)
        raise
    if "validation" not in sets:
        sets["train"], sets["validation"] = split_validation(*sets["train"], dataset.num_validation)
    sets = {name: sets[name] for name in ("train", "validation", "test")}
    write_npz(out, kit_arrays(sets, dataset.classes_for(args), dataset.shape_for(args), out))
    counts = ", ".join(f"{name} {len(labels)}" for name, (_, labels) in sets.items())
    _say(prog, f"wrote {out} ({counts}; {dataset.classes_for(args)} classes, images "
               f"{'x'.join(map(str, dataset.shape_for(args)))} (C x H x W))")
    return out


def command(dataset):
    """The `main(argv)` of a fetcher script: python data/<name>.py [options]."""
    @entry_point(dataset.name)
    def main(argv=None):
        parser = OneLineParser(prog=f"{dataset.name}.py",
                               description=f"Fetch {dataset.name} and write the kit's npz.")
        parser.add_argument("--mirror", help="read the published files from this folder instead of downloading")
        parser.add_argument("--url", default=dataset.base_url, help="where to download from (default: %(default)s)")
        parser.add_argument("--out", help=f"the npz to write (default: data/{dataset.name}.npz)")
        parser.add_argument("--no-checksum", action="store_true",
                            help="read files in the published format without checking them against the published "
                                 "checksums (a course's own files, a subset, other counts)")
        dataset.options(parser)
        args = parser.parse_args(argv)
        prepare(dataset, args, args.mirror, args.url, check=not args.no_checksum, out=args.out)
        return 0

    return main


def run(main):
    """The `if __name__ == '__main__'` of a fetcher script."""
    sys.exit(main())
