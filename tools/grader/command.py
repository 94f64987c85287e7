"""The grader's command line (staff only):
python tools/autograde.py SUBMISSION... [--out DIR] [--jobs N] [--timeout S] [--cpu S] [--memory MB]
                          [--max-output MB] [--seed N] [--unsafe-no-sandbox]
python tools/autograde.py --gradescope-bundle ZIP [limits] [--visibility V] [--unsafe-no-sandbox]
python tools/autograde.py --gradescope-run [--root DIR]   (what the bundle's run_autograder runs)

A SUBMISSION is a folder or a .zip holding a student's fc_layer.py and conv_layer.py
(grading.py says how it is graded, gradescope.py what runs on Gradescope).
Writes DIR/grades.csv (one row per student and check) and DIR/grades.json (everything,
including each check's errors, the seed and the sandbox), and prints one line per student.
Submissions are graded in parallel, --jobs at a time (default: the number of cores).
Exit status: 0; 2 for bad input (a SUBMISSION that is neither a folder nor a zip); 3 when
no sandbox can be made and --unsafe-no-sandbox was not given, or when with it the students'
code would run as root.
"""

import os
import secrets
import sys
from dataclasses import asdict
from pathlib import Path

from plumbing.command_line import OneLineParser, entry_point, require_compiled_kernels
from plumbing.errors import UserError
from plumbing.run_files import check_output
from tools.course.handout import HandoutError
from tools.grader import gradescope, grading  # grading sets the process's threads before numpy loads
from tools.grader.results import summary_line, write_outputs
from tools.grader.sandbox import Limits, SandboxUnavailable
from tools.grader.submissions import SubmissionError


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
    """Limits from the command line; UserError naming the flag that is not positive."""
    for name in ("timeout", "cpu", "memory", "output"):
        value = getattr(args, name)
        if value is None or value <= 0:
            flag = "--max-output" if name == "output" else f"--{name}"
            raise UserError(f"{flag} must be positive, got {value}")
    return Limits(timeout=args.timeout, cpu=args.cpu, memory=args.memory, output=args.output)


def checked_submissions(submissions):
    if not submissions:
        raise UserError("give at least one SUBMISSION (or --gradescope-bundle, --gradescope-run)")
    for submission in submissions:
        path = Path(submission)
        if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip")):
            what = "not a folder or a .zip file" if path.exists() else "no such file or folder"
            raise SubmissionError(f"{submission}: {what}")


@entry_point("autograde.py")
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
    limits = checked_limits(args)
    if args.jobs is None or args.jobs <= 0:
        raise UserError(f"--jobs must be positive, got {args.jobs}")
    if args.gradescope_bundle:
        return gradescope.bundle_main(args.gradescope_bundle, limits, args.unsafe_no_sandbox, args.visibility)
    require_compiled_kernels("autograde.py")  # grades against them, never their numpy version
    if args.gradescope_run:
        return gradescope.run_main(args.root, limits, args.unsafe_no_sandbox, args.visibility, args.check_only)
    checked_submissions(args.submissions)
    for name in ("grades.csv", "grades.json"):  # before hours of grading, not after
        check_output(os.path.join(args.out, name), "--out", [(f"submission {path}", path)
                                                              for path in args.submissions])
    try:
        runner, sandbox = grading.make_runner(args.unsafe_no_sandbox, private=args.submissions)
    except HandoutError as e:
        raise HandoutError(f"cannot make the student kit the pieces run in: {e}") from None
    if runner is None:
        raise SandboxUnavailable(sandbox)
    seed = secrets.randbelow(1 << 31) if args.seed is None else args.seed
    try:
        results = grading.grade_all(args.submissions, limits, seed, args.jobs, runner)
    finally:
        runner.cleanup()
    run = {"seed": seed, "sandbox": sandbox, "limits": asdict(limits)}
    # Written before anything is printed: a pipe that goes away (`| head -1`) loses no grade.
    csv_path, json_path = write_outputs(results, args.out, run)
    width = max(len(r["student"]) for r in results)
    for graded in results:
        print(summary_line(graded, width))
    print(f"every check: {csv_path}, {json_path} (seed {seed}, sandbox: {sandbox})")
    return 0
