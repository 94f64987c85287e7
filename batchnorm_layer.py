"""Batch normalisation layer (Ioffe and Szegedy, 2015): each channel of its input is
standardised over the mini-batch (and, for conv maps, over the pixels), then scaled and
shifted by two learned numbers per channel:

    x_hat = (x - mean) / sqrt(var + eps),    y = gamma * x_hat + beta

While training, mean and var are the batch's; each training step also moves a running mean
and variance towards them, and at evaluation (validation, evaluate.py) the layer uses those,
so an example's output does not depend on the rest of its batch.

Config keys: name, type: BATCHNORM, epsilon, momentum, l2_decay (default 0), as other
layers with parameters, and stats_decay (default 0.9): running <- d running + (1 - d) batch.
No num_channels nor init_wt: the layer has one gamma and one beta per channel of its input,
starting at 1 and 0. No activation: it keeps its input's shape, so it sits after a conv,
pool or FC layer (after their ReLU), not last.

Parameters: w_ = gamma (1, C), b_ = beta (1, C), updated like any layer's. The running
statistics are not trained but belong to the model: GetParameters returns them too, as
'<name>_mean' and '<name>_var' (1, C), so checkpoints, --resume and weight_average keep them.

Train or evaluate: NeuralNet.Train sets `training_` to True for the training steps and back
to False for validation. grad_check.py checks the layer in training mode (batch statistics,
the derivatives that training uses); nothing in it is random.
"""

import numpy as np

from layer import ConfigError, Layer, layer_setting

EPS = 1e-5  # added to the variance: a channel that is constant over the batch stays finite


class BatchNormLayer(Layer):

    extra_keys_ = ("stats_decay",)
    sized_by_config_ = False  # as many channels as its input
    checked_in_training_ = True  # deterministic in training mode: grad_check.py checks that mode
    training_ = False

    def __init__(self, proto):
        super().__init__(proto)
        self.stats_decay_ = layer_setting(proto, "stats_decay", float, default=0.9, minimum=0.0, below=1.0)
        self.mean_ = self.inv_std_ = None

    def Initialize(self, size_y, size_x, channels, rng=None):
        """gamma 1 and beta 0 for each of `channels`, running mean 0 and variance 1; return the
        input size (size_y, size_x, channels) unchanged."""
        self.num_channels_ = channels
        self.size_ = (size_y, size_x, channels)
        self.w_ = np.ones((1, channels), dtype=self.dtype_)
        self.b_ = np.zeros((1, channels), dtype=self.dtype_)
        self.dw_history_ = np.zeros_like(self.w_)
        self.db_history_ = np.zeros_like(self.b_)
        self.running_mean_ = np.zeros((1, channels), dtype=self.dtype_)
        self.running_var_ = np.ones((1, channels), dtype=self.dtype_)
        self._describe(self.size_, self.size_, f"  gamma, beta {self.w_.shape}")
        return self.size_

    def output_shape(self, size):
        return tuple(size)

    def _channels(self, array):
        """(batch, C, H*W): a view of inputs shaped (batch, C, H, W), (batch, C) or (batch, C*H*W)."""
        size_y, size_x, channels = self.size_
        return array.reshape(array.shape[0], channels, size_y * size_x)

    def ComputeUp(self, inputs):
        """Forward pass: y = gamma * (x - mean) / sqrt(var + eps) + beta per channel, with the
        batch's mean and variance while training (moving the running ones), else the running ones.

        inputs:  (batch, C, H, W), (batch, C) or (batch, C*H*W)
        returns: the same shape
        """
        x = self._channels(inputs)
        count = x.shape[0] * x.shape[2]  # the values of a channel
        if self.training_:
            # einsum sums over the batch and the pixels at once, without a temporary array.
            mean = np.einsum("ncs->c", x) / count
            centred = x - mean[np.newaxis, :, np.newaxis]
            var = np.einsum("ncs,ncs->c", centred, centred) / count
            d = self.stats_decay_
            self.running_mean_ = (d * self.running_mean_ + (1 - d) * mean).astype(self.dtype_)
            # The unbiased variance for the running estimate: evaluation sees the population.
            unbiased = var * count / max(count - 1, 1)
            self.running_var_ = (d * self.running_var_ + (1 - d) * unbiased).astype(self.dtype_)
        else:
            mean, var = self.running_mean_.reshape(-1), self.running_var_.reshape(-1)
            centred = x - mean[np.newaxis, :, np.newaxis]
        self.mean_ = mean.astype(x.dtype)
        self.inv_std_ = (1.0 / np.sqrt(var + EPS)).astype(x.dtype)
        # gamma * x_hat + beta, with gamma / std folded into one factor per channel.
        outputs = centred * (self.w_.reshape(-1) * self.inv_std_)[np.newaxis, :, np.newaxis]
        outputs += self.b_.reshape(1, -1, 1)
        return outputs.reshape(inputs.shape)

    def ComputeDown(self, dC_by_doutputs, outputs, inputs):
        """Backward pass, through the statistics the last ComputeUp used.

        dC_by_doutputs, outputs: like the outputs of ComputeUp; inputs: as given to ComputeUp.
        returns: (dC_by_dinputs shaped like inputs, or None for the input layer,
                  dgamma (1, C), dbeta (1, C) -- averaged over the batch)
        """
        dy, x = self._channels(dC_by_doutputs), self._channels(inputs)
        batch_size, count = dy.shape[0], dy.shape[0] * dy.shape[2]
        mean, inv_std, gamma = self.mean_, self.inv_std_, self.w_.reshape(-1)
        sum_dy = np.einsum("ncs->c", dy)
        # sum of dy * x_hat per channel, x_hat = (x - mean) / std, from sums over dy and dy * x
        sum_dy_x_hat = (np.einsum("ncs,ncs->c", dy, x) - mean * sum_dy) * inv_std
        dgamma = (sum_dy_x_hat / batch_size).reshape(self.w_.shape)
        dbeta = (sum_dy / batch_size).reshape(self.b_.shape)
        if self.is_input_:
            return None, dgamma, dbeta
        scale = gamma * inv_std
        if self.training_:
            # mean and var depend on every x of the channel: dx = scale * (dy - mean(dy) -
            # x_hat * mean(dy * x_hat)), written as a * dy + b * x + c per channel.
            b = -scale * inv_std * sum_dy_x_hat / count
            c = -scale * sum_dy / count - b * mean
            dx = dy * scale[np.newaxis, :, np.newaxis]
            dx += x * b[np.newaxis, :, np.newaxis]
            dx += c[np.newaxis, :, np.newaxis]
        else:
            dx = dy * scale[np.newaxis, :, np.newaxis]
        return dx.reshape(inputs.shape).astype(inputs.dtype, copy=False), dgamma, dbeta

    def GetParameters(self):
        """{'<name>_w': gamma, '<name>_b': beta, '<name>_mean': running mean, '<name>_var': running variance}."""
        return {**super().GetParameters(), f"{self.name_}_mean": self.running_mean_,
                f"{self.name_}_var": self.running_var_}

    def SetParameters(self, params):
        """Load gamma, beta and the running statistics from a dict like GetParameters'."""
        super().SetParameters(params)
        for key, attr in ((f"{self.name_}_mean", "running_mean_"), (f"{self.name_}_var", "running_var_")):
            value = params.get(key)
            if value is None or np.shape(value) != self.w_.shape:
                raise ConfigError(f"layer '{self.name_}': parameter '{key}' is "
                                  f"{'missing from the checkpoint' if value is None else np.shape(value)}"
                                  f"{'' if value is None else f', not {self.w_.shape}'}")
            setattr(self, attr, np.array(value, dtype=self.dtype_))
