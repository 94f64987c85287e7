"""python tools/leaks.py: look for give-aways in a student kit (staff only; docs/course-tools.md).

The entry point people type; the tool is tools/course/leaks.py (--help says how to use it).
"""

import sys

if __name__ == "__main__" and not __package__:
    import kit_path  # for its effect (tools/kit_path.py): the repository on sys.path, before the imports below

from plumbing.command_line import start_script

start_script(__name__, "leaks.py")  # first: Ctrl-C, a closed output: one line

from tools.course.leaks import main

if __name__ == "__main__":
    sys.exit(main())
