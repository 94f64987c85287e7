"""The config file: reading it safely, and reading its settings and its list of layers.

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

import re

import yaml

from plumbing.errors import ConfigError
from plumbing.files import read_limited
from plumbing.settings import Settings, shown

# A config is a few kilobytes (the largest shipped one, usps_best.yaml, 2.4 KB). Anything much
# larger is not one; PyYAML parses some 130 KiB a second, so reading stays below half a second.
CONFIG_LIMIT = 64 << 10
# Characters of the config with every YAML alias written out: a few aliases of aliases of a
# long value (an "alias bomb") stand for more text than any memory holds.
EXPANDED_LIMIT = 256 << 10
# Keys the loader adds to a config: one given in the file would be taken for the kit's.
RESERVED = {"_path": "the config's own file, named in every message"}
# Layer names become the names of the arrays of a checkpoint ('<name>_w'): no NUL, no '/'.
LAYER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


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
    for key in RESERVED:
        if key in config:
            raise ConfigError(f"{path}: key {shown(key)} is the kit's own ({RESERVED[key]}): leave it out")
    config["_path"] = str(path)
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
        _check_unique_keys(node, path)
        size = 1 + sum(_expanded_size(k, sizes, open_nodes, path) + _expanded_size(v, sizes, open_nodes, path)
                       for k, v in node.value)
    open_nodes.discard(key)
    if size > EXPANDED_LIMIT:
        raise ConfigError(f"{path}: the YAML value at line {node.start_mark.line + 1} stands for more than "
                          f"{EXPANDED_LIMIT // 1024} K characters once its aliases are written out: "
                          "not a config")
    sizes[key] = size
    return size


def _check_unique_keys(node, path):
    """A mapping names each key once: YAML would keep the later of two silently."""
    lines = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in lines:
                raise ConfigError(f"{path}: key {shown(key.value)} is given twice, at lines {lines[key.value]} "
                                  f"and {key.start_mark.line + 1}: give it once")
            lines[key.value] = key.start_mark.line + 1


def read_config(config, layer_types, source):
    """A config (a dict as load_config returns) read and checked in one pass: its settings
    (Settings) and its list of layers, each a mapping with a name of its own and one of
    `layer_types`. ConfigError naming `source`, the layer and the key."""
    return Settings.read(config, source), network_entries(config, layer_types, source)


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
