"""Every build of the kernels gives the same numbers: setup.py's portable build
(KIT_NO_NATIVE=1, narrower vectors, and no FMA instructions: C's fma), an AVX2 build
(KIT_NO_NATIVE=1 with CFLAGS=-march=haswell, where this CPU runs it), correlate's plain C
loops (CFLAGS=-DKIT_DB_PLAIN_C, as for compilers without vector extensions) and the serial
build (KIT_NO_OPENMP=1) against the installed one, bit for bit. Slow: each build compiles the
extension (python -m pytest -m slow)."""

import glob
import importlib.util
import os
import shutil
import subprocess
import sys

import convolutions
import numpy as np
import pytest
from conftest import REPO_ROOT


def cpu_has(*flags):
    try:
        with open("/proc/cpuinfo") as info:
            present = set(next(line for line in info if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return False
    return all(flag in present for flag in flags)


def build(tmp_path, name, variable, cflags=None):
    """Build convolutions.pyx in a folder of its own with one of setup.py's switches; load it."""
    folder = tmp_path / name
    folder.mkdir()
    for source in ("convolutions.pyx", "setup.py"):
        shutil.copy(REPO_ROOT / source, folder)
    # The C blocks convolutions.pyx includes: in kernels/, where setup.py's include_dirs looks.
    (folder / "kernels").mkdir()
    for header in ("convolve_blocks.h", "direct_blocks.h"):
        shutil.copy(REPO_ROOT / "kernels" / header, folder / "kernels")
    env = {**os.environ, variable: "1"}
    if cflags:
        env["CFLAGS"] = cflags
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=folder,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert variable in result.stderr  # setup.py says which build it made
    spec = importlib.util.spec_from_file_location("convolutions", glob.glob(str(folder / "convolutions*.so"))[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("name,variable", [("portable", "KIT_NO_NATIVE"), ("serial", "KIT_NO_OPENMP")])
def test_other_builds_give_the_same_numbers_bit_for_bit(tmp_path, name, variable, monkeypatch):
    other = build(tmp_path, name, variable)
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
