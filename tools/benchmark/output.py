"""What the benchmark prints: its report as Markdown on stdout (tables, and the numbers in
their cells), its progress on stderr."""

import statistics
import sys


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def out(text=""):
    print(text, flush=True)


def markdown_table(headings, rows, numeric_from=1):
    lines = ["| " + " | ".join(headings) + " |",
             "| " + " | ".join("---:" if i >= numeric_from else "---" for i in range(len(headings))) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(times, note=""):
    if not times:
        return note or "–"
    return f"{statistics.median(times):.3g}"


def ms(t):
    return f"{t * 1e3:.3g}"


def ratio(a, b):
    if not b:
        return "–"
    r = a / b
    return f"{r:.3g}"


def fmt_shape(shape):
    return "(" + ",".join(str(n) for n in shape) + ")"


def median_ratio(a, b):
    return ratio(statistics.median(a), statistics.median(b)) if a and b else "–"


def spread(times):
    return max(times) / min(times) - 1 if len(times) > 1 else 0.0


def failure(status, output):
    """The cell of a child process that failed: its exit status and last line of output."""
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return f"failed (exit {status}: {last})".replace("|", "\\|")  # a bare | would split the table cell
