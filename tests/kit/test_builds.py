"""Every build of the kernels gives the same numbers: setup.py's portable build
(KIT_NO_NATIVE=1, narrower vectors, and no FMA instructions: C's fma), an AVX2 build
(KIT_NO_NATIVE=1 with CFLAGS=-march=haswell, where this CPU runs it), correlate's plain C
loops (CFLAGS=-DKIT_DB_PLAIN_C), the serial build (KIT_NO_OPENMP=1), and clang's builds without
and with OpenMP (CC=clang; with OpenMP where libomp is installed) against the installed one,
bit for bit: every build keeps multiplies and adds apart (-ffp-contract=off), so none rounds
differently. Slow: each build compiles the extension (python -m pytest -m slow).

Not slow: the C the extension is built from (Cython's output and the kit's blocks) compiles as
a compiler with neither GCC's nor clang's extensions sees it (MSVC, on Windows), in strict C,
and takes the plain loops there. MSVC itself is not available on this machine: gcc stands in,
with the GNU macros undefined after the system's headers."""

import glob
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

import convolutions


def cpu_has(*flags):
    try:
        with open("/proc/cpuinfo") as info:
            present = set(next(line for line in info if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return False
    return all(flag in present for flag in flags)


def build(tmp_path, name, variable=None, cflags=None, env=None, said=None):
    """Build convolutions.pyx in a folder of its own with one of setup.py's switches (the
    variable set to 1, CFLAGS, or other variables such as CC); load it. `said`: what setup.py
    must say of the build it made (default: the variable's name)."""
    folder = tmp_path / name
    folder.mkdir()
    for source in ("convolutions.pyx", "setup.py"):
        shutil.copy(REPO_ROOT / source, folder)
    # The C blocks convolutions.pyx includes: in kernels/, where setup.py's include_dirs looks.
    (folder / "kernels").mkdir()
    for header in ("convolve_blocks.h", "direct_blocks.h"):
        shutil.copy(REPO_ROOT / "kernels" / header, folder / "kernels")
    env = {**os.environ, **(env or {}), **({variable: "1"} if variable else {})}
    if cflags:
        env["CFLAGS"] = cflags
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=folder,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (said or variable) in result.stderr  # setup.py says which build it made
    spec = importlib.util.spec_from_file_location("convolutions", glob.glob(str(folder / "convolutions*.so"))[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clang_takes(*flags):
    """True if clang is installed and compiles and links a program with these flags."""
    if shutil.which("clang") is None:
        return False
    source = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    result = subprocess.run(["clang", *flags, "-x", "c", "-", "-o", os.devnull], input=source,
                            capture_output=True, text=True)
    return result.returncode == 0


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("name,variable", [("portable", "KIT_NO_NATIVE"), ("serial", "KIT_NO_OPENMP")])
def test_other_builds_give_the_same_numbers_bit_for_bit(tmp_path, name, variable, monkeypatch):
    assert_same_numbers(build(tmp_path, name, variable), monkeypatch)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed (apt-get install clang)")
def test_a_clang_build_without_openmp_gives_the_same_numbers_bit_for_bit(tmp_path, monkeypatch):
    # clang as on a Mac without libomp: serial, and setup.py says so in one line.
    other = build(tmp_path, "clang_serial", "KIT_NO_OPENMP", env={"CC": "clang"}, said="kernels run on one core")
    assert_same_numbers(other, monkeypatch)


@pytest.mark.slow
@pytest.mark.skipif(not clang_takes("-fopenmp"), reason="clang with OpenMP needs libomp (apt-get install clang "
                    "libomp-dev)")
def test_a_clang_build_with_openmp_gives_the_same_numbers_bit_for_bit(tmp_path, monkeypatch):
    other = build(tmp_path, "clang_openmp", env={"CC": "clang"}, said="building with OpenMP (-fopenmp)")
    assert_same_numbers(other, monkeypatch)


def assert_same_numbers(other, monkeypatch):
    """Every kernel of `other` gives the installed build's numbers, bit for bit."""
    assert_correlate_same_bits(other)
    rng = np.random.default_rng(17)
    for dtype in (np.float64, np.float32):
        for _ in range(60):
            in_y, in_x = rng.integers(1, 20, 2)
            k_y, k_x = rng.integers(1, 9, 2)
            padding = int(rng.integers(0, min(k_y, k_x)))
            if in_y + 2 * padding < k_y or in_x + 2 * padding < k_x:
                continue
            x = rng.standard_normal((3, 1, 2, in_y, in_x)).astype(dtype)
            w = rng.standard_normal((1, 4, 2, k_y, k_x)).astype(dtype)
            assert same_bits(convolutions.convolve(x, w, padding), other.convolve(x, w, padding))
            maps = rng.standard_normal((3, 4, in_y + 2, in_x + 2)).astype(dtype)
            outputs = rng.standard_normal(maps.shape).astype(dtype)
            for relu in (True, False):
                for mine, theirs in zip(convolutions.pre_activation_derivatives(maps, outputs, relu),
                                        other.pre_activation_derivatives(maps, outputs, relu), strict=True):
                    assert same_bits(mine, theirs)
            for mine, theirs in zip(convolutions.maxpool_forward(maps, 2, 2, 0), other.maxpool_forward(maps, 2, 2, 0)):
                assert same_bits(mine, theirs)
    # The weight derivative's calls, with the maps side by side in the vector lanes in both
    # builds (whose lane counts differ: 16 or 32 maps per block here, 4 in the portable one).
    for module in (convolutions, other):
        monkeypatch.setattr(module, "_across_axis", lambda *args: 1)
    for dtype in (np.float64, np.float32):
        for maps in (3, 16, 33):
            in_y, in_x = rng.integers(2, 17, 2)
            padding = int(min(in_y, in_x) // 2)
            x = rng.standard_normal((3, 1, 2, in_y, in_x)).astype(dtype)
            d = rng.standard_normal((3, maps, 1, in_y, in_x)).astype(dtype)[..., ::-1, ::-1]
            assert same_bits(convolutions.convolve(x, d, padding), other.convolve(x, d, padding))


def assert_correlate_same_bits(other):
    """Method 1 read in place: one fused multiply-add per term, in one order, in every build."""
    rng = np.random.default_rng(23)
    for dtype in (np.float64, np.float32):
        for n, c, size, k_out, k, p, s in [(37, 16, 8, 32, 3, 1, 1), (5, 1, 16, 16, 5, 2, 1),
                                           (4, 17, 9, 40, 3, 0, 2), (3, 3, 11, 7, 2, 1, 1)]:
            x = rng.standard_normal((n, c, size, size)).astype(dtype)
            w = rng.standard_normal((k_out, c, k, k)).astype(dtype)
            b = rng.standard_normal(k_out).astype(dtype)
            out = convolutions.correlate(x, w, b, stride=s, padding=p, relu=True)
            assert same_bits(out, other.correlate(x, w, b, stride=s, padding=p, relu=True))
            d = rng.standard_normal(out.shape).astype(dtype)
            assert same_bits(convolutions.correlate_weight_derivative(x, d, k, s, p),
                             other.correlate_weight_derivative(x, d, k, s, p))


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has("avx2", "fma"), reason="this CPU has no AVX2 and FMA")
def test_an_avx2_build_gives_the_same_numbers_bit_for_bit(tmp_path):
    assert_correlate_same_bits(build(tmp_path, "avx2", "KIT_NO_NATIVE", cflags="-march=haswell"))


@pytest.mark.slow
def test_correlates_plain_c_loops_give_the_same_numbers_bit_for_bit(tmp_path):
    assert_correlate_same_bits(build(tmp_path, "plain", "KIT_NO_NATIVE", cflags="-DKIT_DB_PLAIN_C"))


# What a compiler that is neither GCC nor clang sees: the system's, Python's and numpy's headers
# as this gcc needs them, then the GNU macros gone for Cython's C and the kit's blocks.
NOT_GNU_PRELUDE = """
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>
#include <pythread.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <numpy/arrayobject.h>
#include <numpy/ufuncobject.h>
#undef __GNUC__
#undef __GNUC_MINOR__
#undef __GNUC_PATCHLEVEL__
#undef __clang__
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc stands in for MSVC here, and is not installed")
def test_the_c_compiles_as_strict_c_without_gnu_extensions_and_takes_the_plain_loops(tmp_path):
    import sysconfig
    source = tmp_path / "convolutions.c"
    result = subprocess.run([sys.executable, "-m", "cython", "-3", str(REPO_ROOT / "convolutions.pyx"),
                             "-o", str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "prelude.h").write_text(NOT_GNU_PRELUDE)
    flags = ["-std=c11", "-include", str(tmp_path / "prelude.h"), "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION",
             f"-I{sysconfig.get_paths()['include']}", f"-I{np.get_include()}", f"-I{REPO_ROOT / 'kernels'}"]
    # Strict C: the kit's blocks draw no warning of ISO C's (Cython's and numpy's own may).
    result = subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Wpedantic", *flags, str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kernels/" not in result.stderr, result.stderr[-3000:]
    # The plain loops: no vector type, no GCC builtin, left after the preprocessor.
    expanded = subprocess.run(["gcc", "-E", *flags, str(source)], capture_output=True, text=True, timeout=300)
    assert expanded.returncode == 0, expanded.stderr[-3000:]
    code = expanded.stdout[expanded.stdout.index("kit_"):]  # from the kit's first block on
    for gnu in ("vector_size", "__builtin_shuffle", "__builtin_shufflevector", "__builtin_convertvector",
                "_mm512", "_mm256"):
        assert gnu not in code, f"{gnu} in the C a compiler without GNU extensions compiles"


def test_the_kernels_under_test_are_the_build_kit_kernels_dir_names():
    """KIT_KERNELS_DIR (set by .ci/run for clang's build) must be the build the tests load."""
    folder = os.environ.get("KIT_KERNELS_DIR")
    loaded = os.path.dirname(os.path.abspath(convolutions.__file__))
    expected = os.path.abspath(folder) if folder else str(REPO_ROOT)
    assert loaded == expected
