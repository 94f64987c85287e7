"""Course tools around the kit (docs/course-tools.md), by concern:

- tools/course/: what students and staff run around the kit: report, submit, the pieces'
  regions, the handout and its give-away check, the unit and connection counts, pool ties;
- tools/grader/: the autograder (staff only, docs/grading.md);
- tools/benchmark/: the benchmark against PyTorch (staff only, docs/speed.md);
- tools/bench_data_sets.sh: each data set's fetcher, two epochs and evaluation, timed (docs/data.md).

The scripts people type, `python tools/<name>.py`, are thin entry points beside these
packages. Imports run one way: the tools import the kit (net, the layers, plumbing, data),
never the reverse.
"""

from pathlib import Path

KIT = Path(__file__).resolve().parent.parent  # the kit's folder, the one these tools are in
