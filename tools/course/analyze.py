"""Count a network's units, connections and weights from its config, no training needed:
python tools/analyze.py CONFIG [--columns layer,units,...] [--format markdown|csv] [--explain]

Answers the handout's Part 2 questions 8 and 9. For each layer: its spatial size, channels,
units (size x size x channels; FC layers are 1x1), connections, weights (without biases)
and parameters (with biases); then the totals.

Connections: an output unit is connected to an input unit if its value depends on it.
An FC unit depends on every input; a conv or max-pool unit on the inputs under its
k x k window (a conv unit in every input map, a pooling unit in its own map only); a
dropout unit on its one input.
Padding zeros are not units, so a window that hangs over the border has fewer
connections: per axis, the windows of the output rows cover sum_o |{i < k : 0 <= s*o + i - p < n}|
real rows, and the count is the product over the two axes times the maps involved.

Numbers of 10,000 and more get thousands separators (as in the lecture's LeNet table).
Exit status: 0, or 2 for bad input (config, column name).
"""

import contextlib
import csv
import io
import sys
from dataclasses import dataclass

from plumbing import runtime

runtime.configure("batches")  # threads and memory, before numpy loads

import numpy as np

from batchnorm_layer import BatchNormLayer
from conv_layer import ConvLayer
from dropout_layer import DropoutLayer
from fc_layer import FCLayer
from maxpool_layer import MaxPoolLayer
from net import NeuralNet
from plumbing.command_line import OneLineParser, entry_point
from plumbing.config import load_config
from plumbing.errors import ConfigError, UserError

COLUMNS = {  # name: heading
    "layer": "layer", "type": "type", "size": "size", "channels": "channels", "units": "units",
    "connections": "connections", "weights": "weights", "parameters": "weights + biases",
}


@dataclass
class LayerCount:
    name: str
    type: str          # e.g. "conv 5x5, stride 1, pad 2"
    size_y: int
    size_x: int
    channels: int
    connections: int
    weights: int       # without biases
    biases: int
    how: str           # one sentence: how the connections were counted

    @property
    def units(self):
        return self.size_y * self.size_x * self.channels

    @property
    def parameters(self):
        return self.weights + self.biases

    @property
    def size(self):
        return f"{self.size_y}x{self.size_x}"


def covered(n, k, s, p):
    """Along one axis of n inputs, windows of k at stride s with padding p: the number of
    (output position, real input position) pairs, summed over the output positions."""
    out = (n + 2 * p - k) // s + 1
    return sum(max(0, min(k, n + p - s * o) - max(0, p - s * o)) for o in range(out))


def fmt(n):
    """4704, but 117,600: separators from 10,000 up."""
    return f"{n:,}" if n >= 10000 else str(n)


def _window_how(layer, in_shape, out_shape, maps, per_unit):
    (iy, ix, _), (oy, ox, _) = in_shape, out_shape
    k, s, p = layer.kernel_size_, layer.stride_, layer.padding_
    ly, lx = covered(iy, k, s, p), covered(ix, k, s, p)
    units = oy * ox * out_shape[2]
    if ly == oy * k and lx == ox * k:
        return f"each of the {fmt(units)} units sees {per_unit}: {fmt(units)} x {k * k * maps}"
    return (f"each unit sees {per_unit}, less the padding: along y the {oy} windows cover {ly} real rows, "
            f"along x the {ox} windows {lx} real columns, so {out_shape[2]} maps x "
            + (f"{maps} input maps x " if maps > 1 and isinstance(layer, ConvLayer) else "") + f"{ly} x {lx}")


def count_layer(layer, in_shape, out_shape):
    """The LayerCount of one initialized layer, given its input and output (y, x, channels)."""
    iy, ix, ic = in_shape
    oy, ox, oc = out_shape
    if isinstance(layer, FCLayer):
        kind = "FC"
        connections = oc * iy * ix * ic
        how = f"each of the {oc} units sees all {fmt(iy * ix * ic)} inputs: {oc} x {fmt(iy * ix * ic)}"
    elif isinstance(layer, (ConvLayer, MaxPoolLayer)):
        k, s, p = layer.kernel_size_, layer.stride_, layer.padding_
        maps = ic if isinstance(layer, ConvLayer) else 1  # pooling stays within its own map
        connections = oc * maps * covered(iy, k, s, p) * covered(ix, k, s, p)
        base = "conv" if isinstance(layer, ConvLayer) else "max"
        kind = f"{base} {k}x{k}, stride {s}, pad {p}"
        window = f"a {k}x{k}x{ic} window" if isinstance(layer, ConvLayer) else f"a {k}x{k} window of its own map"
        how = _window_how(layer, in_shape, out_shape, maps, window)
    elif isinstance(layer, BatchNormLayer):
        kind = "batch norm"
        connections = oy * ox * oc
        how = f"each of the {fmt(connections)} units sees its own input, scaled and shifted per channel"
    elif isinstance(layer, DropoutLayer):
        kind = f"dropout {layer.dropout_rate_:g}"
        connections = oy * ox * oc
        how = f"each of the {fmt(connections)} units sees its own input only"
    else:
        raise ConfigError(f"layer '{layer.name_}': cannot count a {type(layer).__name__}")
    weights = layer.w_.size if layer.has_params_ else 0
    biases = layer.b_.size if layer.has_params_ else 0
    return LayerCount(layer.name_, kind, oy, ox, oc, connections, weights, biases,
                      f"{layer.name_}: {how} = {fmt(connections)} connections")


def analyze(config):
    """(input (y, x, channels), [LayerCount per layer]) for a config dict or path."""
    if not isinstance(config, dict):
        config = load_config(config)
    with contextlib.redirect_stdout(io.StringIO()):  # Initialize prints a line per layer
        net = NeuralNet(config)
        channels, height, width = net.settings_.image_shape
        size = (height, width, channels)
        counts, shape = [], size
        for layer in net.layer_:
            # The layers' own arithmetic gives each output shape (Initialize again, fresh weights).
            out = tuple(layer.Initialize(*shape, rng=np.random.default_rng(0)))
            counts.append(count_layer(layer, shape, out))
            shape = out
    return size, counts


def totals(counts):
    return {"units": sum(c.units for c in counts), "connections": sum(c.connections for c in counts),
            "weights": sum(c.weights for c in counts), "parameters": sum(c.parameters for c in counts)}


def table_rows(counts, columns, total=True, number=fmt):
    """The table as a list of rows of strings (header first)."""
    rows = [[COLUMNS[c] for c in columns]]
    for c in counts:
        values = {col: getattr(c, "name" if col == "layer" else col) for col in columns}
        rows.append([number(v) if col in ("units", "connections", "weights", "parameters") else str(v)
                     for col, v in values.items()])
    if total:
        sums = totals(counts)
        rows.append([number(sums[col]) if col in sums else ("total" if col == "layer" else "") for col in columns])
    return rows


def markdown(rows):
    lines = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join("---" for _ in rows[0]) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


@entry_point("analyze.py")
def main(argv=None):
    parser = OneLineParser(prog="analyze.py", description="Units, connections and weights of each layer of a "
                           "config (the handout's Part 2, questions 8 and 9), as a table.")
    parser.add_argument("config", help="e.g. configs/convnet2.yaml")
    parser.add_argument("--columns", default=",".join(COLUMNS),
                        help=f"comma-separated, from: {', '.join(COLUMNS)} (default: all)")
    parser.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    parser.add_argument("--no-total", action="store_true", help="leave out the totals row")
    parser.add_argument("--explain", action="store_true", help="after the table, how each layer's "
                        "connections were counted")
    args = parser.parse_args(argv)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown or not columns:
        raise UserError(f"--columns: unknown column '{unknown[0] if unknown else ''}' (known: {', '.join(COLUMNS)})")
    (iy, ix, ic), counts = analyze(args.config)
    if args.format == "csv":
        csv.writer(sys.stdout, lineterminator="\n").writerows(table_rows(counts, columns, not args.no_total,
                                                                        number=str))
    else:
        print(f"{args.config}: input {iy}x{ix}x{ic} = {fmt(iy * ix * ic)} units\n")
        print(markdown(table_rows(counts, columns, not args.no_total)))
    if args.explain:
        print()
        for c in counts:
            print(f"- {c.how}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
