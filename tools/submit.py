"""python tools/submit.py: put together what you hand in: submission.html and a2_code.zip.

The entry point people type; the tool is tools/course/submit.py (--help says how to use it).
"""

import sys

if __name__ == "__main__" and not __package__:
    import kit_path  # for its effect (tools/kit_path.py): the repository on sys.path, before the imports below

from plumbing.command_line import start_script

start_script(__name__, "submit.py")  # first: Ctrl-C, a closed output: one line

from tools.course.submit import main

if __name__ == "__main__":
    sys.exit(main())
