"""plumbing/runtime.py: the process-wide tuning every entry point sets once."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from plumbing import runtime


@pytest.mark.parametrize("role", sorted(runtime.ROLES))
def test_configure_sets_its_roles_variables_but_never_overrides_the_users(role):
    variables = runtime.environment(role)
    code = (f"import os; from plumbing import runtime; runtime.configure({role!r}); "
            f"print(repr({{k: os.environ.get(k) for k in {sorted(variables)!r}}}))")
    clean = {k: v for k, v in os.environ.items() if k not in variables}
    fresh = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=clean, capture_output=True,
                           text=True, check=True)
    assert eval(fresh.stdout) == variables
    chosen = dict(clean, **{k: "user" for k in variables})
    kept = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=chosen, capture_output=True,
                          text=True, check=True)
    assert eval(kept.stdout) == {k: "user" for k in variables}


def test_an_unknown_role_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown runtime role 'fast'"):
        runtime.environment("fast")


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="a glibc setting")
def test_glibc_keeps_freed_memory_for_the_next_step():
    # Speed, not results: without it each step page-faults its big arrays back (docs/speed.md).
    assert runtime.keep_freed_memory_for_reuse() is True
    # Even a block above glibc's largest mmap threshold (32 MB) comes from the heap, where
    # freed memory stays, not from a mapping of its own, which the system zeroes each time.
    big = np.empty(48 << 17)  # 48 MB
    address = big.ctypes.data
    with open("/proc/self/maps") as maps:
        for line in maps:
            low, high = (int(part, 16) for part in line.split()[0].split("-"))
            if low <= address < high:
                assert line.rstrip().endswith("[heap]"), line
                break
        else:
            pytest.fail("the array's address is in no mapping of /proc/self/maps")
