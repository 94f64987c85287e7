"""A network's settings: the config's top-level keys and each layer's, typed and checked.

Settings.read(config, source) reads every top-level key in one pass into a frozen object
(net.settings_.batch_size, ...); layer_setting reads one key of a layer's entry. Every check
raises ConfigError with one line naming the file, the layer and the key, so a typo or a
wrong value stops the run before it starts instead of being silently ignored.
"""

import dataclasses
import difflib

import numpy as np

from plumbing.errors import ConfigError
from plumbing.lr_schedule import SCHEDULES

# Top-level settings: (type, default). None means required when the setting is used.
SETTINGS = {
    "max_epochs": (int, 10),
    "batch_size": (int, 100),
    "data_path": (str, "data/usps.npz"),
    "checkpoint_file": (str, None),
    "performance_stats": (str, None),
    "input_image_size_y": (int, 16),
    "input_image_size_x": (int, 16),
    "input_num_channels": (int, 1),
    "display": (bool, False),
    "display_after": (int, 20),
    # Precision of weights, data and arithmetic: float32 halves memory traffic (faster);
    # grad_check.py always uses float64, whose rounding a numerical gradient needs.
    "dtype": (str, "float64"),
    # Which epoch the checkpoint keeps: the first with the highest validation accuracy (the
    # 2015 kit's rule), or the one with the lowest validation cross entropy, which still
    # tells epochs apart once the accuracy has stopped changing.
    "checkpoint_on": (str, "accuracy"),
    # Training extras, all off by default (docs/configuration.md).
    "augment_translate": (float, 0.0),
    "augment_rotate": (float, 0.0),
    "augment_scale": (float, 0.0),
    "augment_elastic_alpha": (float, 0.0),
    "augment_elastic_sigma": (float, 4.0),
    # An exponential moving average of the weights, used for validation and the checkpoint.
    "weight_average": (float, 0.0),
    "lr_schedule": (str, "constant"),
    "lr_step_epochs": (int, None),
    "lr_step_factor": (float, 0.1),
    "lr_min_factor": (float, 0.0),
}
# Settings that count something: at least 1.
COUNTS = ("max_epochs", "batch_size", "input_image_size_y", "input_image_size_x", "input_num_channels",
          "display_after")

# Allowed values beyond the type: (test, what the error says the value must be).
LIMITS = {
    "dtype": (lambda v: v in ("float64", "float32"), "float64 or float32"),
    "checkpoint_on": (lambda v: v in ("accuracy", "cross_entropy", "last"), "accuracy, cross_entropy or last"),
    "augment_translate": (lambda v: v >= 0, ">= 0"),
    "augment_rotate": (lambda v: 0 <= v <= 180, "between 0 and 180"),
    "augment_scale": (lambda v: 0 <= v < 1, ">= 0 and below 1"),
    "augment_elastic_alpha": (lambda v: v >= 0, ">= 0"),
    "augment_elastic_sigma": (lambda v: v > 0, "above 0"),
    "weight_average": (lambda v: 0 <= v < 1, ">= 0 and below 1"),
    "lr_schedule": (lambda v: v in SCHEDULES, "one of " + ", ".join(SCHEDULES)),
    "lr_step_epochs": (lambda v: v >= 1, ">= 1"),
    "lr_step_factor": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "lr_min_factor": (lambda v: 0 <= v <= 1, "between 0 and 1"),
}
# The keys of each learning-rate schedule: any other schedule's keys would be silently ignored.
SCHEDULE_KEYS = {"constant": (), "step": ("lr_step_epochs", "lr_step_factor"), "cosine": ("lr_min_factor",)}
# Integers beyond 64 bits overflow numpy: no size, count or seed the kit takes comes near.
INT_LIMIT = 2 ** 63
SHOWN_LIMIT = 60  # characters of a value quoted in a message


def shown(value):
    """repr(value), shortened to SHOWN_LIMIT characters: a message stays one short line."""
    text = repr(value)
    return text if len(text) <= SHOWN_LIMIT else text[:SHOWN_LIMIT - 4] + " ..."


@dataclasses.dataclass(frozen=True)
class Settings:
    """The top-level settings of a config (docs/configuration.md), as read and checked."""

    max_epochs: int
    batch_size: int
    data_path: str
    checkpoint_file: str | None
    performance_stats: str | None
    input_image_size_y: int
    input_image_size_x: int
    input_num_channels: int
    display: bool
    display_after: int
    dtype: str
    checkpoint_on: str
    augment_translate: float
    augment_rotate: float
    augment_scale: float
    augment_elastic_alpha: float
    augment_elastic_sigma: float
    weight_average: float
    lr_schedule: str
    lr_step_epochs: int | None
    lr_step_factor: float
    lr_min_factor: float

    @classmethod
    def read(cls, config, source):
        """The settings of `config` (a dict as load_config returns); ConfigError naming `source`."""
        return cls(**read_settings(config, source))

    @property
    def image_shape(self):
        """(channels, height, width) of an input image."""
        return self.input_num_channels, self.input_image_size_y, self.input_image_size_x

    @property
    def pixels(self):
        """Numbers in one input image."""
        return self.input_num_channels * self.input_image_size_y * self.input_image_size_x


def read_settings(config, source):
    """The top-level settings of `config` (every key of SETTINGS), read and checked in one
    pass: {key: value}, as Settings.read keeps them."""
    check_keys({k: v for k, v in config.items() if k != "_path"}, list(SETTINGS) + ["network"], source)
    settings = {key: _net_setting(config, key, kind, default, source)
                for key, (kind, default) in SETTINGS.items()}
    for key in COUNTS:
        if settings[key] < 1:
            raise ConfigError(f"{source}: key '{key}' must be >= 1, got {settings[key]}")
    schedule = settings["lr_schedule"]
    for key in ("lr_step_epochs", "lr_step_factor", "lr_min_factor"):
        if key in config and key not in SCHEDULE_KEYS[schedule]:
            raise ConfigError(f"{source}: key '{key}' has no effect with lr_schedule {schedule} "
                              f"(it belongs to {'step' if key.startswith('lr_step') else 'cosine'})")
    if "augment_elastic_sigma" in config and not settings["augment_elastic_alpha"]:
        raise ConfigError(f"{source}: key 'augment_elastic_sigma' has no effect without augment_elastic_alpha "
                          "above 0 (the size of the elastic distortions)")
    if schedule == "step" and settings["lr_step_epochs"] is None:
        raise ConfigError(f"{source}: key 'lr_step_epochs' is needed with lr_schedule step "
                          "(decay every that many epochs)")
    return settings


def _finite(value):
    """math.isfinite, False for an integer too large to be a float."""
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:
        return False


def _net_setting(config, key, kind, default, source):
    value = given = config.get(key, default)
    if value is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{key}' must be True or False, got {shown(value)}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key '{key}' must be an integer, got {shown(value)}")
        if not -INT_LIMIT < value < INT_LIMIT:
            raise ConfigError(f"{source}: key '{key}' must be an integer below 2**63, got {shown(value)}")
    elif kind is float:
        value = yaml_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise ConfigError(f"{source}: key '{key}' must be a finite number, got {shown(given)}")
        value = float(value)
    elif not isinstance(value, str):
        raise ConfigError(f"{source}: key '{key}' must be a string, got {shown(value)}")
    if key in LIMITS and not LIMITS[key][0](value):
        raise ConfigError(f"{source}: key '{key}' must be {LIMITS[key][1]}, got {shown(given)}")
    return value


def layer_setting(proto, key, kind, default=None, minimum=None, below=None):
    """Read one setting of a layer from its config entry, with a clear error when it is bad."""
    name = proto.get("name", "?")
    if key not in proto:
        if default is None:
            raise ConfigError(f"layer '{name}': missing key '{key}'")
        return default
    value = proto[key]
    if kind is float:
        value = yaml_number(value)
    if kind is int and isinstance(value, bool) or kind is float and isinstance(value, bool):
        raise ConfigError(f"layer '{name}': key '{key}' must be a number, got {shown(value)}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"layer '{name}': key '{key}' must be an integer, got {shown(value)}")
    if kind is int and not -INT_LIMIT < value < INT_LIMIT:
        raise ConfigError(f"layer '{name}': key '{key}' must be an integer below 2**63, got {shown(value)}")
    if kind is float and not isinstance(value, (int, float)):
        raise ConfigError(f"layer '{name}': key '{key}' must be a number, got {shown(value)}")
    if not _finite(value):
        raise ConfigError(f"layer '{name}': key '{key}' must be finite, got {shown(value)}")
    value = kind(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"layer '{name}': key '{key}' must be >= {minimum}, got {value!r}")
    if below is not None and value >= below:
        raise ConfigError(f"layer '{name}': key '{key}' must be below {below}, got {value!r}")
    return value


def check_seed(seed):
    """The seed as an int, if it is one numpy's generators and the last state can keep."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < INT_LIMIT:
        raise ConfigError(f"the seed (--seed) must be an integer from 0 to 2**63 - 1, got {shown(seed)}")
    return int(seed)


def check_keys(mapping, known, where):
    """Refuse keys that are not in `known`, suggesting the closest one: a typo such as
    'epsilion' must not be silently ignored."""
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
            raise ConfigError(f"{where}: unknown key {shown(key)}{hint}")


def yaml_number(value):
    """PyYAML reads 1e-3 (no dot) as a string: such a string as a float; anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value
