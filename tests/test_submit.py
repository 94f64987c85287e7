"""tools/submit.py: the hand-in folder and its self-contained HTML file, for a set of models
some of which are trained (in tmp: three short trainings on a slice of USPS)."""

import base64
import html
import html.parser
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

import evaluate
import train
from conftest import REPO_ROOT, write_config
from tools import analyze, submit
from tools.regions import marked_regions

MODELS = ("logreg", "net_1layer", "net_2layer", "convnet1_method1", "convnet1_method2", "convnet2")
TRAINED = {"logreg": 3, "net_1layer": 1, "convnet1_method1": 1}  # model: epochs


@pytest.fixture(scope="module")
def submission(tmp_path_factory, small_npz):
    configs = tmp_path_factory.mktemp("configs")
    for model in MODELS:
        write_config(configs, f"{model}.yaml", small_npz)
    for model, epochs in TRAINED.items():
        assert train.main([str(configs / f"{model}.yaml"), "--epochs", str(epochs), "--no-display"]) == 0
    out = tmp_path_factory.mktemp("submission")
    assert submit.main(["--configs", str(configs), "--out", str(out), "--name", "Ada Lovelace"]) == 0
    return configs, out


def _evaluate(config, capsys):
    capsys.readouterr()
    assert evaluate.main([str(config)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-2:]
    ce, acc = (line.split() for line in lines)
    return [ce[i] for i in (3, 5, 7)], [acc[i] for i in (2, 4, 6)]


def _table_row(markdown, name):
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_the_folder_holds_the_html_the_markdown_the_code_and_two_curves(submission):
    _, out = submission
    assert {p.name for p in out.iterdir()} == {"submission.html", "submission.md", "code.txt",
                                               "part1_curves.png", "part2_curves.png"}
    for png in ("part1_curves.png", "part2_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_code_is_the_four_regions_and_nothing_else(submission):
    _, out = submission
    code = (out / "code.txt").read_text()
    expected = []
    for name in ("fc_layer.py", "conv_layer.py"):
        expected += [r.text for r in marked_regions((REPO_ROOT / name).read_text(), name)]
    assert len(expected) == 4
    body = [line for line in code.splitlines() if line.strip() and not line.startswith("# FCLayer.")
            and not line.startswith("# ConvLayer.")]
    assert body == [line for text in expected for line in text.splitlines() if line.strip()]
    html_text = (out / "submission.html").read_text()
    for text in expected:
        assert f"<pre><code>{html.escape(text)}</code></pre>" in html_text
    assert "def ComputeUp" not in html_text and "ApplyActivation" not in html_text


def test_part1_table_has_evaluate_py_numbers_and_the_train_command_for_the_untrained_model(submission, capsys):
    configs, out = submission
    markdown = (out / "submission.md").read_text()
    for model in ("logreg", "net_1layer"):
        ce, acc = _evaluate(configs / f"{model}.yaml", capsys)
        cells = _table_row(markdown, model)
        assert cells[0::2] == ce and cells[1::2] == acc
    assert _table_row(markdown, "net_2layer") == ["-"] * 6
    assert f"not trained yet; train it with: python train.py {configs / 'net_2layer.yaml'}" in markdown


def test_part2_uses_convnet1_method1_when_only_it_is_trained_and_lists_convnet2_to_train(submission):
    configs, out = submission
    markdown = (out / "submission.md").read_text()
    part2 = markdown.split("## Part 2")[1]
    assert "| convnet1_method1 |" in part2 and "convnet1_method2" not in part2.split("### Question 7")[0]
    assert _table_row(part2, "convnet2") == ["-"] * 6
    assert f"python train.py {configs / 'convnet2.yaml'}" in part2


def test_q8_is_the_analysis_of_convnet2_and_q9_names_the_best_models_with_their_checkpoint_sizes(submission):
    configs, out = submission
    markdown = (out / "submission.md").read_text()
    _, counts = analyze.analyze(str(configs / "convnet2.yaml"))
    q8 = markdown.split("### Question 8: the layers of convnet2")[1]
    assert analyze.markdown(analyze.table_rows(counts, list(analyze.COLUMNS))) in q8
    q9 = markdown.split("### Question 9")[1].split("##")[0]
    val = {}
    for model in ("logreg", "net_1layer", "convnet1_method1"):
        stats = np.load(_config_value(configs / f"{model}.yaml", "performance_stats"))
        val[model] = stats[:, 3].max()  # the checkpoint is the epoch of best validation accuracy
    best_fc = max(("logreg", "net_1layer"), key=val.get)
    for kind, model in (("fully connected", best_fc), ("convolutional", "convnet1_method1")):
        with np.load(_config_value(configs / f"{model}.yaml", "checkpoint_file")) as f:
            stored = sum(f[key].size for key in f.files)
        line = next(line for line in q9.splitlines() if line.startswith(f"- best {kind} model:"))
        assert line.startswith(f"- best {kind} model: {model} ")
        assert f"{analyze.fmt(stored)} parameters" in line


def _config_value(path, key):
    with open(path) as f:
        return yaml.safe_load(f)[key]


def test_html_is_self_contained_with_inline_images_and_four_answer_boxes(submission):
    _, out = submission
    text = (out / "submission.html").read_text()

    class Collect(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.sources, self.links, self.answers = [], [], 0

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag in ("img", "script"):
                self.sources.append(attrs.get("src", ""))
            if tag == "link" or "href" in attrs:
                self.links.append(attrs)
            if attrs.get("class") == "answer":
                self.answers += 1

    parser = Collect()
    parser.feed(text)
    assert parser.links == [] and len(parser.sources) == 2
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert parser.answers == 4
    assert "@media print" in text and "Ada Lovelace" in text


def test_missing_configs_give_one_line_and_exit_2(tmp_path, capsys):
    assert submit.main(["--configs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "logreg.yaml" in err


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
    assert result.returncode == 0 and re.search(r"--configs", result.stdout)
