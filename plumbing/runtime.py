"""How the process uses the machine: threads and memory, set in one place.

Every entry point (the four scripts, the course tools, the benchmark and the test suite)
calls `configure` once, first thing, before numpy is imported: OpenBLAS and OpenMP read
their variables only when they load. A variable already set in the environment wins, so a
user can always choose otherwise. Nothing here changes a number the kit computes, only how
fast it gets there (the reasons below were measured on 2 cores; docs/speed.md).

    from plumbing import runtime
    runtime.configure("batches")
"""

import ctypes
import os

# What each kind of work sets in the environment, and why.
ROLES = {
    # Training and evaluation: mini-batches of 100, big matrix products between the kit's kernels.
    "batches": {
        # The kernels' OpenMP threads do not spin for long between calls: a thread
        # spinning for the next call takes the core that BLAS needs, and a training epoch
        # then ran several times slower (OMP_WAIT_POLICY=ACTIVE).
        "OMP_WAIT_POLICY": "PASSIVE",
        # ...but GNU OpenMP's threads spin briefly (10**4 rounds, not 3 * 10**5) before they
        # sleep: a training step calls the kernels some 25 times, often a few microseconds
        # apart, and waking a sleeping thread took 80 microseconds on one machine. A convnet3
        # epoch took 0.8 to 0.95 times as long as with no spin at all.
        "GOMP_SPINCOUNT": "10000",
        # OpenBLAS's idle threads spin for 2**4 cycles (default 2**28) before they sleep,
        # leaving the cores to the kernels between products: a convnet1 method-2 epoch took
        # 1.98 s with the default and 1.47 s with this.
        "OPENBLAS_THREAD_TIMEOUT": "4",
    },
    # One example at a time (grad checks, grading): BLAS threads only add overhead to such
    # small products, which made grad checks several times slower.
    "single_example": {
        "OMP_WAIT_POLICY": "PASSIVE",
        "OPENBLAS_NUM_THREADS": "1",
    },
}


def environment(role):
    """The variables `configure(role)` sets (for a child process's environment)."""
    if role not in ROLES:
        raise ValueError(f"unknown runtime role {role!r}, not one of {', '.join(ROLES)}")
    return dict(ROLES[role])


def configure(role="batches"):
    """Set the thread variables of `role` (unless already set) and keep freed memory for reuse.

    Call before numpy is imported; returns True if the malloc settings were taken.
    """
    for name, value in environment(role).items():
        os.environ.setdefault(name, value)
    return keep_freed_memory_for_reuse()


def keep_freed_memory_for_reuse():
    """Ask the C library's malloc to keep freed memory for the next allocation.

    Every training step allocates and frees the same large arrays (a few MB each). By
    default glibc hands them back to the system, and the next step takes a page fault for
    every 4 KiB to get them again: a quarter of a convnet1 epoch and 40 % of a net_2layer
    epoch. Blocks above glibc's largest mmap threshold (32 MB) would still be mapped and
    zeroed anew each step (method 2's 52 MB products in convnet3: a quarter of its epoch),
    so no block is mapped on its own (glibc still maps when the heap cannot grow).
    True if the settings were taken (glibc); elsewhere (macOS, Windows, musl) nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, TypeError, AttributeError):
        return False
    # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD and M_MMAP_MAX of <malloc.h>
    trim_threshold, mmap_threshold, mmap_max = -1, -3, -4
    # Keep up to 512 MB of freed memory, and serve every block from it.
    return (bool(mallopt(trim_threshold, 512 << 20)) and bool(mallopt(mmap_threshold, 32 << 20))
            and bool(mallopt(mmap_max, 0)))
