"""Results of trained models as the handout's table, and their learning curves:
python tools/report.py CONFIG... [--format markdown|latex] [--plot PNG | --no-plot]

For each config, loads its checkpoint_file (the best model by validation accuracy, as
evaluate.py does) and prints one row: average cross entropy and accuracy on the training,
validation and test sets. A model not trained yet gets a row of dashes and, below the
table, the command that trains it. The learning curves (training and validation cross
entropy and accuracy per epoch, from each config's performance_stats; and the learning-rate
factor per epoch in a third panel when a model's lr_schedule changed it) go to one PNG,
runs/learning_curves.png unless --plot says otherwise.

Exit status: 0, or 2 for bad input (a config, checkpoint, stats or data file that cannot be used).
"""

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from plumbing import runtime

runtime.configure("batches")  # threads and memory, before numpy loads

from plumbing.command_line import load_kernels

load_kernels("report.py")

import numpy as np

from evaluate import evaluate
from net import NeuralNet
from plumbing.command_line import OneLineParser, entry_point
from plumbing.config import load_config
from plumbing.errors import ConfigError
from plumbing.files import missing, numbers, read_npy
from plumbing.run_files import check_output
from plumbing.writing import write_atomically

DEFAULT_PLOT = os.path.join("runs", "learning_curves.png")
SPLITS = (("train", "train"), ("validation", "val"), ("test", "test"))
HEADINGS = ["model"] + [f"{short} {what}" for _, short in SPLITS for what in ("CE", "accuracy")]


@dataclass
class ModelReport:
    name: str                # the config's file name without .yaml
    config: str              # the config path as given
    results: dict = None     # {'train': (CE, accuracy), 'validation': ..., 'test': ...}, or None
    stats: np.ndarray = None  # (epochs, 5): train CE, train accuracy, val CE, val accuracy, lr factor; or None
    net: NeuralNet = None

    @property
    def train_command(self):
        return f"python train.py {self.config}"


def load_stats(path, source):
    """The (epochs, 5) statistics train.py writes, or None if there is no such file yet."""
    if path is None or missing(path):
        return None

    def accept(name, shape, dtype):  # before the data are read
        if len(shape) != 2 or shape[1] != 5 or not shape[0]:
            raise ConfigError(f"{source}: key 'performance_stats': {path} holds an array of shape {shape}, "
                              "not (epochs, 5)")
        if not numbers(dtype):
            raise ConfigError(f"{source}: key 'performance_stats': {path} holds {dtype} values, not numbers")

    try:
        return read_npy(path, accept)
    except ConfigError:
        raise
    except OSError as e:
        raise ConfigError(f"{source}: key 'performance_stats': cannot read {path} ({e.strerror or e})") from None
    except Exception as e:  # truncated, not .npy, pickled
        with open(path, "rb") as f:
            zipped = f.read(2) == b"PK"
        why = ("it is an .npz, a zip of arrays, not the .npy that train.py writes" if zipped
               else f"{type(e).__name__}: {e}")
        raise ConfigError(f"{source}: key 'performance_stats': {path} is not a statistics file ({why})") from None


def collect(config_path, evaluate_model=True):
    """The ModelReport of one config: evaluated from its checkpoint if there is one."""
    config = load_config(config_path)
    with contextlib.redirect_stdout(io.StringIO()):  # layers print their shapes
        net = NeuralNet(config)
    report = ModelReport(Path(config_path).stem, str(config_path), net=net)
    if net.settings_.checkpoint_file is None:
        raise ConfigError(f"{config_path}: key 'checkpoint_file' is needed to report on a model")
    report.stats = load_stats(net.settings_.performance_stats, config_path)
    if not missing(net.settings_.checkpoint_file) and evaluate_model:
        net.Load()
        net.LoadData(test=True)
        report.results = evaluate(net)
    return report


def _cells(report):
    if report.results is None:
        return ["-"] * 6
    return [f"{value:.4f}" for name, _ in SPLITS for value in report.results[name]]


def untrained_notes(reports):
    return [f"{r.name}: not trained yet; train it with: {r.train_command}" for r in reports if r.results is None]


def results_rows(reports):
    """[headings, row per model] of the handout's table, as strings."""
    return [list(HEADINGS)] + [[r.name] + _cells(r) for r in reports]


def results_table(reports, form="markdown"):
    """The handout's table: a row per model, CE and accuracy on each split."""
    if form == "latex":
        def tex(text):
            return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
        lines = [r"\begin{tabular}{l" + "r" * 6 + "}", r"\hline",
                 " & ".join(tex(h) for h in HEADINGS) + r" \\", r"\hline"]
        lines += [" & ".join([tex(row[0])] + row[1:]) + r" \\" for row in results_rows(reports)[1:]]
        lines += [r"\hline", r"\end{tabular}"]
        lines += [f"% {note}" for note in untrained_notes(reports)]
        return "\n".join(lines)
    rows = results_rows(reports)
    lines = ["| " + " | ".join(rows[0]) + " |", "| --- |" + " ---: |" * 6]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    notes = untrained_notes(reports)
    return "\n".join(lines + ([""] + notes if notes else []))


def plot_curves(reports, path, title=None):
    """Training (dashed) and validation (solid) CE and accuracy per epoch, one colour per
    model, in one PNG, with the learning-rate factor per epoch in a third panel when a
    schedule changed it. Returns the models drawn (those with statistics)."""
    drawn = [r for r in reports if r.stats is not None]
    if not drawn:
        return []
    import matplotlib
    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    # A third panel only when a schedule changed the learning rate: a flat line at 1 says nothing.
    scheduled = any(np.any(r.stats[:, 4] != 1) for r in drawn)
    figure, axes = plt.subplots(1, 3 if scheduled else 2, figsize=(15 if scheduled else 10, 4))
    ce_axis, acc_axis = axes[:2]
    for i, r in enumerate(drawn):
        epochs = np.arange(1, len(r.stats) + 1)
        colour = f"C{i % 10}"
        for axis, column in ((ce_axis, 0), (acc_axis, 1)):
            axis.plot(epochs, r.stats[:, column], "--", color=colour, label=f"{r.name} train")
            axis.plot(epochs, r.stats[:, column + 2], "-", color=colour, label=f"{r.name} validation")
        if scheduled:
            axes[2].plot(epochs, r.stats[:, 4], "-", color=colour, label=r.name)
    ce_axis.set_ylabel("average cross entropy")
    acc_axis.set_ylabel("accuracy")
    if scheduled:
        axes[2].set_ylabel("learning-rate factor (x epsilon)")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    acc_axis.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    try:
        write_atomically(path, lambda f: figure.savefig(f, format="png", dpi=90))
    finally:
        plt.close(figure)
    return drawn


@entry_point("report.py")
def main(argv=None):
    parser = OneLineParser(prog="report.py", description="Evaluate trained models (the handout's table) and "
                           "plot their learning curves.")
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="e.g. configs/logreg.yaml")
    parser.add_argument("--format", choices=("markdown", "latex"), default="markdown")
    parser.add_argument("--plot", default=DEFAULT_PLOT, metavar="PNG",
                        help="where to draw the learning curves (default %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if not args.no_plot:  # before the work: nothing is evaluated for a figure that cannot be written
        check_output(args.plot, "--plot", [(f"the config {c}", c) for c in args.configs])
    reports = [collect(path) for path in args.configs]
    if not args.no_plot:
        inputs = [(f"key '{key}' of {r.config}", getattr(r.net.settings_, key))
                  for r in reports for key in ("checkpoint_file", "performance_stats", "data_path")]
        check_output(args.plot, "--plot", inputs)
    print(results_table(reports, args.format))
    if not args.no_plot:
        drawn = plot_curves(reports, args.plot)
        if drawn:
            print(f"\nlearning curves of {', '.join(r.name for r in drawn)}: {args.plot}")
        else:
            print("\nno learning curves: none of these models has statistics yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
