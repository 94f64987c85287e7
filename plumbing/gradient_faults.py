"""Which piece of the kit is wrong: the diagnosis grad_check.py prints when a check fails.

A wrong derivative of layer L's weights can come from three places: L's forward pass (the
numbers are checked against what it computes), L's weight derivative, or the derivative
reaching L from above, which is the input derivative of a layer above it. Each is checked
on its own, with nothing taken from the pieces under test:

- the forward pass of every FC and method-2 conv layer against the kit's method 1 (an FC
  layer is a 1x1 convolution of its inputs seen as fan_in channels of 1x1 maps);
- what the pieces return: from ComputeUp, outputs of the shape the layer promised; from
  ComputeDown, an input derivative for every layer but the input layer, of the inputs' shape;
- every layer's input derivative against central differences of the loss w.r.t. that
  layer's inputs. The highest layer whose input derivative is wrong, below one whose is
  right, is at fault; a layer whose weight or bias derivative is wrong while the
  derivative reaching it is right is at fault.

An exception raised inside a layer becomes one line naming the method, its file and line,
and the shapes of the arrays in the failing statement.
"""

import linecache
import os
import re
import sys
import traceback

import numpy as np

import convolutions

EPSILON = 1e-6  # small enough that a step rarely crosses a ReLU or max-pool kink
MAX_INPUT_ENTRIES = 200  # per layer, for the input derivatives (only when a check failed)
# The files whose ComputeUp / ComputeDown an exception is reported in.
LAYER_FILES = ("fc_layer.py", "conv_layer.py", "maxpool_layer.py", "dropout_layer.py", "layer.py")


def relative_error(analytic, numeric):
    """||analytic - numeric|| / (||analytic|| + ||numeric||), 0 when both are 0."""
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return float(np.linalg.norm(analytic - numeric) / scale) if scale > 0 else 0.0


def numeric_derivative(loss, flat, entries):
    """Central differences (loss(+eps) - loss(-eps)) / (2 eps) w.r.t. flat[entries]; `flat`
    is a view of an array loss() reads, changed in place and restored."""
    numeric = np.empty(len(entries))
    for n, i in enumerate(entries):
        saved = flat[i]
        flat[i] = saved + EPSILON
        plus = loss()
        flat[i] = saved - EPSILON
        minus = loss()
        flat[i] = saved
        numeric[n] = (plus - minus) / (2 * EPSILON)
    return numeric


def loss_from(net, i, given, targets):
    """The summed cross entropy of `net` when layer i's inputs are `given`: layers i and up only."""
    for layer in net.layer_[i:]:
        given = layer.ComputeUp(given)
    return net.ComputeLoss(given, targets)[0]


def piece(layer, method):
    """'ConvLayer.ComputeDown (conv_layer.py)'."""
    cls = type(layer)
    return f"{cls.__name__}.{method} ({os.path.basename(sys.modules[cls.__module__].__file__)})"


# --- the forward pass ------------------------------------------------------------------------
def checked_fprop(net, inputs):
    """net.Fprop, raising PieceError when an FC or conv layer's outputs do not have the
    shape it promised: (batch, num_channels), or (batch, K, H', W')."""
    states = [np.asarray(inputs, dtype=net.settings_.dtype)]
    for layer in net.layer_:
        states.append(layer.ComputeUp(states[-1]))
        n, shape = len(inputs), np.shape(states[-1])
        expected = ((n, layer.num_channels_) if layer.type_ == "FC" else
                    (n, layer.num_channels_, layer.output_size_y_, layer.output_size_x_)
                    if layer.type_ == "CONVOLUTIONAL" else shape)
        if shape != expected:
            raise PieceError(f"{piece(layer, 'ComputeUp')}: layer '{layer.name_}' gives outputs of shape "
                             f"{shape}, expected {expected}")
    return states


def _method1_outputs(layer, inputs):
    """What `layer` (FC or method-2 conv) should output for `inputs`, by the kit's method 1."""
    if layer.type_ == "CONVOLUTIONAL":
        layer.conv_method_ = 1
        try:
            return layer.ComputeUp(inputs)
        finally:
            layer.conv_method_ = 2
    # An FC layer is a conv layer of 1x1 filters over a 1x1 map of fan_in channels.
    n, k, fan_in = inputs.shape[0], layer.num_channels_, layer.fan_in_
    maps = convolutions.correlate(np.asarray(inputs, dtype=layer.w_.dtype).reshape(n, fan_in, 1, 1),
                                  layer.w_.reshape(k, fan_in, 1, 1), layer.b_, relu=not layer.is_output_)
    maps = layer.ApplyActivation(maps) if layer.is_output_ else maps
    return maps.reshape(n, k)


def forward_faults(net, states):
    """One line per FC or method-2 conv layer whose outputs are not those it should compute."""
    lines = []
    for layer, inputs, outputs in zip(net.layer_, states, states[1:]):
        if layer.type_ == "FC" or (layer.type_ == "CONVOLUTIONAL" and layer.conv_method_ == 2):
            expected = _method1_outputs(layer, inputs)
            if np.shape(outputs) != expected.shape or relative_error(outputs, expected) > 1e-8:
                lines.append(f"{piece(layer, 'ComputeUp')}: the forward pass of layer '{layer.name_}' gives "
                             "wrong outputs (the derivatives are checked against them: fix it first)")
    return lines


# --- the backward pass -----------------------------------------------------------------------
def input_derivatives(net, states, targets):
    """Bprop's loop, keeping what each layer's ComputeDown returns as its input derivative.
    Raises PieceError when one breaks the rule of the kit (None for the input layer only)."""
    deriv = net.ComputeDeriv(states[-1], targets)
    derivs = [None] * len(net.layer_)
    for i in range(len(net.layer_) - 1, -1, -1):
        layer = net.layer_[i]
        deriv = layer.ComputeDown(deriv, states[i + 1], states[i])[0]
        if layer.is_input_ and deriv is not None:
            raise PieceError(f"{piece(layer, 'ComputeDown')}: layer '{layer.name_}' is the input layer "
                             "(is_input_ is True) but computes a dC_by_dinputs: leave it None, nothing uses it")
        if not layer.is_input_ and deriv is None:
            raise PieceError(f"{piece(layer, 'ComputeDown')}: layer '{layer.name_}' is not the input layer "
                             "but returns no dC_by_dinputs (None): the layers below need it")
        if deriv is not None and np.shape(deriv) != np.shape(states[i]):
            raise PieceError(f"{piece(layer, 'ComputeDown')}: dC_by_dinputs of layer '{layer.name_}' has "
                             f"shape {np.shape(deriv)}, its inputs {np.shape(states[i])}")
        derivs[i] = deriv
    return derivs


def _input_derivative_ok(net, states, targets, i, analytic, rng, threshold):
    """Whether layer i's input derivative matches central differences of the loss (the
    sum over the batch, as each example's derivative is its own)."""
    given = np.array(states[i])
    flat = given.reshape(-1)

    # Nonzero entries only: a ReLU's zeros often tie in a max-pool window, where the loss has a kink.
    candidates = np.flatnonzero(flat)
    entries = rng.choice(candidates, size=min(MAX_INPUT_ENTRIES, candidates.size), replace=False)
    numeric = numeric_derivative(lambda: loss_from(net, i, given, targets), flat, entries)
    return relative_error(np.reshape(analytic, -1)[entries], numeric) < threshold


def _batch_hint(net, layer, suffix, states, targets, analytic, rng, plural):
    """' (1/N of the right one ...)' when the derivative is the right one over the batch size."""
    flat = getattr(layer, suffix + "_").reshape(-1)
    entries = rng.choice(flat.size, size=min(50, flat.size), replace=False)
    n = states[0].shape[0]
    numeric = numeric_derivative(lambda: loss_from(net, 0, states[0], targets) / n, flat, entries)
    if relative_error(np.reshape(analytic, -1)[entries] * n, numeric) < 1e-4:
        return (f" (1/{n} of the right {'ones' if plural else 'one'}: give the sum over the batch, "
                "the kit divides by the batch size)")
    return ""


def backward_faults(net, inputs, targets, results, threshold, rng):
    """Lines naming the pieces most likely at fault, given check_gradients' results."""
    states = net.Fprop(inputs)
    derivs = input_derivatives(net, states, targets)
    grads = net.Bprop(net.ComputeDeriv(states[-1], targets), states)
    wrong = {name for name, error in results if not error < threshold}
    top = len(net.layer_) - 1
    input_ok = {i: _input_derivative_ok(net, states, targets, i, derivs[i], rng, threshold)
                for i in range(1, top + 1)}
    lines = []
    for i in range(top, -1, -1):
        layer = net.layer_[i]
        if not (i == top or input_ok[i + 1]):
            continue  # what reaches this layer is wrong already: the fault is above
        if i > 0 and not input_ok[i]:
            lines.append(f"{piece(layer, 'ComputeDown')}: the input derivative (dC_by_dinputs) "
                         f"of layer '{layer.name_}'")
        if layer.has_params_:
            bad = [(suffix, grad) for suffix, grad in zip(("w", "b"), grads[i]) if f"{layer.name_}_{suffix}" in wrong]
            if bad:
                which = {"w": "weight derivative (dw)", "b": "bias derivative (db)"}
                words = " and the ".join(which[suffix] for suffix, _ in bad)
                hint = _batch_hint(net, layer, bad[0][0], states, targets, bad[0][1], rng, len(bad) > 1)
                lines.append(f"{piece(layer, 'ComputeDown')}: the {words} of layer '{layer.name_}'{hint}")
    return lines or ["the derivatives are wrong but no single piece could be singled out"]


# --- exceptions ------------------------------------------------------------------------------
class PieceError(Exception):
    """A piece that returns something the kit cannot use; the message names it."""


def describe_exception(error):
    """One line for an exception raised inside a layer's ComputeUp or ComputeDown: the
    method, its file and line, the error and the shapes in the failing statement; or None
    when it was raised elsewhere."""
    tb, found = error.__traceback__, None
    for summary in traceback.extract_tb(tb):  # the last (innermost) ComputeUp / ComputeDown frame of a layer file
        frame = tb.tb_frame
        if (os.path.basename(summary.filename) in LAYER_FILES and summary.name in ("ComputeUp", "ComputeDown")
                and "self" in frame.f_locals):
            found = (summary, frame)
        tb = tb.tb_next
    if found is None:
        return None
    summary, frame = found
    layer = frame.f_locals["self"]
    last = getattr(summary, "end_lineno", None) or summary.lineno  # a statement may span lines
    source = " ".join(linecache.getline(summary.filename, n).strip() for n in range(summary.lineno, last + 1))
    names = dict.fromkeys(re.findall(r"(?<![.\w])[A-Za-z_]\w*", source))
    shapes = [f"{name} {np.shape(frame.f_locals[name])}" for name in names
              if isinstance(frame.f_locals.get(name), np.ndarray)]
    shapes += [f"self.{attr} {np.shape(getattr(layer, attr))}" for attr in ("w_", "b_")
               if f"self.{attr}" in source and isinstance(getattr(layer, attr, None), np.ndarray)]
    cls_name, file = type(layer).__name__, os.path.basename(summary.filename)
    message = str(error).splitlines()[0] if str(error) else ""
    return (f"error in {cls_name}.{summary.name} ({file}, line {summary.lineno}), layer '{layer.name_}': "
            f"{type(error).__name__}: {message}" + (f"; shapes: {', '.join(shapes)}" if shapes else ""))
