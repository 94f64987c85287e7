"""How fast is the kit? One run, printed as Markdown the README can quote:
python tools/bench.py [--quick] [--repeat N] [--only NAME[,NAME]] [--no-torch] [--threads N]
                      [--total] [--data NPZ]

The kit is measured in this process and PyTorch in a child process that this one asks for
one epoch at a time (torch never loads here: its OpenMP runtime would be the one the kit's
compiled kernels share, and on a small machine it makes them several times slower); sections
5 and 6 run train.py in child processes. One measurement after another on the same machine,
and every time is a median.

1. Seconds per epoch for every training config in configs/ (a config is a training config
   when it names its data and epochs: it has both `data_path` and `max_epochs`; this leaves
   out the grad-check configs and lenet.yaml), each conv config by method 1 and by method 2
   (the conv layers' `convolve_method` rewritten in memory), in float64 (`dtype` rewritten
   when a config sets it) and, for every conv config and any config that ships with
   `dtype: float32`, in float32 ("n/a" if the kit refuses the key). An epoch is what NeuralNet.Train times:
   the training images in a new random order, in mini-batches, each step (augmentation if
   the config asks for it) Fprop, ComputeLoss, the divergence checks, ComputeDeriv, Bprop and
   Update, dropout on; then Validate on the validation set. KitRun's loop runs those calls
   of the kit's own NeuralNet (seed 0) as Train does (tests/test_bench.py checks that it
   ends where Train's epoch ends, bit for bit), without Train's file writes and display, so
   nothing is written anywhere (Train itself would save a checkpoint every epoch). One
   warm-up epoch per variant, then --repeat timed epochs (default 3) taken round-robin over
   the variants of one architecture, so that a change in the machine's load hits them all
   alike; the table gives the median.
2. The same architectures in PyTorch, when it is importable (it is never a dependency of
   the kit): Conv2d/MaxPool2d/Linear/Dropout built from the YAML, ReLU after every layer but
   the last, softmax cross entropy, SGD with the config's per-layer momentum, learning rate
   (epsilon) and L2 decay (weights only, as the kit), the kit's initial weights, the same
   batch size and the same epoch (shuffled mini-batches, then a no-grad validation pass),
   in float64 and float32, with torch.set_num_threads(usable cores) (--threads N: N). It
   runs in a child process (`python -m tools.benchmark.pytorch`, JSON lines on its stdin and stdout)
   that loads the same data file (and --quick subset), builds the models from the config
   and the kit's initial weights (an .npz in the temporary folder) and, blocked on its stdin
   in between, runs one epoch when asked and answers with its seconds. Timed round-robin
   with the kit's variants of the same architecture: per round this process times each kit
   variant itself, then asks for each torch variant in turn. Before timing, the torch
   float64 model's softmax outputs on 100 validation images (sent back by the child) are
   compared with the kit's (the table's note gives the largest difference; above 1e-10 is
   a warning), and
   tests/test_bench.py checks that both take the same SGD steps. A config that augments its
   images gets "n/a" here: this loop has no augmentation.
3. convolutions.convolve on exactly the calls method 2 makes in convnet1 and convnet2
   (forward, input derivative except for the input layer, weight derivative), recorded by
   wrapping convolve while the kit's method 2 layers do one training step on 100 training
   images in float64 (so nothing here restates the handout's answer, and it follows the
   layers as they change), timed again on the same arrays against two independent
   references of the same padded 'valid' true convolution: scipy.signal.convolve2d looped
   over the broadcast leading axes, and scipy.signal.fftconvolve over axes (-2, -1). All
   three must agree (np.allclose). Each is called for a quarter of a second (at least
   --repeat calls, at most 500; --quick: --repeat calls) and the median taken: a call of a
   third of a millisecond varies with when a sleeping thread wakes.
4. Achieved GFLOP/s of every conv config's epochs, kit by both methods and PyTorch, in
   float64 and float32: multiply-adds counted per layer from the config (conv forward
   N*K*C*k*k*H'*W', its input and weight derivatives as much again each, no input
   derivative in the first layer; FC forward N*in*out and the same for each derivative;
   pooling and activations not counted), 2 flops each, over the training set forward and
   backward and the validation set forward, divided by the epoch times of section 1; each
   against numpy.dot of two 1024x1024 matrices in the same dtype (2 * 1024**3 / median
   time): the share of this machine's matrix-product rate that the epoch reaches.
5. Peak resident memory of `python train.py <convnet1_method1 copy> --epochs 2 --no-display`
   (the child's ru_maxrss from os.wait4, in a small go-between process: see
   bench_trainings.run_child), and for scale that of a Python that only imports the kit.
6. Only with --total (it takes minutes): wall time and peak memory of each Part 1 and Part 2
   training of the handout (logreg, net_1layer, net_2layer, convnet1_method1,
   convnet1_method2, convnet2) at its configured max_epochs, one `python train.py` child
   after another, and their sum.

Child processes run train.py in the kit's folder on copies of the configs whose checkpoint
and stats files point into a temporary folder: runs/ is never touched.

--quick is a smoke test: 500 training and 200 validation images, one warm-up and one timed
epoch, batch 10 for section 3, and the subset for the child trainings (1 epoch each with
--total). Its numbers are not the benchmark. --only picks configs by name (sections 3 to 6
cover the models among them). Threads: the bench sets up its process as train.py does,
calling runtime.configure("batches") before numpy and the kernels load (runtime.py's thread
variables for training, each unless already set, which reach every child too, and its
malloc settings). Without --threads the kit runs as train.py runs it, OpenBLAS's and the
kernels' OpenMP threads at their defaults (one per core), and torch gets
torch.set_num_threads(usable cores), its fastest setting here, in the environment the bench
was started with (without the variables the bench itself set). --threads N sets
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS to N before numpy is loaded (for
every child too) and torch's thread count to N. The header line names the machine, the
libraries, the thread counts as the libraries report them, the thread variables set (and
which of them the bench set), the date, the kit's git revision and the load; the epoch table
and the last line say how busy other processes kept the CPUs meanwhile.
--data uses another prepared USPS file instead of each config's data_path.

Results go to stdout as Markdown; progress goes to stderr.
Exit status: 0, or 2 for a bad command line.

This file is the command line and the report (tools/bench.py is its entry point); what it
measures is in the modules beside it, in tools/benchmark/: process (threads, set before numpy
loads), configs (the configs, their shapes and flops), machine (the machine, its threads and
load, median timing), epochs (sections 1 and 2), pytorch (the PyTorch worker and its parent's
end), convolve (section 3), trainings (sections 5 and 6), output (Markdown and progress).
"""

import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plumbing.command_line import OneLineParser, entry_point, require_compiled_kernels
from tools import KIT
from tools.benchmark.configs import epoch_flops, flops_per_image, load_arrays, training_configs
from tools.benchmark.convolve import CONVOLVE_MAX_CALLS, CONVOLVE_SECONDS, measure_convolve
from tools.benchmark.epochs import measure_epochs, plan_rows, wants_float32
from tools.benchmark.machine import (
    MATMUL_SIZE,
    CpuShare,
    cpu_model,
    git_revision,
    kernel_threads,
    load_average,
    matmul_gflops,
    openblas_threads,
    thread_settings,
    usable_cores,
)
from tools.benchmark.output import failure, log, markdown_table, median_ratio, out, seconds, spread
from tools.benchmark.process import BENCH_DEFAULTS, BENCH_REASON, configure_process
from tools.benchmark.pytorch import FORWARD_DIFFS, TorchWorker
from tools.benchmark.trainings import run_child, write_subset, write_training_copy

PART_1_AND_2 = ("logreg", "net_1layer", "net_2layer", "convnet1_method1", "convnet1_method2", "convnet2")
# Sections 3 to 5: the model, and the configs (either selects it) that hold it.
CONVOLVE_MODELS = {"convnet1": ("convnet1_method1", "convnet1_method2"), "convnet2": ("convnet2",)}
MEMORY_CONFIG = "convnet1_method1"
QUICK_TRAIN, QUICK_VALIDATION, QUICK_CONVOLVE_BATCH = 500, 200, 10
CONVOLVE_BATCH = 100


def parse_args(argv, names):
    parser = OneLineParser(prog="bench.py", allow_abbrev=False,  # --threads is read before parsing
                           description="Benchmark the kit (and PyTorch, if importable); Markdown on stdout.")
    parser.add_argument("--quick", action="store_true", help="smoke test: a small subset, 1 timed epoch")
    parser.add_argument("--repeat", type=int,
                        help="timed epochs per variant, median taken (default 3; 1 with --quick)")
    parser.add_argument("--only", help="comma-separated config names (default: all: " + ", ".join(names) + ")")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch columns")
    parser.add_argument("--threads", type=int,
                        help="BLAS, OpenMP and torch threads (default: one per core for each, as train.py)")
    parser.add_argument("--total", action="store_true",
                        help="also time the full Part 1 and Part 2 trainings (minutes)")
    parser.add_argument("--data", help="prepared USPS .npz to use instead of each config's data_path")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.only is not None:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in args.only if n not in names]
        if not args.only or unknown:
            parser.error(f"--only: no training config {', '.join(unknown) or repr('')}; "
                         f"choose from {', '.join(names)}")
    if args.data is not None and not os.path.isfile(args.data):
        parser.error(f"--data: {args.data} is not a file")
    return args


@dataclass
class Setup:
    """What every section needs."""
    args: object
    configs: dict        # every training config, by name
    selected: dict       # those --only picked
    torch: object        # the TorchWorker, or None
    data_path: Path
    arrays: dict
    limit: tuple         # (training, validation) images with --quick, else None
    tmpdir: str

    @property
    def num_train(self):
        n = len(self.arrays["train"][0])
        return min(n, self.limit[0]) if self.limit else n

    @property
    def num_validation(self):
        n = len(self.arrays["validation"][0])
        return min(n, self.limit[1]) if self.limit else n

    def child_data(self):
        """The data file of the child trainings: the --quick subset, --data, or the configs' own."""
        if self.args.quick:
            return write_subset(self.arrays, self.limit, self.tmpdir)
        return self.args.data


def section_epochs(setup, missing):
    """Sections 1 and 2; returns the rows for section 4."""
    args, torch = setup.args, setup.torch
    groups = plan_rows(setup.selected)
    cpu = CpuShare()
    notes = measure_epochs(groups, args, torch, setup.data_path, setup.limit, setup.tmpdir)
    # The point of the torch worker: tests/test_bench.py reads this line.
    torch_here = "torch" in sys.modules
    log(f"torch imported in the process that timed the kit: {'YES' if torch_here else 'no'}")
    if torch_here:
        notes.insert(0, "WARNING: torch was imported in the process that timed the kit; its OpenMP "
                        "runtime slows the kit's kernels, so the kit's times are not trustworthy")
    rows = [row for group in groups.values() for row in group]
    out(f"### Seconds per epoch ({setup.num_train} training images in mini-batches, then validation on "
        f"{setup.num_validation}; median of {args.repeat} after 1 warm-up)")
    out()
    with_float32 = [wants_float32(row) for row in rows]
    headings = ["config", "conv method", "kit float64"] + (["kit float32"] if any(with_float32) else [])
    if torch is not None:
        headings += ["torch float64", "torch float32", "kit / torch float64"]
    table = []
    for row, float32 in zip(rows, with_float32):
        cells = [", ".join(row.names), row.method or "–", seconds(row.kit)]
        if any(with_float32):
            cells.append(seconds(row.kit32, row.kit32_note) if float32 else "–")
        if torch is not None:
            cells += [seconds(row.torch64, row.torch_note), seconds(row.torch32, row.torch_note),
                      median_ratio(row.kit, row.torch64)]
        table.append(cells)
    out(markdown_table(headings, table, numeric_from=2))
    out()
    paragraph = ["The kit's time is its own training loop (NeuralNet's Fprop, ComputeLoss, ComputeDeriv, "
                 "Bprop, Update and checks per mini-batch, then Validate), without Train's file writes."]
    cells = [(f"{', '.join(r.names)} {r.method}".strip(), what, t) for r in rows
             for what, t in (("kit float64", r.kit), ("kit float32", r.kit32),
                             ("torch float64", r.torch64), ("torch float32", r.torch32)) if len(t) > 1]
    if cells:
        worst = max(cells, key=lambda item: spread(item[2]))
        paragraph.append(f"Largest spread of one cell's timed epochs (slowest / fastest - 1): "
                         f"{spread(worst[2]):.0%} ({worst[0]}, {worst[1]}).")
    paragraph.append(cpu.sentence("the epochs"))
    if torch is not None:
        paragraph.append(
            "PyTorch runs in a child process, asked for one epoch at a time. "
            "It does not depend on the conv method: one measurement per architecture, shown on both "
            "method rows. Each torch model starts from the kit's initial weights; in float64 its softmax "
            "outputs on 100 validation images differ from the kit's by at most "
            f"{max(FORWARD_DIFFS, default=float('nan')):.1e}.")
    else:
        paragraph.append(f"PyTorch columns left out: {missing}.")
    out(" ".join(p for p in paragraph if p))
    out()
    for note in dict.fromkeys(notes):
        out(f"- {note}.")
    if notes:
        out()
    return rows


def section_convolve(setup):
    models = [(model, names[0] if names[0] in setup.selected else names[-1])
              for model, names in CONVOLVE_MODELS.items() if any(n in setup.selected for n in names)]
    if not models:
        return
    repeat = setup.args.repeat
    batch = QUICK_CONVOLVE_BATCH if setup.args.quick else CONVOLVE_BATCH
    notes = []
    seconds = 0.0 if setup.args.quick else CONVOLVE_SECONDS
    table = measure_convolve(models, setup.configs, setup.arrays, batch, repeat, seconds, notes)
    calls = (f"median of the calls made in {seconds:g} s, at least {repeat}, at most {CONVOLVE_MAX_CALLS}"
             if seconds else f"median of {repeat}")
    out(f"### `convolutions.convolve` on method 2's calls (batch {batch}, float64; ms, {calls})")
    out()
    if table:
        out(markdown_table(["model", "layer", "call", "inputs * kernels -> output", "convolve",
                            "convolve2d loop", "ratio", "fftconvolve", "ratio", "equal"], table, numeric_from=4))
        out()
        out("The calls are those the kit's method 2 layers make in one training step (forward and "
            f"backward) on {batch} training images, recorded as made and timed again with the same "
            "arrays. References: `scipy.signal.convolve2d(mode='valid')` on the zero-padded image, "
            "looped over the broadcast leading axes, and `scipy.signal.fftconvolve(mode='valid', "
            "axes=(-2, -1))` on it; ratio = reference time / convolve time; equal = `np.allclose` with "
            "both. What the layers do around each call (sums over an axis, flips) is not included.")
        out()
    for note in notes:
        out(f"- {note}.")
    if notes:
        out()


def model_name(row):
    """The model a row's configs train: convnet1 for convnet1_method1 and convnet1_method2."""
    return row.names[0].removesuffix("_method1").removesuffix("_method2")


def section_gflops(setup, rows):
    """Section 4: every conv config's epochs as GFLOP/s, and as a share of numpy.dot's rate
    in the same dtype."""
    rows = [row for row in rows if row.method]
    if not rows:
        return
    peak = {np.float64: matmul_gflops(np.float64), np.float32: matmul_gflops(np.float32)}
    table, sizes = [], []
    for model in dict.fromkeys(model_name(row) for row in rows):
        model_rows = [row for row in rows if model_name(row) == model]
        config = model_rows[0].config
        flops = epoch_flops(config, setup.num_train, setup.num_validation)
        forward, backward = flops_per_image(config)
        sizes.append(f"{model} {flops / 1e9:.3g} GFLOP ({forward / 1e6:.3g} MFLOP forward and "
                     f"{backward / 1e6:.3g} backward per image)")
        runs = [(f"kit {row.method}", dtype, times) for row in model_rows
                for dtype, times in ((np.float64, row.kit), (np.float32, row.kit32))]
        runs += [("torch", np.float64, model_rows[0].torch64), ("torch", np.float32, model_rows[0].torch32)]
        for what, dtype, times in runs:
            if times:
                rate = flops / statistics.median(times) / 1e9
                table.append([model, what, np.dtype(dtype).name, seconds(times), f"{rate:.3g}",
                              f"{rate / peak[dtype]:.1%}"])
    out("### Achieved GFLOP/s of an epoch, and its share of numpy.dot's rate in the same dtype")
    out()
    out(markdown_table(["model", "run", "dtype", "s / epoch", "GFLOP/s", "of numpy.dot's rate"], table,
                       numeric_from=3))
    out()
    out(f"Per epoch: {'; '.join(sizes)}; over {setup.num_train} training images, forward and backward, "
        f"plus {setup.num_validation} validation images forward (2 flops per multiply-add of the conv "
        "and FC layers; pooling and activations not counted). numpy.dot of two "
        f"{MATMUL_SIZE}x{MATMUL_SIZE} matrices here: {peak[np.float64]:.3g} GFLOP/s in float64, "
        f"{peak[np.float32]:.3g} in float32 (median of 7).")
    out()


def section_memory(setup):
    if not any(n in setup.selected for n in CONVOLVE_MODELS["convnet1"]):
        return
    log(f"peak memory: python train.py {MEMORY_CONFIG} --epochs 2")
    config_copy = write_training_copy(MEMORY_CONFIG, setup.tmpdir, setup.child_data())
    _, status, peak, output = run_child(["train.py", config_copy, "--epochs", "2", "--no-display"], setup.tmpdir)
    _, base_status, base, _ = run_child(["-c", "import net, train"], setup.tmpdir)
    out("### Peak resident memory")
    out()
    command = f"`python train.py configs/{MEMORY_CONFIG}.yaml --epochs 2 --no-display`"
    if status == 0:
        baseline = f"{base:.0f} MB" if base_status == 0 else "n/a"
        out(f"{command} (checkpoint and stats redirected to a temporary folder"
            f"{'; on the --quick subset' if setup.args.quick else ''}): **{peak:.0f} MB** peak resident "
            f"(ru_maxrss); a Python that only imports the kit: {baseline}.")
    else:
        out(f"{command}: {failure(status, output)}")
    out()


def section_total(setup):
    quick = setup.args.quick
    table, total = [], 0.0
    for name in (n for n in PART_1_AND_2 if n in setup.selected):
        config_copy = write_training_copy(name, setup.tmpdir, setup.child_data())
        epochs = 1 if quick else setup.configs[name]["max_epochs"]
        log(f"total: python train.py {name} ({epochs} epochs)")
        elapsed, status, peak, output = run_child(
            ["train.py", config_copy, "--no-display"] + (["--epochs", "1"] if quick else []), setup.tmpdir)
        total += elapsed
        table.append([name, epochs, f"{elapsed:.1f}" if status == 0 else failure(status, output), f"{peak:.0f}"])
    if not table:
        return
    table.append(["total", "", f"**{total:.1f}**", ""])
    out("### Part 1 and Part 2 trainings, one after another")
    out()
    out(markdown_table(["config", "epochs", "wall s", "peak MB"], table))
    out()
    out("Each is `python train.py <config copy> --no-display` at the config's max_epochs"
        f"{' (--quick: 1 epoch on the subset)' if quick else ''}; wall time includes starting Python "
        "and loading the data.")
    out()


@entry_point("bench.py")
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    configs = training_configs()
    args = parse_args(argv, list(configs))
    started, cpu = time.perf_counter(), CpuShare()
    # Run as a script, this was done before numpy loaded; imported, it reaches the children
    # (and the kernels, which kernel_threads loads).
    configure_process(args.threads)
    require_compiled_kernels("bench.py")  # it times them, never their numpy version
    selected = {n: c for n, c in configs.items() if args.only is None or n in args.only}
    threads, blas = openblas_threads()
    kernels = kernel_threads()
    limit = (QUICK_TRAIN, QUICK_VALIDATION) if args.quick else None

    # One data file for every measurement: --data, else the path the configs name.
    data_path = Path(args.data).resolve() if args.data else KIT / next(iter(selected.values()))["data_path"]
    if not data_path.exists():
        from data import usps  # fetch and prepare it once, as train.py would

        usps.ensure(str(data_path))
    arrays = load_arrays(data_path)
    if args.no_torch:
        worker, missing = None, "--no-torch"
    else:
        log("starting the torch worker")
        worker, missing = TorchWorker.start(args.threads or usable_cores(), data_path, limit,
                                            BENCH_DEFAULTS)
    try:
        return _report(argv, args, configs, selected, started, cpu, threads, blas, kernels, worker, missing,
                       data_path, arrays, limit)
    finally:
        if worker is not None:
            worker.close()


def _report(argv, args, configs, selected, started, cpu, threads, blas, kernels, worker, missing, data_path,
            arrays, limit):
    title = "## Benchmark" + (" (--quick: a smoke test, not the benchmark)" if args.quick else "")
    torch_text = (f"torch {worker.version} in a child process ({worker.threads} threads: "
                  f"{'--threads' if args.threads else 'one per usable core'})" if worker is not None
                  else f"torch not used ({missing})")
    thread_source = ("--threads" if args.threads else "OPENBLAS_NUM_THREADS"
                     if os.environ.get("OPENBLAS_NUM_THREADS") else "OpenBLAS default")
    variables = thread_settings(BENCH_DEFAULTS, BENCH_REASON)
    out(title)
    out()
    out(f"Machine: {cpu_model()}, {os.cpu_count()} cores ({usable_cores()} usable); Python "
        f"{platform.python_version()}, numpy {np.__version__} on {blas} ({threads} BLAS threads: "
        f"{thread_source}; the kit's compiled kernels: {kernels}; {variables}); {torch_text}; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; kit {git_revision()}; load average "
        f"{load_average()} at the start. Command: `{' '.join(['python tools/bench.py'] + argv)}`.")
    out()
    with tempfile.TemporaryDirectory(prefix="kit_bench_") as tmpdir:
        setup = Setup(args, configs, selected, worker, data_path, arrays, limit, tmpdir)
        rows = section_epochs(setup, missing)
        if worker is not None:
            worker.close()  # done: its memory and threads are not part of sections 3 to 6
        section_convolve(setup)
        section_gflops(setup, rows)
        section_memory(setup)
        if args.total:
            section_total(setup)
    out(" ".join(filter(None, [f"Benchmark run time {time.perf_counter() - started:.0f} s; load average "
                               f"{load_average()} at the end.", cpu.sentence("the whole benchmark")])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
