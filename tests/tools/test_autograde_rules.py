"""The grader's rules, graded in the sandbox (one run, two at a time): method 2 computed any other
way than through convolve scores 0 on what it did not compute; any way to loop, at any place,
keeps the answers' points and loses the loop points; each quantity is graded alone and
ComputeDown runs after the student's own ComputeUp; honest forms keep 15/15. The cases are
tests/tools/rule_cases.py's. Skipped (saying why) where bwrap cannot make the sandbox; the
Python-level count is also tested here in this process."""

import numpy as np
import pytest
from autograde_helpers import checks_of, piece_points, reference, run_autograde, sandbox_problem, with_regions
from autograde_helpers import write_submission as _write
from rule_cases import HONEST, LOOPS, OTHER_CONVOLUTIONS, conv_other_way, fc_with_loop, honest

from tools.grader.grading import runtime_loop
from tools.grader.watch import Watch

LIMITS = ["--timeout", "30", "--cpu", "20", "--memory", "1024"]
# (loop, place): a sample of LOOPS x PLACES covering every place and each kind of way
# (syntax, what loops for you, code from text, recursion, numpy, the iteration protocol,
# a computed name); test_source_rules.py reads all of them.
LOOP_SAMPLE = (("for", "region"), ("exec", "above_region"), ("map", "helper_function"),
               ("reduce_alias", "helper_method"), ("recursion", "region"), ("frompyfunc", "module_level"),
               ("iterable_class", "helper_method"), ("getattr_builtins", "above_region"),
               ("apply_along_axis", "region"), ("zip", "helper_function"))
# Ways whose items are handed from C to C (zip over an array's rows): no Python-level event per
# item, so only the reading of the source can see them.
UNCOUNTED = {"zip"}
# What each other way to convolve must lose: {name: {(piece, check): words of the reason}}.
UP, DOWN = "ConvLayer.ComputeUp", "ConvLayer.ComputeDown"
OTHER_WAY_LOSES = {
    "method1_kernels": {(UP, "outputs"): "convolutions.correlate (method 1) at line",
                        (DOWN, "input derivative"): "convolutions.correlate (method 1) at line",
                        (DOWN, "weight derivative"): "convolutions.correlate_weight_derivative (method 1) at line"},
    "aliased_kernels": {(UP, "outputs"): "convolutions.correlate (method 1) at line",
                        (DOWN, "input derivative"): "convolutions.correlate (method 1) at line",
                        (DOWN, "weight derivative"): "convolutions.correlate_weight_derivative (method 1) at line"},
    "scipy_signal": {(UP, "outputs"): "scipy.signal at line", (DOWN, "input derivative"): "scipy.signal at line",
                     (DOWN, "weight derivative"): "scipy.signal at line"},
    "hand_made_im2col": {(UP, "outputs"): "sliding_window_view (a hand-made im2col) at line",
                         (DOWN, "input derivative"): "sliding_window_view (a hand-made im2col) at line",
                         (DOWN, "weight derivative"): "sliding_window_view (a hand-made im2col) at line"},
    "decoy_convolve": {(UP, "outputs"): "with convolve's results times",
                       (DOWN, "weight derivative"): "convolutions.correlate_weight_derivative (method 1) at line"},
}
ISOLATION = {
    # One wrong padding or shape in the input-derivative line; the weight and bias derivatives right.
    "broken_input_derivative": (
        with_regions("fc_layer.py", {"FCLayer.ComputeDown": (
            "if not self.is_input_:\n    dC_by_dinputs = deriv @ self.w_.T  # the wrong transpose: raises\n"
            "dw = deriv.T @ inputs\ndb = deriv.sum(axis=0)")}),
        with_regions("conv_layer.py", {"ConvLayer.ComputeDown": (
            "if not self.is_input_:\n"
            "    dC_by_dinputs = convolutions.convolve(deriv[:, :, np.newaxis], w[np.newaxis],\n"
            "                                          padding=k - self.padding_).sum(axis=1)  # one too many\n"
            "dw = convolutions.convolve(inputs[:, np.newaxis], deriv_flip[:, :, np.newaxis],\n"
            "                           padding=self.padding_).sum(axis=0)")})),
    # ComputeUp wrong (FC) or raising (conv) after keeping what ComputeDown reads.
    "wrong_forward_kept_state": (
        with_regions("fc_layer.py", {
            "FCLayer.ComputeUp": "self.kept_ = inputs\noutput = inputs @ self.w_.T - self.b_  # the wrong sign",
            "FCLayer.ComputeDown": ("if not self.is_input_:\n    dC_by_dinputs = deriv @ self.w_\n"
                                    "dw = deriv.T @ self.kept_\ndb = deriv.sum(axis=0)")}),
        with_regions("conv_layer.py", {
            "ConvLayer.ComputeUp": "self.kept_ = inputs\nraise RuntimeError('forward pass not finished')",
            "ConvLayer.ComputeDown": (
                "if not self.is_input_:\n"
                "    dC_by_dinputs = convolutions.convolve(deriv[:, :, np.newaxis], w[np.newaxis],\n"
                "                                          padding=k - self.padding_ - 1).sum(axis=1)\n"
                "dw = convolutions.convolve(self.kept_[:, np.newaxis], deriv_flip[:, :, np.newaxis],\n"
                "                           padding=self.padding_).sum(axis=0)")})),
}


def _submissions():
    """{student: (fc_layer.py or None, conv_layer.py or None)}: a file left out is not run."""
    students = {f"honest_{name}": honest(name) for name in HONEST}
    students["reference"] = (reference("fc_layer.py"), reference("conv_layer.py"))
    students.update({f"loop_{name}_{place}": (fc_with_loop(name, place), None) for name, place in LOOP_SAMPLE})
    students.update({f"other_{name}": (None, conv_other_way(name)) for name in OTHER_CONVOLUTIONS})
    students.update(ISOLATION)
    return students


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    problem = sandbox_problem()
    if problem:
        pytest.skip(f"no sandbox to test: {problem}")
    tmp = tmp_path_factory.mktemp("rules")
    paths = []
    for name, (fc, conv) in _submissions().items():
        folder = _write(tmp / "submissions" / name)
        for filename, text in (("fc_layer.py", fc), ("conv_layer.py", conv)):
            if text is not None:
                (folder / filename).write_bytes(text.encode())  # as written: CRLF stays CRLF
        paths.append(folder)
    students, _, run = run_autograde(paths, tmp / "grades", "--jobs", "2", *LIMITS)
    assert run["sandbox"] == "bubblewrap"
    return students


@pytest.mark.parametrize("name", ["reference", *(f"honest_{n}" for n in HONEST)])
def test_honest_forms_get_full_marks(graded, name):
    student = graded[name]
    assert student["total"] == 15, [(c["piece"], c["check"], c["reason"]) for c in student["checks"]
                                     if not c["passed"]]


@pytest.mark.parametrize("name", ["reference", *(f"honest_{n}" for n in HONEST)])
def test_honest_pieces_do_the_same_python_level_work_at_every_size(graded, name):
    for (piece, check), c in checks_of(graded[name]).items():
        if check == "no loops":
            events = c["details"]["events"]
            assert len(events) == 3 and len(set(events)) == 1, (piece, events)


@pytest.mark.parametrize("name,place", LOOP_SAMPLE)
def test_a_loop_anywhere_keeps_the_answers_points_and_loses_the_loop_points(graded, name, place):
    student = graded[f"loop_{name}_{place}"]
    checks = checks_of(student)
    assert checks[("FCLayer.ComputeUp", "outputs")]["passed"]
    loops = checks[("FCLayer.ComputeUp", "no loops")]
    assert loops["points"] == 0 and LOOPS[name][1] in loops["reason"] and " at line " in loops["reason"]
    # The count shows it too, whatever the reading saw: the work grows with the sizes.
    events = loops["details"]["events"]
    grows = len(events) == 3 and events[0] < events[1] < events[2]
    assert grows == (name not in UNCOUNTED), events
    assert ("grows with the sizes" in loops["reason"]) == grows
    # ComputeDown runs the loop too only when module-level code installed it as ComputeUp.
    down = piece_points(student)["FCLayer.ComputeDown"]
    assert down == (3 if place == "module_level" else 4)


@pytest.mark.parametrize("name", sorted(OTHER_CONVOLUTIONS))
def test_method_2_computed_another_way_scores_nothing_on_what_it_computed_so(graded, name):
    checks = checks_of(graded[f"other_{name}"])
    loses = OTHER_WAY_LOSES[name]
    for key, c in checks.items():
        if key[1] == "no loops":
            continue
        if key in loses:
            assert c["points"] == 0 and c["reason"].startswith("not method 2, which must compute through "
                                                               "convolutions.convolve"), c["reason"]
            assert loses[key] in c["reason"], c["reason"]
        elif key[0].startswith("ConvLayer"):
            assert c["passed"], (key, c["reason"])  # what it did compute with convolve


def test_a_broken_input_derivative_costs_only_the_input_derivative(graded):
    checks = checks_of(graded["broken_input_derivative"])
    failed = {key for key, c in checks.items() if not c["passed"] and key[1] != "no loops"}
    assert failed == {("FCLayer.ComputeDown", "input derivative"), ("ConvLayer.ComputeDown", "input derivative")}
    points = piece_points(graded["broken_input_derivative"])
    assert points["FCLayer.ComputeDown"] == pytest.approx(2 + 2 / 3, abs=0.01)  # and its share of the loop point
    assert points["ConvLayer.ComputeDown"] == pytest.approx(2.5 + 0.5)


def test_compute_down_runs_after_the_students_own_compute_up_whatever_that_scored(graded):
    student = graded["wrong_forward_kept_state"]
    points = piece_points(student)
    assert points == {"FCLayer.ComputeUp": 0, "FCLayer.ComputeDown": 4, "ConvLayer.ComputeUp": 0,
                      "ConvLayer.ComputeDown": 6}
    assert "RuntimeError: forward pass not finished" in checks_of(student)[(UP, "outputs")]["reason"]


# -- the count, in this process ---------------------------------------------------------

STUDENT_CODE = '''import numpy as np


def looped(x, w):
    return np.array([w @ row for row in x])


def mapped(x, w):
    return np.array(list(map(lambda row: w @ row, x)))


def vectorized(x, w):
    return np.einsum("nf,kf->nk", x, w) + np.tensordot(x, w, axes=([1], [1])) - x @ w.T
'''


@pytest.mark.parametrize("function,grows", [("looped", True), ("mapped", True), ("vectorized", False)])
def test_the_count_grows_with_the_batch_for_a_loop_only(tmp_path, function, grows):
    import importlib.util

    path = tmp_path / "student.py"
    path.write_text(STUDENT_CODE)
    spec = importlib.util.spec_from_file_location("student_for_the_count", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    watch, events = Watch(str(path)), []
    for n in (2, 3, 5):
        arrays = np.ones((n, n + 1)), np.ones((n, n + 1))
        watch.counting(lambda arrays=arrays: getattr(module, function)(*arrays))
        events.append(watch.events)
    assert bool(runtime_loop(events, "fc")) == grows, events
    assert (events[0] < events[1] < events[2]) == grows


def test_the_count_is_a_loop_only_when_it_grows_at_every_step():
    assert runtime_loop([9, 9, 9], "fc") == ""
    assert runtime_loop([9, 10, 10], "conv") == ""
    assert "grows with the sizes (a loop): 9, 10, 12 calls and lines" in runtime_loop([9, 10, 12], "fc")
