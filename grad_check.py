"""Check a network's derivatives against numerical ones: python grad_check.py configs/<model>.yaml

For a batch of random inputs with different targets (and random biases), every
backpropagated weight and bias derivative is compared with central differences,
(C(w + eps) - C(w - eps)) / (2 eps), on up to 1000 random entries of each parameter. The
relative error ||analytic - numeric|| / (||analytic|| + ||numeric||) must stay below 1e-4.
Prints a line per parameter, then PASSED (exit 0), or FAILED (exit 1) after a line naming
the piece most likely at fault (how it is found: gradient_faults.py).
"""

import sys

from plumbing.command_line import start_script

start_script(__name__, "grad_check.py")  # first: Ctrl-C, a closed output: one line

from plumbing import runtime

runtime.configure("single_example")  # a few examples at a time: one BLAS thread

from plumbing.command_line import OneLineParser, entry_point, load_kernels, seed

load_kernels("grad_check.py")

import numpy as np

from net import NeuralNet
from plumbing import gradient_faults
from plumbing.config import load_config
from plumbing.errors import UserError

THRESHOLD = 1e-4
MAX_ENTRIES = 1000
EXAMPLES = 3  # a batch, with different targets: a mean where the kit wants a sum shows


def random_batch(net, rng, examples=EXAMPLES):
    """(inputs (examples, pixels) uniform in [0, 1), one-hot targets: all different, or every
    class if there are fewer classes than examples)."""
    size = net.settings_.input_image_size_y * net.settings_.input_image_size_x * net.settings_.input_num_channels
    inputs = rng.uniform(0.0, 1.0, (examples, size))
    classes = net.layer_[-1].num_channels_  # as many as the data set has (10 for USPS)
    labels = (rng.choice(classes, size=examples, replace=False) if classes >= examples else
              np.resize(rng.permutation(classes), examples))  # fewer classes than examples: each of them
    return inputs, np.eye(classes)[labels]


def check_gradients(net, rng, log=None, batch=None):
    """Compare net's analytic and numeric derivatives on `batch` (inputs, targets), random
    if not given; return [(param name, relative error)]."""
    log = sys.stdout if log is None else log
    set_checked_modes(net)
    inputs, targets = random_batch(net, rng) if batch is None else batch

    states = net.Fprop(inputs)
    grads = net.Bprop(net.ComputeDeriv(states[-1], targets), states)
    results = []
    for i, (layer, (dw, db)) in enumerate(zip(net.layer_, grads)):
        if not layer.has_params_:
            continue

        def loss(i=i):  # layer i's parameters change only what is above it; the mean, as dw and db are
            return gradient_faults.loss_from(net, i, states[i], targets) / len(inputs)

        for suffix, analytic in (("w", dw), ("b", db)):
            flat = getattr(layer, suffix + "_").reshape(-1)  # a view: changing it changes the layer
            entries = rng.choice(flat.size, size=min(MAX_ENTRIES, flat.size), replace=False)
            numeric = gradient_faults.numeric_derivative(loss, flat, entries)
            error = gradient_faults.relative_error(analytic.reshape(-1)[entries], numeric)
            name = f"{layer.name_}_{suffix}"
            verdict = "looks OK" if error < THRESHOLD else "is WRONG"
            print(f"gradient for {name} {verdict} (relative error {error:.2e}, {len(entries)} entries)", file=log)
            results.append((name, error))
    return results


def set_checked_modes(net):
    """Each layer in the mode whose derivatives are checked: training for a batch norm (its
    batch statistics), evaluation for the rest (dropout's training mode is random)."""
    for layer in net.layer_:
        layer.training_ = layer.checked_in_training_


def check_network(net, rng):
    """The whole check: what the pieces return, the derivatives, the forward passes.
    Returns the lines naming the pieces at fault (none when all is well)."""
    set_checked_modes(net)
    for layer in net.layer_:
        if layer.has_params_:  # random biases: a forgotten bias would not show with zeros
            layer.b_ = rng.normal(0.0, 0.1, layer.b_.shape).astype(layer.dtype_)
    inputs, targets = random_batch(net, rng)
    # Each raises PieceError when a piece returns what the kit cannot use (a wrong shape, a None).
    states = gradient_faults.checked_fprop(net, inputs)
    gradient_faults.input_derivatives(net, states, targets)
    results = check_gradients(net, rng, batch=(inputs, targets))
    bad = [(name, error) for name, error in results if not error < THRESHOLD]
    for name, error in bad:
        print(f"FAILED: gradient for {name} has relative error {error:.2e} (threshold {THRESHOLD:g})")
    faults = gradient_faults.forward_faults(net, states)
    if bad and not faults:
        faults = gradient_faults.backward_faults(net, inputs, targets, results, THRESHOLD, rng)
    return faults


@entry_point("grad_check.py")
def main(argv=None):
    parser = OneLineParser(prog="grad_check.py", description="Check backprop against numerical derivatives.")
    parser.add_argument("config", help="e.g. configs/logreg.yaml")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if config.get("dtype") == "float32":
            # A numerical derivative needs float64: in float32 its rounding error is as
            # large as the derivative itself. The check is of the code, in either precision.
            config["dtype"] = "float64"
            print("grad_check: checking in float64 (the config trains in float32)")
        net = NeuralNet(config, seed=args.seed)
        faults = check_network(net, np.random.default_rng(args.seed))
    except UserError:
        raise  # entry_point's one line
    except NotImplementedError as e:
        print(f"not implemented yet: {e}")
        print("FAILED")
        return 1
    except gradient_faults.PieceError as e:
        faults = [str(e)]
    except Exception as e:  # raised in a piece: one line naming it, not a traceback
        line = gradient_faults.describe_exception(e)
        if line is None:
            raise
        print(line)
        print("FAILED")
        return 1
    if faults:
        for fault in faults:
            print(f"most likely at fault: {fault}")
        print("FAILED")
        return 1
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
