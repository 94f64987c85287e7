"""What a user can get wrong, as one family of exceptions.

Every error the kit raises about its input (a config, a data file, an output it cannot
write, a run that diverged) derives from UserError, and its message is one line naming the
file, the layer and the key. The scripts' entry point (command_line.entry_point) prints
that line and exits with the class's `exit_status`; anything else is a bug in the kit, and
keeps its traceback.
"""


class UserError(Exception):
    """Something the user can fix; the message says what and where."""

    exit_status = 2  # bad input


class ConfigError(UserError):
    """A config that cannot describe a network; the message names the key and the layer."""


class DataError(UserError):
    """The data could not be fetched, read or did not check out; the message says which file."""


class OutputError(UserError):
    """An output file could not be written (its folder, the disk); the message names it."""


class TrainingDiverged(UserError):
    """A NaN or infinity appeared in the loss or the parameters."""

    exit_status = 1
