"""The Gradescope autograder: the bundle's layout and scripts, and its run_autograder run on
a fake /autograder tree of our own, whose results.json is checked against the fields of
Gradescope's autograder specification."""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest
from autograde_helpers import checks_of, reference, run_autograde, sandbox_problem, unsafe_problem, with_regions
from conftest import REPO_ROOT

from tools.grader import command
from tools.grader import points as grader_points

TOP_LEVEL = {"score": (int, float), "execution_time": (int, float), "output": str, "tests": list}
TEST_FIELDS = {"name": str, "score": (int, float), "max_score": (int, float), "status": str, "output": str,
               "visibility": str}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def _bundle(tmp_path, *options):
    zip_path = tmp_path / "autograder.zip"
    assert command.main(["--gradescope-bundle", str(zip_path), *options]) == 0
    return zip_path


def _check_results(data):
    """results.json against the specification's fields; returns its tests by name."""
    for key, kind in TOP_LEVEL.items():
        assert isinstance(data[key], kind), key
    assert data.get("stdout_visibility", "hidden") in {"hidden", "visible"}
    assert len(data["tests"]) == len(grader_points.POINTS)
    for test in data["tests"]:
        for key, kind in TEST_FIELDS.items():
            assert isinstance(test[key], kind), (key, test)
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITIES
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] == "passed" or test["score"] == 0  # a check paid in part is passed
    assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
    assert [t["max_score"] for t in data["tests"]] == [p for _, _, p in grader_points.POINTS]
    return {t["name"]: t for t in data["tests"]}


def _fake_tree(tmp_path, zip_path, files):
    """An /autograder of our own: the bundle unpacked into source/ (with the extension built
    here, as setup.sh would build it) and a submission/ holding `files` in a subfolder."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
    for path in REPO_ROOT.glob("convolutions*.so"):
        shutil.copy2(path, root / "source" / path.name)
    (root / "submission" / "a2").mkdir(parents=True)
    for name, text in files.items():
        (root / "submission" / "a2" / name).write_text(text)
    return root


def _run_autograder(root, **env):
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable, **env}
    result = subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with open(root / "results" / "results.json") as f:
        return json.load(f), result


def test_the_bundle_holds_setup_and_run_autograder_at_its_root_and_the_kit_beside_them(tmp_path):
    zip_path = _bundle(tmp_path, "--timeout", "30", "--visibility", "after_due_date")
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        setup = archive.read("setup.sh").decode()
        run = archive.read("run_autograder").decode()
    for script in ("setup.sh", "run_autograder"):
        assert modes[script] & stat.S_IXUSR, script
    for needed in ("fc_layer.py", "conv_layer.py", "convolutions.pyx", "kernels/convolve_blocks.h",
                   "kernels/direct_blocks.h", "setup.py",
                   "tools/autograde.py", "tools/kit_path.py", "tools/grader/worker.py", "tools/course/handout.py",
                   "tools/course/regions.py"):
        assert needed in names, needed
    assert not any(n.startswith("tests/") or n.endswith((".so", ".npz")) or "/." in "/" + n for n in names)
    assert "apt-get install -y python3 python3-pip python3-venv python3-dev build-essential bubblewrap" in setup
    for package in ("numpy", "cython", "pyyaml", "matplotlib", "scipy"):
        assert f"'{package}>=" in setup, package
    assert "setup.py build_ext --inplace" in setup and setup.startswith("#!/usr/bin/env bash")
    assert "--gradescope-run" in run and "--timeout 30" in run and "--visibility after_due_date" in run
    assert "--unsafe-no-sandbox" not in run


def test_run_autograder_grades_the_submission_into_a_results_json_gradescope_reads(tmp_path):
    options = ["--timeout", "60"]
    if sandbox_problem():
        if unsafe_problem():
            pytest.skip(f"no sandbox ({sandbox_problem()}), and no grading without one ({unsafe_problem()})")
        options.append("--unsafe-no-sandbox")
    # Only conv_layer.py (the reference), in a subfolder: conv scores, FC says why not.
    root = _fake_tree(tmp_path, _bundle(tmp_path, *options), {"conv_layer.py": reference("conv_layer.py")})
    data, _ = _run_autograder(root)
    tests = _check_results(data)
    assert data["score"] == 9 and data["stdout_visibility"] == "hidden"
    for name, test in tests.items():
        if name.startswith("ConvLayer"):
            assert test["status"] == "passed" and test["output"], name
        else:
            assert test["status"] == "failed" and test["output"] == "no fc_layer.py in the submission", name
    assert data["output"].startswith("submission  9/15  FC up 0/2")


def test_a_grading_failure_still_writes_results_json_with_score_0_and_the_reason(tmp_path):
    root = _fake_tree(tmp_path, _bundle(tmp_path), {"fc_layer.py": reference("fc_layer.py")})
    # No sandbox can be made (no bwrap) and the bundle does not allow grading without one.
    data, _ = _run_autograder(root, AUTOGRADE_BWRAP=str(tmp_path / "no-bwrap"))
    tests = _check_results(data)
    assert data["score"] == 0 and "no sandbox can be made here (bwrap not found" in data["output"]
    assert all(t["output"].startswith("not graded: no sandbox") for t in tests.values())
    # The grader cannot even start: run_autograder writes the result itself.
    (root / "results" / "results.json").unlink()
    data, _ = _run_autograder(root, AUTOGRADER_PYTHON="/bin/false")
    assert data["score"] == 0 and data["tests"] == [] and "exit status 1" in data["output"]
    assert isinstance(data["execution_time"], int)


def _options_or_skip():
    if sandbox_problem():
        if unsafe_problem():
            pytest.skip(f"no sandbox ({sandbox_problem()}), and no grading without one ({unsafe_problem()})")
        return ["--unsafe-no-sandbox"]
    return []


def test_a_zip_uploaded_as_it_is_is_graded_as_locally_check_by_check(tmp_path):
    """The zip in /autograder/submission, as Gradescope leaves an uploaded zip; its FC weight
    derivative wrong, so that FC ComputeDown's "no loops" is paid in part (2 of 3)."""
    options = ["--timeout", "60", *_options_or_skip()]
    fc = with_regions("fc_layer.py", {"FCLayer.ComputeDown": (
        "if not self.is_input_:\n    dC_by_dinputs = deriv @ self.w_\ndw = inputs.T @ deriv\ndb = deriv.sum(axis=0)")})
    upload = tmp_path / "upload" / "a2_code.zip"
    upload.parent.mkdir()
    with zipfile.ZipFile(upload, "w") as archive:
        archive.writestr("a2/fc_layer.py", fc)
        archive.writestr("a2/conv_layer.py", reference("conv_layer.py"))
    root = _fake_tree(tmp_path, _bundle(tmp_path, *options), {})
    shutil.copy2(upload, root / "submission" / "a2_code.zip")
    data, _ = _run_autograder(root)
    tests = _check_results(data)
    local, _, _ = run_autograde([upload.parent], tmp_path / "local", *options)
    local_checks = checks_of(local["upload"])
    assert data["score"] == local["upload"]["total"] < 15
    for (piece, check), c in local_checks.items():
        test = tests[f"{piece}: {check}"]
        assert (test["score"], test["status"]) == (c["points"], "passed" if c["passed"] else "failed"), test
    partial = tests["FCLayer.ComputeDown: no loops"]
    assert partial["status"] == "passed" and 0 < partial["score"] < partial["max_score"]


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_links_to_the_reference_on_gradescope_score_nothing_with_the_reason(tmp_path, kind):
    options = ["--timeout", "60", *_options_or_skip()]
    root = _fake_tree(tmp_path, _bundle(tmp_path, *options), {})
    folder = root / "submission" / "a2"
    for name in ("fc_layer.py", "conv_layer.py"):
        aim = root / "source" / name  # /autograder/source/fc_layer.py, the reference
        os.symlink(aim if kind == "absolute" else os.path.relpath(aim, folder), folder / name)
    data, _ = _run_autograder(root)
    tests = _check_results(data)
    assert data["score"] == 0
    assert all("is a symbolic link (to " in t["output"] and "source/" in t["output"] for t in tests.values())
