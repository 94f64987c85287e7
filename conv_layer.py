"""Convolutional layer, computed two ways that give the same numbers.

Config keys: name, type: CONVOLUTIONAL, num_channels, kernel_size, stride, padding,
convolve_method (method1 or method2), init_wt, epsilon, momentum, l2_decay.

Weights w_ (num_channels, in_channels * k * k): row f is filter f laid out as (C, k, k).
Biases b_ (1, num_channels), one per output map. With N the batch, C/K the input/output
channels, k the kernel size, p the padding and s the stride, a layer maps
(N, C, H, W) -> (N, K, H', W'), H' = (H + 2p - k) // s + 1.

The layer *cross-correlates* its inputs with its filters (as every deep learning library
does): out[n, f, y, x] = sum_{c,i,j} w[f, c, i, j] * in[n, c, s*y + i - p, s*x + j - p].

- Method 1: the dot product of each filter with each patch (the k x k window of the padded
  input, all channels, under one output position). `convolutions.correlate` computes them
  all, reading each patch where it lies. Going down, the same dot products are read the
  other two ways: w.r.t. the filters (`correlate_weight_derivative`: the patches times the
  derivatives) and w.r.t. the inputs (each input pixel gets the filters' weights times the
  derivatives of the dot products it was in: a correlation with the filters flipped).
- Method 2: a cross-correlation with w is a true convolution with w flipped in both
  spatial axes, so the forward pass is `convolve(inputs, flipped weights, padding=p)`, and
  the backward pass is two more convolutions (see ComputeDown). `convolve` works at
  stride 1; for stride s the layer takes every s-th output.

On the way down both methods see a stride above 1 the same way: the derivatives are put
back on the stride-1 grid, with zeros for the outputs the stride skipped.
"""

import numpy as np

import convolutions
from layer import ConfigError, Layer, layer_setting, output_size


class ConvLayer(Layer):

    extra_keys_ = ("kernel_size", "stride", "padding", "convolve_method")

    def __init__(self, proto):
        super().__init__(proto)
        self.kernel_size_ = layer_setting(proto, "kernel_size", int, minimum=1)
        self.stride_ = layer_setting(proto, "stride", int, default=1, minimum=1)
        self.padding_ = layer_setting(proto, "padding", int, default=0, minimum=0)
        method = proto.get("convolve_method", "method1")
        if method not in ("method1", "method2"):
            raise ConfigError(f"layer '{self.name_}': key 'convolve_method' must be method1 or method2, "
                              f"got {method!r}")
        self.conv_method_ = 1 if method == "method1" else 2
        if self.padding_ >= self.kernel_size_:
            raise ConfigError(f"layer '{self.name_}': key 'padding' must be smaller than kernel_size "
                              f"({self.kernel_size_}), got {self.padding_}")

    def output_shape(self, size):
        """(H', W', K) for an input of size (H, W, C); ConfigError if the windows do not fit."""
        k, s, p = self.kernel_size_, self.stride_, self.padding_
        if self.conv_method_ == 2 and min(size[:2]) + p < k:
            # The weight derivative of method 2 convolves with the stride-1 output map,
            # and convolve needs its padding p below that map's size.
            raise ConfigError(f"layer '{self.name_}': convolve_method method2 needs input size + padding >= "
                              f"kernel_size, got {min(size[:2])} + {p} < {k}")
        return (output_size(self.name_, size[0], k, s, p, "y"), output_size(self.name_, size[1], k, s, p, "x"),
                self.num_channels_)

    def Initialize(self, size_y, size_x, channels, rng=None):
        """Make the filters for a size_y x size_x x channels input; return the output size."""
        rng = np.random.default_rng() if rng is None else rng
        k, s, p = self.kernel_size_, self.stride_, self.padding_
        out = self.output_shape((size_y, size_x, channels))
        self.input_size_y_, self.input_size_x_, self.num_input_channels_ = size_y, size_x, channels
        self.output_size_y_, self.output_size_x_ = out[:2]
        self._init_params(channels * k * k, rng)
        self._describe((size_y, size_x, channels), out,
                       f"  {k}x{k} stride {s} pad {p} method {self.conv_method_}")
        return out

    def _input_maps(self, inputs):
        """inputs (batch, C*H*W) or (batch, C, H, W) -> (batch, C, H, W)."""
        return inputs.reshape(inputs.shape[0], self.num_input_channels_,
                              self.input_size_y_, self.input_size_x_)

    def _on_stride_1_grid(self, deriv):
        """deriv (N, K, H', W') at stride s -> (N, K, H+2p-k+1, W+2p-k+1), the outputs the stride
        skipped given derivative 0; deriv itself at stride 1."""
        s = self.stride_
        if s == 1:
            return deriv
        k, p = self.kernel_size_, self.padding_
        full = np.zeros(deriv.shape[:2] + (self.input_size_y_ + 2 * p - k + 1, self.input_size_x_ + 2 * p - k + 1),
                        dtype=deriv.dtype)
        full[:, :, ::s, ::s] = deriv
        return full

    def ComputeUp(self, inputs):
        """Forward pass: cross-correlate with the filters (method 1), or convolve with the
        flipped filters (method 2); add the biases; apply the activation.

        inputs:  (batch, C, H, W), or (batch, C*H*W)
        returns: (batch, K, H', W'), H' = (H + 2p - k) // s + 1
        """
        inputs = self._input_maps(inputs)
        K, C, k = self.num_channels_, self.num_input_channels_, self.kernel_size_
        if self.conv_method_ == 1:
            filters = self.w_.reshape(K, C, k, k)
            # Every filter's dot product with every patch, plus its bias, through ReLU in the
            # same pass (a hidden layer's; the output layer's softmax is applied below).
            outputs = convolutions.correlate(inputs, filters, self.b_, stride=self.stride_,
                                             padding=self.padding_, relu=not self.is_output_)
            return self.ApplyActivation(outputs) if self.is_output_ else outputs
        w_flip = self.w_.reshape(K, C, k, k)[:, :, ::-1, ::-1]
        # BEGIN SOLUTION
        # (N, 1, C, H, W) (*) (1, K, C, k, k) -> (N, K, C, H1, W1); add up the input channels.
        outputs = convolutions.convolve(inputs[:, np.newaxis], w_flip[np.newaxis],
                                        padding=self.padding_).sum(axis=2)
        # END SOLUTION
        if self.stride_ > 1:
            outputs = outputs[:, :, ::self.stride_, ::self.stride_]
        outputs = outputs + self.b_.reshape(1, K, 1, 1)
        return self.ApplyActivation(np.ascontiguousarray(outputs))

    def ComputeDown(self, dC_by_doutputs, outputs, inputs):
        """Backward pass.

        dC_by_doutputs, outputs: (batch, K, H', W'); inputs: as given to ComputeUp.
        returns: (dC_by_dinputs (batch, C, H, W), or None for the input layer,
                  dw (K, C*k*k), db (1, K)), dw and db averaged over the mini-batch.
        """
        input_shape = inputs.shape
        inputs = self._input_maps(inputs)
        batch_size = inputs.shape[0]
        K, C, k, s, p = self.num_channels_, self.num_input_channels_, self.kernel_size_, self.stride_, self.padding_
        dC_by_dinputs = None
        if self.conv_method_ == 1:
            # Through the activation (ReLU's derivative in a hidden layer); db sums each filter's.
            deriv, db = convolutions.pre_activation_derivatives(dC_by_doutputs, outputs, relu=not self.is_output_)
            # Each filter's derivative: the patches times the derivatives of its dot products.
            dw = convolutions.correlate_weight_derivative(inputs, deriv, k, stride=s, padding=p)
            if not self.is_input_:
                # Each input pixel: the weights times the derivatives of the dot products it was
                # in. out = correlate(in, w), so the input meets its outputs through the same
                # weights seen from the other side: flipped, input and output channels swapped,
                # and padded by k - 1 - p so that every output the pixel fed is reached.
                w_back = self.w_.reshape(K, C, k, k)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
                dC_by_dinputs = convolutions.correlate(self._on_stride_1_grid(deriv), w_back, padding=k - 1 - p)
        else:
            deriv = self.ComputeActivationDeriv(dC_by_doutputs, outputs)
            db = deriv.sum(axis=(0, 2, 3))
            deriv = self._on_stride_1_grid(deriv)
            w = self.w_.reshape(K, C, k, k)
            deriv_flip = deriv[:, :, ::-1, ::-1]
            # BEGIN SOLUTION
            if not self.is_input_:
                # (N, K, 1, H1, W1) (*) (1, K, C, k, k), full padding -> (N, K, C, H, W); sum over K.
                dC_by_dinputs = convolutions.convolve(deriv[:, :, np.newaxis], w[np.newaxis],
                                                      padding=k - self.padding_ - 1).sum(axis=1)
            # (N, 1, C, H, W) (*) (N, K, 1, H1, W1) -> (N, K, C, k, k); sum over the batch.
            dw = convolutions.convolve(inputs[:, np.newaxis], deriv_flip[:, :, np.newaxis],
                                       padding=self.padding_).sum(axis=0)
            # END SOLUTION
        dw = np.reshape(dw, self.w_.shape) / batch_size
        db = np.reshape(db, self.b_.shape) / batch_size
        if dC_by_dinputs is not None:
            dC_by_dinputs = np.reshape(dC_by_dinputs, input_shape)
        return dC_by_dinputs, dw, db
