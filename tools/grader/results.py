"""What a grading run reports: one line per student, grades.csv and grades.json."""

import csv
import io
import json
from pathlib import Path

from plumbing.errors import OutputError
from plumbing.writing import write_atomically
from tools.grader.checks import FC
from tools.grader.points import MAX_POINTS, POINTS


def summary_line(graded, width=0):
    """'alice  13.5/15  FC up 2/2 | FC down 4/4 | conv up 3/3 | conv down 4.5/6: <first reason>'."""
    parts, reasons = [], []
    for piece in dict.fromkeys(p for p, _, _ in POINTS):
        cls, method = piece.split(".")
        short = ("FC " if cls == FC else "conv ") + ("up" if method == "ComputeUp" else "down")
        mine = [c for c in graded["checks"] if c["piece"] == piece]
        got, out_of = sum(c["points"] for c in mine), sum(c["max_points"] for c in mine)
        parts.append(f"{short} {got:g}/{out_of:g}")
        lost = [c for c in mine if c["points"] < c["max_points"]]
        if lost:
            reason = lost[0]["reason"]
            if reason.startswith("not implemented"):
                reason = "not implemented"
            reasons.append(f"{short} {lost[0]['check']}: " + (reason[:137] + "..." if len(reason) > 140 else reason))
    line = f"{graded['student']:<{width}}  {graded['total']:g}/{graded['max']:g}  " + " | ".join(parts)
    return line + ("  -- " + "; ".join(reasons) if reasons else "")


def write_outputs(results, out_dir, run=None):
    """grades.csv and grades.json in out_dir, each whole or not at all (writing.write_atomically);
    `run` (seed, sandbox, limits) goes in the json."""
    out = Path(out_dir)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["student", "piece", "check", "points", "max_points", "passed", "reason", "sandbox"])
    sandbox = (run or {}).get("sandbox", "")  # the layer the pieces ran in
    for graded in results:
        for c in graded["checks"]:
            writer.writerow([graded["student"], c["piece"], c["check"], f"{c['points']:g}",
                             f"{c['max_points']:g}", c["passed"], c["reason"], sandbox])
        writer.writerow([graded["student"], "total", "", f"{graded['total']:g}", f"{graded['max']:g}", "", "",
                         sandbox])
    document = json.dumps({"max_points": MAX_POINTS, "points": [list(p) for p in POINTS], "run": run or {},
                           "students": results}, indent=1, default=float)
    write_atomically(out / "grades.csv", lambda f: f.write(table.getvalue().encode("utf-8")))
    try:
        write_atomically(out / "grades.json", lambda f: f.write(document.encode("utf-8")))
    except OutputError as e:
        raise OutputError(f"{e}; {out / 'grades.csv'} is written") from None
    return out / "grades.csv", out / "grades.json"
