"""A layer's output size, and whether the layer fits: the one place each is computed.

A conv or pooling layer slides a k x k window with stride s over its input padded by p,
so along each axis it has (n + 2p - k) / s + 1 outputs. That must be a whole number of at
least 1: otherwise the last input rows would be silently left out.
"""

import numpy as np

from plumbing.errors import ConfigError
from plumbing.files import human_bytes, physical_memory


def output_size(layer_name, n, kernel_size, stride, padding, axis):
    """Outputs along `axis` ('y' or 'x') of n inputs; ConfigError naming the layer and keys if not whole."""
    k, s, p = kernel_size, stride, padding
    span = n + 2 * p - k
    if span < 0 or span % s:
        raise ConfigError(f"layer '{layer_name}': key 'kernel_size'/'stride'/'padding': output size "
                          f"({n} + 2*{p} - {k}) / {s} + 1 along {axis} is {span / s + 1:g}, not a whole number >= 1")
    return span // s + 1


def check_layer_fits(layer, size, batch_size, dtype, source):
    """Before a layer allocates anything: its window fits its input (size: (H, W, C)), and its
    weights and a batch of its outputs fit in this machine's memory (a typo such as
    num_channels: 1000000000 is one line, not a MemoryError or the system killing the run)."""
    name, (in_y, in_x, in_c) = layer.name_, size
    try:
        out_y, out_x, channels = layer.output_shape(size)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    if not layer.sized_by_config_:
        fan_in = 1  # one weight per channel (batch normalisation)
    elif hasattr(layer, "kernel_size_"):
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
