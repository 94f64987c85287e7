"""Count max-pooling windows whose maximum is tied, for a trained model:
python tools/pool_ties.py configs/convnet1_method1.yaml [--images 500]

A tie with a positive maximum is where the 2015 kit's max pooling sent the same derivative
to two or more inputs. (Ties at 0 are harmless: those inputs are ReLU units that are off,
so no derivative passes through them either way.)
"""

import contextlib
import io
import sys

from plumbing import runtime

runtime.configure("batches")  # threads and memory, before numpy loads

import numpy as np

from maxpool_layer import MaxPoolLayer
from net import NeuralNet
from plumbing.command_line import OneLineParser, entry_point
from plumbing.config import load_config


def count_ties(layer, inputs):
    """(windows, tied windows, tied windows with a positive max) of one pooling layer."""
    maps = layer._input_maps(inputs)
    k, s, p = layer.kernel_size_, layer.stride_, layer.padding_
    padded = np.pad(maps, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    windows = windows.reshape(*windows.shape[:4], k * k)
    best = windows.max(axis=-1, keepdims=True)
    tied = (windows == best).sum(axis=-1) >= 2
    return tied.size, int(tied.sum()), int((tied & (best[..., 0] > 0)).sum())


@entry_point("pool_ties.py")
def main(argv=None):
    parser = OneLineParser(prog="pool_ties.py", description="Count tied max-pooling windows of a trained model.")
    parser.add_argument("config", help="a config with MAXPOOL layers, trained (its checkpoint exists)")
    parser.add_argument("--images", type=int, default=500, help="first N training images (default %(default)s)")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()):
        net = NeuralNet(load_config(args.config))
        net.Load()
        net.LoadData()
    states = net.Fprop(net.train_[0][:args.images])
    totals = np.zeros(3, dtype=np.int64)
    print(f"{'layer':<10} {'windows':>9} {'tied':>9} {'tied, max > 0':>14}")
    for i, layer in enumerate(net.layer_):
        if isinstance(layer, MaxPoolLayer):
            counts = count_ties(layer, states[i])
            totals += counts
            print(f"{layer.name_:<10} {counts[0]:>9} {counts[1]:>9} {counts[2]:>14}")
    print(f"{'total':<10} {totals[0]:>9} {totals[1]:>9} {totals[2]:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
