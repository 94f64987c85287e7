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
import re

import numpy as np
import yaml

from plumbing.errors import ConfigError
from plumbing.files import human_bytes, physical_memory, read_limited
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
# A config is a few kilobytes (the largest shipped one, usps_best.yaml, 2.4 KB). Anything much
# larger is not one; PyYAML parses some 130 KiB a second, so reading stays below half a second.
CONFIG_LIMIT = 64 << 10
# Characters of the config with every YAML alias written out: a few aliases of aliases of a
# long value (an "alias bomb") stand for more text than any memory holds.
EXPANDED_LIMIT = 256 << 10
# Layer names become the names of the arrays of a checkpoint ('<name>_w'): no NUL, no '/'.
LAYER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Integers beyond 64 bits overflow numpy: no size, count or seed the kit takes comes near.
INT_LIMIT = 2 ** 63
SHOWN_LIMIT = 60  # characters of a value quoted in a message


def shown(value):
    """repr(value), shortened to SHOWN_LIMIT characters: a message stays one short line."""
    text = repr(value)
    return text if len(text) <= SHOWN_LIMIT else text[:SHOWN_LIMIT - 4] + " ..."


def load_config(path):
    """Read a YAML config file into a dict, or raise ConfigError naming the file and the problem."""
    try:
        data = read_limited(path, CONFIG_LIMIT)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not a config: it is {e} (a config is a few kilobytes of YAML)") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}); "
                          "save the config as UTF-8") from None
    try:
        config = _parse_yaml(text, path)
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to be a config") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or ""
        if isinstance(e, yaml.constructor.ConstructorError) and "constructor for the tag" in problem:
            # safe_load builds plain data only: tags like !!python/object are refused.
            raise ConfigError(f"{path}: the YAML{where} asks to build a Python object "
                              f"({problem}); configs hold plain values only") from None
        if isinstance(e, yaml.constructor.ConstructorError):
            raise ConfigError(f"{path}: not valid YAML{where} ({problem})") from None
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys (max_epochs, network, ...)")
    config.setdefault("_path", str(path))
    return config


def _parse_yaml(text, path):
    """yaml.safe_load(text), refusing aliases that would stand for more than EXPANDED_LIMIT
    characters before anything is built from them."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node, sizes, open_nodes, path):
    """The characters `node` stands for with its aliases written out (each node counted once
    per place it appears, computed once per node: an alias is the same node object)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ConfigError(f"{path}: a YAML alias at line {node.start_mark.line + 1} refers to a value "
                          "that holds it: a config holds plain values only")
    open_nodes.add(key)
    if isinstance(node, yaml.ScalarNode):
        size = 1 + len(node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, sizes, open_nodes, path) for child in node.value)
    else:
        size = 1 + sum(_expanded_size(k, sizes, open_nodes, path) + _expanded_size(v, sizes, open_nodes, path)
                       for k, v in node.value)
    open_nodes.discard(key)
    if size > EXPANDED_LIMIT:
        raise ConfigError(f"{path}: the YAML value at line {node.start_mark.line + 1} stands for more than "
                          f"{EXPANDED_LIMIT // 1024} K characters once its aliases are written out: "
                          "not a config")
    sizes[key] = size
    return size


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
        if proto.get("name") in (None, ""):  # absent, or 'name:' with nothing after it
            raise ConfigError(f"{source}: network entry {i}: missing key 'name'")
        name = proto["name"]
        if not isinstance(name, str) or not LAYER_NAME.fullmatch(name):
            raise ConfigError(f"{source}: network entry {i}: key 'name' must be 1 to 64 letters, digits, "
                              f"'_', '-' or '.', got {shown(name)}")
        if name in names:
            raise ConfigError(f"{source}: layer '{name}': key 'name' is used by two layers")
        names.add(name)
        if "type" not in proto:
            raise ConfigError(f"{source}: layer '{name}': missing key 'type' (one of {', '.join(layer_types)})")
        kind = proto["type"]
        if not isinstance(kind, str) or kind not in layer_types:
            raise ConfigError(f"{source}: layer '{name}': key 'type' is {shown(kind)}, "
                              f"not one of {', '.join(layer_types)}")
    return protos


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


def check_layer_fits(layer, size, batch_size, dtype, source):
    """Before a layer allocates anything: its window fits its input (size: (H, W, C)), and its
    weights and a batch of its outputs fit in this machine's memory (a typo such as
    num_channels: 1000000000 is one line, not a MemoryError or the system killing the run)."""
    name, (in_y, in_x, in_c) = layer.name_, size
    try:
        out_y, out_x, channels = layer.output_shape(size)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    if hasattr(layer, "kernel_size_"):
        fan_in = in_c * layer.kernel_size_ ** 2 if layer.has_params_ else 0
    else:
        fan_in = in_y * in_x * in_c if layer.has_params_ else 0
    itemsize, memory = np.dtype(dtype).itemsize, physical_memory()
    # The weights, their momentum and their derivative: three arrays of that size.
    need = 3 * channels * fan_in * itemsize
    if need > memory:
        raise ConfigError(f"{source}: layer '{name}': key 'num_channels': {channels} units of {fan_in} inputs "
                          f"each need {human_bytes(need)} for their weights, momentum and derivatives, more "
                          f"than this machine's {human_bytes(memory)} of memory")
    # A batch of outputs, and as many derivatives on the way back.
    need = 2 * batch_size * out_y * out_x * channels * itemsize
    if need > memory:
        raise ConfigError(f"{source}: layer '{name}': key 'batch_size'/'num_channels': {batch_size} outputs of "
                          f"{out_y}x{out_x}x{channels} need {human_bytes(need)} with their derivatives, more "
                          f"than this machine's {human_bytes(memory)} of memory")


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
