"""python tools/autograde.py: grade students' fc_layer.py and conv_layer.py (staff only; docs/grading.md).

The entry point people type; the tool is tools/grader/command.py (--help says how to use it).
"""

import sys

if __name__ == "__main__" and not __package__:
    import kit_path  # for its effect (tools/kit_path.py): the repository on sys.path, before the imports below

from plumbing.command_line import start_script

start_script(__name__, "autograde.py")  # first: Ctrl-C, a closed output: one line

from tools.grader.command import main

if __name__ == "__main__":
    sys.exit(main())
