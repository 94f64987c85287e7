"""Put together what the handout asks you to hand in:
python tools/submit.py [--name "Your Name"] [--answers answers.md] [--configs configs]
                       [--out runs/submission] [--pdf]

Reads your written answers from the answers file (answers.md: one "## " heading per question;
made with the headings and nothing else if it is not there, and never written to after that)
and writes to the --out folder:
- submission.html, the document to print: first the analysis (Part 1's table, from the
  checkpoints of logreg, net_1layer and net_2layer; Part 2's table, from convnet1_method2, or
  convnet1_method1 if only that one is trained, and convnet2; and your answers under each
  question), at most 2 pages; then, from a new page, what you wrote in FCLayer.ComputeUp,
  FCLayer.ComputeDown, ConvLayer.ComputeUp and ConvLayer.ComputeDown (the code between the
  BEGIN/END SOLUTION markers, and nothing else), which does not count towards the 2 pages;
- a2_code.zip, what the grader takes: your fc_layer.py and conv_layer.py;
- with --pdf, submission.pdf, printed by a Chromium or Chrome found on this machine, and the
  number of pages of the analysis.
A model not trained yet gets a row of dashes and the command that trains it; a question not
answered yet is named on the terminal. Each output is written whole or not at all.

Exit status: 0; 1 when a piece is not written yet (both files are written all the same, and the
line says which); 2 for bad input (a missing or broken config, checkpoint, data or answers
file, an unknown heading in the answers file; --pdf without a browser).
"""

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

from plumbing import runtime
from tools import KIT

runtime.configure("batches")  # threads and memory, before numpy loads

from plumbing.command_line import OneLineParser, entry_point
from plumbing.errors import ConfigError, UserError
from plumbing.files import read_limited
from plumbing.run_files import check_output
from plumbing.writing import write_atomically
from tools.course import report
from tools.course.regions import PIECES, find_regions
from tools.course.source_text import MAX_FILE_BYTES, SourceError, decode_source

PART1 = (("logreg",), ("net_1layer",), ("net_2layer",))
PART2 = (("convnet1_method2", "convnet1_method1"), ("convnet2",))  # the first trained one of each
PAGE_LIMIT = 2  # pages of analysis the handout allows; the code printouts do not count
HTML_NAME, ZIP_NAME, PDF_NAME = "submission.html", "a2_code.zip", "submission.pdf"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# The answers file's headings (the questions to write about), in the handout's order, with
# the part they are printed in. The tables of Part 1 question 7 and Part 2 question 6 come
# from the checkpoints, before the part's first question.
QUESTIONS = (
    ("part1", "Part 1, question 8: the best model",
     "The model you would pick as the best, and why; the one with the highest training accuracy; the "
     "one with the highest test accuracy."),
    ("part2", "Part 2, question 7: convolutional or fully connected",
     "Convolutional against fully connected (your two convnets, your three FC nets): which kind does "
     "better on your numbers, and how you judged which model is better."),
    ("part2", "Part 2, question 8: the layers of convnet2",
     "Per layer of convnet2: spatial size, channels, units, connections, and learnable parameters "
     "without the biases (the table below); then, in a few lines, how you counted them."),
    ("part2", "Part 2, question 9: learnable parameters",
     "How many learnable parameters the best fully connected model and the best convolutional model "
     "have, in all."),
    ("feedback", "Feedback (optional)",
     "What you found the most valuable part of this assignment, and the most difficult or frustrating."),
)
Q8_LAYERS = ("conv1", "maxpool1", "conv2", "maxpool2", "fc1", "output")
PARTS = {"part1": "Part 1: Fully connected nets", "part2": "Part 2: Convolutional nets",
         "feedback": "Feedback (optional)"}

CSS = """
@page { size: letter; margin: 12mm 15mm; }
body { font-family: Georgia, serif; font-size: 10pt; line-height: 1.25; max-width: 52em; margin: 1em auto; }
h1 { font-size: 1.35em; margin: 0 0 0.4em; } h2 { font-size: 1.15em; border-bottom: 1px solid #aaa;
  margin: 0.9em 0 0.3em; } h3 { font-size: 1em; margin: 0.6em 0 0.2em; }
p, ul { margin: 0.25em 0; }
table { border-collapse: collapse; margin: 0.3em 0; font-size: 0.9em; }
th, td { border: 1px solid #999; padding: 0.1em 0.4em; } td { text-align: right; } td:first-child { text-align: left; }
pre { background: #f5f5f5; border: 1px solid #ddd; padding: 0.4em; white-space: pre-wrap; font-size: 0.85em;
  margin: 0.2em 0; }
.answer { border-left: 3px solid #888; padding: 0.1em 0.6em; }
.empty { color: #888; font-style: italic; }
.note { font-size: 0.85em; color: #444; }
.question, pre, table, h2, h3 { break-inside: avoid; page-break-inside: avoid; }
h2, h3 { break-after: avoid; page-break-after: avoid; }
.code { break-before: page; page-break-before: always; }
@media screen { .code { border-top: 2px dashed #888; margin-top: 2em; } }
"""


class AnswersError(ConfigError):
    """The answers file cannot be used; the message names it and the line."""


def template():
    """The answers file as it starts: a title, how to write, and each question's heading."""
    lines = ["# Answers", "",
             "<!-- Write each answer under its heading and keep the headings as they are. What is",
             "between these comment marks is not printed. Paragraphs are separated by blank lines;",
             "lines starting with '- ' make a list, lines starting with '|' a table; `code` and",
             "**bold** work. Your tables of results come from your checkpoints: do not copy them",
             "here. python tools/submit.py prints all of it. -->", ""]
    for _, heading, question in QUESTIONS:
        lines += [f"## {heading}", ""] + textwrap.wrap(f"<!-- {question} -->", 96) + [""]
        if heading.startswith("Part 2, question 8"):
            lines += ["| layer | spatial size | channels | units | connections | parameters |",
                      "| --- | --- | --- | --- | --- | --- |"]
            lines += [f"| {layer} |  |  |  |  |  |" for layer in Q8_LAYERS] + [""]
    return "\n".join(lines)


def read_answers(path):
    """{heading: answer text (Markdown, comments removed)} from the answers file; raises
    AnswersError for an unreadable file, a heading that is not a question's, or one that is
    there twice."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AnswersError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise AnswersError(f"{path}: cannot read ({e.strerror})") from None
    return parse_answers(text, path)


def parse_answers(text, path):
    known = [heading for _, heading, _ in QUESTIONS]
    answers, seen = {}, {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            heading = line[3:].strip()
            if heading not in known:
                raise AnswersError(f"{path}, line {number}: unknown heading '{line.strip()}' (the headings are: "
                                   + "; ".join(known) + ")")
            if heading in seen:
                raise AnswersError(f"{path}, line {number}: '{line.strip()}' is there twice "
                                   f"(also line {seen[heading]})")
            seen[heading] = number
            answers[heading] = []
        elif answers:
            answers[list(answers)[-1]].append(line)
    return {heading: re.sub(r"<!--.*?-->", "", "\n".join(lines), flags=re.S).strip()
            for heading, lines in answers.items()}


def answered(heading, text):
    """Whether `text` says more than the template put under `heading`."""
    return bool(text.strip()) and text.strip() != parse_answers(template(), "template").get(heading, "")


def inline(text):
    """One line of the answers' Markdown as HTML: escaped, with `code`, **bold** and *italic*."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            part = html.escape(part)
            part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
            out.append(re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", part))
    return "".join(out)


def markdown_html(text):
    """The answers' Markdown (paragraphs, '- ' lists, '|' tables, ``` blocks) as HTML."""
    out = []
    blocks = re.split(r"\n\s*\n", text.strip()) if text.strip() else []
    fenced = None
    for block in blocks:
        if fenced is not None or block.lstrip().startswith("```"):
            fenced = (fenced or []) + [block]
            if "\n".join(fenced).count("```") >= 2:
                code = "\n\n".join(fenced).strip()
                code = re.sub(r"\n?```$", "", re.sub(r"^```\w*\n?", "", code))
                out.append(f"<pre>{html.escape(code)}</pre>")
                fenced = None
            continue
        lines = block.splitlines()
        if all(line.lstrip().startswith("|") for line in lines):
            rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines
                    if not re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", line)]
            head, body = rows[0], rows[1:]
            out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in body)
                       + "</tbody></table>")
        elif re.match(r"\s*[-*] ", lines[0]):
            items = []
            for line in lines:
                if re.match(r"\s*[-*] ", line):
                    items.append(re.sub(r"^\s*[-*] ", "", line))
                else:
                    items[-1] += " " + line.strip()
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
        else:
            out.append(f"<p>{inline(' '.join(line.strip() for line in lines))}</p>")
    if fenced:
        out.append(f"<pre>{html.escape(chr(10).join(fenced))}</pre>")
    return "\n".join(out)


def read_source(path):
    """The text of a Python file as Python reads it (its coding line, a byte-order mark, any line
    ends); ConfigError naming the file if it cannot be read, is larger than the grader reads, or
    is not text Python can run."""
    try:
        data = read_limited(path, MAX_FILE_BYTES)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise ConfigError(f"{path}: {e}, more than the grader reads") from None
    try:
        return decode_source(data, str(path))
    except SourceError as e:
        raise ConfigError(str(e)) from None


def student_code(kit):
    """[(heading, code)] for the four pieces, from the kit's fc_layer.py and conv_layer.py."""
    pieces = []
    for name, names in PIECES.items():
        path = Path(kit) / name
        source = read_source(path)
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


def table_html(rows):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def analysis_html(part1, part2, answers):
    """The analysis: each part's table of results, then the answers to its questions."""
    out = []
    tables = {"part1": ("Question 7: results", part1), "part2": ("Question 6: results", part2)}
    for part, title in PARTS.items():
        out.append(f"<h2>{html.escape(title)}</h2>")
        if part in tables:
            heading, reports = tables[part]
            notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in report.untrained_notes(reports))
            out.append(f'<div class="question"><h3>{heading}</h3>{table_html(report.results_rows(reports))}'
                       '<p class="note">Average cross entropy (CE) and accuracy of each model\'s best checkpoint '
                       f"(by validation accuracy), from evaluate.py.</p>{notes}</div>")
        for where, heading, _ in QUESTIONS:
            if where != part:
                continue
            text = answers.get(heading, "")
            shown = re.sub(r"^Part \d, ", "", heading)  # the part is the section's title
            body = (markdown_html(text) if answered(heading, text)
                    else '<p class="empty">Not answered.</p>')
            title = "" if part == "feedback" else f"<h3>{html.escape(shown[0].upper() + shown[1:])}</h3>"
            out.append(f'<div class="question">{title}<div class="answer">{body}</div></div>')
    return "\n".join(out)


def code_html(code):
    out = ['<h2>Code: what I wrote in the four methods, and nothing else</h2>']
    for heading, text in code:
        out.append(f'<div class="question"><h3>{html.escape(heading)}</h3><pre><code>{html.escape(text)}'
                   "</code></pre></div>")
    return "\n".join(out)


def page(title, analysis, code=None):
    """The whole HTML document: the title, the analysis, and (from a new page) the code."""
    parts = [f'<section class="analysis"><h1>{html.escape(title)}</h1>\n{analysis}</section>']
    if code is not None:
        parts.append(f'<section class="code">\n{code}</section>')
    return ("<!DOCTYPE html>\n" f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_text(path, text):
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def write_code_zip(path, kit):
    """The grader's zip: fc_layer.py and conv_layer.py of `kit`, at the zip's top level."""
    sources = {}
    for name in PIECES:
        source = Path(kit) / name
        try:
            sources[name] = read_limited(source, MAX_FILE_BYTES)  # as saved: the grader decodes it as Python does
        except (OSError, ValueError) as e:
            raise ConfigError(f"{source}: cannot read ({getattr(e, 'strerror', None) or e})") from None

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in sources.items():
                archive.writestr(name, data)

    write_atomically(path, write)


def find_browser():
    """The path of a Chromium or Chrome on PATH, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html_path, pdf_path, browser):
    """Print `html_path` to `pdf_path` (atomically) with a headless Chromium; returns its bytes."""
    with tempfile.TemporaryDirectory() as profile:
        tmp_pdf = Path(profile) / "out.pdf"
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                   "--no-pdf-header-footer", f"--print-to-pdf={tmp_pdf}", Path(html_path).resolve().as_uri()]
        try:
            subprocess.run(command, capture_output=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ConfigError(f"{browser}: cannot print {html_path} ({e})") from None
        if not tmp_pdf.is_file():
            raise ConfigError(f"{browser}: printed no PDF of {html_path}")
        data = tmp_pdf.read_bytes()
    if pdf_path is not None:
        write_atomically(pdf_path, lambda f: f.write(data))
    return data


def count_pages(pdf):
    """The number of pages of a PDF (its page objects, `/Type /Page` but not `/Pages`)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def build(configs_dir, out_dir, answers, kit=KIT, name=None):
    """Write the document and the zip, with `answers` ({heading: text}); return (html path,
    zip path, the models' reports, questions not answered yet, analysis-only HTML)."""
    out = Path(out_dir)
    part1 = [pick(configs_dir, c) for c in PART1]
    part2 = [pick(configs_dir, c) for c in PART2]
    code = student_code(kit)
    title = "CSC321 Assignment 2: Convolutional Networks" + (f" -- {name}" if name else "")
    analysis = analysis_html(part1, part2, answers)
    html_path, zip_path = out / HTML_NAME, out / ZIP_NAME
    write_text(html_path, page(title, analysis, code_html(code)))
    write_code_zip(zip_path, kit)
    missing = [h for _, h, _ in QUESTIONS if not h.startswith("Feedback") and not answered(h, answers.get(h, ""))]
    return html_path, zip_path, part1 + part2, missing, page(title, analysis)


def make_answers(path):
    """Write the answers file's template at `path` unless a file is there; True if written."""
    try:
        with open(path, "x", encoding="utf-8") as f:  # "x": never over a file already there
            f.write(template())
    except FileExistsError:
        return False
    except OSError as e:
        raise AnswersError(f"{path}: cannot write the answers file ({e.strerror})") from None
    return True


@entry_point("submit.py")
def main(argv=None):
    parser = OneLineParser(prog="submit.py", description="Put together the document to print (your tables "
                           "and answers, then your code) and the zip of your two files for the grader.")
    parser.add_argument("--answers", default="answers.md", help="the file holding your written answers "
                        "(default %(default)s; made with the questions' headings if it is not there)")
    parser.add_argument("--configs", default="configs", help="folder of the models' configs (default %(default)s)")
    parser.add_argument("--out", default=os.path.join("runs", "submission"), help="folder to write "
                        f"{HTML_NAME} and {ZIP_NAME} to (default %(default)s)")
    parser.add_argument("--name", help="your name, for the title")
    parser.add_argument("--kit", default=str(KIT), help="the folder holding your fc_layer.py and conv_layer.py "
                        "(default: the kit this tool is in)")
    parser.add_argument("--pdf", action="store_true", help=f"also print {PDF_NAME} with a Chromium or Chrome and "
                        "count the analysis's pages")
    args = parser.parse_args(argv)
    browser = find_browser() if args.pdf else None
    if args.pdf and browser is None:
        raise UserError(f"--pdf: no Chromium or Chrome on PATH (looked for {', '.join(BROWSERS)}); print "
                        f"{HTML_NAME} from a browser instead")
    try:
        if os.path.isdir(args.answers):
            raise AnswersError(f"{args.answers}: is a folder, not an answers file")
        if make_answers(args.answers):
            print(f"wrote {args.answers}: the questions' headings; write your answers under them and run this again")
        answers = read_answers(args.answers)
        for what in (HTML_NAME, ZIP_NAME) + ((PDF_NAME,) if args.pdf else ()):
            check_output(os.path.join(args.out, what), "--out", [("the answers file", args.answers)])
        html_path, zip_path, reports, missing, analysis = build(args.configs, args.out, answers, args.kit, args.name)
        pages = None
        if args.pdf:
            pdf = print_pdf(html_path, Path(args.out) / PDF_NAME, browser)
            with tempfile.TemporaryDirectory() as tmp:
                alone = Path(tmp) / "analysis.html"
                alone.write_text(analysis, encoding="utf-8")
                pages = count_pages(print_pdf(alone, None, browser))
    except BrokenPipeError:
        raise  # stdout went away (`| head`): entry_point ends quietly
    except OSError as e:  # a file it reads or writes, named
        raise UserError(f"{e.filename}: {e.strerror}") from None
    print(f"wrote {html_path} (print it: the analysis, then your code from a new page) and {zip_path} "
          "(your fc_layer.py and conv_layer.py, for the grader)")
    if pages is not None:
        print(f"wrote {Path(args.out) / PDF_NAME}: {count_pages(pdf)} pages, of which the analysis {pages} "
              f"(the limit is {PAGE_LIMIT})")
        if pages > PAGE_LIMIT:
            print(f"the analysis is {pages} pages, more than the handout's {PAGE_LIMIT}: shorten your answers")
    for note in report.untrained_notes(reports):
        print(note)
    if missing:
        print(f"not answered yet in {args.answers}: " + "; ".join(missing))
    unwritten = unwritten_pieces(args.kit)
    if unwritten:
        # The printout and the zip are written all the same (a draft); the exit status says so.
        print(f"not written yet: {', '.join(unwritten)} (the printout and the zip hold them blank)")
        return 1
    return 0


def unwritten_pieces(kit):
    """The pieces whose code still raises the blank's NotImplementedError, in PIECES' order."""
    return [heading.split(" ")[0] for heading, code in student_code(kit) if "NotImplementedError" in code]


if __name__ == "__main__":
    sys.exit(main())
