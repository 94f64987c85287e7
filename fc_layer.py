"""Fully connected layer: every output unit sees every input unit.

Config keys: name, type: FC, num_channels, init_wt, epsilon, momentum, l2_decay.
Weights w_ (num_channels, fan_in), biases b_ (1, num_channels). Inputs of any shape
(batch, ...) are flattened to (batch, fan_in), so an FC layer can follow a conv layer.
"""

import numpy as np

from layer import Layer


class FCLayer(Layer):

    def Initialize(self, size_y, size_x, channels, rng=None):
        """Make the weights for an input of size_y x size_x x channels; return (1, 1, num_channels)."""
        rng = np.random.default_rng() if rng is None else rng
        self.fan_in_ = size_y * size_x * channels
        self._init_params(self.fan_in_, rng)
        out = (1, 1, self.num_channels_)
        self._describe((size_y, size_x, channels), out, f"  w {self.w_.shape}")
        return out

    def ComputeUp(self, inputs):
        """Forward pass: output = inputs . w^T + b, then the activation.

        inputs:  (batch, fan_in), or (batch, C, H, W) with C*H*W = fan_in
        returns: (batch, num_channels)
        """
        inputs = inputs.reshape(inputs.shape[0], -1)
        # BEGIN SOLUTION
        output = inputs @ self.w_.T + self.b_
        # END SOLUTION
        return self.ApplyActivation(output)

    def ComputeDown(self, dC_by_doutputs, outputs, inputs):
        """Backward pass.

        dC_by_doutputs, outputs: (batch, num_channels); inputs: as given to ComputeUp.
        returns: (dC_by_dinputs shaped like inputs, or None for the input layer,
                  dw (num_channels, fan_in), db (1, num_channels)), dw and db averaged
                  over the mini-batch.
        """
        input_shape = inputs.shape
        batch_size = input_shape[0]
        inputs = inputs.reshape(batch_size, -1)
        deriv = self.ComputeActivationDeriv(dC_by_doutputs, outputs)
        dC_by_dinputs = None
        # BEGIN SOLUTION
        if not self.is_input_:
            dC_by_dinputs = deriv @ self.w_
        dw = deriv.T @ inputs
        db = deriv.sum(axis=0)
        # END SOLUTION
        # Sums over the batch become averages; accept db as (num_channels,) or (1, num_channels).
        dw = np.reshape(dw, self.w_.shape) / batch_size
        db = np.reshape(db, self.b_.shape) / batch_size
        if dC_by_dinputs is not None:
            dC_by_dinputs = np.reshape(dC_by_dinputs, input_shape)
        return dC_by_dinputs, dw, db
