"""Validation error on distorted copies of the validation images, for choosing among strong
models without the test set:
python tools/robustness.py CONFIG... [--copies 10] [--seed 12345] [--checkpoint NPZ]

A strong USPS model misreads 1 to 5 of the 1000 validation digits, so the clean validation
error cannot rank two such models, and the validation cross entropy mostly ranks how confident
they are. This tool makes `--copies` distorted copies of every validation image, the same
images for every model (drawn from `--seed`), in two sets:
    affine:  shifts of up to 2 pixels, rotations of up to 15 degrees, zooms of up to 15 %
    elastic: shifts of up to 1 pixel, rotations of up to 10 degrees, zooms of up to 10 %,
             and an elastic distortion (alpha 6, sigma 2; data/augment.py)
and prints each model's error on the clean images, on each set, and the mean of the two sets.
It reads the training and validation sets only, never the test set.

Exit status: 0, or 2 for bad input (a config, checkpoint or data file that cannot be used).
"""

import contextlib
import io
import sys
from pathlib import Path

from plumbing import runtime

runtime.configure("batches")  # threads and memory, before numpy loads

import numpy as np

from data.augment import AugmentSettings, augment
from net import NeuralNet
from plumbing.command_line import OneLineParser, entry_point
from plumbing.config import load_config
from plumbing.errors import ConfigError

DISTORTIONS = {
    "affine": AugmentSettings(translate=2, rotate=15, scale=0.15),
    "elastic": AugmentSettings(translate=1, rotate=10, scale=0.1, elastic_alpha=6, elastic_sigma=2),
}
HEADINGS = ["model", "clean val error"] + [f"{name} error" for name in DISTORTIONS] + ["mean of the two"]


def distorted_errors(net, copies, seed):
    """{'clean': error, 'affine': error, 'elastic': error} of a net with its parameters and its
    validation set loaded, in percent; each distorted set is `copies` copies of every image."""
    images, labels = net.validation_
    sets = {"clean": (images, labels)}
    for name, settings in DISTORTIONS.items():
        rng = np.random.default_rng(seed)  # the same distorted images for every model
        sets[name] = (np.concatenate([augment(images, rng, settings, net.settings_.image_shape)
                                      for _ in range(copies)]), np.concatenate([labels] * copies))
    errors = {}
    for name, data in sets.items():
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked here, in one line
            cross_entropy, accuracy = net.Validate(data)
        if not np.isfinite(cross_entropy):
            raise ConfigError(f"{net.source_}: its checkpoint gives NaN or infinite outputs; train again "
                              f"(python train.py {net.source_})")
        errors[name] = 100 * (1 - accuracy)
    return errors


@entry_point("robustness.py")
def main(argv=None):
    parser = OneLineParser(prog="robustness.py", description="Validation error of trained models on distorted "
                           "copies of the validation images (never the test set).")
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="a trained model's config")
    parser.add_argument("--copies", type=int, default=10, help="distorted copies of each image per set "
                        "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=12345, help="draws the distortions (default %(default)s)")
    parser.add_argument("--checkpoint", help="with one config: this checkpoint instead of the config's")
    args = parser.parse_args(argv)
    if args.copies < 1:
        parser.error("--copies must be at least 1")
    if args.checkpoint and len(args.configs) > 1:
        parser.error("--checkpoint goes with one config")
    nets = []
    for path in args.configs:  # every input checked before the table starts
        with contextlib.redirect_stdout(io.StringIO()):  # layers print their shapes
            net = NeuralNet(load_config(path))
        net.Load(args.checkpoint)
        net.LoadData()
        nets.append((path, net))
    print("| " + " | ".join(HEADINGS) + " |")
    print("| --- |" + " ---: |" * (len(HEADINGS) - 1))
    for path, net in nets:
        errors = distorted_errors(net, args.copies, args.seed)
        mean = (errors["affine"] + errors["elastic"]) / 2
        cells = [f"{errors[name]:.2f} %" for name in ("clean", *DISTORTIONS)] + [f"{mean:.3f} %"]
        print(f"| {Path(path).stem} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
