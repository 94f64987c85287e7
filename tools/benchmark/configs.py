"""The training configs the benchmark measures and what each one computes: which configs
train, their variants by conv method, the layer shapes and flop counts, and the data they
read. Plain Python and numpy, no kit code: the flop count is independent of the kit."""

import copy
import json

import numpy as np
import yaml

from tools import KIT

CONFIG_DIR = KIT / "configs"
# The handout's order; any other training config found in configs/ comes after, by name.
HANDOUT_ORDER = ("logreg", "net_1layer", "net_2layer", "convnet1_method1", "convnet1_method2",
                 "convnet2", "convnet3")


def training_configs():
    """{name: config dict} of every training config in configs/, in the handout's order."""
    found = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        if isinstance(config, dict) and "data_path" in config and "max_epochs" in config:
            found[path.stem] = config
    order = [n for n in HANDOUT_ORDER if n in found] + sorted(n for n in found if n not in HANDOUT_ORDER)
    return {name: found[name] for name in order}


def load_arrays(path):
    """train and validation (images, one-hot labels) from a prepared USPS file."""
    with np.load(path, allow_pickle=False) as f:
        return {name: (f[name], f[name + "_labels"]) for name in ("train", "validation")}


def layer_window(layer):
    """(kernel size k, stride s, padding p) of a conv or max-pooling layer's entry."""
    k = int(layer["kernel_size"])
    default_stride = k if layer["type"] == "MAXPOOL" else 1
    return k, int(layer.get("stride", default_stride)), int(layer.get("padding", 0))


def layer_shapes(config):
    """[(layer, (C, H, W) in, (C, H, W) out)] for the config's network, bottom to top."""
    shape = (int(config.get("input_num_channels", 1)), int(config.get("input_image_size_y", 16)),
             int(config.get("input_image_size_x", 16)))
    result = []
    for layer in config["network"]:
        c, h, w = shape
        if layer["type"] == "FC":
            out = (int(layer["num_channels"]), 1, 1)
        elif layer["type"] not in ("CONVOLUTIONAL", "MAXPOOL"):
            out = shape  # DROPOUT and the like keep their input's shape
        else:
            k, s, p = layer_window(layer)
            channels = int(layer["num_channels"]) if layer["type"] == "CONVOLUTIONAL" else c
            out = (channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        result.append((layer, shape, out))
        shape = out
    return result


def flops_per_image(config):
    """(forward, backward) flops of one image: 2 per multiply-add of the conv and FC layers.

    Forward, a conv layer does K*C*k*k multiply-adds per output pixel and an FC layer in*out.
    Backward, the weight derivative costs as much again, and so does the input derivative,
    which the bottom layer does not compute. Pooling and activations are not counted.
    """
    forward = backward = 0
    for i, (layer, (c, h_in, w_in), (k_out, h_out, w_out)) in enumerate(layer_shapes(config)):
        if layer["type"] == "CONVOLUTIONAL":
            k = int(layer["kernel_size"])
            macs = k_out * c * k * k * h_out * w_out
        elif layer["type"] == "FC":
            macs = c * h_in * w_in * k_out
        else:
            continue
        forward += 2 * macs
        backward += 2 * macs * (1 if i == 0 else 2)
    return forward, backward


def epoch_flops(config, num_train, num_validation):
    """Flops of one epoch: forward and backward over the training set, forward over validation."""
    forward, backward = flops_per_image(config)
    return num_train * (forward + backward) + num_validation * forward


def with_method(config, method):
    """A deep copy of the config with every conv layer's convolve_method set to `method`."""
    config = copy.deepcopy(config)
    for layer in config["network"]:
        if layer["type"] == "CONVOLUTIONAL":
            layer["convolve_method"] = method
    return config


def has_conv(config):
    return any(layer["type"] == "CONVOLUTIONAL" for layer in config["network"])


def network_key(config, with_methods=True):
    """What decides the computation: equal keys mean the same network, trained the same way."""
    keys = ("batch_size", "input_image_size_y", "input_image_size_x", "input_num_channels", "dtype")
    network = config["network"] if with_methods else with_method(config, "method1")["network"]
    return json.dumps([{k: config.get(k) for k in keys}, network], sort_keys=True)
