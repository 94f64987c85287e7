"""Grade students' fc_layer.py and conv_layer.py (staff only):
python tools/autograde.py SUBMISSION... [--out DIR] [--jobs N] [--timeout S] [--cpu S] [--memory MB]
                          [--max-output MB] [--seed N] [--unsafe-no-sandbox]
python tools/autograde.py --gradescope-bundle ZIP [limits] [--visibility V] [--unsafe-no-sandbox]
python tools/autograde.py --gradescope-run [--root DIR]   (what the bundle's run_autograder runs)

A SUBMISSION is a folder or a .zip holding a student's fc_layer.py and conv_layer.py
(anywhere inside it); the student's name is the folder's or zip's name. This process never
runs the students' code: it parses it (ast), and each piece runs in a sandbox of its own
(tools/autograde_sandbox.py: bubblewrap; no network, an unprivileged user, nothing of the
machine but the student kit, the system and Python), holding only the student's file and
a student kit whose other regions are blank. The grader keeps the reference and the
answers; it chooses the inputs (random for each run, --seed to repeat one), sends them,
and calls the student's ComputeUp and ComputeDown as a black box, also inside gradient
checks it composes itself (tools/autograde_checks.py). docs/grading.md says why no
submission can forge a score. Where no sandbox can be made the grader refuses, in one line,
unless given --unsafe-no-sandbox; even then, as root, it runs the students' code only as an
unused user ID, never as root.

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
  piece's points. ComputeDown runs after the student's own ComputeUp when that scored.
- "no loops": no for/while loop and no comprehension in the piece's region (ast). Its
  points are paid in proportion to the piece's other points earned: a blank earns none.
- A piece whose process hangs, crashes, runs out of memory or CPU time, writes too much,
  or whose file raises at import, gets 0 for its checks, with the reason; the run goes on.
Regions are the BEGIN/END SOLUTION markers, or tools/regions.py's ast rule when a
student removed them. Loops in helpers outside the regions are not looked for.

Writes DIR/grades.csv (one row per student and check) and DIR/grades.json (everything,
including each check's errors, the seed and the sandbox), and prints one line per student.
Submissions are graded in parallel, --jobs at a time (default: the number of cores).
Exit status: 0; 2 for bad input (a SUBMISSION that is neither a folder nor a zip); 3 when
no sandbox can be made and --unsafe-no-sandbox was not given, or when with it the students'
code would run as root.
"""

import csv
import json
import os
import secrets
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

KIT = Path(__file__).resolve().parents[1]
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))

from plumbing import runtime  # noqa: E402

# One process per submission: BLAS threads would only compete (and forking is safer without them).
runtime.configure("single_example")

from tools.autograde_checks import CONV, FC, compare, run_piece  # noqa: E402
from tools.autograde_sandbox import Limits, Runner, SandboxUnavailable, check_sandbox, unsafe_uid  # noqa: E402
from tools.cli import OneLineParser  # noqa: E402
from tools.handout import HandoutError  # noqa: E402
from tools.regions import PIECES, find_regions, loops_in  # noqa: E402

__all__ = ["CONV", "FC", "Limits", "POINTS", "MAX_POINTS", "grade", "grade_all", "main"]

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
# The four sandboxed processes of a submission: (probe, file, piece it tests)
PROBES = (("fc_up", "fc_layer.py", "FCLayer.ComputeUp"), ("fc_down", "fc_layer.py", "FCLayer.ComputeDown"),
          ("conv_up", "conv_layer.py", "ConvLayer.ComputeUp"), ("conv_down", "conv_layer.py", "ConvLayer.ComputeDown"))
MAX_FILE_BYTES = 1 << 20
UNSAFE_WARNING = ("grading WITHOUT a sandbox (--unsafe-no-sandbox): the students' code can use the network and "
                  "read what its user can read")


@dataclass
class Check:
    piece: str
    check: str
    max_points: float
    points: float = 0.0
    passed: bool = False
    reason: str = ""
    details: dict = field(default_factory=dict)


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


_RUNNERS = {}


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
        result, failure, seconds = run_piece(runner, probe_name, filename, usable[filename], limits, seed, forward)
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


def write_outputs(results, out_dir, run=None):
    """grades.csv and grades.json in out_dir; `run` (seed, sandbox, limits) goes in the json."""
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
        json.dump({"max_points": MAX_POINTS, "points": [list(p) for p in POINTS], "run": run or {},
                   "students": results}, f, indent=1, default=float)
    return out / "grades.csv", out / "grades.json"


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
    if jobs == 1:
        results = [grade(*task) for task in tasks]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Fresh worker processes ("spawn"): each forks its pieces from a single-threaded
        # process, where preexec_fn is safe; each has its own ID, so its pieces their own user.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_grade_job, tasks))
    _unique_names(results)
    return results


def make_runner(unsafe, prog="autograde.py"):
    """(Runner, description) for this run, or (None, one-line refusal) when no sandbox can be made."""
    if unsafe:
        try:
            unsafe_uid()
        except SandboxUnavailable as e:
            return None, f"cannot grade with --unsafe-no-sandbox here: {e}"
        print(f"{prog}: warning: {UNSAFE_WARNING}", file=sys.stderr)
        return Runner.prepare(sandbox=False), "none (--unsafe-no-sandbox)"
    runner = Runner.prepare(sandbox=True)
    try:
        check_sandbox(runner)
    except SandboxUnavailable as e:
        runner.cleanup()
        return None, (f"no sandbox can be made here ({e}); install bubblewrap (apt-get install -y bubblewrap) "
                      "where namespaces are allowed, or pass --unsafe-no-sandbox to grade without one")
    return runner, "bubblewrap"


def limit_arguments(parser):
    parser.add_argument("--timeout", type=float, default=Limits.timeout, help="wall-clock seconds per "
                        "piece (default %(default)g)")
    parser.add_argument("--cpu", type=int, default=Limits.cpu, help="CPU seconds per process (default %(default)s)")
    parser.add_argument("--memory", type=int, default=Limits.memory, help="MB of memory per process "
                        "(default %(default)s)")
    parser.add_argument("--max-output", dest="output", type=int, default=Limits.output, help="MB a piece may "
                        "write to a file "
                        "(stdout and stderr included) and to its /tmp (default %(default)s)")
    parser.add_argument("--unsafe-no-sandbox", action="store_true", help="run the students' code without a "
                        "sandbox (only where none can be made; see docs/grading.md)")


def checked_limits(args):
    """Limits from the command line, or a one-line error."""
    for name in ("timeout", "cpu", "memory", "output"):
        value = getattr(args, name)
        if value is None or value <= 0:
            flag = "--max-output" if name == "output" else f"--{name}"
            return None, f"{flag} must be positive, got {value}"
    return Limits(timeout=args.timeout, cpu=args.cpu, memory=args.memory, output=args.output), None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = OneLineParser(prog="autograde.py", description="Grade students' fc_layer.py and conv_layer.py "
                           "(each submission a folder or zip), each piece in a sandbox.")
    parser.add_argument("submissions", nargs="*", metavar="SUBMISSION", help="a folder or .zip per student")
    parser.add_argument("--out", default=os.path.join("runs", "autograde"),
                        help="folder for grades.csv and grades.json (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="submissions graded at once "
                        "(default: %(default)s, the number of cores)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random cases and gradient checks "
                        "(default: a new one each run, recorded in grades.json)")
    limit_arguments(parser)
    parser.add_argument("--gradescope-bundle", metavar="ZIP", help="write Gradescope's autograder zip (the "
                        "limits and --unsafe-no-sandbox given go into it) and exit")
    parser.add_argument("--visibility", default="visible", choices=("visible", "after_due_date", "after_published",
                        "hidden"), help="with --gradescope-bundle: when students see the tests (default %(default)s)")
    parser.add_argument("--gradescope-run", action="store_true", help="grade ROOT/submission into "
                        "ROOT/results/results.json (what the bundle's run_autograder runs)")
    parser.add_argument("--check-only", action="store_true", help="with --gradescope-run: only say whether "
                        "a sandbox can be made (exit status 0 or 3)")
    parser.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"),
                        help="with --gradescope-run: Gradescope's folder (default $AUTOGRADER_ROOT or %(default)s)")
    args = parser.parse_args(argv)
    limits, problem = checked_limits(args)
    if problem or (args.jobs is None or args.jobs <= 0):
        print(f"autograde.py: error: {problem or f'--jobs must be positive, got {args.jobs}'}", file=sys.stderr)
        return 2
    if args.gradescope_bundle or args.gradescope_run:
        from tools import autograde_gradescope

        if args.gradescope_bundle:
            return autograde_gradescope.bundle_main(args.gradescope_bundle, limits, args.unsafe_no_sandbox,
                                                    args.visibility)
        return autograde_gradescope.run_main(args.root, limits, args.unsafe_no_sandbox, args.visibility,
                                             args.check_only)
    if not args.submissions:
        print("autograde.py: error: give at least one SUBMISSION (or --gradescope-bundle, --gradescope-run)",
              file=sys.stderr)
        return 2
    for submission in args.submissions:
        path = Path(submission)
        if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip")):
            what = "not a folder or a .zip file" if path.exists() else "no such file or folder"
            print(f"autograde.py: error: {submission}: {what}", file=sys.stderr)
            return 2
    try:
        runner, sandbox = make_runner(args.unsafe_no_sandbox)
    except HandoutError as e:
        print(f"autograde.py: error: cannot make the student kit the pieces run in: {e}", file=sys.stderr)
        return 2
    if runner is None:
        print(f"autograde.py: error: {sandbox}", file=sys.stderr)
        return 3
    seed = secrets.randbelow(1 << 31) if args.seed is None else args.seed
    try:
        results = grade_all(args.submissions, limits, seed, args.jobs, runner)
    finally:
        runner.cleanup()
    width = max(len(r["student"]) for r in results)
    for graded in results:
        print(summary_line(graded, width))
    run = {"seed": seed, "sandbox": sandbox, "limits": asdict(limits)}
    csv_path, json_path = write_outputs(results, args.out, run)
    print(f"every check: {csv_path}, {json_path} (seed {seed}, sandbox: {sandbox})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
