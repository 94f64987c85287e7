"""What the course tools share on the command line (a helper module, not a tool): the kit's
command_line module, which the scripts use too."""

from plumbing.command_line import OneLineParser  # noqa: F401
