"""A window layer's output size: the one place it is computed, and checked.

A conv or pooling layer slides a k x k window with stride s over its input padded by p,
so along each axis it has (n + 2p - k) / s + 1 outputs. That must be a whole number of at
least 1: otherwise the last input rows would be silently left out.
"""

from plumbing.errors import ConfigError


def output_size(layer_name, n, kernel_size, stride, padding, axis):
    """Outputs along `axis` ('y' or 'x') of n inputs; ConfigError naming the layer and keys if not whole."""
    k, s, p = kernel_size, stride, padding
    span = n + 2 * p - k
    if span < 0 or span % s:
        raise ConfigError(f"layer '{layer_name}': key 'kernel_size'/'stride'/'padding': output size "
                          f"({n} + 2*{p} - {k}) / {s} + 1 along {axis} is {span / s + 1:g}, not a whole number >= 1")
    return span // s + 1
