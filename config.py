"""The config file: reading it, and the settings a network takes from it, checked.

A config names the data, the training settings and the layers, bottom to top (see
docs/configuration.md for every key):

    max_epochs: 25              batch_size: 100
    data_path: data/usps.npz    checkpoint_file: runs/logreg.npz
    performance_stats: runs/logreg_stats.npy
    input_image_size_y: 16      input_image_size_x: 16      input_num_channels: 1
    display: True               display_after: 20
    network:
      - {name: output, type: FC, num_channels: 10, init_wt: 0.05, epsilon: 0.02, momentum: 0.9, l2_decay: 0.0001}

Every check raises ConfigError with one line naming the file, the layer and the key, so a
typo or a wrong value stops the run before it starts instead of being silently ignored.
"""

import difflib

import numpy as np
import yaml

from lr_schedule import SCHEDULES


class ConfigError(ValueError):
    """A config that cannot describe a network; the message names the key and the layer."""


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
    "checkpoint_on": (lambda v: v in ("accuracy", "cross_entropy"), "accuracy or cross_entropy"),
    "augment_translate": (lambda v: v >= 0, ">= 0"),
    "augment_rotate": (lambda v: 0 <= v <= 180, "between 0 and 180"),
    "augment_scale": (lambda v: 0 <= v < 1, ">= 0 and below 1"),
    "lr_schedule": (lambda v: v in SCHEDULES, "one of " + ", ".join(SCHEDULES)),
    "lr_step_epochs": (lambda v: v >= 1, ">= 1"),
    "lr_step_factor": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "lr_min_factor": (lambda v: 0 <= v <= 1, "between 0 and 1"),
}
# The keys of each learning-rate schedule: any other schedule's keys would be silently ignored.
SCHEDULE_KEYS = {"constant": (), "step": ("lr_step_epochs", "lr_step_factor"), "cosine": ("lr_min_factor",)}


def load_config(path):
    """Read a YAML config file into a dict, or raise ConfigError naming the file and the problem."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        if isinstance(e, yaml.constructor.ConstructorError):
            # safe_load builds plain data only: tags like !!python/object are refused.
            raise ConfigError(f"{path}: the YAML{where} asks to build a Python object "
                              f"({getattr(e, 'problem', '')}); configs hold plain values only") from None
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys (max_epochs, network, ...)")
    config.setdefault("_path", str(path))
    return config


def read_settings(config, source):
    """The top-level settings of `config` (every key of SETTINGS), checked: {key: value}."""
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
    if schedule == "step" and settings["lr_step_epochs"] is None:
        raise ConfigError(f"{source}: key 'lr_step_epochs' is needed with lr_schedule step "
                          "(decay every that many epochs)")
    return settings


def network_entries(config, layer_types, source):
    """The config's list of layers, each a mapping with a name of its own and a known type."""
    protos = config.get("network")
    if not isinstance(protos, list) or not protos:
        raise ConfigError(f"{source}: key 'network' must be a non-empty list of layers")
    names = set()
    for i, proto in enumerate(protos):
        if not isinstance(proto, dict):
            raise ConfigError(f"{source}: network entry {i} must be a mapping of keys")
        name = proto.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{source}: network entry {i}: missing key 'name'")
        if name in names:
            raise ConfigError(f"{source}: layer '{name}': key 'name' is used by two layers")
        names.add(name)
        if "type" not in proto:
            raise ConfigError(f"{source}: layer '{name}': missing key 'type' (one of {', '.join(layer_types)})")
        kind = proto["type"]
        if not isinstance(kind, str) or kind not in layer_types:
            raise ConfigError(f"{source}: layer '{name}': key 'type' is {kind!r}, "
                              f"not one of {', '.join(layer_types)}")
    return protos


def _net_setting(config, key, kind, default, source):
    value = given = config.get(key, default)
    if value is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{key}' must be True or False, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key '{key}' must be an integer, got {value!r}")
    elif kind is float:
        value = yaml_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ConfigError(f"{source}: key '{key}' must be a finite number, got {given!r}")
        value = float(value)
    elif not isinstance(value, str):
        raise ConfigError(f"{source}: key '{key}' must be a string, got {value!r}")
    if key in LIMITS and not LIMITS[key][0](value):
        raise ConfigError(f"{source}: key '{key}' must be {LIMITS[key][1]}, got {given!r}")
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
        raise ConfigError(f"layer '{name}': key '{key}' must be a number, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"layer '{name}': key '{key}' must be an integer, got {value!r}")
    if kind is float and not isinstance(value, (int, float)):
        raise ConfigError(f"layer '{name}': key '{key}' must be a number, got {value!r}")
    value = kind(value)
    if not np.isfinite(value):
        raise ConfigError(f"layer '{name}': key '{key}' must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"layer '{name}': key '{key}' must be >= {minimum}, got {value!r}")
    if below is not None and value >= below:
        raise ConfigError(f"layer '{name}': key '{key}' must be below {below}, got {value!r}")
    return value


def check_window_fits(name, kernel_size, stride, padding, size, source):
    """A window layer's output size (in + 2p - k) / s + 1 must be whole and at least 1:
    otherwise the last input rows would be silently ignored. size: (H, W, ...)."""
    k, s, p = kernel_size, stride, padding
    for axis, n in zip("yx", size[:2]):
        span = n + 2 * p - k
        if span < 0 or span % s:
            raise ConfigError(f"{source}: layer '{name}': key 'kernel_size'/'stride'/'padding': "
                              f"output size ({n} + 2*{p} - {k}) / {s} + 1 along {axis} is "
                              f"{span / s + 1:g}, not a whole number >= 1")


def check_keys(mapping, known, where):
    """Refuse keys that are not in `known`, suggesting the closest one: a typo such as
    'epsilion' must not be silently ignored."""
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")


def yaml_number(value):
    """PyYAML reads 1e-3 (no dot) as a string: such a string as a float; anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value
