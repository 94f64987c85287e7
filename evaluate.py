"""Evaluate a trained model on the training, validation and test sets:
python evaluate.py configs/<model>.yaml

Loads the config's checkpoint_file (the best model by validation accuracy, or by validation
cross entropy when the config sets checkpoint_on: cross_entropy, or the last epoch's with
checkpoint_on: last) and prints
    CE      : Train x Val y Test z
    Accuracy: Train x Val y Test z

Exit status: 0, 1 a piece of the assignment not written yet, 2 bad input (config, data, a
checkpoint that is missing, damaged or gives no finite numbers; no kernels at all).
"""

import math
import sys

from plumbing.command_line import start_script

start_script(__name__, "evaluate.py")  # first: Ctrl-C, a closed output: one line

from plumbing import runtime

runtime.configure("batches")  # threads and memory, before numpy loads

from plumbing.command_line import OneLineParser, entry_point, load_kernels

load_kernels("evaluate.py")

import numpy as np

from net import NeuralNet
from plumbing.config import load_config
from plumbing.errors import ConfigError


def evaluate(net, checkpoint=None):
    """{'train': (CE, accuracy), 'validation': ..., 'test': ...} for a net with its data loaded
    and the parameters of `checkpoint` (default: the config's); ConfigError if they give no
    finite cross entropy (finite weights can still overflow)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below, in one line
        results = {name: net.Validate(getattr(net, name + "_")) for name in ("train", "validation", "test")}
    if not all(math.isfinite(value) for pair in results.values() for value in pair):
        raise ConfigError(f"{net.source_}: checkpoint {checkpoint or net.settings_.checkpoint_file} gives NaN or "
                          f"infinite outputs, not a cross entropy; train again (python train.py {net.source_})")
    return results


@entry_point("evaluate.py")
def main(argv=None):
    parser = OneLineParser(prog="evaluate.py", description="Evaluate a trained model from its checkpoint.")
    parser.add_argument("config", help="the config the model was trained with")
    parser.add_argument("--checkpoint", help="evaluate this checkpoint instead of the config's")
    args = parser.parse_args(argv)
    net = NeuralNet(load_config(args.config))
    net.Load(args.checkpoint)
    net.LoadData(test=True)
    results = evaluate(net, args.checkpoint)
    (tr_ce, tr_acc), (va_ce, va_acc), (te_ce, te_acc) = results.values()
    print(f"CE      : Train {tr_ce:.4f} Val {va_ce:.4f} Test {te_ce:.4f}")
    print(f"Accuracy: Train {tr_acc:.4f} Val {va_acc:.4f} Test {te_acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
