"""Dropout layer: while training, each unit is kept with probability 1 - rate and scaled by
1 / (1 - rate), or else set to 0 ("inverted" dropout, so the expected output equals the
input and evaluation needs no rescaling). At evaluation it passes its inputs unchanged.

Config keys: name, type: DROPOUT, dropout_rate (0 <= rate < 1). No parameters, no
activation. It keeps its input's shape, so it can sit after any layer except the last
(which must be the FC output layer).

Train or evaluate: NeuralNet.Train sets `training_` to True for the training steps and
back to False for validation; it is False otherwise, so grad_check.py, evaluate.py and
Validate see the identity. The masks come from `rng_`, a generator the network seeds from
its seed (and keeps in its resume state).
"""

import numpy as np

from layer import Layer, layer_setting


class DropoutLayer(Layer):

    has_params_ = False
    extra_keys_ = ("dropout_rate",)
    training_ = False

    def __init__(self, proto):
        super().__init__(proto)
        self.dropout_rate_ = layer_setting(proto, "dropout_rate", float, minimum=0.0, below=1.0)
        self.rng_ = np.random.default_rng()  # NeuralNet replaces it with one from its seed
        self.mask_ = None

    def Initialize(self, size_y, size_x, channels, rng=None):
        """Nothing to make; return the input size (size_y, size_x, channels) unchanged."""
        self.num_channels_ = channels
        out = (size_y, size_x, channels)
        self._describe(out, out, f"  rate {self.dropout_rate_:g}")
        return out

    def ComputeUp(self, inputs):
        """Forward pass: inputs * mask, mask 1 / (1 - rate) with probability 1 - rate, else 0,
        drawn anew for every call while training; the inputs themselves at evaluation.

        inputs:  (batch, ...) any shape, e.g. (batch, C, H, W) or (batch, units)
        returns: the same shape
        """
        if not self.training_ or self.dropout_rate_ == 0:
            self.mask_ = None
            return inputs
        keep = self.rng_.random(inputs.shape) >= self.dropout_rate_
        # The mask is kept for ComputeDown: which units were dropped cannot be told from the
        # outputs where an input was 0 anyway.
        self.mask_ = (keep / (1.0 - self.dropout_rate_)).astype(inputs.dtype, copy=False)
        return inputs * self.mask_

    def ComputeDown(self, dC_by_doutputs, outputs, inputs):
        """Backward pass: the derivatives go through the mask of the last ComputeUp (unchanged
        at evaluation).

        dC_by_doutputs, outputs: like the outputs of ComputeUp; inputs: as given to ComputeUp.
        returns: (dC_by_dinputs shaped like inputs, or None for the input layer, None, None)
        """
        if self.is_input_:
            return None, None, None
        deriv = np.reshape(dC_by_doutputs, inputs.shape)
        if self.mask_ is None:
            return deriv, None, None
        if self.mask_.shape != deriv.shape:
            raise ValueError(f"layer '{self.name_}': derivatives of shape {deriv.shape} do not match the "
                             f"mask {self.mask_.shape} of the last forward pass")
        return deriv * self.mask_, None, None
