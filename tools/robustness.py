"""python tools/robustness.py: validation error on distorted copies of the validation images (staff only).

The entry point people type; the tool is tools/course/robustness.py (--help says how to use it).
"""

import sys

if __name__ == "__main__" and not __package__:
    import kit_path  # for its effect (tools/kit_path.py): the repository on sys.path, before the imports below

from plumbing.command_line import start_script

start_script(__name__, "robustness.py")  # first: Ctrl-C, a closed output: one line

from tools.course.robustness import main

if __name__ == "__main__":
    sys.exit(main())
