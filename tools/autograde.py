"""Grade students' fc_layer.py and conv_layer.py (staff only):
python tools/autograde.py SUBMISSION... [--out DIR] [--jobs N] [--timeout S] [--cpu S] [--memory MB]

A SUBMISSION is a folder or a .zip holding a student's fc_layer.py and conv_layer.py
(anywhere inside it); the student's name is the folder's or zip's name. Each piece is run
in its own fresh temporary copy of this kit (its .py files, configs and the built
convolutions extension) with the student's file dropped in, in a separate process with
limits on wall-clock time, CPU time and memory, its working directory that copy. This
process never imports the students' code: it parses it (ast), writes the test inputs,
and compares what the student's process reports with the reference kit's answers.

Checks and points (the handout gives FC ComputeUp 2, FC ComputeDown 4, conv method 2 9):

| piece | check | points |
| --- | --- | --- |
| FCLayer.ComputeUp | outputs | 1.5 |
| FCLayer.ComputeUp | no loops | 0.5 |
| FCLayer.ComputeDown | input derivative | 1 |
| FCLayer.ComputeDown | weight derivative | 1 |
| FCLayer.ComputeDown | bias derivative | 1 |
| FCLayer.ComputeDown | no loops | 1 |
| ConvLayer.ComputeUp (method 2) | outputs | 2.5 |
| ConvLayer.ComputeUp (method 2) | no loops | 0.5 |
| ConvLayer.ComputeDown (method 2) | input derivative | 2.5 |
| ConvLayer.ComputeDown (method 2) | weight derivative | 2.5 |
| ConvLayer.ComputeDown (method 2) | no loops | 1 |

- A quantity (outputs, or a derivative) scores when (1) it equals the reference's on every
  random case (relative error below 1e-7; several shapes; FC as hidden, output and input
  layer; conv at stride 1 with every padding 0..k-1 for k = 1, 2, 3, 5) and (2) a
  gradient check of a small network passes (grad_check.check_gradients, threshold 1e-4)
  in which that quantity is the student's and everything else the reference's: the
  student's forward pass with the reference backward pass, or the reference derivatives
  with only the one student's derivative swapped in. So one wrong piece costs no other
  piece's points. ComputeDown runs after the student's own ComputeUp when that scored,
  otherwise after the reference's.
- "no loops": no for/while loop and no comprehension in the piece's region (ast). Its
  points are paid in proportion to the piece's other points earned: a blank earns none.
- A piece whose process hangs, crashes, runs out of memory or CPU time, or whose file
  raises at import, gets 0 for its checks, with the reason; the run goes on.
Regions are the BEGIN/END SOLUTION markers, or tools/regions.py's ast rule when a
student removed them. Loops in helpers outside the regions are not looked for.

Writes DIR/grades.csv (one row per student and check) and DIR/grades.json (everything,
including each check's errors), and prints one line per student. Submissions are graded in
parallel, one at a time per process, --jobs processes (default: the number of cores).
Exit status: 0, or 2 for bad input (a SUBMISSION that is neither a folder nor a zip).
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

KIT = Path(__file__).resolve().parents[1]
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))

import runtime  # noqa: E402

# One process per submission: BLAS threads would only compete (and forking is safer without them).
runtime.configure("single_example")

from tools.cli import OneLineParser  # noqa: E402
from tools.regions import PIECES, find_regions, loops_in  # noqa: E402

FC, CONV = "FCLayer", "ConvLayer"
POINTS = (  # (piece, check, points)
    ("FCLayer.ComputeUp", "outputs", 1.5),
    ("FCLayer.ComputeUp", "no loops", 0.5),
    ("FCLayer.ComputeDown", "input derivative", 1.0),
    ("FCLayer.ComputeDown", "weight derivative", 1.0),
    ("FCLayer.ComputeDown", "bias derivative", 1.0),
    ("FCLayer.ComputeDown", "no loops", 1.0),
    ("ConvLayer.ComputeUp", "outputs", 2.5),
    ("ConvLayer.ComputeUp", "no loops", 0.5),
    ("ConvLayer.ComputeDown", "input derivative", 2.5),
    ("ConvLayer.ComputeDown", "weight derivative", 2.5),
    ("ConvLayer.ComputeDown", "no loops", 1.0),
)
MAX_POINTS = sum(p for _, _, p in POINTS)
QUANTITY = {"outputs": "out", "input derivative": "din", "weight derivative": "dw", "bias derivative": "db"}
# The four processes of a submission: (probe, file, piece it tests)
PROBES = (("fc_up", "fc_layer.py", "FCLayer.ComputeUp"), ("fc_down", "fc_layer.py", "FCLayer.ComputeDown"),
          ("conv_up", "conv_layer.py", "ConvLayer.ComputeUp"), ("conv_down", "conv_layer.py", "ConvLayer.ComputeDown"))
TOLERANCE = 1e-7
MAX_FILE_BYTES = 1 << 20

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


# ------------------------------------------------------------------------------------------
# The student's side: runs in the limited process, in the temporary kit (python autograde.py --probe)
# ------------------------------------------------------------------------------------------

def _student_error(exc, filename):
    """'TypeError: ... (fc_layer.py, line 32)': the exception and where in the student's file."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if os.path.basename(frame.filename) == filename and os.path.dirname(os.path.abspath(frame.filename)) == \
                os.getcwd():
            where = f" ({filename}, line {frame.lineno})"
            break
    text = f"{type(exc).__name__}: {exc}"
    return (text[:300] + "...") if len(text) > 300 else text + where


def _make_layer(cls, spec, arrays, i):
    import numpy as np

    if spec["kind"] == "fc":
        proto = dict(name="layer", type="FC", num_channels=spec["units"], **_LAYER)
    else:
        proto = dict(name="layer", type="CONVOLUTIONAL", num_channels=spec["units"], kernel_size=spec["k"],
                     stride=1, padding=spec["p"], convolve_method="method2", **_LAYER)
    layer = cls(proto)
    if spec["role"] == "input":
        layer.SetAsInput()
    if spec["role"] == "output":
        layer.SetAsOutput()
    layer.Initialize(*spec["in_shape"], rng=np.random.default_rng(0))
    layer.w_ = arrays[f"w{i}"].copy()
    layer.b_ = arrays[f"b{i}"].copy()
    return layer


def gradcheck_net(config, seed):
    """The network of a gradient check. Its biases are random, not 0: a unit whose inputs
    are all 0 (dead ReLUs, padding) would otherwise sit exactly on ReLU's kink, where
    numerical derivatives are wrong."""
    import numpy as np

    from net import NeuralNet

    net = NeuralNet(dict(config), seed=seed)
    rng = np.random.default_rng(seed + 1)
    for layer in net.layer_:
        if layer.has_params_:
            layer.b_ = rng.normal(0.0, 0.2, layer.b_.shape)
    return net


def _swap(student, reference, keep):
    """A ComputeDown returning the student's derivative `keep` (0 inputs, 1 weights, 2 biases)
    and the reference's others."""
    def compute_down(self, dC_by_doutputs, outputs, inputs):
        mine = student(self, dC_by_doutputs, outputs, inputs)
        ref = reference(self, dC_by_doutputs, outputs, inputs)
        return tuple(mine[j] if j == keep else ref[j] for j in range(3))
    return compute_down


def probe(spec_path):
    """Run one probe as spec.json says; write result.json (and result.npz). Exit status 0."""
    import contextlib
    import importlib.util
    import io

    sys.path.insert(0, os.getcwd())  # the temporary kit, before anything of it is imported
    with open(spec_path) as f:
        spec = json.load(f)
    result = {"errors": [], "grad_checks": {}}
    outputs = {}

    def finish():
        import numpy as np
        np.savez("result.npz", **outputs)
        with open("result.json", "w") as f:
            json.dump(result, f)
        return 0

    filename, cls_name = spec["file"], spec["class"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            module = __import__(filename[:-3])
            student_cls = getattr(module, cls_name)
    except BaseException as e:  # noqa: B036 -- anything, SystemExit included, is the student's failure
        result["import_error"] = _student_error(e, filename)
        return finish()
    import numpy as np

    ref_spec = importlib.util.spec_from_file_location("_reference_" + filename[:-3],
                                                      os.path.join("_reference", filename))
    reference = importlib.util.module_from_spec(ref_spec)
    ref_spec.loader.exec_module(reference)
    ref_cls = getattr(reference, cls_name)
    if spec["probe"].endswith("_down") and spec["forward"] == "reference":
        student_cls.ComputeUp = ref_cls.ComputeUp
    arrays = dict(np.load("cases.npz"))
    for i, case in enumerate(spec["cases"]):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                layer = _make_layer(student_cls, case, arrays, i)
                x = arrays[f"x{i}"].copy()
                if spec["probe"].endswith("_up"):
                    outputs[f"out{i}"] = np.asarray(layer.ComputeUp(x), dtype=np.float64)
                else:
                    layer.ComputeUp(x.copy())  # as in training: a forward pass before each backward one
                    din, dw, db = layer.ComputeDown(arrays[f"d{i}"].copy(), arrays[f"o{i}"].copy(), x)
                    for key, value in (("din", din), ("dw", dw), ("db", db)):
                        if value is not None:
                            outputs[f"{key}{i}"] = np.asarray(value, dtype=np.float64)
        except BaseException as e:  # noqa: B036
            result["errors"].append({"case": i, "error": _student_error(e, filename)})
    # Gradient checks: the student's piece, the reference's everything else.
    from grad_check import check_gradients

    student_down = student_cls.ComputeDown
    if spec["probe"].endswith("_up"):  # the student's forward pass, the reference's backward pass
        backward = {"out": ref_cls.ComputeDown}
    else:  # the reference's derivatives, but for one of the student's
        backward = {key: _swap(student_down, ref_cls.ComputeDown, j)
                    for j, key in enumerate(("din", "dw", "db")) if key in spec["quantities"]}
    for key, compute_down in backward.items():
        student_cls.ComputeDown = compute_down
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                net = gradcheck_net(spec["gradcheck_net"], spec["seed"])
                errors = check_gradients(net, np.random.default_rng(spec["seed"]), log=io.StringIO())
            result["grad_checks"][key] = {"errors": [[name, float(err)] for name, err in errors]}
        except BaseException as e:  # noqa: B036
            result["grad_checks"][key] = {"error": _student_error(e, filename)}
    return finish()


# ------------------------------------------------------------------------------------------
# The grader's side
# ------------------------------------------------------------------------------------------

@dataclass
class Check:
    piece: str
    check: str
    max_points: float
    points: float = 0.0
    passed: bool = False
    reason: str = ""
    details: dict = field(default_factory=dict)


@dataclass
class Limits:
    timeout: float = 120.0   # wall clock, seconds, per process
    cpu: int = 60            # CPU seconds per process
    memory: int = 2048       # MB of address space per process


class SubmissionError(ValueError):
    """A submission that cannot be graded at all (not a folder or zip): bad input."""


def read_submission(path):
    """{file name: source text or an error string prefixed by '!'} for the two student files."""
    path = Path(path)
    found = {}
    if path.is_dir():
        for name in PIECES:
            hits = sorted(p for p in path.rglob(name) if "__MACOSX" not in p.parts and p.is_file())
            if len(hits) > 1:
                found[name] = f"!{len(hits)} files named {name} in the submission"
            elif hits:
                data = hits[0].read_bytes()[:MAX_FILE_BYTES + 1]
                found[name] = data
        return {name: _decode(name, data) for name, data in found.items()}
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                for name in PIECES:
                    members = [m for m in archive.infolist() if not m.is_dir()
                               and os.path.basename(m.filename) == name and "__MACOSX" not in m.filename]
                    if len(members) > 1:
                        found[name] = f"!{len(members)} files named {name} in the zip"
                    elif members:
                        if members[0].file_size > MAX_FILE_BYTES:
                            found[name] = f"!{name} is larger than {MAX_FILE_BYTES} bytes"
                        else:
                            found[name] = archive.read(members[0])
        except (zipfile.BadZipFile, OSError, RuntimeError) as e:
            return {name: f"!the zip cannot be read ({e})" for name in PIECES}
        return {name: _decode(name, data) for name, data in found.items()}
    if path.exists():
        raise SubmissionError(f"{path}: not a folder or a zip file")
    raise SubmissionError(f"{path}: no such file or folder")


def _decode(name, data):
    if isinstance(data, str):
        return data
    if len(data) > MAX_FILE_BYTES:
        return f"!{name} is larger than {MAX_FILE_BYTES} bytes"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"!{name} is not UTF-8 text"


def make_cases(kind, seed):
    """(case specs, arrays) for the reference comparisons of the FC or conv probes."""
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
    """{'out0': ..., 'din0': ..., 'dw0': ..., 'db0': ...} by the reference kit, plus the
    reference outputs 'o<i>' that the student's ComputeDown is given."""
    import contextlib
    import io

    from conv_layer import ConvLayer
    from fc_layer import FCLayer

    cls = FCLayer if kind == "fc" else ConvLayer
    answers = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for i, spec in enumerate(specs):
            layer = _make_layer(cls, spec, arrays, i)
            x = arrays[f"x{i}"]
            answers[f"out{i}"] = layer.ComputeUp(x)
            din, dw, db = layer.ComputeDown(arrays[f"d{i}"], answers[f"out{i}"], x)
            answers.update({f"din{i}": din, f"dw{i}": dw, f"db{i}": db})
    return answers


def _signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_probe(probe_name, source, limits, seed, forward="student"):
    """Run one probe on the student's `source` in a fresh temporary kit. Returns
    (result dict or None, failure reason or None, seconds)."""
    kind = probe_name.split("_")[0]
    filename = "fc_layer.py" if kind == "fc" else "conv_layer.py"
    specs, arrays = make_cases(kind, seed)
    answers = reference_answers(kind, specs, arrays)
    import numpy as np

    for i in range(len(specs)):
        arrays[f"o{i}"] = answers[f"out{i}"]
    quantities = ["out"] if probe_name.endswith("_up") else (["din", "dw", "db"] if kind == "fc" else ["din", "dw"])
    with tempfile.TemporaryDirectory(prefix="autograde_") as tmp:
        tmp = Path(tmp)
        for path in list(KIT.glob("*.py")) + list(KIT.glob("convolutions*.so")) + list(KIT.glob("convolutions*.pyd")):
            shutil.copy2(path, tmp / path.name)
        shutil.copytree(KIT / "configs", tmp / "configs")
        (tmp / "data").mkdir()
        for path in (KIT / "data").glob("*.py"):
            shutil.copy2(path, tmp / "data" / path.name)
        (tmp / "_reference").mkdir()
        shutil.copy2(KIT / filename, tmp / "_reference" / filename)
        (tmp / filename).write_text(source)
        np.savez(tmp / "cases.npz", **arrays)
        spec = {"probe": probe_name, "file": filename, "class": FC if kind == "fc" else CONV, "cases": specs,
                "forward": forward, "quantities": quantities, "seed": seed, "gradcheck_net": GRADCHECK_NETS[kind]}
        (tmp / "spec.json").write_text(json.dumps(spec))

        def limit():  # in the child, before it runs anything of the student's
            import resource
            memory = limits.memory * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu, limits.cpu + 1))
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        # One core per piece: the grader runs pieces side by side.
        env = dict(os.environ, **runtime.environment("single_example"), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
        start = time.monotonic()
        with open(tmp / "stdout.txt", "wb") as out, open(tmp / "stderr.txt", "wb") as err:
            process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--probe", "spec.json"],
                                       cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       preexec_fn=limit, start_new_session=True)
            try:
                code = process.wait(timeout=limits.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return None, f"timed out after {limits.timeout:g} s (wall clock)", time.monotonic() - start
            finally:
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # anything the student's code left running
                except ProcessLookupError:
                    pass
        seconds = time.monotonic() - start
        if code < 0:
            name = _signal_name(-code)
            if -code in (signal.SIGXCPU, signal.SIGKILL) and name:
                cause = f"CPU time limit ({limits.cpu} s) exceeded" if -code == signal.SIGXCPU else \
                    "killed (SIGKILL: CPU or memory limit?)"
                return None, cause, seconds
            if -code == signal.SIGXFSZ:
                return None, "wrote more than 64 MB of output", seconds
            return None, f"crashed ({name})", seconds
        if not (tmp / "result.json").exists():
            tail = (tmp / "stderr.txt").read_bytes()[-2000:].decode("utf-8", "replace").strip().splitlines()
            last = tail[-1] if tail else "no message"
            if "MemoryError" in last:
                last += f" (memory limit {limits.memory} MB)"
            return None, f"exited with status {code} before reporting ({last})", seconds
        result = json.loads((tmp / "result.json").read_text())
        with np.load(tmp / "result.npz", allow_pickle=False) as f:
            result["arrays"] = {key: f[key] for key in f.files}
    result["answers"] = answers
    result["cases"] = specs
    return result, None, seconds


def _relative_error(mine, ref):
    import numpy as np

    scale = np.linalg.norm(mine) + np.linalg.norm(ref)
    return float(np.linalg.norm(mine - ref) / scale) if scale > 0 else 0.0


def compare(result, quantity, memory_mb):
    """(passed, reason, details) of one quantity: its gradient check, then the reference."""
    import numpy as np

    from grad_check import THRESHOLD

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
    errors = {e["case"]: e["error"] for e in result["errors"]}
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
            error = _relative_error(mine, ref) if np.all(np.isfinite(mine)) else float("inf")
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
    if failures:
        reason = "; ".join(failures)
        if "MemoryError" in reason:
            reason = f"out of memory (memory limit {memory_mb} MB): {reason}"
        return False, reason, details
    return True, f"gradient check passed; matches the reference in {compared} cases", details


def grade(submission, limits=None, seed=0):
    """Grade one submission; returns a dict (student, total, checks, notes)."""
    limits = limits or Limits()
    path = Path(submission)
    student = path.stem if path.is_file() else path.name
    checks = {(piece, name): Check(piece, name, points) for piece, name, points in POINTS}
    notes = []
    try:
        sources = read_submission(path)
    except SubmissionError as e:
        sources = {name: "!" + str(e) for name in PIECES}
    usable = {}
    for name, pieces in PIECES.items():
        source = sources.get(name)
        problem = None
        if source is None:
            problem = f"no {name} in the submission"
        elif source.startswith("!"):
            problem = source[1:]
        else:
            try:
                compile(source, name, "exec", dont_inherit=True)
            except SyntaxError as e:
                problem = f"{name}: syntax error at line {e.lineno} ({e.msg})"
            except ValueError as e:  # null bytes
                problem = f"{name}: {e}"
        if problem:
            for (piece, _), check in checks.items():
                if piece in pieces:
                    check.reason = problem
            notes.append(problem)
            continue
        usable[name] = source
        regions, region_notes = find_regions(source, name, pieces)
        notes.extend(region_notes)
        for piece in pieces:
            check = checks[(piece, "no loops")]
            if not regions[piece]:
                check.reason = f"cannot find {piece} in {name}"
                continue
            loops = loops_in(source, regions[piece])
            check.details = {"regions": [[r.first, r.last, r.how] for r in regions[piece]],
                             "loops": [[line, kind] for line, kind in loops]}
            check.passed = not loops
            spans = ", ".join(f"line {r.first}" if r.first == r.last else f"lines {r.first}-{r.last}"
                              for r in regions[piece])
            check.reason = ("; ".join(f"{kind} at line {line}" for line, kind in loops) if loops
                            else f"no loops in {spans}")

    up_passed = {}
    for probe_name, filename, piece in PROBES:
        if filename not in usable:
            continue
        forward = "student" if up_passed.get(filename.split("_")[0]) else "reference"
        result, failure, seconds = run_probe(probe_name, usable[filename], limits, seed, forward)
        piece_checks = [c for (p, name), c in checks.items() if p == piece and name != "no loops"]
        if failure is None and "import_error" in result:
            failure = f"{filename} raises at import: {result['import_error']}"
            if "MemoryError" in failure:
                failure += f" (memory limit {limits.memory} MB)"
        if failure:
            for check in piece_checks:
                check.reason = failure
            continue
        for check in piece_checks:
            check.passed, check.reason, check.details = compare(result, QUANTITY[check.check], limits.memory)
            check.details["seconds"] = round(seconds, 2)
        if probe_name.endswith("_up"):
            up_passed[probe_name.split("_")[0]] = all(c.passed for c in piece_checks)

    for piece in {p for p, _, _ in POINTS}:
        scored = [c for (p, name), c in checks.items() if p == piece and name != "no loops"]
        for check in scored:
            check.points = check.max_points if check.passed else 0.0
        share = sum(c.points for c in scored) / sum(c.max_points for c in scored)
        loops = checks[(piece, "no loops")]
        loops.points = round(loops.max_points * share, 2) if loops.passed else 0.0
        if loops.passed and share < 1:
            loops.reason += f"; paid {share:.0%}, as much as the piece's other checks earned"
    total = round(sum(c.points for c in checks.values()), 2)
    return {"student": student, "submission": str(path), "total": total, "max": MAX_POINTS,
            "checks": [asdict(c) for c in checks.values()], "notes": notes}


def _grade_job(args):
    return grade(*args)


def summary_line(graded, width=0):
    """'alice  13.5/15  FC up 2/2 | FC down 4/4 | conv up 3/3 | conv down 4.5/6: <first reason>'."""
    parts, reasons = [], []
    for piece in dict.fromkeys(p for p, _, _ in POINTS):
        cls, method = piece.split(".")
        short = ("FC " if cls == FC else "conv ") + ("up" if method == "ComputeUp" else "down")
        mine = [c for c in graded["checks"] if c["piece"] == piece]
        got, out_of = sum(c["points"] for c in mine), sum(c["max_points"] for c in mine)
        parts.append(f"{short} {got:g}/{out_of:g}")
        lost = [c for c in mine if c["points"] < c["max_points"]]
        if lost:
            reason = lost[0]["reason"]
            if reason.startswith("not implemented"):
                reason = "not implemented"
            reasons.append(f"{short} {lost[0]['check']}: " + (reason[:137] + "..." if len(reason) > 140 else reason))
    line = f"{graded['student']:<{width}}  {graded['total']:g}/{graded['max']:g}  " + " | ".join(parts)
    return line + ("  -- " + "; ".join(reasons) if reasons else "")


def write_outputs(results, out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "piece", "check", "points", "max_points", "passed", "reason"])
        for graded in results:
            for c in graded["checks"]:
                writer.writerow([graded["student"], c["piece"], c["check"], f"{c['points']:g}",
                                 f"{c['max_points']:g}", c["passed"], c["reason"]])
            writer.writerow([graded["student"], "total", "", f"{graded['total']:g}", f"{graded['max']:g}", "", ""])
    with open(out / "grades.json", "w") as f:
        json.dump({"max_points": MAX_POINTS, "points": [list(p) for p in POINTS], "students": results}, f,
                  indent=1, default=float)
    return out / "grades.csv", out / "grades.json"


def _unique_names(results):
    seen = {}
    for graded in results:
        name = graded["student"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            graded["student"] = f"{name}-{seen[name]}"


def grade_all(submissions, limits, seed=0, jobs=None):
    """Grade every submission, `jobs` at a time, in the order given."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(submissions)))
    tasks = [(s, limits, seed) for s in submissions]
    if jobs == 1:
        results = [grade(*task) for task in tasks]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Fresh worker processes ("spawn"): each forks its student processes from a
        # single-threaded process, where preexec_fn is safe.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_grade_job, tasks))
    _unique_names(results)
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe"]:  # inside a student's process: see run_probe
        return probe(argv[1])
    parser = OneLineParser(prog="autograde.py", description="Grade students' fc_layer.py and conv_layer.py "
                           "(each submission a folder or zip), in limited processes.")
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="a folder or .zip per student")
    parser.add_argument("--out", default=os.path.join("runs", "autograde"),
                        help="folder for grades.csv and grades.json (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="submissions graded at once "
                        "(default: %(default)s, the number of cores)")
    parser.add_argument("--timeout", type=float, default=Limits.timeout, help="wall-clock seconds per "
                        "process (default %(default)g)")
    parser.add_argument("--cpu", type=int, default=Limits.cpu, help="CPU seconds per process (default %(default)s)")
    parser.add_argument("--memory", type=int, default=Limits.memory, help="MB of memory per process "
                        "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cases and gradient checks "
                        "(default %(default)s)")
    args = parser.parse_args(argv)
    for name, value in (("--jobs", args.jobs), ("--timeout", args.timeout), ("--cpu", args.cpu),
                        ("--memory", args.memory)):
        if value is None or value <= 0:
            print(f"autograde.py: error: {name} must be positive, got {value}", file=sys.stderr)
            return 2
    for submission in args.submissions:
        path = Path(submission)
        if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip")):
            what = "not a folder or a .zip file" if path.exists() else "no such file or folder"
            print(f"autograde.py: error: {submission}: {what}", file=sys.stderr)
            return 2
    limits = Limits(timeout=args.timeout, cpu=args.cpu, memory=args.memory)
    results = grade_all(args.submissions, limits, args.seed, args.jobs)
    width = max(len(r["student"]) for r in results)
    for graded in results:
        print(summary_line(graded, width))
    csv_path, json_path = write_outputs(results, args.out)
    print(f"every check: {csv_path}, {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
