"""tools/leaks.py: give-aways planted in a generated student kit are each caught, naming the
file and the line; the real student kit has none; tools/handout.py zips nothing when the kit
it writes has one. The planted text comes from the reference kit and the answer key."""

import re
import shutil

import pytest
from conftest import CONFIG_DIR, REPO_ROOT

from tools.course import analyze, handout, leaks
from tools.course.regions import marked_regions


@pytest.fixture(scope="module")
def student_kit(tmp_path_factory):
    """A student kit written by handout.py (which runs the leak check: it passes), and its secrets."""
    out = tmp_path_factory.mktemp("leaks") / "a2_student"
    handout.make_handout(out, None)
    return out, leaks.Secrets(out)


def _solution_lines():
    return [line for name in ("fc_layer.py", "conv_layer.py")
            for region in marked_regions((REPO_ROOT / name).read_text(), name) for line in region.lines]


def _line(fragment):
    return next(line.strip() for line in _solution_lines() if fragment in line)


def _key_row(model):
    text = (REPO_ROOT / leaks.ANSWER_KEY).read_text()
    return next(line for line in text.splitlines() if line.startswith(f"| {model} |"))


def _q9_total(model):
    _, counts = analyze.analyze(str(CONFIG_DIR / f"{model}.yaml"))
    return analyze.totals(counts)["parameters"]


def _swap(line, old, new, count=1):
    changed = line.replace(old, new, count)
    assert changed != line
    return changed


PLANTS = {  # name: (file, text to add, what the message says)
    "a results row in the README": ("README.md", lambda: _key_row("convnet2"), "a number of the answer key"),
    "a results number in prose": (
        "docs/configuration.md", lambda: f"convnet1 reaches {_key_row('convnet1_method1').split('|')[-2].strip()}.",
        "a number of the answer key"),
    "a question 9 total with separators": (
        "docs/course-tools.md", lambda: f"net_2layer has {analyze.fmt(_q9_total('net_2layer'))} parameters.",
        "a number of the answer key"),
    "a question 9 total without separators": (
        "tests/kit/test_net.py", lambda: f"# convnet2: {_q9_total('convnet2')} parameters",
        "a number of the answer key"),
    "a solution line in a code span": ("README.md", lambda: f"Write `{_line('dw = deriv.T')}`.", "within 2 tokens"),
    "a solution line with one token changed": (
        "docs/architecture.md", lambda: _swap(_line("output = inputs @"), "output", "out"), "within 2 tokens"),
    "a solution line with two tokens changed": (
        "docs/architecture.md", lambda: _swap(_swap(_line("w_flip[np.newaxis]"), "outputs", "out"), "convolve",
                                              "correlate"), "within 2 tokens"),
    "a solution comment": ("README.md", lambda: _line("full padding").lstrip("# "), "within 2 tokens"),
    "a solution wrapped across two lines": (
        "README.md", lambda: _line("deriv_flip[:, :, np.newaxis]").replace(", deriv_flip", ",\nderiv_flip"),
        "within 2 tokens"),
    "a solution expression in prose": (
        "docs/architecture.md", lambda: "the derivatives, as `deriv[:, :, np.newaxis]`, meet the filters",
        "the solution's expression"),
    "method 2's broadcasting shapes": (
        "docs/configuration.md", lambda: "| conv1 | (100,1,1,16,16) * (1,16,1,3,3) pad 1 -> (100,16,1,16,16) |",
        "five-axis shape"),
    "the solution in a test": (
        "tests/kit/test_conv_layer.py", lambda: "    expected = " + _line("w_flip[np.newaxis]").split("= ", 1)[1],
        "within 2 tokens"),
}


@pytest.mark.parametrize("name", PLANTS)
def test_each_planted_give_away_is_caught_naming_the_file_and_the_line(name, student_kit):
    out, secrets = student_kit
    rel, text, words = PLANTS[name]
    original = (out / rel).read_text()
    (out / rel).write_text(original + "\n" + text() + "\n")
    try:
        found = leaks.find_leaks(out, secrets)
    finally:
        (out / rel).write_text(original)
    planted = range(len(original.splitlines()) + 1, len(original.splitlines()) + 2 + len(text().splitlines()))
    assert found, name
    assert {leak.path for leak in found} == {rel} and {leak.line for leak in found} <= set(planted)
    assert any(words in leak.what for leak in found), [str(leak) for leak in found]


def test_three_tokens_changed_is_no_longer_a_copy(student_kit, tmp_path):
    out, secrets = student_kit
    line = _swap(_swap(_swap(_line("output = inputs @"), "output", "o"), "@", "*"), "self.b_", "c")
    kit = tmp_path / "kit"
    shutil.copytree(out, kit)
    (kit / "docs/architecture.md").write_text(line + "\n")
    assert leaks.find_leaks(kit, secrets) == []


def test_the_real_student_kit_has_no_give_away_and_every_secret_kind_is_looked_for(student_kit):
    out, secrets = student_kit
    assert leaks.find_leaks(out, secrets) == []
    assert str(_q9_total("convnet2")) in secrets.numbers and len(secrets.lines) >= 8 and secrets.expressions


def test_a_number_the_kit_itself_uses_is_not_an_answer(student_kit):
    out, secrets = student_kit
    assert "1024" in (REPO_ROOT / leaks.ANSWER_KEY).read_text()
    assert "1024" not in secrets.numbers  # maxpool1's units, but also the kit's own code has it


def test_handout_stops_in_one_line_and_zips_nothing_when_the_kit_leaks(tmp_path, capsys):
    kit = tmp_path / "kit"
    for rel in handout.kit_files(REPO_ROOT):
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, kit / rel)
    (kit / leaks.ANSWER_KEY).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / leaks.ANSWER_KEY, kit / leaks.ANSWER_KEY)  # staff-only: what the leaks are of
    readme = (kit / "README.md").read_text()
    (kit / "README.md").write_text(readme + "\n" + _key_row("logreg") + "\n")
    zip_path = tmp_path / "out.zip"
    assert handout.main([str(tmp_path / "out"), "--kit", str(kit), "--zip", str(zip_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    handed_out = (tmp_path / "out" / "README.md").read_text().splitlines()  # without the staff blocks
    at = handed_out.index(_key_row("logreg")) + 1
    assert re.search(rf"out/README\.md, line {at}: holds \S+, a number of the answer key", err)
    assert err.endswith("nothing zipped") and not zip_path.exists()


def test_the_command_line_lists_the_leaks_and_exits_1(student_kit, tmp_path, capsys):
    out, _ = student_kit
    kit = tmp_path / "kit"
    shutil.copytree(out, kit)
    assert leaks.main([str(kit)]) == 0
    (kit / "notes.txt").write_text(_key_row("net_1layer") + "\n")
    capsys.readouterr()
    assert leaks.main([str(kit)]) == 1
    assert capsys.readouterr().out.startswith("notes.txt, line 1: holds ")
    assert leaks.main([str(tmp_path / "nowhere")]) == 2
