"""What the grader computes and keeps to itself (staff only): the test inputs, the reference
answers, the gradient checks composed around the student's methods, and the verdicts.

All of it runs in the grading process, with the reference kit; the student's methods run in
a sandboxed process (sandbox.py) and are called as a black box: a layer is made
there, its ComputeUp or ComputeDown is given arrays chosen here, and what comes back is
compared here. That process is never told an answer, and nothing it says is taken as a
verdict: a reply is numbers, checked against numbers it never saw.
"""

import contextlib
import functools
import io

from tools.grader.sandbox import PieceFailed, StudentError

FC, CONV = "FCLayer", "ConvLayer"
TOLERANCE = 1e-7
QUANTITIES = ("din", "dw", "db")  # what ComputeDown returns, in order
_LAYER = {"init_wt": 0.5, "epsilon": 0.1, "momentum": 0.9, "l2_decay": 0.0}
# Small networks for the gradient checks: cheap, and no layer is too big for kinks to be likely.
GRADCHECK_NETS = {
    "fc": {"input_image_size_y": 4, "input_image_size_x": 4, "input_num_channels": 1, "network": [
        dict(name="fc1", type="FC", num_channels=12, **_LAYER),
        dict(name="output", type="FC", num_channels=10, **_LAYER)]},
    "conv": {"input_image_size_y": 4, "input_image_size_x": 4, "input_num_channels": 2, "network": [
        dict(name="conv1", type="CONVOLUTIONAL", num_channels=3, kernel_size=3, padding=1,
             convolve_method="method2", **_LAYER),
        dict(name="conv2", type="CONVOLUTIONAL", num_channels=2, kernel_size=3, padding=2,
             convolve_method="method2", **_LAYER),
        dict(name="pool", type="MAXPOOL", kernel_size=2, stride=2),
        dict(name="output", type="FC", num_channels=10, **dict(_LAYER, init_wt=0.1))]},
}
# (batch, (y, x, channels) of the input, units, role, inputs given as 4-D maps)
FC_CASES = ((3, (1, 1, 6), 4, "hidden", False), (5, (2, 3, 2), 4, "output", True),
            (1, (1, 1, 7), 3, "hidden", False), (4, (3, 3, 1), 6, "input", True), (2, (1, 1, 9), 10, "output", False))
# (batch, channels, y, x, filters, kernel, padding, role); stride 1
CONV_CASES = tuple((2 + (k + p) % 2, 1 + (k * 3 + p) % 3, 5 + p % 2, 6 - p % 2, 1 + (k + 2 * p) % 3, k, p, "hidden")
                   for k in (1, 2, 3, 5) for p in range(k)) + ((2, 2, 6, 5, 3, 3, 1, "input"),)


def layer_proto(spec):
    """The config entry of a case's layer."""
    if spec["kind"] == "fc":
        return dict(name="layer", type="FC", num_channels=spec["units"], **_LAYER)
    return dict(name="layer", type="CONVOLUTIONAL", num_channels=spec["units"], kernel_size=spec["k"], stride=1,
                padding=spec["p"], convolve_method="method2", **_LAYER)


def _reference_layer(spec, arrays, i):
    import numpy as np

    from conv_layer import ConvLayer
    from fc_layer import FCLayer

    layer = (FCLayer if spec["kind"] == "fc" else ConvLayer)(layer_proto(spec))
    if spec["role"] == "input":
        layer.SetAsInput()
    if spec["role"] == "output":
        layer.SetAsOutput()
    layer.Initialize(*spec["in_shape"], rng=np.random.default_rng(0))
    layer.w_ = arrays[f"w{i}"].copy()
    layer.b_ = arrays[f"b{i}"].copy()
    return layer


def make_cases(kind, seed):
    """(case specs, arrays) for the reference comparisons of the FC or conv pieces."""
    import numpy as np

    rng = np.random.default_rng(seed)
    specs, arrays = [], {}
    if kind == "fc":
        for i, (n, (y, x, c), units, role, maps) in enumerate(FC_CASES):
            specs.append({"kind": "fc", "in_shape": [y, x, c], "units": units, "role": role})
            arrays[f"x{i}"] = rng.standard_normal((n, c, y, x) if maps else (n, y * x * c))
            arrays[f"w{i}"] = rng.standard_normal((units, y * x * c))
            arrays[f"b{i}"] = rng.standard_normal((1, units))
            arrays[f"d{i}"] = rng.standard_normal((n, units))
    else:
        for i, (n, c, y, x, units, k, p, role) in enumerate(CONV_CASES):
            specs.append({"kind": "conv", "in_shape": [y, x, c], "units": units, "k": k, "p": p, "role": role})
            arrays[f"x{i}"] = rng.standard_normal((n, c, y, x))
            arrays[f"w{i}"] = rng.standard_normal((units, c * k * k))
            arrays[f"b{i}"] = rng.standard_normal((1, units))
            arrays[f"d{i}"] = rng.standard_normal((n, units, y + 2 * p - k + 1, x + 2 * p - k + 1))
    return specs, arrays


def reference_answers(kind, specs, arrays):
    """{'out0': ..., 'din0': ..., 'dw0': ..., 'db0': ...} by the reference kit. The reference
    outputs are also what the student's ComputeDown is given."""
    answers = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for i, spec in enumerate(specs):
            layer = _reference_layer(spec, arrays, i)
            x = arrays[f"x{i}"]
            answers[f"out{i}"] = layer.ComputeUp(x)
            din, dw, db = layer.ComputeDown(arrays[f"d{i}"], answers[f"out{i}"], x)
            answers.update({f"din{i}": din, f"dw{i}": dw, f"db{i}": db})
    return answers


def gradcheck_net(config, seed):
    """The reference network of a gradient check. Its biases are random, not 0: a unit whose
    inputs are all 0 (dead ReLUs, padding) would otherwise sit exactly on ReLU's kink, where
    numerical derivatives are wrong."""
    import numpy as np

    from net import NeuralNet

    with contextlib.redirect_stdout(io.StringIO()):
        net = NeuralNet(dict(config), seed=seed)
    rng = np.random.default_rng(seed + 1)
    for layer in net.layer_:
        if layer.has_params_:
            layer.b_ = rng.normal(0.0, 0.2, layer.b_.shape)
    return net


@functools.cache
def gradcheck_seed(kind, seed):
    """The first seed from `seed` on whose gradient check the reference itself passes: a
    random case may, rarely, put a unit on a kink, and that must not cost a student."""
    import numpy as np

    from grad_check import THRESHOLD, check_gradients

    for candidate in range(seed, seed + 20):
        net = gradcheck_net(GRADCHECK_NETS[kind], candidate)
        errors = check_gradients(net, np.random.default_rng(candidate), log=io.StringIO())
        if all(err < THRESHOLD for _, err in errors):
            return candidate
    raise RuntimeError(f"the reference fails its own {kind} gradient check on seeds {seed}..{seed + 19}")


def probe_seed(probe, seed):
    """The run's seed for one piece: each piece gets inputs of its own, so the reference
    outputs a ComputeDown is given are never the answers its ComputeUp is graded on."""
    import numpy as np

    index = ("fc_up", "fc_down", "conv_up", "conv_down").index(probe)
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


def _layer_request(name, proto, role, in_shape):
    return {"op": "layer", "layer": name, "proto": proto, "role": role, "in_shape": [int(n) for n in in_shape]}


def _as_input(role):
    """The role of the same layer as the net's first: its input derivative is not asked for."""
    return "input+output" if "output" in role else "input"


def convolve_scale(seed):
    """The factor convolve's results are scaled by in method 2's second run (watch.py)."""
    import numpy as np

    return float(np.random.default_rng([seed, 7]).uniform(1.5, 2.5))


def _attach(child, net, cls, prefix, up, keep, forward_first):
    """Make the student's twin of every `cls` layer of the reference `net` in the child, and
    route that layer's ComputeUp (up) or one derivative of its ComputeDown (the one at index
    `keep`) through it; everything else stays the reference's. A twin for a weight or bias
    derivative is made as the input layer, so that the student's input derivative is not
    computed at all; each ComputeDown runs after the student's own ComputeUp if `forward_first`."""
    import numpy as np

    channels, height, width = net.settings_.image_shape
    size = height * width * channels
    with contextlib.redirect_stdout(io.StringIO()):
        states = net.Fprop(np.zeros((1, size)))
    last = len(net.layer_) - 1
    for i, layer in enumerate(net.layer_):
        if not isinstance(layer, cls):
            continue
        state = states[i]
        in_shape = ((height, width, channels) if i == 0 else
                    (state.shape[2], state.shape[3], state.shape[1]) if state.ndim == 4 else (1, 1, state.shape[1]))
        name = f"{prefix}/{layer.name_}"
        role = "input" if i == 0 else "output" if i == last else "hidden"
        if not up and keep != 0:
            role = _as_input(role)
        child.call(_layer_request(name, net.config_["network"][i], role, in_shape))
        if up:
            def compute_up(inputs, layer=layer, name=name):
                return child.call({"op": "up", "layer": name}, [layer.w_, layer.b_, inputs], replies=2)[0]
            layer.ComputeUp = compute_up
        else:
            def compute_down(dC_by_doutputs, outputs, inputs, layer=layer, name=name, reference=layer.ComputeDown):
                mine = child.call({"op": "down", "layer": name, "forward_first": forward_first},
                                  [layer.w_, layer.b_, dC_by_doutputs, outputs, inputs], replies=4)
                ref = reference(dC_by_doutputs, outputs, inputs)
                return tuple(mine[j] if j == keep else ref[j] for j in range(3))
            layer.ComputeDown = compute_down


def gradient_checks(child, kind, up, quantities, forward_first, seed):
    """{quantity: {"errors": [[param, relative error]]} or {"error": message}}: a gradient
    check of a small reference network in which only that quantity is the student's (the
    forward pass for "out", else one derivative of the backward pass)."""
    import numpy as np

    from conv_layer import ConvLayer
    from fc_layer import FCLayer
    from grad_check import check_gradients

    cls = FCLayer if kind == "fc" else ConvLayer
    seed = gradcheck_seed(kind, seed)
    checks = {}
    for key in (["out"] if up else quantities):
        net = gradcheck_net(GRADCHECK_NETS[kind], seed)
        try:
            _attach(child, net, cls, f"check-{key}", up, None if up else QUANTITIES.index(key), forward_first)
            errors = check_gradients(net, np.random.default_rng(seed), log=io.StringIO())
            checks[key] = {"errors": [[name, float(err)] for name, err in errors]}
        except PieceFailed:
            raise
        except StudentError as e:
            checks[key] = {"error": str(e)}
        except Exception as e:  # the reference choking on what the student's code returned
            checks[key] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return checks


# Shapes that grow in every dimension, for counting the Python-level work of one call:
# FC (batch, fan_in, units); conv (batch, channels, size, filters), kernel 3, padding 1.
GROWING = {"fc": ((2, 3, 2), (3, 4, 3), (5, 6, 4)), "conv": ((2, 1, 5, 1), (3, 2, 6, 2), (4, 3, 7, 3))}


def _growing_cases(kind, seed):
    """[(spec, w, b, x, d)] of GROWING's shapes, as hidden layers."""
    import numpy as np

    rng = np.random.default_rng([seed, 11])
    cases = []
    for shape in GROWING[kind]:
        if kind == "fc":
            n, fan_in, units = shape
            spec = {"kind": "fc", "in_shape": [1, 1, fan_in], "units": units, "role": "hidden"}
            x, w = rng.standard_normal((n, fan_in)), rng.standard_normal((units, fan_in))
            d = rng.standard_normal((n, units))
        else:
            n, c, size, units = shape
            spec = {"kind": "conv", "in_shape": [size, size, c], "units": units, "k": 3, "p": 1, "role": "hidden"}
            x, w = rng.standard_normal((n, c, size, size)), rng.standard_normal((units, c * 9))
            d = rng.standard_normal((n, units, size, size))
        cases.append((spec, w, rng.standard_normal((1, units)), x, d))
    return cases


def _call(child, name, spec, role, up, arrays, forward_first, **options):
    """Make a layer of `spec` in `role` and run the student's method once: ([arrays], stats)."""
    w, b, x, d, o = arrays
    child.call(_layer_request(name, layer_proto(spec), role, spec["in_shape"]))
    if up:
        got = child.call(dict({"op": "up", "layer": name}, **options), [w, b, x], replies=2)
    else:
        got = child.call(dict({"op": "down", "layer": name, "forward_first": forward_first}, **options),
                         [w, b, d, o, x], replies=4)
    return got[:-1], [float(v) for v in got[-1]]


def run_piece(runner, probe, filename, source, limits, seed, forward):
    """Grade one piece: (result dict or None, failure reason or None, seconds).

    probe: "fc_up", "fc_down", "conv_up" or "conv_down"; forward: "student" (ComputeDown runs
    after the student's own ComputeUp, as in training) or "reference" (it does not: the
    student's ComputeUp could not run at all). Each quantity is computed by a call of its own:
    the input derivative on the case's layer, the weight and bias derivatives on the same
    layer made as the input layer; method 2's once more with convolve's results scaled."""
    from tools.grader.watch import CONV_PATHS

    kind, up = probe.split("_")[0], probe.endswith("_up")
    seed = probe_seed(probe, seed)
    specs, arrays = make_cases(kind, seed)
    answers = reference_answers(kind, specs, arrays)
    quantities = ["out"] if up else (["din", "dw", "db"] if kind == "fc" else ["din", "dw"])
    scale = convolve_scale(seed) if kind == "conv" else None
    result = {"errors": [], "grad_checks": {}, "arrays": {}, "answers": answers, "cases": specs, "scaled": {},
              "case_arrays": arrays,
              "used": {}, "convolve_scale": scale, "conv_paths": [label for label, _, _ in CONV_PATHS]}
    forward_first = forward == "student"

    def record(key, stats):  # where a quantity's calls used other conv paths: {(index, line)}
        pairs = stats[3:]
        result["used"].setdefault(key, set()).update(
            (int(pairs[j]), int(pairs[j + 1])) for j in range(0, len(pairs) - 1, 2)
            if 0 <= pairs[j] < len(CONV_PATHS))

    child = None
    try:
        with runner.piece(filename, source, limits) as child:
            try:
                child.call({"op": "import", "class": FC if kind == "fc" else CONV})
            except StudentError as e:
                result["import_error"] = str(e)
                return result, None, child.seconds
            for i, spec in enumerate(specs):
                case = (arrays[f"w{i}"], arrays[f"b{i}"], arrays[f"x{i}"], arrays[f"d{i}"], answers.get(f"out{i}"))
                # (quantities it answers, role, {options}) of each call of this case
                calls = [(["out"], spec["role"], {})] if up else [
                    (["din"], spec["role"], {}), (["dw", "db"], _as_input(spec["role"]), {})]
                if "input" in spec["role"] and not up:
                    calls = calls[1:]  # the input layer's input derivative: not asked for
                if scale is not None:
                    calls += [(keys, role, {"convolve_scale": scale}) for keys, role, _ in calls]
                for n, (keys, role, options) in enumerate(calls):
                    scaled = bool(options)
                    try:
                        got, stats = _call(child, f"case{i}-{n}", spec, role, up, case, forward_first, **options)
                    except StudentError as e:
                        result["errors"].extend({"case": i, "quantity": key, "scaled": scaled, "error": str(e)}
                                                for key in keys)
                        continue
                    for key in keys:
                        value = got[0] if up else got[QUANTITIES.index(key)]
                        record(key, stats)
                        if value is not None:
                            (result["scaled"] if scaled else result["arrays"])[f"{key}{i}"] = value
            result["grad_checks"] = gradient_checks(child, kind, up, quantities, forward_first, seed)
            result["events"] = []
            for n, (spec, w, b, x, d) in enumerate(_growing_cases(kind, seed)):
                try:
                    _, stats = _call(child, f"count{n}", spec, "hidden", up, (w, b, x, d, d), forward_first, count=True)
                    result["events"].append(stats[0])
                except StudentError:
                    result["events"] = []
                    break
            return result, None, child.seconds
    except PieceFailed as e:
        return None, str(e), child.seconds if child else 0.0


def _scaled_reference(result, quantity, i):
    """What method 2 gives for case i with convolve's results scaled: din and dw are sums of
    convolutions, so they scale; the outputs are those of the weights scaled (convolve is
    linear in its kernel), before the bias and the activation."""
    import numpy as np

    scale = result["convolve_scale"]
    if quantity != "out":
        return scale * np.asarray(result["answers"][f"{quantity}{i}"])
    spec = result["cases"][i]
    arrays = result["case_arrays"]
    with contextlib.redirect_stdout(io.StringIO()):
        layer = _reference_layer(spec, arrays, i)
        layer.w_ = layer.w_ * scale
        return layer.ComputeUp(arrays[f"x{i}"])


def method2_problems(result, quantity):
    """[reason] why method 2's `quantity` was not computed through convolve: the other conv
    paths its calls used, what the reading of the source found (result["method2_static"]), and
    the cases whose answer did not scale with convolve's results."""
    import numpy as np

    from plumbing.gradient_faults import relative_error

    used = result["used"].get(quantity, set())
    if quantity == "din":  # its calls computed dw too: what dw's own calls used is dw's
        used = used - result["used"].get("dw", set())
    problems = [f"uses {result['conv_paths'][index]} at line {line}" for index, line in sorted(used)]
    problems += [f"uses {what} at line {line}" for line, what in result.get("method2_static", [])]
    problems = list(dict.fromkeys(problems))
    errors = {(e["case"], e["quantity"]) for e in result["errors"] if e["scaled"]}
    unscaled, tried = 0, 0
    for i in range(len(result["cases"])):
        if result["answers"][f"{quantity}{i}"] is None:
            continue
        tried += 1
        mine = result["scaled"].get(f"{quantity}{i}")
        if (i, quantity) in errors or mine is None:
            unscaled += 1
            continue
        expected = np.asarray(_scaled_reference(result, quantity, i), dtype=np.float64)
        if mine.shape != expected.shape or not np.all(np.isfinite(mine)) or \
                not relative_error(mine, expected) < TOLERANCE:
            unscaled += 1
    if unscaled:
        problems.append(f"with convolve's results times {result['convolve_scale']:.3f}, it did not change as "
                        f"convolve's results do in {unscaled} of {tried} cases")
    return problems


def compare(result, quantity, memory_mb):
    """(passed, reason, details) of one quantity: its gradient check, then the reference."""
    import numpy as np

    from grad_check import THRESHOLD
    from plumbing.gradient_faults import relative_error

    details = {"cases": [], "grad_check": result["grad_checks"].get(quantity)}
    failures = []
    grad = details["grad_check"]
    if grad is None:
        failures.append("gradient check not run")
    elif "error" in grad:
        failures.append(f"gradient check raised {grad['error']}")
    else:
        bad = [(name, err) for name, err in grad["errors"] if not err < THRESHOLD]
        if bad:
            failures.append("gradient check failed (" + ", ".join(f"{n} relative error {e:.1e}" for n, e in bad)
                            + ")")
    errors = {e["case"]: e["error"] for e in result["errors"] if e["quantity"] == quantity and not e["scaled"]}
    wrong, compared = [], 0
    for i, spec in enumerate(result["cases"]):
        ref = result["answers"][f"{quantity}{i}"]
        if ref is None:  # the input layer's input derivative: not needed
            continue
        compared += 1
        label = (f"case {i} (input {'x'.join(map(str, spec['in_shape']))}, {spec['units']} units"
                 + (f", kernel {spec['k']} pad {spec['p']}" if spec["kind"] == "conv" else "") + f", {spec['role']})")
        mine = result["arrays"].get(f"{quantity}{i}")
        ref = np.asarray(ref, dtype=np.float64)
        if i in errors:
            problem = "raised " + errors[i]
        elif mine is None:
            problem = "returned None"
        elif mine.shape != ref.shape:
            problem = f"shape {mine.shape}, expected {ref.shape}"
        else:
            error = relative_error(mine, ref) if np.all(np.isfinite(mine)) else float("inf")
            details["cases"].append({"case": i, "relative_error": error})
            if error < TOLERANCE:
                continue
            problem = f"relative error {error:.1e}"
        details["cases"].append({"case": i, "error": problem})
        wrong.append(f"{label}: {problem}")
    if wrong:
        failures.append(f"differs from the reference in {len(wrong)} of {compared} cases (first: {wrong[0]})")
    if grad and grad.get("error", "").startswith("NotImplementedError") \
            and all(": raised NotImplementedError" in w for w in wrong):
        return False, f"not implemented ({grad['error']})", details
    if result["cases"][0]["kind"] == "conv" and quantity in ("out", "din", "dw") and not failures:
        problems = method2_problems(result, quantity)
        if problems:
            details["method2"] = problems
            failures.append("not method 2, which must compute through convolutions.convolve: " + "; ".join(problems))
    if failures:
        reason = "; ".join(failures)
        if "MemoryError" in reason:
            reason = f"out of memory (memory limit {memory_mb} MB): {reason}"
        elif "[Errno 27]" in reason:  # EFBIG: a file (stdout and stderr included) hit the output limit
            reason = f"output limit exceeded: {reason}"
        return False, reason, details
    return True, f"gradient check passed; matches the reference in {compared} cases", details
