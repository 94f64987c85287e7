"""What the course tools share on the command line (a helper module, not a tool)."""

import argparse


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad command line reported in one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
