"""The compiled kernels on ARM64, under emulation (staff only, slow).

The extension is cross-built for aarch64 from a copy of convolutions.pyx, setup.py and
kernels/: Cython's C is made by the host's Cython, then the arm64 Python (run through
qemu-aarch64 by binfmt_misc) runs setup.py with CC=aarch64-linux-gnu-gcc --sysroot=<the arm64
Debian> and KIT_NO_NATIVE=1 (-march=native means nothing when cross compiling). On aarch64
neither __AVX__ nor __FMA__ is defined: the blocks take their GCC vector-extension path
(16-byte generic vectors) and C's fma, never the x86 intrinsics. Then
- the kernels' own tests (test_convolutions, test_correlate, test_convolutions_doctests)
  pass with the arm64 Python, which loads that build through KIT_KERNELS_DIR;
- every public function gives the same bits as the installed x86 build
  (tests/arm64/kernel_numbers.py run by both Pythons).

Prepare the environment first: bash tests/arm64/prepare.sh (as root); then
python -m pytest -m slow tests/arm64 -q"""

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

ROOT = Path(os.environ.get("KIT_ARM64_ROOT", Path.home() / ".cache" / "kit-arm64"))
SYSROOT = ROOT / "sysroot"
ARM_PYTHON = SYSROOT / "usr" / "bin" / "python3"
CROSS_CC = "aarch64-linux-gnu-gcc"
HERE = Path(__file__).resolve().parent
KERNEL_TESTS = ["tests/kit/test_convolutions.py", "tests/kit/test_correlate.py",
                "tests/kit/test_convolutions_doctests.py"]
X86_ONLY_MACROS = ("__x86_64__", "__SSE2__", "__AVX__", "__AVX2__", "__AVX512F__", "__FMA__")


def not_prepared():
    """Why the aarch64 environment cannot be used, or None."""
    if not (ROOT / "ready").is_file() or not ARM_PYTHON.exists():
        return f"no prepared aarch64 environment in {ROOT}"
    if shutil.which(CROSS_CC) is None:
        return f"no {CROSS_CC}"
    try:
        registered = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").read_text().splitlines()[0] == "enabled"
    except (OSError, IndexError):
        registered = False
    if not registered:
        return "qemu-aarch64 is not registered with binfmt_misc"
    return None


REASON = not_prepared()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=f"{REASON}: run bash tests/arm64/prepare.sh (as root)")]


def arm_env(**extra):
    """The environment of the arm64 Python: qemu finds its libraries in the sysroot; no
    bytecode written into the repository by a second interpreter."""
    return {**os.environ, "QEMU_LD_PREFIX": str(SYSROOT), "PYTHONDONTWRITEBYTECODE": "1", **extra}


def run(command, timeout=1800, **kwargs):
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout,
                            **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def arm64_build(tmp_path_factory):
    """A folder holding the aarch64 build of the extension."""
    folder = tmp_path_factory.mktemp("arm64_build")
    shutil.copy(REPO_ROOT / "convolutions.pyx", folder)
    shutil.copy(REPO_ROOT / "setup.py", folder)
    shutil.copytree(REPO_ROOT / "kernels", folder / "kernels")
    # Cython's output does not depend on the machine: made natively, it spares the emulated
    # Cython some seconds; setup.py's cythonize then finds it up to date.
    run([sys.executable, "-m", "cython", "-3", "convolutions.pyx", "-o", "convolutions.c"], cwd=folder)
    cc = f"{CROSS_CC} --sysroot={SYSROOT}"
    # The arm64 Python's own include dir (its sysconfig names /usr/include/python3.X, the host's).
    include = glob.glob(str(SYSROOT / "usr" / "include" / "python3.*"))[0]
    result = run([ARM_PYTHON, "setup.py", "build_ext", "--inplace"], cwd=folder,
                 env=arm_env(CC=cc, CPPFLAGS=f"-I{include}", KIT_NO_NATIVE="1"))
    assert "-ffp-contract=off" in result.stdout + result.stderr, "the cross compiler refused -ffp-contract=off"
    assert "KIT_NO_NATIVE=1" in result.stderr
    [built] = glob.glob(str(folder / "convolutions*.so"))
    assert built.endswith("-aarch64-linux-gnu.so")
    return folder


def test_the_cross_compiler_takes_the_generic_vector_path():
    """The aarch64 compiler defines GCC's macros and none of the x86 ones the blocks test:
    they take their vector_size code and C's fma, not the x86 intrinsics."""
    macros = run([CROSS_CC, "-dM", "-E", "-x", "c", os.devnull]).stdout.split("\n")
    defined = {line.split()[1] for line in macros if line.startswith("#define ")}
    assert {"__GNUC__", "__aarch64__"} <= defined
    assert not defined & set(X86_ONLY_MACROS)


def test_the_kernels_tests_pass_on_arm64(arm64_build):
    env = arm_env(KIT_KERNELS_DIR=str(arm64_build))
    loaded = run([ARM_PYTHON, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import convolutions, platform; "
                  "print(platform.machine(), convolutions.__file__)", arm64_build], env=env).stdout.split()
    assert loaded == ["aarch64", str(next(arm64_build.glob("convolutions*.so")))]
    result = subprocess.run([str(ARM_PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "-q", *KERNEL_TESTS],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=3600)
    print(result.stdout[-2000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]


def test_arm64_gives_the_x86_builds_numbers_bit_for_bit(arm64_build, tmp_path):
    script = HERE / "kernel_numbers.py"
    run([sys.executable, script, REPO_ROOT, tmp_path / "x86.npz"])
    run([ARM_PYTHON, script, arm64_build, tmp_path / "arm64.npz"], env=arm_env())
    with np.load(tmp_path / "x86.npz") as x86, np.load(tmp_path / "arm64.npz") as arm:
        assert str(x86["meta/module"]).endswith("x86_64-linux-gnu.so")
        assert str(arm["meta/module"]).endswith("aarch64-linux-gnu.so")
        keys = [key for key in x86.files if key != "meta/module"]
        assert sorted(keys) == sorted(key for key in arm.files if key != "meta/module")
        differ = {}
        for key in keys:
            a, b = x86[key], arm[key]
            if a.dtype != b.dtype or a.shape != b.shape:
                differ[key] = f"{a.dtype}{a.shape} vs {b.dtype}{b.shape}"
            elif a.tobytes() != b.tobytes():
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
                differ[key] = f"{np.count_nonzero(diff)} of {a.size} values, by up to {np.nanmax(diff):.3g}"
        assert not differ, "aarch64 and x86 differ:\n" + "\n".join(f"{k}: {v}" for k, v in differ.items())
