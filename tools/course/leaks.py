"""Give-aways in a student kit (staff only; tools/handout.py runs it before it zips):
python tools/leaks.py STUDENT_KIT [--kit REFERENCE_KIT]

Three kinds of give-away, looked for in every text file of the student kit:

- a number of the answer key (docs/answer-key.md of the reference kit: the results tables,
  question 8's table and counts, question 9's totals). Only numbers that say something are
  looked for: 1000 and up (with or without thousands separators) and decimals with three
  or more places. A number that the code and configs handed out also hold (outside the four
  solution regions, such as 1024) is not an answer, nor one listed in COINCIDENCES;
- a line within MAX_EDITS tokens (insertions, deletions, substitutions) of a line of a
  solution region, code or comment, or such a line wrapped onto the next line. Solution
  lines that the kit also has, nearly, outside the regions (`if not self.is_input_:`) give
  nothing away and are not looked for;
- an expression of a solution line (a subscript, a call, an operation; MIN_TOKENS tokens or
  more, spaces and Markdown backticks ignored), such as `inputs[:, np.newaxis]`, that the
  kit's code has nowhere outside the regions;
- in a Markdown file (the README, docs/), a shape of five axes such as (N, 1, C, H, W): the
  kit's arrays have four at most, so five are method 2's broadcasting, the heart of the
  answer (convolve's own documentation and tests show broadcasting; prose for students does
  not spell out the solution's).

Prints the first give-away as one line naming the file and line, and exits 1; exit 0 when
there is none, 2 for bad input (a folder that is not there, an answer key that cannot be read,
markers that do not pair up).
"""

import ast
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from plumbing.command_line import OneLineParser, entry_point
from plumbing.errors import UserError
from tools import KIT
from tools.course.regions import PIECES, RegionError, marked_regions

ANSWER_KEY = "docs/answer-key.md"
MAX_EDITS = 2      # a line this close to a solution line gives it away
MIN_TOKENS = 6     # shorter solution lines and expressions (`deriv @ self.w_`) are too common to look for
TEXT_SUFFIXES = {".py", ".pyx", ".h", ".md", ".txt", ".yaml", ".yml", ".toml", ".cfg", ".in", ".rst", ".html"}
CODE_SUFFIXES = {".py", ".pyx", ".h", ".yaml", ".yml"}  # where a number is the kit's, not an answer's

# Numbers of the answer key that a student file holds for another reason: {file: {number}}.
COINCIDENCES = {
    "docs/usps_best.md": {"0.9933"},  # usps_best's validation accuracy after 30 epochs
    "docs/data.md": {"0.9850"},  # a convnet's validation accuracy on MNIST's test images
}

FIVE_AXES = re.compile(r"\(\s*[\w']+(?:\s*,\s*[\w']+){4}\s*\)")
TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?|\S")
NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w]|,\d{3}|\.\d)")


class LeakError(UserError):
    """A give-away, or bad input; the message is one line naming the file and line."""


@dataclass
class Leak:
    path: str   # relative to the student kit
    line: int
    what: str

    def __str__(self):
        return f"{self.path}, line {self.line}: {self.what}"


def tokens(text):
    """The tokens of a line of code or prose; Markdown backticks and comment marks dropped."""
    return TOKEN.findall(text.replace("`", "").lstrip().lstrip("#"))


def distinctive(number):
    """The number's canonical form if it is one the answer key's numbers are looked for by
    (1000 and up, or three decimals and more), else None."""
    if "." in number:
        return number if len(number.split(".")[1]) >= 3 else None
    value = int(number.replace(",", ""))
    return str(value) if value >= 1000 else None


def numbers_in(text):
    """[canonical number] of the distinctive numbers in `text`."""
    found = (distinctive(m.group(1)) for m in NUMBER.finditer(text))
    return [n for n in found if n]


def edits_within(needle, hay, limit, have=None, wanted=None):
    """Whether some run of the token list `hay` is at most `limit` edits from `needle`
    (`have`, `wanted`: Counter(hay) and Counter(needle), when the caller has them)."""
    if len(hay) < len(needle) - limit:
        return False
    have = have if have is not None else Counter(hay)
    wanted = wanted if wanted is not None else Counter(needle)
    if len(needle) - sum(min(n, have[t]) for t, n in wanted.items()) > limit:
        return False  # too few of the needle's tokens to be that close: skip the table
    previous = [0] * (len(hay) + 1)  # a run may start anywhere in hay
    for i, token in enumerate(needle, start=1):
        current = [i] + [0] * len(hay)
        for j, other in enumerate(hay, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (token != other))
        previous = current
    return min(previous) <= limit


def _split(kit):
    """(solution lines, the kit's other lines of the two files) as stripped text."""
    inside, outside = [], []
    for name in PIECES:
        path = Path(kit) / name
        source = path.read_text(encoding="utf-8")
        try:
            regions = marked_regions(source, name)
        except RegionError as e:
            raise LeakError(str(e)) from None
        spans = {n for r in regions for n in range(r.first, r.last + 1)}
        for number, line in enumerate(source.splitlines(), start=1):
            if line.strip():
                (inside if number in spans else outside).append(line.strip())
    return inside, outside


def _expressions(kit):
    """The solution regions' subscripts, calls and operations (as unparsed text without
    spaces) of MIN_TOKENS tokens or more."""
    found = set()
    for name in PIECES:
        source = (Path(kit) / name).read_text(encoding="utf-8")
        for region in marked_regions(source, name):
            try:
                tree = ast.parse(region.text)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Subscript, ast.Call, ast.BinOp)):
                    text = ast.unparse(node)
                    if len(tokens(text)) >= MIN_TOKENS:
                        found.add(re.sub(r"\s+", "", text))
    return found


def _code_text(kit, student_kit):
    """The reference kit's code and configs that the student kit has too, outside the
    solution regions."""
    parts = []
    for path in sorted(Path(kit).rglob("*")):
        rel = path.relative_to(kit)
        # The name first: a link it need not follow (a venv's python) may point where this user cannot look.
        if path.suffix not in CODE_SUFFIXES or not path.is_file() or not (Path(student_kit) / rel).is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if rel.as_posix() in PIECES:
            spans = {n for r in marked_regions(text, rel.name) for n in range(r.first - 1, r.last + 2)}
            text = "\n".join(line for n, line in enumerate(text.splitlines(), start=1) if n not in spans)
        parts.append(text)
    return "\n".join(parts)


class Secrets:
    """What a student kit must not hold, taken from the reference kit."""

    def __init__(self, student_kit, kit=KIT):
        kit = Path(kit)
        key = kit / ANSWER_KEY
        try:
            key_text = key.read_text(encoding="utf-8")
        except FileNotFoundError:
            key_text = ""  # a kit without an answer key has no answer numbers to give away
        except OSError as e:
            raise LeakError(f"{key}: cannot read the answer key ({e.strerror})") from None
        code = _code_text(kit, student_kit)
        common = set(numbers_in(code))
        self.numbers = {n: f"{ANSWER_KEY}, line {i}" for i, line in reversed(list(enumerate(
            key_text.splitlines(), start=1))) for n in numbers_in(line) if n not in common}
        inside, outside = _split(kit)
        outside_tokens = [tokens(line) for line in outside]
        self.lines = []
        for line in dict.fromkeys(inside):
            needle = tokens(line)
            if len(needle) >= MIN_TOKENS and not any(edits_within(needle, o, MAX_EDITS) for o in outside_tokens):
                self.lines.append((line, needle, Counter(needle)))
        flat = re.sub(r"\s+", "", code)
        self.expressions = sorted(e for e in _expressions(kit) if e not in flat)
        self.spaced = [(e, f" {' '.join(tokens(e))} ") for e in self.expressions]


def text_files(folder):
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def find_leaks(student_kit, secrets):
    """[Leak] for every give-away in the student kit's text files."""
    student_kit = Path(student_kit)
    leaks = []
    for path, text in text_files(student_kit):
        rel = path.relative_to(student_kit).as_posix()
        lines = text.splitlines()
        for number, line in enumerate(lines, start=1):
            for n in numbers_in(line):
                if n in secrets.numbers and n not in COINCIDENCES.get(rel, ()):
                    leaks.append(Leak(rel, number, f"holds {n}, a number of the answer key "
                                                   f"({secrets.numbers[n]})"))
            wrapped = line + " " + (lines[number] if number < len(lines) else "")
            hay = tokens(wrapped)
            have = Counter(hay)
            for solution, needle, wanted in secrets.lines:
                if edits_within(needle, hay, MAX_EDITS, have, wanted):
                    leaks.append(Leak(rel, number, f"within {MAX_EDITS} tokens of the solution line {solution!r}"))
                    break
            if path.suffix == ".md" and FIVE_AXES.search(line):
                leaks.append(Leak(rel, number, f"holds the five-axis shape {FIVE_AXES.search(line).group(0)}, "
                                               "method 2's broadcasting"))
            spaced = f" {' '.join(hay)} "
            for expression, expression_spaced in secrets.spaced:
                if expression_spaced in spaced:
                    leaks.append(Leak(rel, number, f"holds the solution's expression {expression!r}"))
                    break
    return leaks


def check(student_kit, kit=KIT):
    """Raise LeakError naming the first give-away in the student kit, if there is one."""
    leaks = find_leaks(student_kit, Secrets(student_kit, kit))
    if leaks:
        more = f" (and {len(leaks) - 1} more)" if len(leaks) > 1 else ""
        raise LeakError(f"{Path(student_kit) / leaks[0].path}, line {leaks[0].line}: "
                        f"{leaks[0].what}{more}; nothing zipped")


@entry_point("leaks.py")
def main(argv=None):
    parser = OneLineParser(prog="leaks.py", description="Look for give-aways (answer-key numbers, near-copies "
                           "of the solution) in a student kit.")
    parser.add_argument("student_kit", metavar="STUDENT_KIT")
    parser.add_argument("--kit", default=str(KIT), help="the reference kit (default: the one this tool is in)")
    args = parser.parse_args(argv)
    if not Path(args.student_kit).is_dir():
        raise LeakError(f"{args.student_kit}: not a folder")
    secrets = Secrets(args.student_kit, args.kit)
    leaks = find_leaks(args.student_kit, secrets)
    for leak in leaks:
        print(leak)
    if not leaks:
        print(f"{args.student_kit}: no give-aways ({len(secrets.numbers)} numbers, {len(secrets.lines)} lines and "
              f"{len(secrets.expressions)} expressions looked for)")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
