"""What every layer of the kit shares: its settings, its activation, and its learning rule.

A network is a list of layers. Each layer is a module with a forward pass (`ComputeUp`,
inputs -> outputs) and a backward pass (`ComputeDown`, derivatives w.r.t. its outputs ->
derivatives w.r.t. its inputs and its parameters). Nothing else crosses between layers.

Activations: hidden layers apply ReLU; the last layer applies softmax. The network's
`ComputeDeriv` returns the derivative of the cross entropy w.r.t. the *input* of that
softmax (predictions - targets), so the output layer passes its derivative through
unchanged (see `ComputeActivationDeriv`).
"""

import numpy as np

from plumbing.errors import ConfigError

# What a layer file needs of the kit's plumbing, handed on from here: a layer imports only
# numpy, convolutions and this module.
from plumbing.settings import check_keys, layer_setting
from plumbing.shapes import output_size

__all__ = ["ConfigError", "Layer", "layer_setting", "output_size"]


class Layer:
    """Base class: name, position in the net, activation, and (for layers with weights)
    the parameters `w_`, `b_` and their momentum-SGD update.

    Attributes the student's code uses: `w_`, `b_`, `num_channels_`, `is_input_`,
    `is_output_`. Subclasses set `has_params_` and implement `Initialize`, `ComputeUp`
    and `ComputeDown`.
    """

    has_params_ = True
    sized_by_config_ = True  # num_channels and init_wt from the config (a batch-norm layer takes its input's)
    checked_in_training_ = False  # grad_check.py checks the evaluation mode (dropout's is random)
    extra_keys_ = ()  # config keys of a subclass, beyond those every layer has
    dtype_ = np.dtype(np.float64)  # of parameters and activations; the net sets it from its config

    def __init__(self, proto):
        self.name_ = str(proto["name"])
        known = ("name", "type") + self.extra_keys_
        if self.has_params_:
            known += ("num_channels", "init_wt") if self.sized_by_config_ else ()
            known += ("epsilon", "momentum", "l2_decay")
        check_keys(proto, known, f"layer '{self.name_}'")
        self.type_ = str(proto["type"])
        self.is_input_ = False
        self.is_output_ = False
        self.w_ = None
        self.b_ = None
        if self.has_params_ and self.sized_by_config_:
            self.num_channels_ = layer_setting(proto, "num_channels", int, minimum=1)
            self.init_wt_ = layer_setting(proto, "init_wt", float, minimum=0.0)
        if self.has_params_:
            self.epsilon_ = layer_setting(proto, "epsilon", float, minimum=0.0)
            self.momentum_ = layer_setting(proto, "momentum", float, default=0.0, minimum=0.0, below=1.0)
            self.l2_decay_ = layer_setting(proto, "l2_decay", float, default=0.0, minimum=0.0)

    # --- place in the network -------------------------------------------------------------
    def SetAsInput(self):
        """The first layer: nothing below it needs derivatives w.r.t. its inputs."""
        self.is_input_ = True

    def SetAsOutput(self):
        """The last layer: softmax instead of ReLU."""
        self.is_output_ = True

    def output_shape(self, size):
        """(H', W', channels) of the outputs for an input of size (H, W, C): an FC layer's
        num_channels units, or the input's size for a layer without parameters. Layers with
        windows say theirs (plumbing.shapes.py computes it)."""
        return (1, 1, self.num_channels_) if self.has_params_ else tuple(size)

    def _describe(self, in_shape, out_shape, extra=""):
        """The one-line shape summary every Initialize prints."""
        (iy, ix, ic), (oy, ox, oc) = in_shape, out_shape
        print(f"{self.name_:<10} {self.type_:<14} {iy}x{ix}x{ic} -> {oy}x{ox}x{oc}{extra}")

    def _init_params(self, fan_in, rng):
        """Weights init_wt * N(0, 1) of shape (num_channels, fan_in); biases 0; velocities 0.

        The weights are drawn in float64 and then rounded to dtype_, so that a float32 net
        starts from the same weights as its float64 twin.
        """
        self.w_ = (self.init_wt_ * rng.standard_normal((self.num_channels_, fan_in))).astype(self.dtype_)
        self.b_ = np.zeros((1, self.num_channels_), dtype=self.dtype_)
        self.dw_history_ = np.zeros_like(self.w_)
        self.db_history_ = np.zeros_like(self.b_)

    # --- activation -----------------------------------------------------------------------
    def ApplyActivation(self, outputs):
        """ReLU for hidden layers; softmax over the units of each example for the output layer.

        outputs: (batch, ...) pre-activations; returns the same shape.
        """
        if not self.is_output_:
            return np.maximum(outputs, 0)
        flat = outputs.reshape(outputs.shape[0], -1)
        # Subtracting the row maximum changes nothing mathematically and avoids overflow.
        e = np.exp(flat - flat.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).reshape(outputs.shape)

    def ComputeActivationDeriv(self, dC_by_doutputs, outputs):
        """Derivatives w.r.t. the layer's pre-activations, from those w.r.t. its outputs.

        ReLU passes a derivative where the unit was on. For the output layer the network
        already gives derivatives w.r.t. the softmax input (predictions - targets), so they
        pass unchanged.
        """
        if self.is_output_:
            return dC_by_doutputs
        return dC_by_doutputs * (outputs > 0)

    # --- learning -------------------------------------------------------------------------
    def Update(self, dw, db):
        """One step of SGD with momentum and L2 weight decay (biases are not decayed).

        dw: like w_, db: like b_ -- derivatives averaged over the mini-batch.
        """
        if not self.has_params_:
            return
        # In place: the same arithmetic as w += momentum * v - epsilon * (dw + l2_decay * w),
        # without new (num_channels, fan_in) arrays on every step.
        dw = dw + self.l2_decay_ * self.w_
        self.dw_history_ *= self.momentum_
        self.dw_history_ -= self.epsilon_ * dw
        self.db_history_ *= self.momentum_
        self.db_history_ -= self.epsilon_ * db
        self.w_ += self.dw_history_
        self.b_ += self.db_history_

    def GetParameters(self):
        """{'<name>_w': w, '<name>_b': b}, or {} for a layer without parameters."""
        if not self.has_params_:
            return {}
        return {f"{self.name_}_w": self.w_, f"{self.name_}_b": self.b_}

    def SetParameters(self, params):
        """Load this layer's entries of a dict like the one GetParameters returns."""
        if not self.has_params_:
            return
        for key, current in ((f"{self.name_}_w", self.w_), (f"{self.name_}_b", self.b_)):
            if key not in params:
                raise ConfigError(f"layer '{self.name_}': parameter '{key}' missing from the checkpoint")
            value = np.asarray(params[key], dtype=np.float64)
            if value.shape != current.shape:
                raise ConfigError(f"layer '{self.name_}': parameter '{key}' has shape {value.shape} "
                                  f"in the checkpoint, the config gives {current.shape}")
        # A checkpoint of either precision loads into a net of either precision.
        self.w_ = np.array(params[f"{self.name_}_w"], dtype=self.dtype_)
        self.b_ = np.array(params[f"{self.name_}_b"], dtype=self.dtype_)
