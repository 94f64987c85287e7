"""Max pooling layer: each output is the largest input in its k x k window, per channel.

Config keys: name, type: MAXPOOL, kernel_size, stride, padding (0 <= padding <= k // 2,
as in PyTorch; padding never wins the max). No parameters, no activation: pooling
ReLU outputs keeps them non-negative anyway.

Derivative: each window sends its derivative to one input, the first maximum in
row-major order (as PyTorch does). When several inputs tie for the max -- common on
USPS, whose background is exactly 0 -- sending it to every tied input, as the 2015 kit
did, would count that derivative several times.
"""

import numpy as np

import convolutions
from layer import ConfigError, Layer, layer_setting, output_size


class MaxPoolLayer(Layer):

    has_params_ = False
    extra_keys_ = ("kernel_size", "stride", "padding", "num_channels")

    def __init__(self, proto):
        super().__init__(proto)
        self.kernel_size_ = layer_setting(proto, "kernel_size", int, minimum=1)
        self.stride_ = layer_setting(proto, "stride", int, default=self.kernel_size_, minimum=1)
        self.padding_ = layer_setting(proto, "padding", int, default=0, minimum=0)
        # Optional: pooling keeps the channels, so a stated count must match the input's.
        self.declared_channels_ = layer_setting(proto, "num_channels", int, default=0, minimum=1) or None
        if self.padding_ > self.kernel_size_ // 2:
            raise ConfigError(f"layer '{self.name_}': key 'padding' must be at most kernel_size // 2 "
                              f"({self.kernel_size_ // 2}), got {self.padding_}")

    def output_shape(self, size):
        """(H', W', C) for an input of size (H, W, C), H' = (H + 2p - k) // s + 1."""
        k, s, p = self.kernel_size_, self.stride_, self.padding_
        return output_size(self.name_, size[0], k, s, p, "y"), output_size(self.name_, size[1], k, s, p, "x"), size[2]

    def Initialize(self, size_y, size_x, channels, rng=None):
        """Return the pooled size (H', W', C)."""
        if self.declared_channels_ not in (None, channels):
            raise ConfigError(f"layer '{self.name_}': key 'num_channels' is {self.declared_channels_}, but "
                              f"pooling keeps its input's {channels} channels")
        out = self.output_shape((size_y, size_x, channels))
        self.input_size_y_, self.input_size_x_, self.num_channels_ = size_y, size_x, channels
        self._describe((size_y, size_x, channels), out, f"  {self.kernel_size_}x{self.kernel_size_} "
                       f"stride {self.stride_} pad {self.padding_}")
        return out

    def _input_maps(self, inputs):
        return inputs.reshape(inputs.shape[0], self.num_channels_, self.input_size_y_, self.input_size_x_)

    def ComputeUp(self, inputs):
        """Forward pass.

        inputs:  (batch, C, H, W), or (batch, C*H*W)
        returns: (batch, C, H', W')
        """
        outputs, _ = convolutions.maxpool_forward(self._input_maps(inputs), self.kernel_size_,
                                                  self.stride_, self.padding_)
        return outputs

    def ComputeDown(self, dC_by_doutputs, outputs, inputs):
        """Backward pass: the derivative of each window goes to the input that won it.

        dC_by_doutputs, outputs: (batch, C, H', W'); inputs: as given to ComputeUp.
        returns: (dC_by_dinputs shaped like inputs, or None for the input layer, None, None)
        """
        if self.is_input_:
            return None, None, None
        maps = self._input_maps(inputs)
        # The winners found again, as the derivatives are routed (one pass over each map):
        # that keeps the layer free of state.
        d_inputs = convolutions.maxpool_derivative(np.asarray(dC_by_doutputs, dtype=maps.dtype), maps,
                                                   self.kernel_size_, self.stride_, self.padding_)
        return d_inputs.reshape(inputs.shape), None, None
