"""convolutions.convolve on the calls the kit's method 2 makes (section 3 of the report):
the calls recorded as a training step makes them, then timed again on the same arrays
against two independent references of the same padded 'valid' true convolution
(scipy.signal.convolve2d looped over the leading axes, and scipy.signal.fftconvolve)."""

import contextlib
import io

import numpy as np

from tools.benchmark.configs import with_method
from tools.benchmark.machine import timed
from tools.benchmark.output import fmt_shape, log, ms, ratio

# convolve's shortest calls take a third of a millisecond, and one of three wakes a
# sleeping thread late: each function is called until CONVOLVE_SECONDS have passed (at least
# `repeat` calls, at most CONVOLVE_MAX_CALLS), the kit's and the references' alike.
CONVOLVE_SECONDS, CONVOLVE_MAX_CALLS = 0.25, 500


def record_method2_calls(name, config, arrays, batch):
    """[(layer, call, inputs, weights, padding)]: every convolutions.convolve call that one
    training step (Fprop, then Bprop) of the kit's network by method 2 makes, in float64, on
    `batch` real training images, recorded as the layers make them. The arrays are kept as
    passed (views and all), so the timing sees the layouts the layers give convolve. Raises
    NotImplementedError in a student kit whose method 2 is still blank."""
    import conv_layer
    import convolutions
    from net import NeuralNet

    config = with_method(config, "method2")
    if "dtype" in config:
        config["dtype"] = "float64"
    with contextlib.redirect_stdout(io.StringIO()):
        net = NeuralNet(dict(config, _path=f"configs/{name}.yaml (benchmark copy)"), seed=0)
    calls, where = [], {"layer": None}
    real = convolutions.convolve

    def spy(inputs, weights, padding=0):
        result = real(inputs, weights, padding=padding)
        layer, phase = where["layer"], where["phase"]
        call = phase
        if phase == "backward":
            k = layer.kernel_size_
            call = "weight derivative" if tuple(result.shape[-2:]) == (k, k) else "input derivative"
        calls.append((layer.name_, call, inputs, weights, padding))
        return result

    def labelled(layer, phase, method):
        def run(*args):
            where.update(layer=layer, phase=phase)
            return method(*args)
        return run

    for layer in net.layer_:
        if isinstance(layer, conv_layer.ConvLayer):
            # Instance attributes: only this network's layers say who is calling.
            layer.ComputeUp = labelled(layer, "forward", layer.ComputeUp)
            layer.ComputeDown = labelled(layer, "backward", layer.ComputeDown)
    x, t = arrays["train"][0][:batch], arrays["train"][1][:batch]
    convolutions.convolve = spy
    try:
        states = net.Fprop(x)
        net.Bprop(net.ComputeDeriv(states[-1], t), states)
    finally:
        convolutions.convolve = real
    return calls


def pad_last_two(a, p):
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(p, p), (p, p)]) if p else a


def convolve2d_loop(inputs, weights, padding):
    """The reference: scipy's direct 2-D convolution, one image and kernel at a time."""
    from scipy.signal import convolve2d

    padded = pad_last_two(inputs, padding)
    lead = np.broadcast_shapes(padded.shape[:-2], weights.shape[:-2])
    a = np.broadcast_to(padded, lead + padded.shape[-2:])
    b = np.broadcast_to(weights, lead + weights.shape[-2:])
    result = np.empty(lead + (a.shape[-2] - b.shape[-2] + 1, a.shape[-1] - b.shape[-1] + 1))
    for index in np.ndindex(*lead):
        result[index] = convolve2d(a[index], b[index], mode="valid")
    return result


def fftconvolve_all(inputs, weights, padding):
    from scipy.signal import fftconvolve

    return fftconvolve(pad_last_two(inputs, padding), weights, mode="valid", axes=(-2, -1))


def measure_convolve(models, configs, arrays, batch, repeat, seconds, notes):
    """The table's rows: every call method 2 makes in each (model, config name) of `models`,
    timed for convolve and both references, and a total row; `notes` gets what was skipped."""
    import convolutions

    # Import and first-call costs of scipy are not the references' speed.
    small = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    convolve2d_loop(*small, 1), fftconvolve_all(*small, 1)
    rows, totals = [], [0.0, 0.0, 0.0]
    all_equal = True
    budget = dict(seconds=seconds, max_calls=CONVOLVE_MAX_CALLS)
    for model, name in models:
        try:
            calls = record_method2_calls(name, configs[name], arrays, batch)
        except NotImplementedError as e:
            notes.append(f"{model}: method 2 is not implemented here ({e})")
            continue
        if not calls:
            notes.append(f"{model}: method 2 made no calls to convolutions.convolve")
        for layer, call, inputs, weights, padding in calls:
            log(f"convolve: {model} {layer} {call}")
            convolutions.convolve(inputs, weights, padding)  # warm-up: page in the output
            t_kit, result = timed(convolutions.convolve, repeat, inputs, weights, padding, **budget)
            t_loop, ref_loop = timed(convolve2d_loop, repeat, inputs, weights, padding, **budget)
            t_fft, ref_fft = timed(fftconvolve_all, repeat, inputs, weights, padding, **budget)
            equal = (result.shape == ref_loop.shape == ref_fft.shape and np.allclose(result, ref_loop)
                     and np.allclose(result, ref_fft))
            all_equal &= equal
            for i, t in enumerate((t_kit, t_loop, t_fft)):
                totals[i] += t
            shapes = (f"{fmt_shape(inputs.shape)} * {fmt_shape(weights.shape)} pad {padding} "
                      f"-> {fmt_shape(result.shape)}")
            rows.append([model, layer, call, shapes, ms(t_kit), ms(t_loop), ratio(t_loop, t_kit),
                         ms(t_fft), ratio(t_fft, t_kit), "yes" if equal else "**NO**"])
    if rows:
        rows.append(["total", "", "", "", ms(totals[0]), ms(totals[1]), ratio(totals[1], totals[0]),
                     ms(totals[2]), ratio(totals[2], totals[0]), "yes" if all_equal else "**NO**"])
    return rows
