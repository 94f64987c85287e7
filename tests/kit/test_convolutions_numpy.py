"""convolutions.py, the compiled kernels' numpy version, against the compiled module: every public
function on random cases (edge sizes, strides, every padding, float32 and float64, any memory
layout) gives the same results, to 1e-12 relative in float64 and 1e-5 in float32 (of the sum of
the terms' magnitudes, for sums that cancel), integers (max pooling's winners) exactly; and the
same arguments raise ValueError. Then the notice a kit without the compiled module prints, once.

The layer tests and grad checks run against the numpy version with `--kernels numpy`
(tests/conftest.py); this file compares the two modules in any run.
"""

import importlib.machinery
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

DTYPES = (np.float64, np.float32)
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
NAMES = ["convolve", "correlate", "correlate_weight_derivative", "pre_activation_derivatives",
         "maxpool_forward", "maxpool_backward", "maxpool_derivative"]


def _load(path, name="convolutions", **attributes):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    for key, value in attributes.items():
        setattr(module, key, value)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compiled():
    """The compiled module: this run's, or (under --kernels numpy) the build beside the kit."""
    module = sys.modules.get("convolutions")
    if getattr(module, "COMPILED", False) is True:
        return module
    for folder in [p for p in sys.path if p] + [str(REPO_ROOT)]:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = f"{folder}/convolutions{suffix}"
            if os.path.isfile(path):
                return _load(path)
    pytest.skip("the compiled kernels are not built: nothing to compare the numpy version with")


@pytest.fixture(scope="module")
def numpy_version():
    return _load(REPO_ROOT / "convolutions.py", "convolutions_numpy", WHY=None)


def layout(a, how):
    """`a`'s values in another memory layout."""
    if how == "flipped":
        return np.ascontiguousarray(a[..., ::-1, ::-1])[..., ::-1, ::-1]
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    return a


def assert_close(got, expected, scale=None):
    """got == expected to RTOL of the dtype, relative to max(|expected|, scale) (scale: the sum
    of the terms' magnitudes); NaN where NaN; same dtype and shape."""
    assert type(got) is np.ndarray and got.dtype == expected.dtype and got.shape == expected.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    bound = np.abs(expected) if scale is None else np.maximum(np.abs(expected), scale)
    with np.errstate(invalid="ignore"):
        error = np.abs(got.astype(np.float64) - expected)
        ok = (error <= RTOL[expected.dtype] * bound) | (got == expected) | nan
    assert ok.all(), f"largest error {np.max(error[~nan])} over {bound[~ok][:3]}"


def rng_for(*key):
    return np.random.default_rng([hash(str(k)) % 2**32 for k in key])


# ----------------------------------------------------------------------------------------
# the same names, in the same order
# ----------------------------------------------------------------------------------------

def test_the_numpy_version_has_every_public_function_in_order(compiled, numpy_version):
    assert numpy_version.__all__ == compiled.__all__ == NAMES
    assert numpy_version.COMPILED is False and compiled.COMPILED is True
    functions = [name for name, value in vars(numpy_version).items()
                 if inspect.isfunction(value) and value.__module__ == numpy_version.__name__ and name[0] != "_"]
    assert functions == NAMES  # in the pyx's order, convolve first
    for name in NAMES:
        numpy_args = inspect.signature(getattr(numpy_version, name))
        compiled_args = inspect.signature(getattr(compiled, name))
        assert str(numpy_args) == str(compiled_args), name


# ----------------------------------------------------------------------------------------
# convolve
# ----------------------------------------------------------------------------------------

# (inputs shape, weights shape, padding): the conv layers' calls, edge sizes.
CONVOLVE_CASES = [
    ((4, 1, 3, 8, 8), (1, 5, 3, 3, 3), 1),         # a forward pass
    ((4, 5, 1, 8, 8), (1, 5, 3, 3, 3), 2),         # an input derivative, full
    ((4, 1, 3, 8, 8), (4, 5, 1, 8, 8), 1),         # a weight derivative
    ((2, 3, 1, 1), (2, 3, 1, 1), 0),               # 1x1 maps
    ((1, 1, 3, 3), (1, 1, 5, 5), 1),               # k equal to the padded size: one output
    ((1, 1, 4, 7), (1, 1, 4, 1), 0),               # rectangular, k equal to the input's height
    ((0, 1, 2, 6, 6), (1, 3, 2, 3, 3), 1),         # empty batch
    ((3, 1, 5, 5), (1, 4, 2, 3), 1),               # broadcast both ways, 4-D
    ((2, 1, 1, 1, 16, 16), (1, 2, 3, 1, 5, 5), 4),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("how", ["C", "flipped", "fortran", "strided"])
@pytest.mark.parametrize("x_shape, w_shape, padding", CONVOLVE_CASES)
def test_convolve(compiled, numpy_version, x_shape, w_shape, padding, how, dtype):
    rng = rng_for("convolve", x_shape, w_shape, padding, how, dtype)
    x = layout(rng.standard_normal(x_shape).astype(dtype), how)
    w = layout(rng.standard_normal(w_shape).astype(dtype), how)
    expected = compiled.convolve(x, w, padding)
    assert_close(numpy_version.convolve(x, w, padding), expected,
                 compiled.convolve(np.abs(x), np.abs(w), padding))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_convolve_every_padding_gives_the_compiled_bits(compiled, numpy_version, k, dtype):
    rng = rng_for("convolve bits", k, dtype)
    x, w = rng.standard_normal((2, 3, 9, 7)).astype(dtype), rng.standard_normal((1, 3, k, k)).astype(dtype)
    for padding in range(k):
        assert numpy_version.convolve(x, w, padding).tobytes() == \
            np.ascontiguousarray(compiled.convolve(x, w, padding)).tobytes()


# ----------------------------------------------------------------------------------------
# correlate, correlate_weight_derivative
# ----------------------------------------------------------------------------------------

# (N, C, H, W, K, k): edge sizes among them.
CORRELATE_SHAPES = [(3, 2, 9, 9, 4, 3), (2, 1, 1, 1, 3, 1), (2, 3, 5, 6, 2, 5), (0, 2, 6, 6, 3, 3),
                    (2, 0, 5, 5, 3, 3), (1, 3, 16, 16, 17, 5), (5, 16, 8, 8, 32, 3)]


def correlate_cases():
    for shape in CORRELATE_SHAPES:
        k = shape[5]
        for stride in (1, 2, 3):
            for padding in range(k):
                if min(shape[2:4]) + 2 * padding >= k:
                    yield shape, stride, padding


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, stride, padding", list(correlate_cases()))
def test_correlate_and_its_weight_derivative(compiled, numpy_version, shape, stride, padding, dtype):
    n, c, h, w, n_out, k = shape
    rng = rng_for("correlate", shape, stride, padding, dtype)
    how = ["C", "flipped", "fortran", "strided"][(stride + padding) % 4]
    x = layout(rng.standard_normal((n, c, h, w)).astype(dtype), how)
    f = layout(rng.standard_normal((n_out, c, k, k)).astype(dtype), how)
    bias = rng.standard_normal(n_out).astype(dtype)
    scale = compiled.correlate(np.abs(x), np.abs(f), np.abs(bias), stride, padding)
    for b, relu in ((None, False), (bias, False), (bias, True)):
        expected = compiled.correlate(x, f, b, stride=stride, padding=padding, relu=relu)
        assert_close(numpy_version.correlate(x, f, b, stride=stride, padding=padding, relu=relu), expected, scale)
    d = layout(rng.standard_normal(expected.shape).astype(dtype), how)
    expected = compiled.correlate_weight_derivative(x, d, k, stride, padding)
    assert_close(numpy_version.correlate_weight_derivative(x, d, k, stride=stride, padding=padding), expected,
                 compiled.correlate_weight_derivative(np.abs(x), np.abs(d), k, stride, padding))


# ----------------------------------------------------------------------------------------
# pre_activation_derivatives, max pooling: bit for bit
# ----------------------------------------------------------------------------------------

def special_values(shape, dtype, rng, kind):
    v = rng.standard_normal(shape)
    if kind == "ties":
        v = rng.integers(-1, 2, shape).astype(float)
    elif kind == "nan":
        v[rng.random(shape) < 0.2] = np.nan
        v[rng.random(shape) < 0.1] = np.inf
        v[rng.random(shape) < 0.1] = -0.0
    elif kind == "negative":
        v = -np.abs(v) - 1
    return v.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "ties", "nan"])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (1, 1, 1, 1), (0, 3, 4, 4), (2, 3, 0, 5), (4, 2, 16, 16)])
def test_pre_activation_derivatives_give_the_compiled_bits(compiled, numpy_version, shape, kind, dtype):
    rng = rng_for("pre", shape, kind, dtype)
    d, outputs = special_values(shape, dtype, rng, kind), special_values(shape, dtype, rng, kind)
    for relu in (True, False):
        for how in ("C", "fortran"):
            got = numpy_version.pre_activation_derivatives(layout(d, how), layout(outputs, how), relu)
            expected = compiled.pre_activation_derivatives(d, outputs, relu)
            for a, b in zip(got, expected):
                assert a.dtype == b.dtype and a.shape == b.shape
                nan = np.isnan(b)
                np.testing.assert_array_equal(np.isnan(a), nan)
                assert a[~nan].tobytes() == b[~nan].tobytes()  # signed zeros and infinities too


def pool_cases():
    for shape in [(2, 3, 9, 7), (1, 1, 1, 1), (2, 2, 16, 16), (0, 2, 4, 4), (2, 0, 4, 4), (1, 2, 3, 8)]:
        for k in (1, 2, 3, 4):
            for stride in (1, 2, 3):
                for padding in range(k // 2 + 1):
                    if min(shape[2:]) + 2 * padding >= k:
                        yield shape, k, stride, padding


@pytest.mark.parametrize("shape, k, stride, padding", list(pool_cases()))
def test_max_pooling_gives_the_compiled_winners_and_bits(compiled, numpy_version, shape, k, stride, padding):
    for dtype in DTYPES:
        for kind in ("normal", "ties", "nan", "negative"):
            assert_same_pooling(compiled, numpy_version, shape, k, stride, padding, kind, dtype)


def assert_same_pooling(compiled, numpy_version, shape, k, stride, padding, kind, dtype):
    rng = rng_for("pool", shape, k, stride, padding, kind, dtype)
    x = special_values(shape, dtype, rng, kind)
    how = ["C", "flipped", "fortran", "strided"][(k + stride) % 4]
    outputs, argmax = numpy_version.maxpool_forward(layout(x, how), k, stride, padding)
    expected, expected_argmax = compiled.maxpool_forward(x, k, stride, padding)
    assert outputs.dtype == expected.dtype and argmax.dtype == expected_argmax.dtype == np.intp
    np.testing.assert_array_equal(argmax, expected_argmax)  # ties: the first maximum; a NaN wins
    assert outputs.tobytes() == expected.tobytes()
    d = layout(special_values(expected.shape, dtype, rng, "normal"), how)
    routed = compiled.maxpool_backward(d, expected_argmax, x.shape)
    assert numpy_version.maxpool_backward(d, expected_argmax, x.shape).tobytes() == routed.tobytes()
    assert numpy_version.maxpool_derivative(d, layout(x, how), k, stride, padding).tobytes() == \
        compiled.maxpool_derivative(d, x, k, stride, padding).tobytes() == routed.tobytes()


# ----------------------------------------------------------------------------------------
# invalid arguments: the same ValueErrors
# ----------------------------------------------------------------------------------------

NOT_INTS = [True, 1.5, 2.0, None, "1", np.float64(1.0), 2**31, -2**63, 10**30]


def invalid_calls():
    """(function, arguments), each call refused by the compiled module's checks; a few valid
    ones among them (the comparison is of verdicts)."""
    f64, f32 = np.zeros((2, 3, 6, 6)), np.zeros((2, 3, 6, 6), dtype=np.float32)
    w = np.zeros((4, 3, 3, 3))
    x5, w5 = np.zeros((2, 1, 3, 6, 6)), np.zeros((1, 4, 3, 3, 3))
    for bad in [f64.tolist(), f64.astype(np.float16), f64.astype(np.int64), f64.astype(complex), f64.astype(">f8"),
                f64.astype(object), np.zeros((6, 6)), np.zeros((1, 0, 6, 6)), np.zeros((2, 3, 2, 2))]:
        yield "convolve", (bad, w5, 0)
        yield "convolve", (bad, w, 1)
        yield "convolve", (x5, bad, 0)
        yield "correlate", (bad, w)
        yield "correlate", (f64, bad)
        yield "correlate_weight_derivative", (bad, np.zeros((2, 4, 4, 4)), 3)
        yield "pre_activation_derivatives", (bad, f64, True)
        yield "pre_activation_derivatives", (f64, bad, False)
        yield "maxpool_forward", (bad, 2, 2)
        yield "maxpool_derivative", (np.zeros((2, 3, 3, 3)), bad, 2, 2)
        yield "maxpool_backward", (bad, np.zeros((2, 3, 3, 3), dtype=np.intp), (2, 3, 6, 6))
    for value in NOT_INTS + [-1, 0, 3, 7]:
        yield "convolve", (x5, w5, value)
        yield "correlate", (f64, w, None, value)
        yield "correlate", (f64, w, None, 1, value)
        yield "correlate_weight_derivative", (f64, np.zeros((2, 4, 4, 4)), value)
        yield "correlate_weight_derivative", (f64, np.zeros((2, 4, 4, 4)), 3, value)
        yield "maxpool_forward", (f64, value, 2)
        yield "maxpool_forward", (f64, 2, value)
        yield "maxpool_forward", (f64, 3, 1, value)
        yield "maxpool_derivative", (np.zeros((2, 3, 3, 3)), f64, 2, 2, value)
        yield "maxpool_backward", (np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), dtype=np.intp), (2, 3, value, 6))
    yield "convolve", (x5, w5.astype(np.float32), 0)
    yield "convolve", (np.zeros((2, 2, 6, 6)), np.zeros((3, 2, 3, 3)), 0)
    yield "convolve", (np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 5, 5)), 1)
    yield "correlate", (f64, np.zeros((4, 2, 3, 3)))
    yield "correlate", (f64, np.zeros((4, 3, 3, 2)))
    yield "correlate", (f64, w, np.zeros(3))
    yield "correlate", (f64, w, np.zeros(4, dtype=np.float32))
    yield "correlate", (f32, w)
    yield "correlate", (f64, np.zeros((4, 3, 9, 9)), None, 1, 1)
    yield "correlate_weight_derivative", (f64, np.zeros((2, 4, 4, 5)), 3)
    yield "correlate_weight_derivative", (f64, np.zeros((3, 4, 4, 4)), 3)
    yield "correlate_weight_derivative", (f64, np.zeros((2, 4, 4, 4), dtype=np.float32), 3)
    yield "pre_activation_derivatives", (f64, f32, True)
    yield "pre_activation_derivatives", (f64, np.zeros((2, 3, 6, 5)), True)
    yield "pre_activation_derivatives", (np.zeros((2, 3, 6)), np.zeros((2, 3, 6)), True)
    yield "maxpool_forward", (np.zeros((1, 1, 0, 5)), 1, 1)
    yield "maxpool_forward", (np.zeros((0, 1, 0, 5)), 2, 1, 1)
    yield "maxpool_forward", (f64, 9, 1)
    yield "maxpool_derivative", (np.zeros((2, 3, 3, 4)), f64, 2, 2)
    yield "maxpool_derivative", (f32[:, :, :3, :3], f64, 2, 2)
    am = np.zeros((2, 3, 3, 3), dtype=np.intp)
    d = np.zeros((2, 3, 3, 3))
    for argmax in [am.astype(np.int32), am.astype(float), am.tolist(), am[..., :2], am + 36, am - 1, am.astype(">i8")]:
        yield "maxpool_backward", (d, argmax, (2, 3, 6, 6))
    for shape in [(2, 3, 6), (2, 4, 6, 6), (2, 3, 6, 6, 1), None, 5, "2366", (2, 3, 6.0, 6), (2, 3, -1, 6)]:
        yield "maxpool_backward", (d, am, shape)


@pytest.mark.parametrize("name, args", list(invalid_calls()))
def test_the_same_arguments_raise_value_error(compiled, numpy_version, name, args):
    verdicts = []
    for module in (compiled, numpy_version):
        try:
            getattr(module, name)(*args)
            verdicts.append("accepted")
        except ValueError:
            verdicts.append("ValueError")
    assert verdicts[1] == verdicts[0], f"compiled: {verdicts[0]}, numpy: {verdicts[1]}"


# ----------------------------------------------------------------------------------------
# a kit without the compiled module: its one line, and the scripts that go on
# ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kit_without_build(tmp_path_factory):
    """A copy of the kit's Python files (not the build) and the configs it needs."""
    kit = tmp_path_factory.mktemp("kit_without_build")
    for path in REPO_ROOT.glob("*.py"):
        if path.name != "setup.py":
            shutil.copy2(path, kit / path.name)
    for folder in ("plumbing", "data"):
        (kit / folder).mkdir()
        for path in (REPO_ROOT / folder).glob("*.py"):
            shutil.copy2(path, kit / folder / path.name)
    (kit / "configs").mkdir()
    shutil.copy2(REPO_ROOT / "configs" / "logreg.yaml", kit / "configs" / "logreg.yaml")
    assert not [p for p in kit.iterdir() if p.suffix in (".so", ".pyd")]
    return kit


SLOWDOWN = _load(REPO_ROOT / "convolutions.py", "convolutions_words", WHY=None).SLOWDOWN
NOTICE = (f"convolutions: the compiled kernels are not built; using their numpy version ({SLOWDOWN}); "
          "build them with: python setup.py build_ext --inplace")


def notices(stderr):
    return [line for line in stderr.splitlines() if line.startswith("convolutions: ")]


def test_grad_check_without_the_compiled_module_passes_with_one_line_saying_so(kit_without_build):
    result = subprocess.run([sys.executable, "grad_check.py", "configs/logreg.yaml"], cwd=kit_without_build,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout
    assert notices(result.stderr) == [NOTICE], result.stderr


def test_play_with_convolutions_without_the_compiled_module_draws_its_figure(kit_without_build, tmp_path):
    out = tmp_path / "X.png"
    result = subprocess.run([sys.executable, "play_with_convolutions.py", "--out", str(out)], cwd=kit_without_build,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    assert len(notices(result.stderr)) == 1, result.stderr
