"""Train the model a config describes: python train.py configs/<model>.yaml

Prints one line per epoch (time, training and validation cross entropy and accuracy),
saves the statistics to the config's performance_stats after every epoch and the model
to its checkpoint_file whenever validation accuracy improves.
"""

import argparse
import sys

from data.usps import DataError
from layer import ConfigError
from net import NeuralNet, load_config


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train a network described by a YAML config.")
    parser.add_argument("config", help="e.g. configs/logreg.yaml")
    parser.add_argument("--epochs", type=int, help="override the config's max_epochs")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s); "
                        "the same seed gives the same run")
    parser.add_argument("--no-display", action="store_true", help="do not show the activations figure")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    try:
        net = NeuralNet(load_config(args.config), seed=args.seed)
        net.LoadData()
        net.Train(max_epochs=args.epochs, display=False if args.no_display else None)
    except (ConfigError, DataError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntrain.py: interrupted; the last saved checkpoint and stats are intact", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
