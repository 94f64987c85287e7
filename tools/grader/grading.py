"""Grade one submission, or many in parallel (staff only); tools/autograde.py is the command line.

A SUBMISSION is a folder or a .zip holding a student's fc_layer.py and conv_layer.py
(anywhere inside it); the student's name is the folder's or zip's name. This process never
runs the students' code: it parses it (ast), and each piece runs in a sandbox of its own
(tools/grader/sandbox.py: bubblewrap; no network, an unprivileged user, nothing of the
machine but the student kit, the system and Python), holding only the student's file and
a student kit whose other regions are blank. The grader keeps the reference and the
answers; it chooses the inputs (random for each run, --seed to repeat one), sends them,
and calls the student's ComputeUp and ComputeDown as a black box, also inside gradient
checks it composes itself (tools/grader/checks.py). docs/grading.md says why no
submission can forge a score. Where bubblewrap cannot run, a grader that runs as root uses
the sandbox's second layer (an unused user, no_new_privs, a seccomp filter); where neither
can be made the grader refuses, in one line, unless given --unsafe-no-sandbox; even then, as
root, it runs the students' code only as an unused user ID, never as root.

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
  layer; conv at stride 1 with every padding 0..k-1 for k = 1, 2, 3, 5), (2) a gradient check
  of a small network passes (grad_check.check_gradients, threshold 1e-4) in which that
  quantity is the student's and everything else the reference's, and (3) for method 2, it was
  computed through convolutions.convolve (checks.method2_problems). Each quantity comes from a
  call of its own (the weight and bias derivatives from the layer made as the input layer), and
  ComputeDown runs after the student's own ComputeUp, whatever that scored; so one wrong piece
  or line costs no other quantity's points.
- "no loops": no Python-level iteration in the code the student wrote (the file against the
  blank handout) that the piece runs, by reading it (tools/grader/source_rules.py) and by
  counting its Python-level work at growing sizes (tools/grader/watch.py). Its points are paid
  in proportion to the piece's other points earned: a blank earns none.
- A piece whose process hangs, crashes, runs out of memory or CPU time, writes too much,
  or whose file raises at import, gets 0 for its checks, with the reason; the run goes on.
Regions are the BEGIN/END SOLUTION markers, or tools/course/regions.py's ast rule when a
student removed them. docs/grading.md says what each rule means.
"""

import functools
import os
import sys
from dataclasses import asdict
from pathlib import Path

from plumbing import runtime

# One process per submission: BLAS threads would only compete (and forking is safer without them).
runtime.configure("single_example")

from tools.course.regions import PIECES, find_regions
from tools.grader import source_rules
from tools.grader.checks import GROWING, compare, run_piece
from tools.grader.points import MAX_POINTS, POINTS, Check
from tools.grader.sandbox import (
    Limits,
    Runner,
    SandboxBroken,
    SandboxUnavailable,
    check_sandbox,
    check_seccomp_layer,
    unsafe_uid,
)
from tools.grader.submissions import SubmissionError, read_submission

QUANTITY = {"outputs": "out", "input derivative": "din", "weight derivative": "dw", "bias derivative": "db"}
# The four sandboxed processes of a submission: (probe, file, piece it tests)
PROBES = (("fc_up", "fc_layer.py", "FCLayer.ComputeUp"), ("fc_down", "fc_layer.py", "FCLayer.ComputeDown"),
          ("conv_up", "conv_layer.py", "ConvLayer.ComputeUp"), ("conv_down", "conv_layer.py", "ConvLayer.ComputeDown"))
UNSAFE_WARNING = ("grading WITHOUT a sandbox (--unsafe-no-sandbox): the students' code can use the network and "
                  "read what its user can read")


_RUNNERS = {}


@functools.cache
def blank(name):
    """The blank handout's `name` (fc_layer.py or conv_layer.py): what the student started from."""
    from tools import KIT
    from tools.course.handout import blank_source

    return blank_source((Path(KIT) / name).read_text(), name)[0]


def runtime_loop(events, kind):
    """The reason a piece's Python-level work shows a loop, or "": the calls and lines counted
    in one call (watch.py) at GROWING's shapes, when they grow at each step."""
    if len(events) < 3 or not all(a < b for a, b in zip(events, events[1:])):
        return ""
    batches = ", ".join(str(shape[0]) for shape in GROWING[kind])
    return (f"its Python-level work grows with the sizes (a loop): {', '.join(f'{e:g}' for e in events)} calls "
            f"and lines for batches of {batches}, other sizes growing too")


def default_runner(sandbox=True):
    """A run folder for this process (made on first use, removed at exit), checked."""
    if sandbox not in _RUNNERS:
        import atexit

        runner = Runner.prepare(sandbox)
        atexit.register(runner.cleanup)
        if sandbox:
            try:
                check_sandbox(runner)
            except SandboxUnavailable:
                runner.cleanup()
                raise
        _RUNNERS[sandbox] = runner
    return _RUNNERS[sandbox]


def grade(submission, limits=None, seed=0, runner=None):
    """Grade one submission; returns a dict (student, total, checks, notes). `runner` says
    where its pieces run (default: a sandbox; SandboxUnavailable if none can be made)."""
    limits = limits or Limits()
    runner = runner or default_runner()
    path = Path(submission)
    student = path.stem if path.is_file() else path.name
    checks = {(piece, name): Check(piece, name, points) for piece, name, points in POINTS}
    notes = []
    try:
        sources = read_submission(path, notes)
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
        try:
            found = source_rules.loops(source, blank(name), pieces)
        except (SyntaxError, ValueError, RecursionError) as e:  # compile() passed; ast may still refuse
            found = {piece: [(0, f"source the loop check cannot read ({type(e).__name__})")] for piece in pieces}
        for piece in pieces:
            check = checks[(piece, "no loops")]
            if not regions[piece]:
                check.reason = f"cannot find {piece} in {name}"
                continue
            check.details = {"regions": [[r.first, r.last, r.how] for r in regions[piece]],
                             "loops": [[line, kind] for line, kind in found[piece]]}
            check.passed = not found[piece]
            check.reason = ("; ".join(f"{kind} at line {line}" for line, kind in found[piece][:8])
                            + (f" (and {len(found[piece]) - 8} more)" if len(found[piece]) > 8 else "")
                            if found[piece] else f"no loops in the code {piece} runs")

    up_failed = {}
    for probe_name, filename, piece in PROBES:
        if filename not in usable:
            continue
        kind = filename.split("_")[0]
        # ComputeDown runs after the student's own ComputeUp, whatever that scored, unless that
        # could not run at all (its process hung, crashed or ran out of a limit).
        forward = "reference" if up_failed.get(kind) else "student"
        result, failure, seconds = run_piece(runner, probe_name, filename, usable[filename], limits, seed, forward)
        piece_checks = [c for (p, name), c in checks.items() if p == piece and name != "no loops"]
        if failure is None and "import_error" in result:
            failure = f"{filename} raises at import: {result['import_error']}"
            if "MemoryError" in failure:
                failure += f" (memory limit {limits.memory} MB)"
        if probe_name.endswith("_up"):
            up_failed[kind] = failure is not None
        if failure:
            for check in piece_checks:
                check.reason = failure
            continue
        if kind == "conv":
            result["method2_static"] = source_rules.other_convolutions(usable[filename], blank(filename),
                                                                       PIECES[filename])[piece]
        for check in piece_checks:
            check.passed, check.reason, check.details = compare(result, QUANTITY[check.check], limits.memory)
            check.details["seconds"] = round(seconds, 2)
        loops = checks[(piece, "no loops")]
        growth = runtime_loop(result.get("events", []), kind)
        loops.details["events"] = result.get("events", [])
        if growth and loops.passed:
            loops.passed, loops.reason = False, growth
        elif growth:
            loops.reason += f"; {growth}"

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


def not_graded(submission, reason):
    """The result of a submission the grader itself failed on: 0 on every check, with the
    reason, so that the run goes on for the others."""
    path = Path(submission)
    checks = [Check(piece, name, points, reason=f"not graded: {reason}") for piece, name, points in POINTS]
    return {"student": path.stem if path.is_file() else path.name, "submission": str(path), "total": 0.0,
            "max": MAX_POINTS, "checks": [asdict(c) for c in checks], "notes": [f"not graded: {reason}"]}


def _failure(e):
    return f"the grader failed on this submission ({type(e).__name__}: {e})"[:300]


def _unique_names(results):
    seen = {}
    for graded in results:
        name = graded["student"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            graded["student"] = f"{name}-{seen[name]}"


def grade_all(submissions, limits, seed=0, jobs=None, runner=None):
    """Grade every submission, `jobs` at a time, in the order given."""
    runner = runner or default_runner()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(submissions)))
    tasks = [(s, limits, seed, runner) for s in submissions]
    results = []
    if jobs == 1:
        for task in tasks:
            try:
                results.append(grade(*task))
            except Exception as e:  # one submission's failure is its own: the others are graded
                results.append(not_graded(task[0], _failure(e)))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Fresh worker processes ("spawn"): each forks its pieces from a single-threaded
        # process, where preexec_fn is safe; each has its own ID, so its pieces their own user.
        from concurrent.futures.process import BrokenProcessPool

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = [pool.submit(_grade_job, task) for task in tasks]
            for future in futures:
                try:
                    results.append(future.result())
                except Exception as e:  # as above
                    results.append(e)
        for i, (task, result) in enumerate(zip(tasks, results)):
            if isinstance(result, BrokenProcessPool):  # a worker died: each it took with it again, alone
                with ProcessPoolExecutor(1, mp_context=context) as alone:
                    try:
                        result = alone.submit(_grade_job, task).result()
                    except Exception as e:
                        result = e
            results[i] = not_graded(task[0], _failure(result)) if isinstance(result, Exception) else result
    _unique_names(results)
    return results


def make_runner(unsafe, prog="autograde.py", private=()):
    """(Runner, the layer's name) for this run, or (None, one-line refusal) when no sandbox
    can be made: bubblewrap, else the second layer (seccomp_layer.py), whose user must not
    read the `private` files and folders (the submissions; the reference kit always)."""
    if unsafe:
        try:
            unsafe_uid()
        except SandboxUnavailable as e:
            return None, f"cannot grade with --unsafe-no-sandbox here: {e}"
        print(f"{prog}: warning: {UNSAFE_WARNING}", file=sys.stderr)
        return Runner.prepare(sandbox=False), "none (--unsafe-no-sandbox)"
    runner = Runner.prepare(layer="bubblewrap")
    try:
        check_sandbox(runner)
        return runner, "bubblewrap"
    except SandboxBroken as e:  # made, but not holding: a fault to fix, not a reason to go on
        runner.cleanup()
        return None, f"the sandbox does not hold ({e}); grading stopped"
    except SandboxUnavailable as e:
        runner.cleanup()
        why_not = str(e)
    try:
        runner = Runner.prepare(layer="seccomp")
    except SandboxUnavailable as e:
        second = str(e)
    else:
        try:
            check_seccomp_layer(runner, private)
            return runner, "seccomp"
        except SandboxUnavailable as e:
            runner.cleanup()
            second = str(e)
    return None, (f"no sandbox can be made here ({why_not}; the second layer: {second}); install bubblewrap "
                  "(apt-get install -y bubblewrap) where namespaces are allowed, or grade as root with the "
                  "second layer (docs/grading.md), or pass --unsafe-no-sandbox to grade without one")
