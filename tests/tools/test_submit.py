"""tools/submit.py: the document to print (tables from checkpoints, the answers file's answers,
then the code) and the grader's zip, for a set of models some of which are trained (in tmp:
three short trainings on a slice of USPS). The slow test prints the document in a headless
Chromium and counts the analysis's pages."""

import html.parser
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO_ROOT, write_config

import evaluate
import train
from tools.course import submit
from tools.course.regions import marked_regions

MODELS = ("logreg", "net_1layer", "net_2layer", "convnet1_method1", "convnet1_method2", "convnet2")
TRAINED = {"logreg": 3, "net_1layer": 1, "convnet1_method1": 1}  # model: epochs
Q1 = "## Part 1, question 8: the best model"
ANSWER_Q1 = "I pick **net_1layer**: its validation accuracy is the best. <script>alert(1)</script>"
ANSWER_Q9 = "- fully connected: `net_1layer`\n- convolutional: convnet1"


def with_answers(text, answers):
    """The answers file `text` with each {heading: answer} written under its heading."""
    for heading, answer in answers.items():
        assert heading in text
        text = text.replace(heading + "\n", heading + "\n\n" + answer + "\n", 1)
    return text


class Document(html.parser.HTMLParser):
    """The headings, the text of each answer box, each table's rows, and the code blocks."""

    def __init__(self, text):
        super().__init__()
        self.headings, self.answers, self.tables, self.code = [], [], [], []
        self._in, self._depth = [], 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self._in.append((tag, dict(attrs).get("class")))
        if tag in ("h2", "h3"):
            self.headings.append("")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
        elif tag == "div" and dict(attrs).get("class") == "answer":
            self.answers.append("")
        elif tag == "pre":
            self.code.append("")

    def handle_endtag(self, tag):
        while self._in and self._in.pop()[0] != tag:
            pass

    def handle_data(self, data):
        tags = [t for t, _ in self._in]
        if tags and tags[-1] in ("h2", "h3"):
            self.headings[-1] += data
        if "td" in tags or "th" in tags:
            self.tables[-1][-1][-1] += data
        if ("div", "answer") in self._in:
            self.answers[-1] += data
        if "pre" in tags:
            self.code[-1] += data


@pytest.fixture(scope="module")
def submission(tmp_path_factory, small_npz):
    unwritten = [heading for heading, _ in submit.student_code(REPO_ROOT)[:2] if heading.endswith("not written yet")]
    if unwritten:  # the student kit before the FC pieces are written: nothing can be trained
        pytest.skip(f"not implemented yet: {unwritten[0]}")
    configs = tmp_path_factory.mktemp("configs")
    for model in MODELS:
        write_config(configs, f"{model}.yaml", small_npz)
    for model, epochs in TRAINED.items():
        assert train.main([str(configs / f"{model}.yaml"), "--epochs", str(epochs), "--no-display"]) == 0
    work = tmp_path_factory.mktemp("submission")
    answers = work / "answers.md"
    text = with_answers(submit.template(), {Q1: ANSWER_Q1, "## Part 2, question 9: learnable parameters": ANSWER_Q9})
    answers.write_text(text.replace("| conv1 |  |", "| conv1 | 16x16 |"))
    out = work / "out"
    assert submit.main(["--configs", str(configs), "--out", str(out), "--answers", str(answers),
                        "--name", "Ada Lovelace"]) == 0
    return configs, out, answers


def _run(configs, out, answers, *more):
    return submit.main(["--configs", str(configs), "--out", str(out), "--answers", str(answers), *more])


def test_the_folder_holds_the_document_and_the_zip_only(submission):
    _, out, _ = submission
    assert {p.name for p in out.iterdir()} == {"submission.html", "a2_code.zip"}


def test_the_zip_holds_exactly_the_two_files_the_grader_takes(submission):
    _, out, _ = submission
    with zipfile.ZipFile(out / "a2_code.zip") as archive:
        assert sorted(archive.namelist()) == ["conv_layer.py", "fc_layer.py"]
        for name in archive.namelist():
            assert archive.read(name) == (REPO_ROOT / name).read_bytes()


def test_the_grader_reads_the_two_files_from_the_zip(submission):
    submissions = pytest.importorskip("tools.grader.submissions",
                                      reason="the grader is staff material, not in the student kit")
    _, out, _ = submission
    found = submissions.read_submission(out / "a2_code.zip")
    assert found == {name: (REPO_ROOT / name).read_text() for name in ("fc_layer.py", "conv_layer.py")}


@pytest.mark.slow
def test_the_grader_gives_the_reference_zip_full_marks(submission, tmp_path):
    pytest.importorskip("tools.grader.submissions", reason="the grader is staff material, not in the student kit")
    from autograde_helpers import run_autograde, sandbox_problem, unsafe_problem

    _, out, _ = submission
    unsafe = []
    if sandbox_problem():
        if unsafe_problem():
            pytest.skip(f"no sandbox ({sandbox_problem()}), and no grading without one ({unsafe_problem()})")
        unsafe = ["--unsafe-no-sandbox"]
    students, _, _ = run_autograde([out / "a2_code.zip"], tmp_path / "grades", "--jobs", "1", *unsafe)
    assert students["a2_code"]["total"] == students["a2_code"]["max"] == 15


def test_the_code_part_is_the_four_regions_and_nothing_else(submission):
    _, out, _ = submission
    doc = Document((out / "submission.html").read_text())
    expected = []
    for name in ("fc_layer.py", "conv_layer.py"):
        expected += [r.text for r in marked_regions((REPO_ROOT / name).read_text(), name)]
    assert len(expected) == 4 and doc.code == expected
    assert "def ComputeUp" not in "".join(doc.code) and "ApplyActivation" not in "".join(doc.code)


def test_the_code_starts_on_a_new_page_and_no_heading_is_printed_apart_from_its_box(submission):
    _, out, _ = submission
    text = (out / "submission.html").read_text()
    css = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    assert re.search(r"\.code \{[^}]*break-before: page", css)
    assert re.search(r"h2, h3 \{[^}]*break-after: avoid", css)
    assert re.search(r"\.question[^{]*\{[^}]*break-inside: avoid", css)
    analysis, code = text.split('<section class="code">')
    # Every heading of a question or a piece opens the unbreakable block that holds its box.
    assert len(re.findall(r"<h3>", text)) == len(re.findall(r'<div class="question"><h3>', text)) == 10
    assert "<h3>FCLayer.ComputeUp" in code and "Question 8: the best model" in analysis


def test_the_answers_are_printed_under_their_questions_escaped(submission):
    _, out, _ = submission
    text = (out / "submission.html").read_text()
    doc = Document(text)
    assert "Question 8: the best model" in doc.headings
    assert doc.answers[0] == "I pick net_1layer: its validation accuracy is the best. <script>alert(1)</script>"
    assert "<strong>net_1layer</strong>" in text and "<script>" not in text
    assert "<li>fully connected: <code>net_1layer</code></li>" in text
    assert doc.answers[1] == doc.answers[4] == "Not answered."  # question 7 and the feedback


def test_the_part1_table_has_evaluate_py_numbers_and_the_untrained_model_its_command(submission, capsys):
    configs, out, _ = submission
    tables = Document((out / "submission.html").read_text()).tables
    part1 = {row[0]: row[1:] for row in tables[0][1:]}
    for model in ("logreg", "net_1layer"):
        capsys.readouterr()
        assert evaluate.main([str(configs / f"{model}.yaml")]) == 0
        ce, acc = (line.split() for line in capsys.readouterr().out.strip().splitlines()[-2:])
        assert part1[model][0::2] == [ce[i] for i in (3, 5, 7)]
        assert part1[model][1::2] == [acc[i] for i in (2, 4, 6)]
    assert part1["net_2layer"] == ["-"] * 6
    assert f"python train.py {configs / 'net_2layer.yaml'}" in (out / "submission.html").read_text()


def test_part2_uses_convnet1_method1_when_only_it_is_trained(submission):
    _, out, _ = submission
    tables = Document((out / "submission.html").read_text()).tables
    assert [row[0] for row in tables[1][1:]] == ["convnet1_method1", "convnet2"]
    assert tables[1][2][1:] == ["-"] * 6


def test_question_8s_table_is_the_students_own(submission):
    _, out, _ = submission
    q8 = Document((out / "submission.html").read_text()).tables[2]
    assert [row[0] for row in q8] == ["layer", *submit.Q8_LAYERS]
    assert [cell for row in q8[1:] for cell in row[1:]] == ["16x16"] + [""] * 29


def test_the_answers_file_is_made_when_missing_and_never_rewritten(submission, tmp_path, capsys):
    configs, _, _ = submission
    answers = tmp_path / "answers.md"
    assert _run(configs, tmp_path / "out", answers) == 0
    assert answers.read_text() == submit.template()
    assert f"wrote {answers}" in capsys.readouterr().out
    answers.write_text(with_answers(answers.read_text(), {Q1: "Mine."}))
    before = answers.read_bytes(), os.stat(answers).st_mtime_ns
    assert _run(configs, tmp_path / "out", answers) == 0
    assert (answers.read_bytes(), os.stat(answers).st_mtime_ns) == before
    assert "Mine." in (tmp_path / "out" / "submission.html").read_text()
    assert f"wrote {answers}" not in capsys.readouterr().out


def test_the_shipped_answers_file_is_the_template():
    assert (REPO_ROOT / "answers.md").read_text() == submit.template()


def test_unanswered_questions_are_named(submission, capsys):
    configs, out, answers = submission
    assert _run(configs, out, answers) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("not answered yet"))
    assert line.endswith(": Part 2, question 7: convolutional or fully connected")  # Q8's table is started


def _line(heading):
    return submit.template().splitlines().index(heading) + 1


@pytest.mark.parametrize("change,words", [
    (lambda t: t.replace("## Part 2, question 7", "## Part 2, question 77"),
     f"line {_line('## Part 2, question 7: convolutional or fully connected')}: unknown heading"),
    (lambda t: t + "\n" + Q1 + "\n", f"is there twice (also line {_line(Q1)})"),
])
def test_a_heading_that_is_not_a_question_gives_one_line_and_exit_2(submission, tmp_path, capsys, change, words):
    configs, _, _ = submission
    answers = tmp_path / "answers.md"
    answers.write_text(change(submit.template()))
    assert _run(configs, tmp_path / "out", answers) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(answers) in err and words in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["missing configs", "answers is a folder", "answers not UTF-8", "output is a folder",
                                  "output is the answers file", "--pdf without a browser"])
def test_bad_input_gives_one_line_and_exit_2_and_writes_nothing(submission, tmp_path, capsys, monkeypatch, kind):
    configs, _, answers = submission
    out, more = tmp_path / "out", []
    if kind == "missing configs":
        configs = tmp_path / "nowhere"
    elif kind == "answers is a folder":
        answers = tmp_path
    elif kind == "answers not UTF-8":
        answers = tmp_path / "answers.md"
        answers.write_bytes(submit.template().encode("utf-16"))
    elif kind == "output is a folder":
        (out / "submission.html").mkdir(parents=True)
    elif kind == "output is the answers file":
        out.mkdir()
        answers = out / "submission.html"
        answers.write_text(submit.template())
    else:
        monkeypatch.setattr(submit, "find_browser", lambda: None)
        more = ["--pdf"]
    assert _run(configs, out, answers, *more) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("submit.py: error:")
    assert not (out / "a2_code.zip").exists()


def test_submit_runs_without_the_staff_tools(submission, tmp_path):
    """In the student kit there is no tools/analyze.py: submit.py must not need it."""
    configs, _, answers = submission
    code = ("import sys; sys.modules['tools.analyze'] = None; from tools.course import submit; "
            f"sys.exit(submit.main(['--configs', {str(configs)!r}, '--out', {str(tmp_path / 'out')!r}, "
            f"'--answers', {str(answers)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a2_code.zip").is_file()


def test_markdown_tables_lists_and_fenced_code():
    out = submit.markdown_html("| a | b |\n| --- | --- |\n| 1 | `x<y` |\n\n- one\n  more\n- two\n\n"
                               "```\nz = 1\n\ny = 2\n```")
    assert out.splitlines()[0] == ("<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td>"
                                   "<td><code>x&lt;y</code></td></tr></tbody></table>")
    assert out.splitlines()[1] == "<ul><li>one more</li><li>two</li></ul>"
    assert "<pre>z = 1\n\ny = 2</pre>" in out


def test_page_count_counts_page_objects_not_the_page_tree():
    pdf = b"<< /Type /Catalog /Pages 2 0 R >> << /Type /Pages /Kids [3 0 R 4 0 R] >> << /Type /Page >> << /Type/Page >>"
    assert submit.count_pages(pdf) == 2


def test_a_kit_whose_files_lost_their_markers_still_gives_the_method_2_code(tmp_path):
    for name in ("fc_layer.py", "conv_layer.py"):
        source = (REPO_ROOT / name).read_text()
        (tmp_path / name).write_text("".join(line for line in source.splitlines(keepends=True)
                                             if "SOLUTION" not in line))
    pieces = submit.student_code(tmp_path)
    assert [heading.split(" ")[0] for heading, _ in pieces] == ["FCLayer.ComputeUp", "FCLayer.ComputeDown",
                                                               "ConvLayer.ComputeUp", "ConvLayer.ComputeDown"]
    assert all("found by ast" in heading for heading, _ in pieces)
    assert all("im2col" not in code for _, code in pieces[2:])


def test_help_exits_0():
    result = subprocess.run([sys.executable, "tools/submit.py", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and re.search(r"--answers", result.stdout)


# A full hand-in as a student would write it: every question answered at the length the handout
# expects (1 page is enough, 2 the limit).
FULL_ANSWERS = {
    Q1: "I would pick net_2layer: it has the best validation accuracy and the lowest validation cross "
        "entropy, and the validation set is the one meant for choosing between models (the test set stays "
        "untouched until the end). It also gets the highest training accuracy, having the most parameters, "
        "and here the highest test accuracy, though its lead over net_1layer on the test set is small.",
    "## Part 2, question 7: convolutional or fully connected":
        "The convolutional nets do better: both have a higher validation accuracy and a lower validation cross "
        "entropy than the three fully connected nets, and the test set agrees. I decided by the validation "
        "numbers, as in Part 1. A filter is shared across the image, so the convnets need fewer weights.",
    "## Part 2, question 8: the layers of convnet2":
        "Spatial sizes follow (n + 2p - k) / s + 1. Units are size x size x channels. A conv unit is connected "
        "to the k x k x C inputs under its window, less the padding zeros at the border, which are not units; a "
        "pooling unit to the 2 x 2 inputs of its own map; an FC unit to every input. Parameters: k x k x C x K "
        "for a conv layer, inputs x outputs for an FC layer, none for pooling.",
    "## Part 2, question 9: learnable parameters":
        "Best fully connected (net_2layer) and best convolutional (convnet1): counted from the shapes of "
        "the arrays in their checkpoint files, weights and biases of every layer.",
    "## Feedback (optional)": "Method 2 was the most valuable part; lining up the axes took the longest.",
}


@pytest.mark.slow
def test_printed_in_chromium_the_analysis_fits_in_two_pages_and_a_long_one_is_flagged(submission, tmp_path, capsys):
    if submit.find_browser() is None:
        pytest.skip(f"no Chromium or Chrome on PATH (looked for {', '.join(submit.BROWSERS)}); on Debian: "
                    "apt-get install -y chromium")
    configs, _, _ = submission
    answers = tmp_path / "answers.md"
    template = submit.template()
    answers.write_text(with_answers(template, FULL_ANSWERS))
    out = tmp_path / "out"
    assert _run(configs, out, answers, "--pdf") == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote") and ".pdf" in line)
    total, analysis = map(int, re.search(r"(\d+) pages, of which the analysis (\d+)", line).groups())
    assert total == submit.count_pages((out / "submission.pdf").read_bytes())
    assert 1 <= analysis <= submit.PAGE_LIMIT
    assert total > analysis  # the code is printed on pages of its own after the analysis
    # Each answer ten times as long: far over the limit, and submit.py says so.
    answers.write_text(with_answers(template, {h: " ".join([a] * 10) for h, a in FULL_ANSWERS.items()}))
    assert _run(configs, out, answers, "--pdf") == 0
    warning = capsys.readouterr().out.strip().splitlines()
    assert any(re.match(r"the analysis is \d+ pages, more than the handout's 2", w) for w in warning)


def test_a_kit_with_pieces_not_written_yet_is_said_so_and_exits_1(submission, tmp_path, capsys):
    configs, _, answers = submission
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(REPO_ROOT / "fc_layer.py", kit)
    source = (REPO_ROOT / "conv_layer.py").read_text()
    begin = source.index("# BEGIN SOLUTION")  # the first region: ConvLayer.ComputeUp
    end = source.index("# END SOLUTION", begin)
    indent = source[source.rindex("\n", 0, begin) + 1:begin]
    blank = f"# BEGIN SOLUTION\n{indent}raise NotImplementedError('ConvLayer.ComputeUp: write it')\n{indent}"
    (kit / "conv_layer.py").write_text(source[:begin] + blank + source[end:])
    capsys.readouterr()
    assert _run(configs, tmp_path / "out", answers, "--kit", str(kit)) == 1
    out = capsys.readouterr().out
    assert "not written yet: ConvLayer.ComputeUp (the printout and the zip hold them blank)" in out
    assert "FCLayer" not in out.split("not written yet:")[1]
    assert (tmp_path / "out" / "a2_code.zip").is_file()  # the draft is written all the same


def _editor_kit(folder, form):
    """A kit folder holding the reference's two files as an editor saved them (`form`), each
    with a line a wrong decoding would break."""
    folder.mkdir()
    for name in ("fc_layer.py", "conv_layer.py"):
        text = (REPO_ROOT / name).read_text() + "\nCHECK = 'é'  # Zoé\n"
        data = {"BOM, CRLF": lambda t: t.replace("\n", "\r\n").encode("utf-8-sig"),
                "latin-1 coding line": lambda t: ("# -*- coding: latin-1 -*-\n" + t).encode("latin-1"),
                "cp1252 on line 2, CR": lambda t: ("#!/usr/bin/env python\n# coding=cp1252\n" + t)
                .replace("\n", "\r").encode("cp1252"),
                "undeclared latin-1 in a comment only": lambda t: t.replace("'é'", "'e'").encode("latin-1")}[form](text)
        (folder / name).write_bytes(data)
    return folder


FORMS = ["BOM, CRLF", "latin-1 coding line", "cp1252 on line 2, CR", "undeclared latin-1 in a comment only"]


@pytest.mark.parametrize("form", FORMS)
def test_the_code_is_read_as_python_reads_it_whatever_the_editor_saved(tmp_path, form):
    pieces = submit.student_code(_editor_kit(tmp_path / "kit", form))
    reference = submit.student_code(REPO_ROOT)
    assert [code for _, code in pieces] == [code for _, code in reference]


@pytest.mark.parametrize("form", FORMS[1:3])
def test_a_kit_with_a_coding_line_is_handed_in_and_the_grader_reads_the_zip_the_same(submission, tmp_path, form):
    configs, _, answers = submission
    kit = _editor_kit(tmp_path / "kit", form)
    saved = {name: (kit / name).read_bytes() for name in ("fc_layer.py", "conv_layer.py")}
    assert _run(configs, tmp_path / "out", answers, "--kit", str(kit)) == 0
    assert {name: (kit / name).read_bytes() for name in saved} == saved  # the kit is only read
    with zipfile.ZipFile(tmp_path / "out" / "a2_code.zip") as archive:
        for name in ("fc_layer.py", "conv_layer.py"):
            assert archive.read(name) == saved[name]  # the bytes as saved
    submissions = pytest.importorskip("tools.grader.submissions", reason="the grader is staff material")
    found = submissions.read_submission(tmp_path / "out" / "a2_code.zip")
    assert all("CHECK = 'é'" in text for text in found.values())


@pytest.mark.parametrize("data,words", [("x = 'é'\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at line 1)"),
                                        ("x = 1\n".encode("utf-16"), "is saved as UTF-16"),
                                        (b"# coding: klingon\n", "names an encoding Python does not know")])
def test_a_kit_file_python_cannot_read_gives_one_line_and_exit_2(submission, tmp_path, capsys, data, words):
    configs, _, answers = submission
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(REPO_ROOT / "conv_layer.py", kit)
    (kit / "fc_layer.py").write_bytes(data)
    capsys.readouterr()
    assert _run(configs, tmp_path / "out", answers, "--kit", str(kit)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(kit / "fc_layer.py") in err and words in err, err
    assert not (tmp_path / "out" / "a2_code.zip").exists()
