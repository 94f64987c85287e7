"""What the scripts and the course tools share on the command line (a helper module).

    from plumbing.command_line import OneLineParser, require_compiled_kernels, seed
"""

import argparse
import sys

BUILD_COMMAND = "python setup.py build_ext --inplace"
SEED_LIMIT = 2 ** 63  # numpy's generators take any seed >= 0; the last state keeps it in 64 bits


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad command line reported in one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def seed(text):
    """The argparse type of --seed: an integer from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1, got {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63 - 1, got {text}")
    return value


def require_compiled_kernels(prog):
    """Exit in one line naming the build command if the compiled kernels (the `convolutions`
    extension) are not built, or were built for another Python or numpy; every script that
    runs a network calls this before importing it."""
    try:
        import convolutions  # noqa: F401
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name != "convolutions":
            raise  # another module missing: not ours to explain
        why = "are not built yet" if isinstance(e, ModuleNotFoundError) else f"cannot be loaded ({e})"
        print(f"{prog}: error: the compiled kernels (convolutions) {why}; build them with: {BUILD_COMMAND}",
              file=sys.stderr)
        sys.exit(2)
