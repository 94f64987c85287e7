"""python tools/report.py: the results table and learning curves of trained models.

The entry point people type; the tool is tools/course/report.py (--help says how to use it).
"""

import sys

if __name__ == "__main__" and not __package__:
    import kit_path  # for its effect (tools/kit_path.py): the repository on sys.path, before the imports below

from plumbing.command_line import start_script

start_script(__name__, "report.py")  # first: Ctrl-C, a closed output: one line

from plumbing.command_line import load_kernels

# Here too, not only when the tool's module loads: a process may hold that module already.
load_kernels("report.py")

from tools.course.report import main

if __name__ == "__main__":
    sys.exit(main())
