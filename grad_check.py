"""Check a network's derivatives against numerical ones: python grad_check.py configs/<model>.yaml

For one random input and target, every backpropagated weight and bias derivative is
compared with central differences, (C(w + eps) - C(w - eps)) / (2 eps), on up to 1000
random entries of each parameter. The relative error ||analytic - numeric|| /
(||analytic|| + ||numeric||) must stay below 1e-4. Prints PASSED (exit 0) or FAILED (exit 1).
"""

import argparse
import sys

import runtime

runtime.configure("single_example")  # one example at a time: one BLAS thread

from command_line import require_compiled_kernels  # noqa: E402

require_compiled_kernels("grad_check.py")

import numpy as np  # noqa: E402

from config import ConfigError, load_config  # noqa: E402
from net import NeuralNet  # noqa: E402

EPSILON = 1e-5
THRESHOLD = 1e-4
MAX_ENTRIES = 1000


def check_gradients(net, rng, log=None):
    """Compare net's analytic and numeric derivatives; return [(param name, relative error)]."""
    log = sys.stdout if log is None else log
    size = net.input_image_size_y_ * net.input_image_size_x_ * net.input_num_channels_
    inputs = rng.uniform(0.0, 1.0, (1, size))
    targets = np.eye(10)[[rng.integers(10)]]

    def loss():
        return net.ComputeLoss(net.Fprop(inputs)[-1], targets)[0]

    states = net.Fprop(inputs)
    grads = net.Bprop(net.ComputeDeriv(states[-1], targets), states)
    results = []
    for layer, (dw, db) in zip(net.layer_, grads):
        if not layer.has_params_:
            continue
        for suffix, analytic in (("w", dw), ("b", db)):
            param = getattr(layer, suffix + "_")
            flat = param.reshape(-1)  # a view: changing it changes the layer's parameter
            count = min(MAX_ENTRIES, flat.size)
            entries = rng.choice(flat.size, size=count, replace=False)
            numeric = np.empty(count)
            for n, i in enumerate(entries):
                saved = flat[i]
                flat[i] = saved + EPSILON
                plus = loss()
                flat[i] = saved - EPSILON
                minus = loss()
                flat[i] = saved
                numeric[n] = (plus - minus) / (2 * EPSILON)
            picked = analytic.reshape(-1)[entries]
            scale = np.linalg.norm(picked) + np.linalg.norm(numeric)
            error = np.linalg.norm(picked - numeric) / scale if scale > 0 else 0.0
            name = f"{layer.name_}_{suffix}"
            verdict = "looks OK" if error < THRESHOLD else "is WRONG"
            print(f"gradient for {name} {verdict} (relative error {error:.2e}, {count} entries)", file=log)
            results.append((name, error))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check backprop against numerical derivatives.")
    parser.add_argument("config", help="e.g. configs/logreg.yaml")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if config.get("dtype") == "float32":
            # A numerical derivative needs float64: in float32 its rounding error is as
            # large as the derivative itself. The check is of the code, in either precision.
            config["dtype"] = "float64"
            print("grad_check: checking in float64 (the config trains in float32)")
        net = NeuralNet(config, seed=args.seed)
        results = check_gradients(net, np.random.default_rng(args.seed))
    except ConfigError as e:
        print(f"grad_check.py: error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:
        print(f"not implemented yet: {e}")
        print("FAILED")
        return 1
    bad = [(name, error) for name, error in results if not error < THRESHOLD]
    if bad:
        for name, error in bad:
            print(f"FAILED: gradient for {name} has relative error {error:.2e} (threshold {THRESHOLD:g})")
        return 1
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
