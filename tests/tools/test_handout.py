"""tools/handout.py: the student kit, its blanks, what it leaves out, its README, its own test
suite (unwritten pieces reported as not implemented yet), and that the reference regions pasted
back make it whole again. Everything is written to tmp."""

import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import CONFIG_DIR, PIECE_FILES, REPO_ROOT, write_config

from tools.course import handout
from tools.course.regions import ALL_PIECES, marked_regions

STUDENT_FILES = ("fc_layer.py", "conv_layer.py")
FAST_CONFIGS = ("logreg.yaml", "convnet_gradcheck.yaml", "convnet_gradcheck_deep.yaml")
HANDED_OUT_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml") if not handout.is_staff_only(f"configs/{p.name}"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """(student kit folder, its zip), written once."""
    root = tmp_path_factory.mktemp("handout")
    out = root / "a2_student"
    assert handout.main([str(out)]) == 0
    return out, root / "a2_student.zip"


def _copy_with_extension(kit, tmp_path):
    """A private copy of the student kit, with the reference kit's compiled extension."""
    target = tmp_path / "kit"
    shutil.copytree(kit, target)
    for so in glob.glob(str(REPO_ROOT / "convolutions*.so")):
        shutil.copy2(so, target)
    return target


def _run(args, cwd, timeout=300, **env_vars):
    env = dict(os.environ, MPLBACKEND="Agg", **env_vars)
    if env.get("USPS_MIRROR"):  # a relative mirror is the repo root's (as in CI), not the kit's
        env["USPS_MIRROR"] = str((REPO_ROOT / env["USPS_MIRROR"]).resolve())
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _pytest(kit, *args, timeout=900, **env_vars):
    """The kit's own test suite, run in the kit as a student runs it: (exit status, output)."""
    # Wide enough that pytest does not cut the reasons of its summary lines short.
    result = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rx", *args], kit, timeout=timeout,
                  COLUMNS="1000", **env_vars)
    return result.returncode, result.stdout + result.stderr


SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|xfailed|xpassed|skipped|deselected)")


def _summary(output):
    """{'passed': n, 'xfailed': n, ...} from pytest's closing line (`... in 1.23s`)."""
    last = next(line for line in reversed(output.splitlines())
                if SUMMARY.search(line) and re.search(r" in [\d.]+s", line))
    return {word: int(n) for n, word in SUMMARY.findall(last)}


def _xfail_reasons(output):
    return re.findall(r"^XFAIL .*? - (not implemented yet: .*|[^-]*)$", output, flags=re.M)


def _regions_of(folder):
    regions = {}
    for name in STUDENT_FILES:
        for r in marked_regions((Path(folder) / name).read_text(), name):
            regions[r.piece] = r
    return regions


def test_no_line_of_any_region_survives_anywhere_in_the_student_kit_or_its_zip(generated):
    out, zip_path = generated
    inside, outside = set(), set()
    for name in STUDENT_FILES:
        source = (REPO_ROOT / name).read_text()
        spans = {n for r in marked_regions(source, name) for n in range(r.first, r.last + 1)}
        for number, line in enumerate(source.splitlines(), start=1):
            (inside if number in spans else outside).add(line.strip())
    # A region line the kit also has outside the regions (`if not self.is_input_:`) gives nothing away.
    secret = [line for line in inside - outside if line]
    assert len(secret) >= 10
    texts = {p: p.read_text() for p in out.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".pyx",
                                                                                     ".yaml", ".toml", ".txt")}
    with zipfile.ZipFile(zip_path) as archive:
        texts.update({name: archive.read(name).decode() for name in archive.namelist()
                      if name.endswith((".py", ".md", ".pyx", ".yaml", ".toml", ".txt"))})
    for where, text in texts.items():
        for line in secret:
            assert line not in text, f"{where} holds {line!r}"


def test_each_region_becomes_a_your_code_here_block_raising_not_implemented(generated):
    out, _ = generated
    regions = _regions_of(out)
    assert sorted(regions) == sorted(ALL_PIECES)
    for piece, region in regions.items():
        code = region.text
        assert code.splitlines()[0].startswith(f"# YOUR CODE HERE ({piece}")
        assert "DO NOT write loops" in code
        tree = ast.parse(code)
        statements = [node for node in tree.body]
        assert len(statements) == 1 and isinstance(statements[0], ast.Raise)
        message = statements[0].exc.args[0].value
        assert statements[0].exc.func.id == "NotImplementedError" and message.startswith(f"{piece}: ")
    assert "padding k - p - 1" in regions["ConvLayer.ComputeDown"].text  # the handout's hint
    assert "convolutions.convolve" in regions["ConvLayer.ComputeUp"].text


def test_everything_but_the_regions_is_the_kit_itself(generated):
    out, _ = generated
    for name in STUDENT_FILES:
        original = (REPO_ROOT / name).read_text().splitlines()
        blanked = (out / name).read_text().splitlines()
        spans = [(r.first, r.last) for r in marked_regions("\n".join(original), name)]
        kept = [line for n, line in enumerate(original, 1) if not any(a <= n <= b for a, b in spans)]
        new_spans = [(r.first, r.last) for r in marked_regions("\n".join(blanked), name)]
        assert kept == [line for n, line in enumerate(blanked, 1) if not any(a <= n <= b for a, b in new_spans)]
    for name in ("net.py", "layer.py", "maxpool_layer.py", "convolutions.pyx", "kernels/convolve_blocks.h",
                 "kernels/direct_blocks.h", "configs/logreg.yaml"):
        assert (out / name).read_bytes() == (REPO_ROOT / name).read_bytes()


def test_the_kit_leaves_out_builds_data_runs_hidden_folders_and_staff_tools(generated):
    out, zip_path = generated
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for path in files:
        parts = path.split("/")
        assert not any(part.startswith(".") and part != ".gitignore" for part in parts), path
        assert parts[0] not in ("runs", "build") and "__pycache__" not in parts, path
        assert not path.endswith((".so", ".c", ".o", ".npz", ".npy", ".gz", ".pyc", ".zip")), path
    for needed in ("README.md", "setup.py", "pyproject.toml", "convolutions.pyx", "kernels/convolve_blocks.h",
                   "kernels/direct_blocks.h",
                   "MANIFEST.in", "data/usps.py", "grad_check.py", "train.py", "evaluate.py", "fc_layer.py",
                   "conv_layer.py", "play_with_convolutions.py", "tools/report.py", "tools/submit.py",
                   "tools/course/regions.py", "tools/course/report.py", "tools/course/submit.py",
                   "configs/logreg.yaml", "configs/convnet2.yaml", "tests/conftest.py",
                   "tests/kit/test_fc_layer.py", "tests/kit/test_conv_layer.py", "tests/kit/test_scripts.py",
                   "docs/course-tools.md", "docs/configuration.md"):
        assert needed in files, needed
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == sorted(f"{out.name}/{f}" for f in files)
    assert handout.STAFF_BEGIN not in (out / "README.md").read_text()


def test_the_staff_parts_of_the_readme_and_of_the_docs_are_not_handed_out(generated):
    out, zip_path = generated
    documents = sorted(p.relative_to(REPO_ROOT).as_posix() for p in [REPO_ROOT / "README.md",
                                                                     *(REPO_ROOT / "docs").glob("*.md")])
    with_staff = [rel for rel in documents if handout.STAFF_BEGIN in (REPO_ROOT / rel).read_text()]
    assert "README.md" in with_staff and "docs/course-tools.md" in with_staff
    with zipfile.ZipFile(zip_path) as archive:
        zipped = {name.split("/", 1)[1]: archive.read(name).decode() for name in archive.namelist()}
    for rel in documents:
        if handout.is_staff_only(rel):
            assert not (out / rel).exists(), rel
            continue
        original, handed_out = (REPO_ROOT / rel).read_text(), (out / rel).read_text()
        assert handed_out == handout.strip_staff_only(original, rel) == zipped[rel], rel
        assert handout.STAFF_BEGIN not in handed_out and handout.STAFF_END not in handed_out, rel
    tools_doc = (out / "docs/course-tools.md").read_text()
    assert "## Results and learning curves" in tools_doc and "## The hand-in" in tools_doc  # the students' parts stay
    assert "autograde.py SUBMISSION" not in tools_doc and "## Hand out" not in tools_doc


def _small_kit(tmp_path, documents):
    """A kit of the two student files and `documents` ({relative path: text})."""
    kit = tmp_path / "kit"
    kit.mkdir()
    for name in STUDENT_FILES:
        shutil.copy2(REPO_ROOT / name, kit / name)
    for rel, text in documents.items():
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        (kit / rel).write_text(text)
    return kit


def test_a_staff_block_in_a_docs_file_is_stripped_and_the_rest_kept(tmp_path):
    begin, end = handout.STAFF_BEGIN, handout.STAFF_END
    kit = _small_kit(tmp_path, {
        "README.md": f"# Kit\n{begin}\nreadme secret\n{end}\nread on\n",
        "docs/data.md": f"# Guide\nfor students\n\n{begin}\n## Grading\ndocs secret\n{end}\nmore for students\n",
        "docs/tests.md": f"one\n  {begin}\nsecond secret\n  {end}\ntwo\n",
    })
    out = tmp_path / "out"
    handout.make_handout(out, tmp_path / "out.zip", kit)
    assert (out / "README.md").read_text() == "# Kit\nread on\n"
    assert (out / "docs/data.md").read_text() == "# Guide\nfor students\n\nmore for students\n"
    assert (out / "docs/tests.md").read_text() == "one\ntwo\n"
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        text = "".join(archive.read(name).decode() for name in archive.namelist() if name.endswith(".md"))
    assert "secret" not in text and "Grading" not in text and "more for students" in text


@pytest.mark.parametrize("documents, words", [
    ({"docs/data.md": f"a\n{handout.STAFF_BEGIN}\nsecret\n"}, ["docs/data.md", "line 2", "never closed"]),
    ({"docs/data.md": f"a\n{handout.STAFF_END}\nb\n"}, ["docs/data.md", "line 2", "without"]),
    ({"README.md": f"{handout.STAFF_BEGIN}\n{handout.STAFF_BEGIN}\nsecret\n{handout.STAFF_END}\n"},
     ["README.md", "line 2", "inside"]),
    # Staff markers where nothing strips them: a handed-out Markdown file that is not stripped, a
    # marker inside a line.
    ({"answers.md": f"a\n{handout.STAFF_BEGIN}\nsecret\n{handout.STAFF_END}\n"},
     ["answers.md", "staff marker", "nothing zipped"]),
    ({"docs/data.md": f"a <b>{handout.STAFF_BEGIN}</b> secret {handout.STAFF_END}\n"},
     ["docs/data.md", "staff marker", "nothing zipped"]),
])
def test_staff_text_that_would_not_be_stripped_is_refused_in_one_line(tmp_path, capsys, documents, words):
    kit = _small_kit(tmp_path, documents)
    assert handout.main([str(tmp_path / "out"), "--kit", str(kit), "--zip", str(tmp_path / "out.zip")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "out.zip").exists()


def test_a_solution_line_copied_into_a_docs_file_is_caught_and_nothing_zipped(tmp_path, capsys):
    line = handout.solution_lines(REPO_ROOT)[0]
    kit = _small_kit(tmp_path, {"docs/configuration.md": f"# Hints\n\n    {line}\n"})
    assert handout.main([str(tmp_path / "out"), "--kit", str(kit), "--zip", str(tmp_path / "out.zip")]) == 2
    err = capsys.readouterr().err
    assert "docs/configuration.md" in err and "solution text" in err and "nothing zipped" in err
    assert not (tmp_path / "out.zip").exists()


def test_every_generated_python_source_parses(generated):
    out, _ = generated
    sources = list(out.rglob("*.py"))
    assert len(sources) > 20
    for path in sources:
        ast.parse(path.read_text(), filename=str(path))


def test_grad_check_in_the_student_kit_says_not_implemented_and_fails_without_a_traceback(generated, tmp_path):
    kit = _copy_with_extension(generated[0], tmp_path)
    result = _run(["grad_check.py", "configs/logreg.yaml"], kit)
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("not implemented yet: FCLayer.ComputeUp") and lines[-1] == "FAILED"
    assert "Traceback" not in result.stderr + result.stdout


def test_play_with_convolutions_runs_in_the_student_kit(generated, tmp_path):
    kit = _copy_with_extension(generated[0], tmp_path)
    png = tmp_path / "conv.png"
    result = _run(["play_with_convolutions.py", "--out", png], kit)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _paste_reference_regions(kit, pieces=ALL_PIECES):
    """Paste the reference kit's code of `pieces` into the student kit `kit` (a 2015-style
    answer: the same names, the same few lines)."""
    for name in STUDENT_FILES:
        reference = (REPO_ROOT / name).read_text().splitlines(keepends=True)
        student = (kit / name).read_text().splitlines(keepends=True)
        ref_regions = {r.piece: r for r in marked_regions("".join(reference), name)}
        for blank in reversed(marked_regions("".join(student), name)):
            if blank.piece in pieces:
                ref = ref_regions[blank.piece]
                student[blank.first - 1:blank.last] = reference[ref.first - 1:ref.last]
        (kit / name).write_text("".join(student))


@pytest.mark.parametrize("config", [pytest.param(name, marks=() if name in FAST_CONFIGS else pytest.mark.slow)
                                    for name in HANDED_OUT_CONFIGS])
def test_pasting_the_reference_regions_back_makes_the_config_pass(config, generated, tmp_path):
    kit = _copy_with_extension(generated[0], tmp_path)
    _paste_reference_regions(kit)
    for name in STUDENT_FILES:
        assert (kit / name).read_bytes() == (REPO_ROOT / name).read_bytes()
    result = _run(["grad_check.py", f"configs/{config}"], kit)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "PASSED"


@pytest.mark.slow
def test_the_extension_builds_in_the_student_kit(generated, tmp_path):
    kit = tmp_path / "kit"
    shutil.copytree(generated[0], kit)
    result = _run(["setup.py", "build_ext", "--inplace"], kit, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert glob.glob(str(kit / "convolutions*.so"))
    result = _run(["play_with_convolutions.py", "--out", tmp_path / "conv.png"], kit)
    assert result.returncode == 0, result.stderr


def test_a_folder_that_is_not_empty_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("keep me")
    assert handout.main([str(tmp_path), "--no-zip"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(tmp_path) in err and "not an empty folder" in err
    assert (tmp_path / "old.txt").read_text() == "keep me"


def test_a_kit_without_its_markers_is_refused_naming_the_file(tmp_path, capsys):
    kit = tmp_path / "kit"
    kit.mkdir()
    for name in STUDENT_FILES:
        shutil.copy2(REPO_ROOT / name, kit / name)
    source = (kit / "fc_layer.py").read_text()
    (kit / "fc_layer.py").write_text(source.replace("# END SOLUTION", "# (end)", 1))
    assert handout.main([str(tmp_path / "out"), "--kit", str(kit)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "fc_layer.py" in err
    assert not (tmp_path / "out").exists()


def test_staff_only_blocks_of_the_readme_are_removed():
    text = f"a\n{handout.STAFF_BEGIN}\nsecret\n{handout.STAFF_END}\nb\n"
    assert handout.strip_staff_only(text) == "a\nb\n"


def test_the_readme_and_the_docs_are_the_documents_stripped():
    for rel in ("README.md", "docs/speed.md", "docs/course-tools.md"):
        assert handout.is_staff_stripped(rel), rel
    for rel in ("tools/README.md", "docs/figure.png", "notes.md", "fc_layer.py"):
        assert not handout.is_staff_stripped(rel), rel


def test_help_exits_0():
    result = _run(["tools/handout.py", "--help"], REPO_ROOT, timeout=60)
    assert result.returncode == 0 and "OUT_DIR" in result.stdout


# The student's path: the kit's own README, test suite and scripts, blank and answered.

def _student_readme(kit):
    return (kit / "README.md").read_text()


def _code_blocks(markdown):
    return re.findall(r"^```(?:bash)?\n(.*?)^```", markdown, flags=re.M | re.S)


def test_student_only_blocks_are_shown_in_the_student_kit_and_hidden_in_a_comment_for_staff(tmp_path):
    text = (f"# Kit\n{handout.STAFF_BEGIN}\nstaff start\n{handout.STAFF_END}\n{handout.STUDENT_BEGIN}\n"
            f"student start\n\n```bash\npython grad_check.py\n```\n{handout.STUDENT_END}\nfor all\n")
    assert handout.strip_staff_only(text) == "# Kit\nstudent start\n\n```bash\npython grad_check.py\n```\nfor all\n"
    # In the staff's copy the student block is one HTML comment: nothing in it shows.
    comment = text[text.index(handout.STUDENT_BEGIN):text.index(handout.STUDENT_END) + len(handout.STUDENT_END)]
    assert comment.startswith("<!--") and comment.endswith("-->") and comment.count("-->") == 1
    kit = _small_kit(tmp_path, {"README.md": text})
    handout.make_handout(tmp_path / "out", None, kit)
    assert (tmp_path / "out/README.md").read_text() == handout.strip_staff_only(text)


@pytest.mark.parametrize("text, words", [
    (f"{handout.STUDENT_BEGIN}\nstudent\n", ["line 1", "never closed"]),
    (f"a\n{handout.STUDENT_END}\n", ["line 2", "without"]),
    (f"{handout.STUDENT_BEGIN}\n{handout.STAFF_BEGIN}\nx\n{handout.STAFF_END}\n{handout.STUDENT_END}\n",
     ["line 2", "inside"]),
    (f"{handout.STAFF_BEGIN}\nx\n{handout.STUDENT_END}\n", ["line 3", "without"]),
    (f"{handout.STUDENT_BEGIN}\n<!-- a comment -->\n{handout.STUDENT_END}\n", ["line 2", "-->"]),
])
def test_a_student_block_that_would_show_wrongly_is_refused_naming_the_line(text, words):
    with pytest.raises(handout.HandoutError) as error:
        handout.strip_staff_only(text, "README.md")
    for word in ["README.md", *words]:
        assert word in str(error.value), (word, str(error.value))


def test_the_student_kit_ships_only_what_a_student_runs_or_reads(generated):
    out, _ = generated
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    staff = sorted(rel for rel in (p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.rglob("*") if p.is_file())
                   if handout.is_staff_only(rel))
    for rel in ("tools/bench.py", "tools/analyze.py", "tools/autograde.py", "tools/handout.py", "tools/leaks.py",
                "tools/grader/grading.py", "tools/benchmark/command.py", "tools/course/handout.py",
                "tools/course/leaks.py", "tools/course/analyze.py", "tests/kit/test_fuzz.py",
                "tests/tools/test_bench.py", "tests/kit/test_builds.py", "tests/kit/test_reliability.py",
                "tests/tools/test_analyze.py",
                "tests/tools/autograde_helpers.py", "configs/usps_best.yaml", "configs/lenet.yaml", "docs/speed.md",
                "docs/grading.md", "docs/answer-key.md"):
        assert rel in staff, rel  # each is in the reference kit, and counted as staff material
    assert not set(staff) & files, sorted(set(staff) & files)
    # What is left: the kit, the assignment's configs, the kit's tests, the student's tools.
    assert sorted(f for f in files if f.startswith("configs/")) == [f"configs/{c}" for c in HANDED_OUT_CONFIGS]
    assert not any("bench" in f or "autograde" in f or "fuzz" in f for f in files)


def test_a_file_the_handout_list_does_not_name_is_staff_only_and_not_handed_out(tmp_path):
    new = {"tools/new_staff_tool.py": "print('staff')\n", "tools/course/new_helper.py": "X = 1\n",
           "tests/kit/test_new.py": "def test_new():\n    pass\n", "tests/tools/test_new_tool.py": "",
           "docs/new.md": "# New\n", "notes.md": "notes\n", "configs/new.yaml": "max_epochs: 1\n",
           "plumbing/sub/deep.py": "", "kernels/new/deep.h": ""}
    handed = {"plumbing/new_module.py": "Y = 2\n", "kernels/new_kernel.h": "/* */\n", "data/new_data.py": ""}
    for rel in new:
        assert handout.is_staff_only(rel), rel
    for rel in handed:
        assert handout.is_handed_out(rel), rel
    kit = _small_kit(tmp_path, {**new, **handed})
    handout.make_handout(tmp_path / "out", None, kit)
    files = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert files == {*STUDENT_FILES, *handed}


def test_every_name_the_handout_list_gives_is_a_file_of_the_kit():
    files = [p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.rglob("*") if p.is_file()]
    for pattern in handout.HANDED_OUT:
        assert any(handout.matches(rel, pattern) for rel in files), pattern


PATH_LIKE = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|pyx|h|yaml|md|toml|in))\b")
GENERATED = ("runs/", "data/usps.npz", ".venv")


def test_the_student_readme_names_only_files_the_student_kit_has(generated):
    out, _ = generated
    readme = _student_readme(out)
    named = set(PATH_LIKE.findall(readme)) | set(re.findall(r"\]\(([^)#]+)\)", readme))
    assert {"fc_layer.py", "conv_layer.py", "grad_check.py", "configs/logreg.yaml"} <= named
    for rel in sorted(named):
        if rel.startswith(GENERATED) or rel.startswith("http"):
            continue
        found = (out / rel).exists() or (out / "tools" / rel).exists() or (out / "configs" / rel).exists()
        assert found, f"the student README names {rel}, which the student kit lacks"
    for word in ("handout.py", "autograde", "bench", "analyze.py", "usps_best", "2 to 4 minutes", "STAFF"):
        assert word not in readme, word
    assert len(readme.splitlines()) < 250


def test_every_link_of_the_student_kits_documents_leads_to_a_file_it_has(generated):
    out, _ = generated
    documents = sorted(out.rglob("*.md"))
    assert len(documents) > 5
    for doc in documents:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            path = target.split("#")[0]
            if path and not path.startswith("http"):
                assert (doc.parent / path).exists(), f"{doc.relative_to(out)} links to {target}, not in the kit"


def test_the_student_quick_start_installs_and_fetches_then_shows_the_expected_first_state(generated, tmp_path,
                                                                                         usps_mirror):
    readme = _student_readme(generated[0])
    first, second = _code_blocks(readme[readme.index("## Quick start"):])[0].strip().splitlines()
    # One command installs, builds and fetches the data, and trains nothing before the pieces exist.
    assert "pip install -e" in first and first.endswith("&& python data/usps.py") and "train.py" not in first
    assert second == "python grad_check.py configs/logreg.yaml"
    assert "not implemented yet: FCLayer.ComputeUp" in readme and "That is expected" in readme
    kit = _copy_with_extension(generated[0], tmp_path)
    # The first command's last step, from the mirror the tests use (no network here).
    fetched = _run(["data/usps.py"], kit, USPS_MIRROR=str(usps_mirror))
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip().splitlines()[-1].startswith(f"usps: wrote {kit / 'data' / 'usps.npz'}")
    checked = _run(second.split()[1:], kit)
    assert checked.returncode == 1
    assert checked.stdout.strip().splitlines()[-2:] == [
        "not implemented yet: FCLayer.ComputeUp: write the forward pass in fc_layer.py", "FAILED"]


def test_train_and_evaluate_in_the_student_kit_stop_in_one_line_naming_the_piece_and_its_file(
        generated, tmp_path, small_npz):
    config = write_config(tmp_path, "logreg.yaml", small_npz, max_epochs=1)
    assert _run(["train.py", config], REPO_ROOT).returncode == 0  # a checkpoint, from the reference kit
    kit = _copy_with_extension(generated[0], tmp_path)
    for script in ("train.py", "evaluate.py"):
        result = _run([script, config], kit)
        assert result.returncode == 1, (script, result.stderr)
        assert result.stderr.strip().splitlines() == [
            f"{script}: error: not written yet: FCLayer.ComputeUp: write the forward pass in fc_layer.py"]


def test_the_student_kits_own_tests_pass_and_report_each_unwritten_piece_as_not_implemented_yet(
        generated, tmp_path, usps_mirror):
    kit = _copy_with_extension(generated[0], tmp_path)
    code, output = _pytest(kit, USPS_MIRROR=str(usps_mirror))  # USPS as the student's own copy would have it
    counts = _summary(output)
    assert code == 0 and not counts.get("failed") and not counts.get("error") and not counts.get("errors"), \
        output[-3000:]
    assert counts["passed"] > 200 and counts["xfailed"] > 50
    reasons = _xfail_reasons(output)
    assert len(reasons) == counts["xfailed"]
    assert set(reasons) <= {f"not implemented yet: {piece}" for piece in ALL_PIECES}, set(reasons)
    assert "not implemented yet: FCLayer.ComputeUp" in reasons and "not implemented yet: ConvLayer.ComputeUp" in reasons
    assert "expected until you write these pieces" in output
    # The same without pytest's capture and tracebacks (-s --tb=no): the scripts' tests run
    # train.main in-process, which catches the NotImplementedError and prints its one line.
    code, output = _pytest(kit, "-s", "--tb=no", "tests/kit/test_scripts.py", "-k", "main",
                           USPS_MIRROR=str(usps_mirror))
    counts = _summary(output)
    assert code == 0 and counts["xfailed"] >= 3 and not counts.get("failed"), output[-3000:]


@pytest.mark.parametrize("piece", ALL_PIECES)
def test_piece_runs_the_tests_of_one_piece_which_wait_for_it_then_pass(piece, generated, tmp_path):
    kit = _copy_with_extension(generated[0], tmp_path)
    _paste_reference_regions(kit, ALL_PIECES[:ALL_PIECES.index(piece)])  # the pieces before it are written
    code, output = _pytest(kit, "--piece", piece)
    waiting = _summary(output)  # a test that does not reach the piece (a bad config refused) passes already
    assert code == 0 and set(waiting) <= {"passed", "xfailed", "deselected"} and waiting["xfailed"] >= 2, output[-3000:]
    assert set(_xfail_reasons(output)) == {f"not implemented yet: {piece}"}
    assert f"not implemented yet: {piece} ({PIECE_FILES[piece]})" in output
    _paste_reference_regions(kit, [piece])
    code, output = _pytest(kit, "--piece", piece)
    done = _summary(output)
    assert code == 0 and done["passed"] == waiting["xfailed"] + waiting.get("passed", 0), output[-3000:]
    assert "xfail" not in output, output[-3000:]


def test_a_wrong_piece_is_a_failure_not_an_xfail(generated, tmp_path):
    kit = _copy_with_extension(generated[0], tmp_path)
    _paste_reference_regions(kit, ["FCLayer.ComputeUp"])
    source = (kit / "fc_layer.py").read_text()
    region = {r.piece: r for r in marked_regions(source, "fc_layer.py")}["FCLayer.ComputeUp"]
    lines = source.splitlines(keepends=True)
    indent = lines[region.first - 1][:len(lines[region.first - 1]) - len(lines[region.first - 1].lstrip())]
    lines[region.first - 1:region.last] = [f"{indent}output = inputs.reshape(inputs.shape[0], -1)[:, :1] * 0\n"]
    (kit / "fc_layer.py").write_text("".join(lines))
    code, output = _pytest(kit, "--piece", "FCLayer.ComputeUp")
    counts = _summary(output)
    assert code == 1 and counts.get("failed", 0) >= 1 and not counts.get("xfailed"), output


@pytest.mark.slow
def test_the_student_kit_with_a_2015_style_answer_pasted_in_passes_all_its_tests(generated, tmp_path):
    kit = _copy_with_extension(generated[0], tmp_path)
    _paste_reference_regions(kit)
    code, output = _pytest(kit)
    counts = _summary(output)
    assert code == 0 and counts["passed"] > 300 and not counts.get("xfailed") and not counts.get("failed"), \
        output[-3000:]


@pytest.mark.parametrize("tool", ["tools/report.py", "tools/pool_ties.py", "tools/submit.py"])
def test_every_tool_of_the_student_kit_runs(tool, generated, tmp_path):
    kit = _copy_with_extension(generated[0], tmp_path)
    result = _run([tool, "--help"], kit, timeout=60)
    assert result.returncode == 0 and "usage" in result.stdout, result.stderr[-2000:]
