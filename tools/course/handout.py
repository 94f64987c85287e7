"""Write the student kit: python tools/handout.py OUT_DIR [--zip PATH | --no-zip]

Copies the files of the kit that students get (HANDED_OUT) to OUT_DIR, with each of the four solution regions
(`# BEGIN SOLUTION` ... `# END SOLUTION` in fc_layer.py and conv_layer.py) replaced by a
"YOUR CODE HERE" block that says what to compute from what and raises
NotImplementedError("<Class.Method>: ..."), and writes OUT_DIR.zip of it.

The student kit holds what a student runs or reads, and nothing else: HANDED_OUT names it
(the kit, the assignment's configs, the documents students read, the course tools they run
and the tests of the kit). A file it does not name is staff-only, so a new staff tool, test
or document stays out until someone decides students get it. Never handed out, whatever
the list says: build products (build/, *.so, *.c, *.o, __pycache__, *.egg-info), data and
run outputs (runs/, *.npz, *.npy, *.gz, *.part, *_display.png, convolutions.png, *.zip),
hidden files and folders but .gitignore (.git, .venv, .ci, caches).

README.md and docs/*.md (STAFF_STRIPPED) are handed out as students should read them: the
lines from `<!-- BEGIN STAFF ONLY -->` to `<!-- END STAFF ONLY -->` are removed, and the
lines between `<!-- BEGIN STUDENT ONLY` and `END STUDENT ONLY -->` (an HTML comment, so the
staff's copy does not show them) are kept without those two marker lines. Each marker is a
line of its own. Before it writes the zip it checks that no line of any region survives in
the kit, and that no marker does (a marker in a file that is not stripped, or not on a line
of its own, would hand out what follows it).

Exit status: 0 written, 2 bad input (OUT_DIR not empty, a kit without its four regions, a
block left open, nested or holding `-->`, or a marker where it would not be processed).
"""

import fnmatch
import os
import shutil
import sys
import zipfile
from pathlib import Path

from plumbing.command_line import OneLineParser, entry_point
from plumbing.errors import OutputError, UserError
from plumbing.writing import write_atomically, write_folder_atomically
from tools import KIT
from tools.course.leaks import check as check_leaks
from tools.course.regions import ALL_PIECES, PIECES, RegionError, marked_regions

EXCLUDED_DIRS = {"__pycache__", "build", "dist", "runs", "venv"}
EXCLUDED_FILES = ["*.pyc", "*.so", "*.pyd", "*.o", "*.c", "*.npz", "*.npy", "*.gz", "*.part", "*.zip",
                  "*_display.png", "convolutions.png"]
# What students get, as kit-relative paths; a `*` matches within one folder. Every other file
# is staff-only: a new file reaches students only once it is named here.
HANDED_OUT = (
    # The kit: its scripts, layers, kernels, build files and the answers template.
    "README.md", "answers.md", ".gitignore", "MANIFEST.in", "pyproject.toml", "setup.py", "convolutions.pyx",
    "convolutions.py", "layer.py", "fc_layer.py", "conv_layer.py", "maxpool_layer.py", "dropout_layer.py",
    "batchnorm_layer.py", "net.py",
    "train.py",
    "evaluate.py", "grad_check.py", "play_with_convolutions.py", "kernels/*.h", "plumbing/*.py", "data/*.py",
    # The assignment's configs (not usps_best.yaml nor lenet.yaml).
    "configs/logreg.yaml", "configs/net_1layer.yaml", "configs/net_2layer.yaml", "configs/convnet1_method1.yaml",
    "configs/convnet1_method2.yaml", "configs/convnet2.yaml", "configs/convnet3.yaml",
    "configs/convnet_gradcheck.yaml", "configs/convnet_gradcheck_deep.yaml",
    "configs/convnet_gradcheck_deep_method1.yaml", "configs/convnet_gradcheck_pad0.yaml",
    "configs/convnet_gradcheck_stride2.yaml",
    # The other data sets' configs (Part 2: "If you are looking for more challenging datasets ...").
    "configs/mnist_convnet.yaml", "configs/mnist_t10k_convnet.yaml", "configs/norb_convnet.yaml",
    "configs/cifar10_convnet.yaml", "configs/cifar100_convnet.yaml", "configs/svhn_convnet.yaml",
    # The documents students read (their staff-only parts removed: STAFF_STRIPPED).
    "docs/architecture.md", "docs/changes.md", "docs/configuration.md", "docs/course-tools.md", "docs/data.md",
    "docs/reliability.md", "docs/tests.md",
    # The course tools students run (report, submit, pool_ties) and what they import.
    "tools/__init__.py", "tools/kit_path.py", "tools/report.py", "tools/submit.py", "tools/pool_ties.py",
    "tools/course/__init__.py", "tools/course/report.py", "tools/course/submit.py", "tools/course/regions.py",
    "tools/course/source_text.py", "tools/course/pool_ties.py",
    # The tests of the kit (not the staff's: builds, fuzz, reliability, grad-check mistakes, ...).
    "tests/conftest.py", "tests/references.py", "tests/kit/test_augment.py", "tests/kit/test_checkpoints.py",
    "tests/kit/test_command_line.py", "tests/kit/test_config.py", "tests/kit/test_conv_layer.py",
    "tests/kit/test_convolutions.py", "tests/kit/test_convolutions_doctests.py", "tests/kit/test_correlate.py",
    "tests/kit/test_convolutions_numpy.py",
    "tests/kit/test_display.py", "tests/kit/test_dtype.py", "tests/kit/test_fc_layer.py", "tests/kit/test_files.py",
    "tests/kit/test_grad_check.py", "tests/kit/test_layer.py", "tests/kit/test_lr_schedule.py",
    "tests/kit/test_maxpool_layer.py", "tests/kit/test_net.py", "tests/kit/test_play_with_convolutions.py",
    "tests/kit/test_run_files.py", "tests/kit/test_runtime.py", "tests/kit/test_scripts.py", "tests/kit/test_usps.py",
    "tests/published_formats.py", "tests/kit/test_formats.py", "tests/kit/test_fetch.py", "tests/kit/test_mnist.py",
)
# Handed out as students read them (fnmatch patterns of kit-relative paths).
STAFF_STRIPPED = ("README.md", "docs/*.md")
STAFF_BEGIN, STAFF_END = "<!-- BEGIN STAFF ONLY -->", "<!-- END STAFF ONLY -->"
STUDENT_BEGIN, STUDENT_END = "<!-- BEGIN STUDENT ONLY", "END STUDENT ONLY -->"
MARKERS = (STAFF_BEGIN, STAFF_END, STUDENT_BEGIN, STUDENT_END)

# What each blank says: what to compute, from what, and the handout's hints. Our own words.
BLANKS = {
    "FCLayer.ComputeUp": (
        "YOUR CODE HERE (FCLayer.ComputeUp). Set `output`, shape (batch, num_channels): each row",
        "is the affine map of one row of `inputs` (batch, fan_in) by the weights self.w_",
        "(num_channels, fan_in), plus the biases self.b_ (1, num_channels). The activation is",
        "applied below, not here. One line of numpy will do; DO NOT write loops.",
    ),
    "FCLayer.ComputeDown": (
        "YOUR CODE HERE (FCLayer.ComputeDown). `deriv` (batch, num_channels) holds the derivatives",
        "w.r.t. this layer's pre-activations; `inputs` is (batch, fan_in). Set",
        "  dC_by_dinputs (batch, fan_in): only when this is not the input layer (self.is_input_),",
        "      otherwise leave it None;",
        "  dw (num_channels, fan_in) and db (num_channels,): SUMS over the batch (the code below",
        "      divides them by the batch size).",
        "Matrix products and sums; DO NOT write loops.",
    ),
    "ConvLayer.ComputeUp": (
        "YOUR CODE HERE (ConvLayer.ComputeUp, method 2). Set `outputs` (N, K, H1, W1) with one call",
        "of convolutions.convolve: the input maps `inputs` (N, C, H, W) convolved with the flipped",
        "filters `w_flip` (K, C, k, k), padding self.padding_, then added up over the C input",
        "channels. convolve broadcasts over the axes before the last two: add new axes so that",
        "every image meets every filter. DO NOT write loops.",
    ),
    "ConvLayer.ComputeDown": (
        "YOUR CODE HERE (ConvLayer.ComputeDown, method 2), one convolutions.convolve call each,",
        "with k = self.kernel_size_ and p = self.padding_:",
        "  dC_by_dinputs (N, C, H, W), only when this is not the input layer: the derivatives",
        "      `deriv` (N, K, H1, W1) convolved with the filters as they are, `w` (K, C, k, k),",
        "      padding k - p - 1, added up over the K output channels;",
        "  dw (K, C, k, k), a SUM over the batch: `inputs` convolved with the flipped derivatives",
        "      `deriv_flip`, padding p.",
        "Add axes so the right maps meet; DO NOT write loops.",
    ),
}
MESSAGES = {
    "FCLayer.ComputeUp": "FCLayer.ComputeUp: write the forward pass in fc_layer.py",
    "FCLayer.ComputeDown": "FCLayer.ComputeDown: write the backward pass in fc_layer.py",
    "ConvLayer.ComputeUp": "ConvLayer.ComputeUp: write method 2's forward pass in conv_layer.py",
    "ConvLayer.ComputeDown": "ConvLayer.ComputeDown: write method 2's backward pass in conv_layer.py",
}


class HandoutError(UserError):
    """Bad input; the message names the file or folder."""


def blank_source(source, path):
    """`source` with every region's body replaced by its YOUR CODE HERE block; also returns
    the regions removed. Raises HandoutError unless exactly this file's pieces are marked."""
    try:
        regions = marked_regions(source, path)
    except RegionError as e:
        raise HandoutError(str(e)) from None
    expected = PIECES[os.path.basename(path)]
    names = [r.piece for r in regions]
    if sorted(names) != sorted(expected):
        raise HandoutError(f"{path}: the BEGIN/END SOLUTION regions are in {names or 'no method'}, "
                           f"expected one in each of {', '.join(expected)}")
    lines = source.splitlines(keepends=True)
    for region in reversed(regions):  # from the bottom, so earlier line numbers stay valid
        marker = lines[region.first - 2]
        indent = marker[:len(marker) - len(marker.lstrip())]
        block = [f"{indent}# {text}".rstrip() + "\n" for text in BLANKS[region.piece]]
        block.append(f"{indent}raise NotImplementedError({MESSAGES[region.piece]!r})\n")
        lines[region.first - 1:region.last] = block
    return "".join(lines), regions


def is_staff_stripped(rel):
    """Whether the kit file `rel` (posix, relative) is handed out with its blocks processed."""
    return any(fnmatch.fnmatch(rel, pattern) for pattern in STAFF_STRIPPED)


def matches(rel, pattern):
    """Whether the kit-relative path `rel` matches `pattern`, folder by folder (a `*` never
    crosses a `/`)."""
    parts, wanted = rel.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))


def is_handed_out(rel):
    """Whether the kit file `rel` (posix, relative) goes into the student kit."""
    return any(matches(rel, pattern) for pattern in HANDED_OUT)


def is_staff_only(rel):
    """Whether the kit file `rel` (posix, relative) stays out of the student kit: any file
    HANDED_OUT does not name."""
    return not is_handed_out(rel)


def strip_staff_only(text, path="README.md"):
    """`text` (a Markdown document) as a student reads it: without its staff-only blocks
    (every line from a STAFF_BEGIN line to the next STAFF_END line, both included), and with
    the lines of its student-only blocks kept but not their STUDENT_BEGIN and STUDENT_END
    lines. Raises HandoutError, naming `path` and the line, for a block left open, an end
    without its beginning, a block inside another, or a `-->` inside a student block (it
    would end the comment that hides the block from staff)."""
    begins = {STAFF_BEGIN: STAFF_END, STUDENT_BEGIN: STUDENT_END}
    kept, opened, where = [], None, 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker in begins:
            if opened:
                raise HandoutError(f"{path}, line {number}: {marker} inside the block {opened} opened at "
                                   f"line {where}")
            opened, where = marker, number
        elif marker in (STAFF_END, STUDENT_END):
            if begins.get(opened) != marker:
                raise HandoutError(f"{path}, line {number}: {marker} without its "
                                   f"{STAFF_BEGIN if marker == STAFF_END else STUDENT_BEGIN}")
            opened = None
        elif opened == STUDENT_BEGIN and "-->" in line:
            raise HandoutError(f"{path}, line {number}: '-->' inside the student block opened at line {where} "
                               f"(it would end the comment that hides the block)")
        elif opened != STAFF_BEGIN:
            kept.append(line)
    if opened:
        raise HandoutError(f"{path}, line {where}: {opened} is never closed by {begins[opened]}")
    return "".join(kept)


def kit_files(kit, skip=()):
    """Relative paths (posix) of the kit's files that go into the student kit."""
    skip = {Path(p).resolve() for p in skip}
    found = []
    for folder, dirs, files in os.walk(kit):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in EXCLUDED_DIRS
                         and not d.endswith(".egg-info") and (here / d).resolve() not in skip
                         and not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            rel = path.relative_to(kit).as_posix()
            hidden = name.startswith(".") and name != ".gitignore"  # e.g. a worktree's .git file
            if hidden or any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDED_FILES) or is_staff_only(rel) \
                    or path.resolve() in skip or path.is_symlink():
                continue
            found.append(rel)
    return found


def solution_lines(kit):
    """The stripped, non-blank lines of the kit's regions that occur nowhere else in its
    student files (a line such as `if not self.is_input_:` that the kit also has outside
    the regions gives nothing away)."""
    inside, outside = set(), set()
    for name in PIECES:
        source = (kit / name).read_text(encoding="utf-8")
        regions = marked_regions(source, name)
        spans = {n for r in regions for n in range(r.first, r.last + 1)}
        for number, line in enumerate(source.splitlines(), start=1):
            (inside if number in spans else outside).add(line.strip())
    return sorted(line for line in inside - outside if line)


def surviving_lines(out_dir, lines):
    """[(file, line)] for each of `lines` found in a text file under out_dir (the solution
    lines; also the staff markers)."""
    hits = []
    for path in sorted(Path(out_dir).rglob("*")):
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            hits.extend((path.relative_to(out_dir).as_posix(), line) for line in lines if line in text)
    return hits


def write_zip(out_dir, file):
    """Zip the folder out_dir into `file` (an open binary file), its files under out_dir's name."""
    out_dir = Path(out_dir)
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(out_dir.rglob("*")):
            if path.is_file():
                archive.write(path, f"{out_dir.name}/{path.relative_to(out_dir).as_posix()}")


def make_handout(out_dir, zip_path=None, kit=KIT):
    """Write the student kit to out_dir (and the zip); return (files written, regions blanked)."""
    kit, out_dir = Path(kit).resolve(), Path(out_dir).resolve()
    for name in PIECES:
        if not (kit / name).is_file():
            raise HandoutError(f"{kit}: not a kit folder ({name} is missing)")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise HandoutError(f"{out_dir}: exists and is not an empty folder; choose a new one")
    files = kit_files(kit, skip=[out_dir] + ([zip_path] if zip_path else []))
    blanked = []
    sources = {}
    for rel in files:
        if rel in PIECES:
            text, regions = blank_source((kit / rel).read_text(encoding="utf-8"), rel)
            sources[rel] = text
            blanked.extend(r.piece for r in regions)
        elif is_staff_stripped(rel):
            sources[rel] = strip_staff_only((kit / rel).read_text(encoding="utf-8"), rel)
    missing = [p for p in ALL_PIECES if p not in blanked]
    if missing:
        raise HandoutError(f"{kit}: no solution region for {', '.join(missing)}")

    def fill(folder):
        for rel in files:
            target = Path(folder) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel in sources:
                target.write_text(sources[rel], encoding="utf-8")
                shutil.copymode(kit / rel, target)
            else:
                shutil.copy2(kit / rel, target)

    write_folder_atomically(out_dir, fill)  # the whole kit or none of it
    leaks = surviving_lines(out_dir, solution_lines(kit))
    if leaks:
        where, line = leaks[0]
        raise HandoutError(f"{out_dir / where}: holds solution text {line!r}; nothing zipped")
    markers = surviving_lines(out_dir, MARKERS)
    if markers:
        where, marker = markers[0]
        raise HandoutError(f"{out_dir / where}: holds the staff marker {marker} (staff-only and student-only "
                           f"blocks are processed in {', '.join(STAFF_STRIPPED)} only, on lines of their own); "
                           f"nothing zipped")
    check_leaks(out_dir, kit)  # answer-key numbers, near-copies of solution lines: LeakError, nothing zipped
    if zip_path:
        try:
            write_atomically(zip_path, lambda f: write_zip(out_dir, f))
        except OutputError as e:
            raise OutputError(f"{e}; the kit's folder {out_dir} is written") from None
    return files, blanked


@entry_point("handout.py")
def main(argv=None):
    parser = OneLineParser(
        prog="handout.py",
        description="Write the student kit: the kit with its four solution regions blanked, and a zip of it.")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a new (or empty) folder for the student kit")
    parser.add_argument("--zip", metavar="PATH", help="where to write the zip (default: OUT_DIR.zip)")
    parser.add_argument("--no-zip", action="store_true", help="write the folder only")
    parser.add_argument("--kit", default=str(KIT), help="the reference kit (default: the one this tool is in)")
    args = parser.parse_args(argv)
    zip_path = None if args.no_zip else Path(args.zip or str(Path(args.out_dir).resolve()) + ".zip").resolve()
    try:
        files, blanked = make_handout(args.out_dir, zip_path, Path(args.kit))
    except OSError as e:
        raise HandoutError(f"{e.filename}: {e.strerror}") from None
    print(f"wrote {len(files)} files to {Path(args.out_dir).resolve()}"
          + (f" and {zip_path}" if zip_path else ""))
    print(f"blanked: {', '.join(sorted(blanked, key=ALL_PIECES.index))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
