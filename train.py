"""Train the model a config describes: python train.py configs/<model>.yaml

Prints one line per epoch (time, training and validation cross entropy and accuracy),
saves the statistics to the config's performance_stats after every epoch and the model
to its checkpoint_file whenever validation accuracy improves. Every epoch it also saves
the run's last state beside the checkpoint, so an interrupted run can go on with --resume.
While it runs, its output files are locked: a second run on them stops at once.

Exit status: 0 done, 1 training diverged or a piece of the assignment not written yet,
2 bad input (config, data, a file that cannot be written, outputs in use by another run,
no kernels at all), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): both leave every
file whole and say how to go on with --resume.
"""

import sys

from plumbing.command_line import start_script

start_script(__name__, "train.py")  # first: Ctrl-C, a closed output: one line

from plumbing import runtime

runtime.configure("batches")  # threads and memory, before numpy loads

from plumbing.command_line import OneLineParser, entry_point, load_kernels, seed

load_kernels("train.py")

from net import NeuralNet
from plumbing.config import load_config
from plumbing.errors import OutputError


@entry_point("train.py")
def main(argv=None):
    parser = OneLineParser(prog="train.py", description="Train a network described by a YAML config.")
    parser.add_argument("config", help="e.g. configs/logreg.yaml")
    parser.add_argument("--epochs", type=int, help="override the config's max_epochs")
    parser.add_argument("--seed", type=seed, default=0, help="random seed, 0 to 2**63 - 1 (default %(default)s); "
                        "the same seed gives the same run")
    parser.add_argument("--no-display", action="store_true", help="do not show the activations figure")
    parser.add_argument("--resume", action="store_true", help="go on from the last finished epoch of an "
                        "interrupted run (same config and seed): the result is the same as an uninterrupted run")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    net = None
    try:
        net = NeuralNet(load_config(args.config), seed=args.seed)
        net.LoadData()
        net.Train(max_epochs=args.epochs, display=False if args.no_display else None, resume=args.resume)
    except (OutputError, KeyboardInterrupt) as e:
        # entry_point prints it after the error's line (an output refused before the run began
        # says so itself).
        if isinstance(e, KeyboardInterrupt) or getattr(net, "on_disk_", None):
            e.stopped_ = saved_summary(net, args)
        raise
    return 0


def saved_summary(net, args):
    """What a run that stopped early leaves on disk (every file in it is whole), and how to go
    on: only what its files hold (a write that failed left the file before it)."""
    disk = getattr(net, "on_disk_", None) or {}
    if not any(disk.values()):
        return "before any epoch was saved; nothing was written"
    settings = net.settings_
    said = [f"after epoch {disk['stats']}: stats in {settings.performance_stats}" if disk["stats"] else
            f"with no stats written ({settings.performance_stats} is as it was)"]
    if disk["checkpoint"]:
        said.append(f"best checkpoint (epoch {disk['checkpoint']}, validation accuracy {net.best_acc_:.4f}) in "
                    f"{settings.checkpoint_file}")
    else:
        said.append(f"no checkpoint written ({settings.checkpoint_file} is as it was)")
    again = f"python train.py {args.config} --resume" + (f" --seed {args.seed}" if args.seed else "")
    if disk["last_state"] == disk["stats"]:
        said.append(f"go on with: {again}")
    elif disk["last_state"]:
        said.append(f"the last state holds epoch {disk['last_state']}: {again} goes on from there")
    else:
        said.append("no last state was written: train again to go on")
    return "; ".join(said)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C after main returned, as the process exits: all is saved
        sys.exit(130)
