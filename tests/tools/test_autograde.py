"""tools/autograde.py on crafted submissions: the reference, the handout's blanks, loops, a
wrong transpose, an infinite loop, a sleeper, a huge allocation, a crash, a file that raises
at import, files without markers, a zip. They are all graded in one run (two at a time),
with tight limits so that the hung ones cost seconds: in the sandbox when one can be made
here, else with --unsafe-no-sandbox (the points must not depend on it)."""

import csv
import os
import re
import subprocess
import sys
import zipfile

import pytest
from autograde_helpers import checks_of as _checks
from autograde_helpers import reference as _reference
from autograde_helpers import run_autograde, sandbox_problem, unsafe_problem
from autograde_helpers import with_regions as _with_regions
from conftest import REPO_ROOT

from tools.course import handout
from tools.grader import command, grading
from tools.grader import points as grader_points
from tools.grader.sandbox import Limits

LIMITS = ["--timeout", "8", "--cpu", "2", "--memory", "512"]
POINTS = {(piece, check): points for piece, check, points in grader_points.POINTS}


def _import_marker(folder):
    """Code that, at import, tries to leave a file saying which process imported it and its
    parent (a sandboxed process cannot: the folder is not in its view)."""
    return (f"import os as _os\ntry:\n    open(_os.path.join({str(folder)!r}, f'{{_os.getpid()}}_{{_os.getppid()}}'),"
            " 'w').close()\nexcept OSError:\n    pass\n")


def crafted(tmp):
    """{student: (fc_layer.py, conv_layer.py)} of every crafted submission."""
    markers = tmp / "imported"
    markers.mkdir()
    fc_blank, _ = handout.blank_source(_reference("fc_layer.py"), "fc_layer.py")
    conv_blank, _ = handout.blank_source(_reference("conv_layer.py"), "conv_layer.py")
    no_markers = {name: "".join(line for line in _reference(name).splitlines(keepends=True) if "SOLUTION" not in line)
                  for name in ("fc_layer.py", "conv_layer.py")}
    return {
        "reference": (_reference("fc_layer.py"), _reference("conv_layer.py")),
        "blanks": (fc_blank, conv_blank),
        "loops": (
            _with_regions("fc_layer.py", {"FCLayer.ComputeUp": (
                "output = np.zeros((inputs.shape[0], self.w_.shape[0]))\n"
                "for n in range(inputs.shape[0]):\n"
                "    output[n] = self.w_ @ inputs[n] + self.b_[0]")}),
            _with_regions("conv_layer.py", {"ConvLayer.ComputeDown": (
                "if not self.is_input_:\n"
                "    dC_by_dinputs = convolutions.convolve(deriv[:, :, np.newaxis], w[np.newaxis],\n"
                "                                          padding=k - self.padding_ - 1).sum(axis=1)\n"
                "dw = sum(convolutions.convolve(inputs[n][np.newaxis], deriv_flip[n][:, np.newaxis],\n"
                "                               padding=self.padding_) for n in range(batch_size))")})),
        "transpose": (
            _with_regions("fc_layer.py", {"FCLayer.ComputeDown": (
                "if not self.is_input_:\n"
                "    dC_by_dinputs = deriv @ self.w_\n"
                "dw = inputs.T @ deriv  # (fan_in, K): reshaped to (K, fan_in) below, silently wrong\n"
                "db = deriv.sum(axis=0)")}),
            _reference("conv_layer.py")),
        "spin_and_sleep": (
            _with_regions("fc_layer.py", {"FCLayer.ComputeUp": "output = self.spin(inputs)"},
                          append="\n    def spin(self, inputs):\n        while True:\n            pass\n"),
            _with_regions("conv_layer.py", {"ConvLayer.ComputeDown": "import time\ntime.sleep(3600)"})),
        "hog_and_crash": (
            _with_regions("fc_layer.py", {"FCLayer.ComputeDown": "import ctypes\nctypes.string_at(0)"}),
            _with_regions("conv_layer.py",
                          {"ConvLayer.ComputeUp": "waste = np.ones(1 << 31)  # 16 GB\noutputs = waste"})),
        "raises_at_import": (
            _reference("fc_layer.py").replace("\nclass ", "\n" + _import_marker(markers)
                                              + 'raise RuntimeError("broken at import")\n\nclass ', 1),
            _reference("conv_layer.py")),
        "no_markers": (no_markers["fc_layer.py"], no_markers["conv_layer.py"]),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """({student: graded dict}, stdout lines, out folder, tmp, order, run) for one run over
    every crafted submission."""
    tmp = tmp_path_factory.mktemp("autograde")
    paths = []
    for student, (fc, conv) in crafted(tmp).items():
        folder = tmp / "submissions" / student
        folder.mkdir(parents=True)
        (folder / "fc_layer.py").write_text(fc)
        (folder / "conv_layer.py").write_text(conv)
        paths.append(folder)
    # The loops submission once more, as a zip with a folder inside.
    zip_path = tmp / "submissions" / "zipped_loops.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name in ("fc_layer.py", "conv_layer.py"):
            archive.write(tmp / "submissions" / "loops" / name, f"student/{name}")
    paths.append(zip_path)
    out = tmp / "grades"
    unsafe = []
    if sandbox_problem():
        if unsafe_problem():
            pytest.skip(f"no sandbox ({sandbox_problem()}), and no grading without one ({unsafe_problem()})")
        unsafe = ["--unsafe-no-sandbox"]
    students, lines, run = run_autograde(paths, out, "--jobs", "2", *LIMITS, *unsafe)
    return students, lines, out, tmp, [p.stem if p.is_file() else p.name for p in paths], run


def test_the_points_are_the_handouts_and_the_docstring_table_is_the_one_used():
    per_piece = {}
    for piece, _, points in grader_points.POINTS:
        per_piece[piece] = per_piece.get(piece, 0) + points
    assert per_piece["FCLayer.ComputeUp"] == 2 and per_piece["FCLayer.ComputeDown"] == 4
    assert per_piece["ConvLayer.ComputeUp"] + per_piece["ConvLayer.ComputeDown"] == 9
    documented = re.findall(r"^\| (\w+\.\w+)(?: \(method 2\))? \| ([a-z ]+) \| ([\d.]+) \|$", grading.__doc__,
                            re.MULTILINE)
    assert [(p, c, float(n)) for p, c, n in documented] == [tuple(x) for x in grader_points.POINTS]


def test_the_reference_gets_full_marks_with_every_check_passed(graded):
    students = graded[0]
    assert students["reference"]["total"] == grader_points.MAX_POINTS == 15
    assert all(c["passed"] and c["points"] == c["max_points"] for c in students["reference"]["checks"])


def test_the_handouts_blanks_get_zero_saying_not_implemented(graded):
    blanks = graded[0]["blanks"]
    assert blanks["total"] == 0
    for (piece, check), c in _checks(blanks).items():
        if check != "no loops":
            assert c["reason"].startswith("not implemented") and piece in c["reason"]


@pytest.mark.parametrize("student", ["loops", "zipped_loops"])
def test_a_correct_answer_with_loops_loses_the_loop_points_only(graded, student):
    checks = _checks(graded[0][student])
    lost = {key for key, c in checks.items() if c["points"] < c["max_points"]}
    assert lost == {("FCLayer.ComputeUp", "no loops"), ("ConvLayer.ComputeDown", "no loops")}
    assert all(checks[key]["points"] == 0 for key in lost)
    assert "for loop at line" in checks[("FCLayer.ComputeUp", "no loops")]["reason"]
    assert "generator expression at line" in checks[("ConvLayer.ComputeDown", "no loops")]["reason"]
    assert graded[0][student]["total"] == 15 - POINTS[("FCLayer.ComputeUp", "no loops")] \
        - POINTS[("ConvLayer.ComputeDown", "no loops")]


def test_a_wrong_transpose_fails_the_gradient_check_of_the_weight_derivative_only(graded):
    checks = _checks(graded[0]["transpose"])
    wrong = checks[("FCLayer.ComputeDown", "weight derivative")]
    assert wrong["points"] == 0 and wrong["reason"].startswith("gradient check failed")
    assert "differs from the reference" in wrong["reason"]
    failing = {key for key, c in checks.items() if not c["passed"]}
    assert failing == {("FCLayer.ComputeDown", "weight derivative")}
    # The piece's no-loops points are paid in proportion: 2 of its 3 derivatives are right.
    assert checks[("FCLayer.ComputeDown", "no loops")]["points"] == pytest.approx(
        POINTS[("FCLayer.ComputeDown", "no loops")] * 2 / 3, abs=0.01)


def test_an_infinite_loop_and_a_sleep_get_zero_with_the_limit_that_stopped_them(graded):
    student = graded[0]["spin_and_sleep"]
    checks = _checks(student)
    assert checks[("FCLayer.ComputeUp", "outputs")]["reason"] == "CPU time limit (2 s) exceeded"
    for check in ("input derivative", "weight derivative"):
        assert checks[("ConvLayer.ComputeDown", check)]["reason"] == "timed out after 8 s (wall clock)"
    # The other pieces are graded as usual (FC ComputeDown after the reference forward pass).
    assert all(checks[key]["passed"] for key in checks if key[0] in ("FCLayer.ComputeDown", "ConvLayer.ComputeUp"))
    assert student["total"] == 4 + 3


def test_a_huge_allocation_and_a_crash_get_zero_with_the_reason(graded):
    checks = _checks(graded[0]["hog_and_crash"])
    outputs = checks[("ConvLayer.ComputeUp", "outputs")]
    assert outputs["points"] == 0 and "MemoryError" in outputs["reason"] and "memory limit 512 MB" in outputs["reason"]
    for check in ("input derivative", "weight derivative", "bias derivative"):
        assert checks[("FCLayer.ComputeDown", check)]["reason"] == "crashed (SIGSEGV)"
    assert graded[0]["hog_and_crash"]["total"] == 2 + 6


def test_a_file_that_raises_at_import_zeroes_its_pieces_only_and_is_never_imported_by_the_grader(graded):
    students, _, _, tmp, _, run = graded
    checks = _checks(students["raises_at_import"])
    for (piece, check), c in checks.items():
        if piece.startswith("FCLayer") and check != "no loops":
            assert c["reason"].startswith("fc_layer.py raises at import: RuntimeError: broken at import")
    assert students["raises_at_import"]["total"] == 9
    imports = os.listdir(tmp / "imported")
    if run["sandbox"] == "bubblewrap":
        assert not imports  # the sandboxed processes cannot write here, and nothing else imported it
    else:
        assert imports  # the student's processes did import it ...
        for name in imports:  # ... but neither this process nor a grading process (its children)
            pid, parent = map(int, name.split("_"))
            assert os.getpid() not in (pid, parent)


def test_files_without_markers_are_graded_by_the_ast_rule(graded):
    student = graded[0]["no_markers"]
    assert student["total"] == 15
    assert any("located by ast" in note for note in student["notes"])


def test_one_line_per_student_in_order_and_a_csv_row_for_every_check(graded):
    students, lines, out, _, order, _ = graded
    summary = lines[:-1]
    assert [line.split()[0] for line in summary] == order
    for line, name in zip(summary, order):
        assert re.search(rf"\s{students[name]['total']:g}/15\s", line)
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(order) * (len(grader_points.POINTS) + 1)
    for name in order:
        mine = [r for r in rows if r["student"] == name]
        assert sum(float(r["points"]) for r in mine if r["piece"] != "total") == pytest.approx(students[name]["total"])
        assert all(r["reason"] for r in mine if r["piece"] != "total")


def test_submissions_missing_a_file_or_unreadable_are_graded_zero_for_that_file(tmp_path):
    folder = tmp_path / "only_conv"
    folder.mkdir()
    (folder / "conv_layer.py").write_text("def (:\n")
    # Neither file can run, so no piece starts: no sandbox is needed (a runner that is never used).
    result = grading.grade(folder, Limits(timeout=5, cpu=2, memory=512), runner=object())
    checks = _checks(result)
    assert result["total"] == 0
    assert checks[("FCLayer.ComputeUp", "outputs")]["reason"] == "no fc_layer.py in the submission"
    assert checks[("ConvLayer.ComputeUp", "outputs")]["reason"].startswith("conv_layer.py: syntax error at line 1")


def test_each_run_draws_its_seed_records_it_and_says_where_the_code_ran(graded):
    run = graded[5]
    assert isinstance(run["seed"], int) and run["limits"]["cpu"] == 2
    assert run["sandbox"] == ("bubblewrap" if sandbox_problem() is None else "none (--unsafe-no-sandbox)")
    assert f"(seed {run['seed']}, sandbox: {run['sandbox']})" in graded[1][-1]


def test_without_a_sandbox_the_grader_refuses_in_one_line_unless_told(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    for name in ("fc_layer.py", "conv_layer.py"):
        (folder / name).write_text(_reference(name))
    env = dict(os.environ, AUTOGRADE_BWRAP=str(tmp_path / "no" / "bwrap"))
    result = subprocess.run([sys.executable, "tools/autograde.py", str(folder), "--out", str(tmp_path / "out")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 3 and not (tmp_path / "out").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no sandbox can be made here (bwrap not found" in lines[0]
    assert "--unsafe-no-sandbox" in lines[0] and "apt-get install -y bubblewrap" in lines[0]


@pytest.mark.parametrize("args,words", [(["missing_folder"], "no such file or folder"),
                                        (["tests", "--cpu", "0"], "--cpu must be positive"),
                                        (["tests", "--max-output", "0"], "--max-output must be positive"),
                                        ([], "give at least one SUBMISSION")])
def test_bad_input_gives_one_line_and_exit_2(args, words, tmp_path, capsys):
    assert command.main(args + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err


def test_help_exits_0():
    result = subprocess.run([sys.executable, "tools/autograde.py", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "SUBMISSION" in result.stdout
