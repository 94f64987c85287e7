"""The benchmark's process settings: threads and memory for this process and its children,
set once, before numpy and the kernels load (they read the variables as they load). No
numpy here: tools/bench.py calls configure_process before it imports the rest."""

import os

from plumbing import runtime

ROLE = "batches"  # what the bench times is training, as train.py runs it
# The variables the bench set itself because they were unset (runtime's defaults for ROLE),
# and why; the torch worker starts without them, for they are the kit's choice, not torch's.
BENCH_DEFAULTS = {}
BENCH_REASON = f"plumbing/runtime.py, role {ROLE}"
_configured = False  # configure_process has run


def threads_from_argv(argv):
    """The value of --threads N / --threads=N if it is a positive integer, else None. The
    real parser checks it later; this early look exists because BLAS reads its thread count
    from the environment once, when numpy loads it."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
        else:
            continue
        if value.isdigit() and int(value) >= 1:
            return value
    return None


def configure_process(threads):
    """Once, before numpy and the kernels load (they read the variables as they load): for this
    process and its children, --threads N for every library, then runtime's settings for ROLE
    (each variable unless already set) and its malloc settings for this process."""
    global _configured
    if _configured:
        return
    _configured = True
    if threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    BENCH_DEFAULTS.update((var, value) for var, value in runtime.environment(ROLE).items()
                          if var not in os.environ)
    runtime.configure(ROLE)
