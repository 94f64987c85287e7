"""The machine the benchmark runs on: what it is, how its libraries use threads (as the
libraries themselves report it), how busy other processes keep it, its numpy.dot rate, and
the median timing every measurement uses."""

import ctypes
import os
import platform
import statistics
import subprocess
import time

import numpy as np

from tools import KIT

MATMUL_SIZE = 1024
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                    "GOMP_SPINCOUNT", "OMP_PROC_BIND", "MKL_NUM_THREADS")


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def openblas_threads():
    """(threads, description) of the OpenBLAS numpy loaded, asked from the library itself:
    the environment variables only say what was requested."""
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    name = f"{blas.get('name', 'BLAS')} {blas.get('version', '')}".strip()
    # numpy's own copy first: scipy may load another OpenBLAS that the kit's matmuls never use.
    for path in sorted(loaded_libraries("openblas"), key=lambda p: "numpy" not in p):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                       "scipy_openblas_get_num_threads", "openblas_get_num_threads"):
            getter = getattr(lib, symbol, None)
            if getter is not None:
                return int(getter()), name
    requested = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return (int(requested) if requested and requested.isdigit() else usable_cores()), name


def loaded_libraries(*words):
    """Paths of the shared libraries this process has mapped whose names hold one of `words`."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[5] for line in f if len(line.split()) >= 6}
    except OSError:
        return []
    return sorted(p for p in paths if any(w in os.path.basename(p).lower() for w in words))


def kernel_threads():
    """How the compiled kernels (convolutions) run: single-threaded, or OpenMP with how many
    threads. Call it after runtime.configure (OMP_WAIT_POLICY is read as this loads)."""
    import convolutions  # noqa: F401

    for path in loaded_libraries("libgomp", "libomp", "libiomp"):
        try:
            return f"OpenMP, {int(ctypes.CDLL(path).omp_get_max_threads())} threads"
        except (OSError, AttributeError):
            return "OpenMP"
    return "single-threaded"


def thread_settings(set_by_bench, reason):
    """The environment variables that change how the libraries use threads, as set; those in
    `set_by_bench` (the bench set them, because they were unset) say so, and `reason`."""
    names = THREAD_VARIABLES + tuple(v for v in set_by_bench if v not in THREAD_VARIABLES)
    found = [f"{v}={os.environ[v]}" + (f" (set by the bench, {reason})" if v in set_by_bench else "")
             for v in names if v in os.environ]
    return ", ".join(found) if found else "no thread variables set"


def git_revision():
    try:
        rev = subprocess.run(["git", "-C", str(KIT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        # --no-optional-locks: only look; never refresh the index of a tree others work in.
        changed = subprocess.run(["git", "--no-optional-locks", "-C", str(KIT), "status", "--porcelain",
                                  "--untracked-files=no"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not rev:
        return "unknown"
    return rev + (" with uncommitted changes" if changed.strip() else "")


def load_average():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "?"


HELPER_PIDS = set()  # live child processes of the bench itself (the torch worker): not "others"


def process_cpu(pid):
    """User + system seconds of a live process, from /proc/<pid>/stat (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class CpuShare:
    """How much CPU other processes (and the hypervisor, as steal) took while a part of the
    benchmark ran: on a shared machine that is what makes its times noisy. The bench's own
    children count as its own: waited-for ones by os.times, the live torch worker by /proc."""

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat", encoding="utf-8") as f:
                values = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal: all but idle and iowait is busy.
        busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
        t = os.times()
        helpers = sum(process_cpu(pid) for pid in HELPER_PIDS)
        return busy, t.user + t.system + t.children_user + t.children_system + helpers, time.perf_counter()

    def others(self):
        """Cores kept busy by others on average since this object was made, or None."""
        end = self._snapshot()
        if self.start is None or end is None or end[2] - self.start[2] < 0.5:
            return None
        busy, own, wall = (b - a for a, b in zip(self.start, end))
        return max(busy - own, 0.0) / wall

    def sentence(self, what):
        share = self.others()
        if share is None:
            return ""
        return (f"While {what} ran, other processes kept {share:.2f} of the {os.cpu_count()} cores busy "
                f"on average (/proc/stat).")


def timed(function, repeat, *args, seconds=0.0, max_calls=None):
    """(median seconds over `repeat` calls, or as many more as fit in `seconds` up to
    `max_calls`; the last result)."""
    times = []
    began = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - began < seconds and len(times) < max_calls):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def matmul_gflops(dtype, repeat=7):
    """This machine's numpy.dot rate for MATMUL_SIZE-square matrices, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE)).astype(dtype)
    b = rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE)).astype(dtype)
    np.dot(a, b)  # warm-up: BLAS starts its threads
    t, _ = timed(np.dot, repeat, a, b)
    return 2 * MATMUL_SIZE ** 3 / t / 1e9
