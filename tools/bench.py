"""python tools/bench.py: how fast is the kit, against PyTorch (staff only; docs/speed.md).

The entry point people type; the tool is tools/benchmark/command.py (--help says how to use it).
"""

import sys

if __name__ == "__main__" and not __package__:
    import kit_path  # for its effect (tools/kit_path.py): the repository on sys.path, before the imports below

from plumbing.command_line import start_script

start_script(__name__, "bench.py")  # first: Ctrl-C, a closed output: one line

from tools.benchmark.process import configure_process, threads_from_argv

if __name__ == "__main__":  # before numpy loads: BLAS reads its thread count once, as it loads
    configure_process(threads_from_argv(sys.argv[1:]))

from tools.benchmark.command import main

if __name__ == "__main__":
    sys.exit(main())
