"""Put together what the handout asks you to hand in:
python tools/submit.py [--name "Your Name"] [--configs configs] [--out runs/submission]

Writes to the --out folder:
- code.txt: what you wrote in FCLayer.ComputeUp, FCLayer.ComputeDown, ConvLayer.ComputeUp
  and ConvLayer.ComputeDown (method 2) -- the code between the BEGIN/END SOLUTION markers
  of fc_layer.py and conv_layer.py, and nothing else;
- part1_curves.png, part2_curves.png: learning curves;
- submission.md and submission.html: the code; the Part 1 table (logreg, net_1layer,
  net_2layer); the Part 2 table (convnet1 -- convnet1_method2, or convnet1_method1 if only
  that one is trained -- and convnet2); question 8 for convnet2 (tools/analyze.py's table);
  question 9, the parameters of the best fully connected and the best convolutional model
  of the two tables (by validation accuracy); the curves; and empty boxes for your written
  answers. The HTML file holds its images inline: it is the one file to print or hand in.
A model not trained yet is listed with the command that trains it.

Exit status: 0, or 2 for bad input (a missing or broken config, checkpoint or data file).
"""

import base64
import html
import os
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parents[1]
if str(KIT) not in sys.path:
    sys.path.insert(0, str(KIT))

import runtime  # noqa: E402

runtime.configure("batches")  # threads and memory, before numpy loads

import numpy as np  # noqa: E402

from data.usps import DataError  # noqa: E402
from config import ConfigError  # noqa: E402
from tools import analyze, report  # noqa: E402
from tools.cli import OneLineParser  # noqa: E402
from tools.regions import PIECES, find_regions  # noqa: E402

PART1 = (("logreg",), ("net_1layer",), ("net_2layer",))
PART2 = (("convnet1_method2", "convnet1_method1"), ("convnet2",))  # the first trained one of each
Q8_MODEL = "convnet2"
QUESTIONS = {
    "part1": "Question 8: which model would you consider the best, and why? Which one gets the highest "
             "training accuracy? Which one gets the highest test accuracy?",
    "part2_q7": "Question 7: compare the two convolutional models with the three fully connected ones. Which "
                "does better, convolutional or fully connected? How did you decide which model is better?",
    "part2_q8": "Question 8: briefly explain how you computed these numbers.",
    "feedback": "Optional: which part of this assignment did you find the most valuable? The most difficult "
                "and/or frustrating?",
}
CSS = """
body { font-family: Georgia, serif; max-width: 52em; margin: 2em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; border-bottom: 1px solid #aaa; margin-top: 1.5em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #999; padding: 0.15em 0.5em; } td { text-align: right; }
td:first-child { text-align: left; }
pre { background: #f5f5f5; border: 1px solid #ddd; padding: 0.5em; white-space: pre-wrap; font-size: 0.85em; }
img { max-width: 100%; }
.answer { border: 1px dashed #888; min-height: 7em; padding: 0.5em; color: #888; }
.note { font-size: 0.9em; }
@media print {
  body { margin: 0; max-width: none; font-size: 10.5pt; }
  h2 { page-break-after: avoid; } pre, table, img, .answer { page-break-inside: avoid; }
}
"""


class Document:
    """Blocks of one report, written both as Markdown and as self-contained HTML."""

    def __init__(self):
        self.blocks = []

    def add(self, kind, *content):
        self.blocks.append((kind, content))

    def markdown(self):
        out = []
        for kind, content in self.blocks:
            if kind in ("h1", "h2", "h3"):
                out.append("#" * int(kind[1]) + " " + content[0])
            elif kind == "p":
                out.append(content[0])
            elif kind == "list":
                out.append("\n".join(f"- {item}" for item in content[0]))
            elif kind == "code":
                out.append("```python\n" + content[0] + "\n```")
            elif kind == "table":
                out.append(analyze.markdown(content[0]))
            elif kind == "img":
                out.append(f"![{content[1]}]({os.path.basename(content[0])})")
            elif kind == "answer":
                out.append("> *Your answer here.*")
        return "\n\n".join(out) + "\n"

    def html(self, title):
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
        for kind, content in self.blocks:
            if kind in ("h1", "h2", "h3"):
                out.append(f"<{kind}>{html.escape(content[0])}</{kind}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(content[0])}</p>")
            elif kind == "list":
                out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in content[0]) + "</ul>")
            elif kind == "code":
                out.append(f"<pre><code>{html.escape(content[0])}</code></pre>")
            elif kind == "table":
                rows = content[0]
                head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                               for row in rows[1:])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "img":
                data = base64.b64encode(Path(content[0]).read_bytes()).decode("ascii")
                out.append(f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(content[1])}"></p>')
            elif kind == "answer":
                out.append('<div class="answer">Your answer here.</div>')
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def student_code(kit):
    """[(heading, code)] for the four pieces, from the kit's fc_layer.py and conv_layer.py."""
    pieces = []
    for name, names in PIECES.items():
        path = Path(kit) / name
        try:
            source = path.read_text()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
        found, _ = find_regions(source, name, names)
        for piece in names:
            regions = found[piece]
            if not regions:
                raise ConfigError(f"{path}: cannot find {piece}")
            code = "\n\n".join(r.text for r in regions)
            heading = "; ".join(r.describe() for r in regions)
            if "NotImplementedError" in code:
                heading += " -- not written yet"
            pieces.append((heading, code))
    return pieces


def pick(configs_dir, candidates):
    """The report of the first candidate with a checkpoint, else of the first candidate."""
    reports = []
    for stem in candidates:
        r = report.collect(os.path.join(configs_dir, stem + ".yaml"))
        if r.results is not None:
            return r
        reports.append(r)
    return reports[0]


def parameter_count(r):
    """(weights, weights + biases) of a model from its config, and the number of values in its
    checkpoint (the handout's way: the shapes in the file)."""
    _, counts = analyze.analyze(r.config)
    sums = analyze.totals(counts)
    with np.load(r.net.checkpoint_file_, allow_pickle=False) as f:
        stored = sum(f[key].size for key in f.files)
    return sums["weights"], sums["parameters"], stored


def build(configs_dir, out_dir, kit=KIT, name=None):
    """Write the submission; return the HTML file's path."""
    out = Path(out_dir)
    part1 = [pick(configs_dir, c) for c in PART1]
    part2 = [pick(configs_dir, c) for c in PART2]
    q8_config = os.path.join(configs_dir, Q8_MODEL + ".yaml")
    (iy, ix, ic), q8_counts = analyze.analyze(q8_config)
    code = student_code(kit)
    out.mkdir(parents=True, exist_ok=True)
    title = "CSC321 Assignment 2: Convolutional Networks" + (f" -- {name}" if name else "")

    doc = Document()
    doc.add("h1", title)
    doc.add("h2", "Code")
    doc.add("p", "What I wrote in the four methods, and nothing else.")
    for heading, text in code:
        doc.add("h3", heading)
        doc.add("code", text)
    (out / "code.txt").write_text("\n\n".join(f"# {h}\n{t}" for h, t in code) + "\n")

    for part, reports, png, caption in (
            ("Part 1: Fully connected nets", part1, "part1_curves.png", "Part 1 learning curves"),
            ("Part 2: Convolutional nets", part2, "part2_curves.png", "Part 2 learning curves")):
        doc.add("h2", part)
        doc.add("p", "Average cross entropy and accuracy of the best model (by validation accuracy) "
                     "on each set.")
        doc.add("table", report.results_rows(reports))
        notes = report.untrained_notes(reports)
        if notes:
            doc.add("list", notes)
        path = out / png
        if path.exists():
            path.unlink()  # never a stale picture of earlier runs
        drawn = report.plot_curves(reports, str(path), caption)
        if drawn:
            doc.add("img", str(path), caption)
            doc.add("p", "Dashed: training set; solid: validation set.")
        else:
            doc.add("p", "No learning curves yet: none of these models is trained.")
        if reports is part1:
            doc.add("h3", QUESTIONS["part1"])
            doc.add("answer")
        else:
            doc.add("h3", QUESTIONS["part2_q7"])
            doc.add("answer")

    doc.add("h3", f"Question 8: the layers of {Q8_MODEL} (input {iy}x{ix}x{ic})")
    doc.add("table", analyze.table_rows(q8_counts, list(analyze.COLUMNS)))
    doc.add("list", [c.how for c in q8_counts])
    doc.add("h3", QUESTIONS["part2_q8"])
    doc.add("answer")

    doc.add("h3", "Question 9: learnable parameters of the best models")
    lines = []
    for kind, reports in (("fully connected", part1), ("convolutional", part2)):
        trained = [r for r in reports if r.results is not None]
        if not trained:
            lines.append(f"best {kind} model: none trained yet (" +
                         "; ".join(r.train_command for r in reports) + ")")
            continue
        best = max(trained, key=lambda r: r.results["validation"][1])
        weights, parameters, stored = parameter_count(best)
        lines.append(f"best {kind} model: {best.name} (validation accuracy "
                     f"{best.results['validation'][1]:.4f}): {analyze.fmt(parameters)} parameters, "
                     f"{analyze.fmt(weights)} weights and {analyze.fmt(parameters - weights)} biases "
                     f"(its checkpoint holds {analyze.fmt(stored)} numbers)")
    doc.add("list", lines)

    doc.add("h2", "Feedback")
    doc.add("h3", QUESTIONS["feedback"])
    doc.add("answer")

    (out / "submission.md").write_text(doc.markdown())
    html_path = out / "submission.html"
    html_path.write_text(doc.html(title))
    return html_path, part1 + part2


def main(argv=None):
    parser = OneLineParser(prog="submit.py", description="Put together the code, tables, curves and answer "
                           "boxes the handout asks for, as a folder and one self-contained HTML file.")
    parser.add_argument("--configs", default="configs", help="folder of the models' configs (default %(default)s)")
    parser.add_argument("--out", default=os.path.join("runs", "submission"), help="folder to write "
                        "(default %(default)s)")
    parser.add_argument("--name", help="your name, for the title")
    parser.add_argument("--kit", default=str(KIT), help="the folder holding your fc_layer.py and conv_layer.py "
                        "(default: the kit this tool is in)")
    args = parser.parse_args(argv)
    try:
        html_path, reports = build(args.configs, args.out, args.kit, args.name)
    except (ConfigError, DataError) as e:
        print(f"submit.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"submit.py: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {html_path} (print or hand in this file) and, beside it, submission.md, code.txt and the curves")
    for note in report.untrained_notes(reports):
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
