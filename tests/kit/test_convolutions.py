"""The compiled kernels against independent references (tests/references.py):
scipy.signal.convolve2d for convolve, plain numpy loops for max pooling and for
pre_activation_derivatives' bias sums. correlate and correlate_weight_derivative: test_correlate.py."""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
from conftest import REPO_ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from references import convolve_reference, maxpool_backward_reference, maxpool_reference, pre_activation_reference

import convolutions

HYPOTHESIS = settings(max_examples=30, deadline=None, derandomize=True)


def tolerance(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------
# convolve
# ----------------------------------------------------------------------------------------

@st.composite
def convolve_cases(draw):
    n_lead = draw(st.integers(1, 3))
    x_lead, w_lead = [], []
    for _ in range(n_lead):
        size = draw(st.integers(1, 3))
        which = draw(st.sampled_from(["both", "x", "w"]))  # who keeps the axis; the other has 1
        x_lead.append(size if which in ("both", "x") else 1)
        w_lead.append(size if which in ("both", "w") else 1)
    k_y, k_x = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    padding = draw(st.integers(0, min(k_y, k_x) - 1))
    in_y = draw(st.integers(max(1, k_y - 2 * padding), k_y + 6))
    in_x = draw(st.integers(max(1, k_x - 2 * padding), k_x + 6))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, tuple(x_lead) + (in_y, in_x)).astype(dtype)
    w = rng.uniform(-1, 1, tuple(w_lead) + (k_y, k_x)).astype(dtype)
    return x, w, padding


@HYPOTHESIS
@given(convolve_cases())
def test_convolve_matches_scipy_with_broadcasting_and_padding(case):
    x, w, padding = case
    out = convolutions.convolve(x, w, padding=padding)
    expected = convolve_reference(x, w, padding)
    assert out.dtype == x.dtype
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, **tolerance(x.dtype))


def convolve_in_order(x, w, padding):
    """The documented order of convolve's sums, in numpy: out = 0, then out += the (i, j)
    term for i, j in order, each a separate IEEE multiply and add. convolve must give these
    very numbers, whatever blocks and vectors compute them."""
    lead = np.broadcast_shapes(x.shape[:-2], w.shape[:-2])
    pad = [(0, 0)] * (x.ndim - 2) + [(padding, padding)] * 2
    xp = np.pad(x, pad)
    wf = w[..., ::-1, ::-1]  # convolution = correlation with the flipped kernel
    k_y, k_x = w.shape[-2:]
    out_y, out_x = xp.shape[-2] - k_y + 1, xp.shape[-1] - k_x + 1
    out = np.zeros(lead + (out_y, out_x), dtype=x.dtype)
    for i in range(k_y):
        for j in range(k_x):
            out = out + wf[..., i, j, None, None] * xp[..., i:i + out_y, j:j + out_x]
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_convolve_every_output_size_gives_the_in_order_sums_bit_for_bit(k, dtype):
    # Every map size from 1x1 to 19x19: rows that do and do not fill blocks of 4, widths
    # around every vector width (2 to 16 lanes), full and half blocks. Exact equality: the
    # order of the sums is fixed, and a fused multiply-add would round differently.
    rng = np.random.default_rng(k)
    for out_y in range(1, 20):
        for out_x in range(1, 20):
            padding = (k - 1) // 2  # leaves an input at least as large as the output
            x = rng.standard_normal((2, 1, out_y + k - 1 - 2 * padding, out_x + k - 1 - 2 * padding))
            w = rng.standard_normal((1, 3, k, k))
            x, w = x.astype(dtype), w.astype(dtype)
            out = convolutions.convolve(x, w, padding=padding)
            assert out.shape == (2, 3, out_y, out_x)
            np.testing.assert_array_equal(out, convolve_in_order(x, w, padding))


def test_convolve_takes_lanes_across_maps_for_small_maps_and_short_rows():
    # The two ways convolve puts outputs in vector lanes must both be exercised by the tests
    # below: across maps for the weight derivative's small maps (one image, many kernels),
    # and for maps whose rows fill half a vector or less; along rows for rows that fill
    # their vectors.
    for dtype in (np.float64, np.float32):
        # convnet2's conv1 and conv2 weight derivatives: lanes across the 16 or 32 kernels.
        assert convolutions._across_axis((100, 1, 1, 16, 16), (100, 16, 1, 16, 16), 5, 5, dtype) == 1
        assert convolutions._across_axis((100, 1, 16, 8, 8), (100, 32, 1, 8, 8), 5, 5, dtype) == 1
        # Forward passes and input derivatives of 8x8 maps: across the kernels where a row
        # of 8 fills half a vector or less (floats with AVX-512), else along rows.
        short_rows = 8 <= convolutions._vector_width(dtype) // 2
        for kernels in ((1, 32, 16, 3, 3), (1, 32, 16, 5, 5)):
            assert convolutions._across_axis((100, 1, 16, 8, 8), kernels, 8, 8, dtype) == (1 if short_rows else None)
            assert convolutions._across_axis((100, 32, 1, 8, 8), kernels, 8, 8, dtype) == (2 if short_rows else None)
        # 16x16 maps: along rows.
        assert convolutions._across_axis((100, 1, 1, 16, 16), (1, 16, 1, 3, 3), 16, 16, dtype) is None
        assert convolutions._across_axis((100, 1, 16, 16, 16), (1, 16, 16, 3, 3), 16, 16, dtype) is None
        # No axis where the inputs are broadcast and the kernels are not: along rows.
        assert convolutions._across_axis((100, 32, 12, 12), (100, 1, 8, 8), 5, 5, dtype) is None
        assert convolutions._across_axis((1, 1, 12, 12), (1, 1, 8, 8), 5, 5, dtype) is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("maps", [2, 3, 5, 8, 9, 16, 17, 33])
def test_convolve_lanes_across_maps_give_the_in_order_sums_bit_for_bit(maps, dtype, monkeypatch):
    # One image, `maps` kernels, with lanes across maps wherever the cost would choose them
    # or not: counts around every vector width (2 to 16 lanes) and twice it; the broadcast
    # axis first, in the middle and last; maps from 1x1 to 9x7 (a block of positions
    # filled, or not); kernels as a flipped view, as the conv layer passes them.
    rng = np.random.default_rng(maps)
    for axis in (0, 1, 2):
        monkeypatch.setattr(convolutions, "_across_axis", lambda *args, axis=axis: axis)
        # Their positions make blocks of every size from 1 to 8 (1; 2; 3; 9 as 5 + 4, or
        # 3 + 3 + 3 with 4 at most; 14 as 7 + 7; 25 as 7 + 6 + 6 + 6; 63; 16).
        for out_y, out_x, k, padding in [(1, 1, 4, 0), (1, 2, 3, 1), (3, 1, 2, 0), (3, 3, 8, 1), (5, 5, 16, 2),
                                         (2, 7, 3, 1), (9, 7, 5, 2), (4, 4, 2, 0)]:
            # Kernels of their own for every group (the weight derivative's), or kernels
            # shared by the groups along another axis.
            other = (axis + 1) % 3
            for shared in (False, True):
                lead_x, lead_w = [2, 3, 2], [2, 3, 2]
                lead_x[axis], lead_w[axis] = 1, maps
                if shared:
                    lead_w[other] = 1
                in_y, in_x = out_y + k - 1 - 2 * padding, out_x + k - 1 - 2 * padding
                x = rng.standard_normal(tuple(lead_x) + (in_y, in_x)).astype(dtype)
                w = rng.standard_normal(tuple(lead_w) + (k, k)).astype(dtype)[..., ::-1, ::-1]
                out = convolutions.convolve(x, w, padding=padding)
                lead = np.broadcast_shapes(tuple(lead_x), tuple(lead_w))
                assert out.shape == lead + (out_y, out_x)
                assert_documented_layout(out, x, w, across=axis)
                np.testing.assert_array_equal(out, convolve_in_order(x, w, padding))


def assert_documented_layout(out, x, w, across=None):
    """convolve's output is C-contiguous, except that a lone shared leading axis (longer
    than 1 in both arguments) comes right after the first axis in memory, and the axis the
    maps lie across in vector lanes (`across`, if not None) comes last."""
    order = list(range(x.ndim - 2))
    shared = [a for a in order if x.shape[a] > 1 and w.shape[a] > 1]
    if len(shared) == 1 and shared[0] >= 2:
        order.remove(shared[0])
        order.insert(1, shared[0])
    order += [x.ndim - 2, x.ndim - 1]
    if across is not None:
        order.remove(across)
        order.append(across)
    assert out.transpose(order).flags.c_contiguous, (x.shape, w.shape, across, out.strides)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lead_x, lead_w, summed", [
    ((6, 1, 5), (1, 4, 5), 2),  # a forward pass: (N, 1, C) * (1, K, C), summed over C
    ((6, 4, 1), (1, 4, 5), 1),  # an input derivative: summed over K
    ((6, 1, 5), (6, 4, 1), 0),  # a weight derivative: summed over N
    ((2, 3, 1, 4), (2, 1, 3, 4), 3),  # two shared axes: C order
    ((1, 3, 1, 4), (2, 1, 5, 4), 3),  # four dimensions, one shared axis, the last
])
@pytest.mark.parametrize("across", [False, True])
def test_convolve_lays_out_the_shared_axis_second_and_sums_over_it_in_order(lead_x, lead_w, summed, dtype, across,
                                                                             monkeypatch):
    # Whatever the layout, numpy's sum over an axis must give the bits of the same sum over
    # a C-contiguous copy (numpy adds along an axis in its order, not the memory's). With
    # `across`, the maps lie side by side in the lanes along the first axis where the
    # inputs are broadcast, and that axis is last in memory.
    rng = np.random.default_rng(len(lead_x) + summed)
    x = rng.standard_normal(lead_x + (7, 6)).astype(dtype)
    w = rng.standard_normal(lead_w + (3, 3)).astype(dtype)
    axis = next(a for a in range(len(lead_x)) if lead_x[a] == 1 and lead_w[a] > 1) if across else None
    monkeypatch.setattr(convolutions, "_across_axis", lambda *args: axis)
    out = convolutions.convolve(x, w, padding=1)
    assert_documented_layout(out, x, w, across=axis)
    copy = np.ascontiguousarray(out)
    np.testing.assert_array_equal(out, convolve_in_order(x, w, 1))
    for a in range(len(lead_x)):
        # (Along the last axis in memory, numpy adds 8 or more values pairwise: the one axis
        # a layer never sums, which these arrays keep shorter than 8.)
        np.testing.assert_array_equal(out.sum(axis=a), copy.sum(axis=a))
    # What a layer sums comes out in C order, or with the maps' axis last.
    total = out.sum(axis=summed)
    if axis is not None:
        total = np.moveaxis(total, axis - (axis > summed), -1)
    assert total.flags.c_contiguous
    # What a student's answer may do with it works as on any array.
    assert np.reshape(out, (-1,) + out.shape[-2:]).shape[0] == int(np.prod(out.shape[:-2]))
    np.testing.assert_array_equal(np.sum(out, axis=summed), copy.sum(axis=summed))


def test_convolve_values_after_a_map_never_reach_its_outputs():
    # The blocks read (and discard) pixels past a map's edge: the next row, the next image.
    # Make those NaN and infinite: the first image's outputs must not see them.
    rng = np.random.default_rng(0)
    for size in (3, 5, 8, 11):
        x = rng.standard_normal((2, size, size))
        x[1] = np.nan
        x[1, ::2] = np.inf
        w = rng.standard_normal((1, 3, 3))
        out = convolutions.convolve(x, w, padding=1)
        assert np.isfinite(out[0]).all()
        np.testing.assert_allclose(out[0], scipy.signal.convolve2d(x[0], w[0], mode="same"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_convolve_padding_0_and_k_minus_1_are_scipy_valid_and_full(k):
    rng = np.random.default_rng(k)
    x, w = rng.standard_normal((1, 9, 8)), rng.standard_normal((1, k, k))
    np.testing.assert_allclose(convolutions.convolve(x, w, 0)[0],
                               scipy.signal.convolve2d(x[0], w[0], mode="valid"), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(convolutions.convolve(x, w, k - 1)[0],
                               scipy.signal.convolve2d(x[0], w[0], mode="full"), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_convolve_padding_half_kernel_is_scipy_same_for_odd_kernels(k):
    rng = np.random.default_rng(10 + k)
    x, w = rng.standard_normal((2, 7, 10)), rng.standard_normal((1, k, k))
    out = convolutions.convolve(x, w, k // 2)
    for i in range(2):
        np.testing.assert_allclose(out[i], scipy.signal.convolve2d(x[i], w[0], mode="same"),
                                   rtol=1e-10, atol=1e-12)


def test_convolve_is_a_true_convolution_not_a_correlation():
    # An impulse convolved with an asymmetric kernel reproduces the kernel unflipped.
    x = np.zeros((1, 5, 5))
    x[0, 2, 2] = 1.0
    w = np.arange(9, dtype=float).reshape(1, 3, 3)
    np.testing.assert_array_equal(convolutions.convolve(x, w, 1)[0, 1:4, 1:4], w[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_convolve_images_broadcast_against_a_kernel_per_image(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 11, 9)).astype(dtype)
    w = rng.standard_normal((2, 1, 3, 3)).astype(dtype)
    out = convolutions.convolve(x, w)
    assert out.shape == (2, 4, 9, 7) and out.dtype == dtype
    np.testing.assert_allclose(out, convolve_reference(x, w, 0), **tolerance(dtype))


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_convolve_batch_of_multichannel_images_with_bank_of_filters(padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 1, 2, 8, 8))
    w = rng.standard_normal((1, 4, 2, 3, 3))
    out = convolutions.convolve(x, w, padding=padding)
    assert out.shape == (3, 4, 2, 6 + 2 * padding, 6 + 2 * padding)
    np.testing.assert_allclose(out, convolve_reference(x, w, padding), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_convolve_larger_images_with_5x5_filter_bank_match_scipy(dtype):
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3, 1, 4, 20, 19)).astype(dtype)
    w = rng.standard_normal((1, 5, 4, 5, 5)).astype(dtype)
    out = convolutions.convolve(x, w, padding=2)
    assert out.shape == (3, 5, 4, 20, 19) and out.dtype == dtype
    np.testing.assert_allclose(out, convolve_reference(x, w, 2), **tolerance(dtype))


def test_convolve_docstring_example_shape_with_padding_2():
    x = np.ones((4, 1, 3, 20, 20), dtype=np.float32)
    w = np.ones((1, 5, 3, 5, 5), dtype=np.float32)
    out = convolutions.convolve(x, w, padding=2)
    assert out.shape == (4, 5, 3, 20, 20)
    assert out.dtype == np.float32
    assert out[0, 0, 0, 10, 10] == 25 and out[0, 0, 0, 0, 0] == 9  # interior and corner


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_convolve_accepts_non_contiguous_views(dtype):
    rng = np.random.default_rng(3)
    base_x = rng.standard_normal((2, 3, 9, 7)).astype(dtype)
    base_w = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    cases = [
        (base_x, base_w[:, :, ::-1, ::-1], 1),                      # flipped kernels
        (base_x[:, np.newaxis], base_w[:, :, ::-1, ::-1][np.newaxis], 2),  # new axes on views
        (base_x.transpose(0, 1, 3, 2), base_w, 0),                 # transposed images
        (base_x[:, :, ::2, :], base_w.transpose(0, 1, 3, 2), 1),   # strided + transposed
    ]
    for x, w, padding in cases:
        assert not (x.flags.owndata and w.flags.owndata)
        assert not (x.flags.c_contiguous and w.flags.c_contiguous)
        out = convolutions.convolve(x, w, padding=padding)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, convolve_reference(np.array(x), np.array(w), padding),
                                   **tolerance(dtype))


def test_convolve_does_not_modify_its_arguments():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 6, 6)), rng.standard_normal((2, 3, 3))
    x0, w0 = x.copy(), w.copy()
    convolutions.convolve(x, w, padding=2)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


def test_convolve_broadcasts_a_zero_length_leading_axis_like_numpy():
    # numpy broadcasting of (0, 1, 2) with (1, 3, 2) gives (0, 3, 2): an empty batch.
    x = np.zeros((0, 1, 2, 5, 5))
    w = np.zeros((1, 3, 2, 3, 3))
    out = convolutions.convolve(x, w, padding=1)
    assert out.shape == (0, 3, 2, 5, 5)


def _f64(*shape):
    return np.ones(shape)


BAD_CONVOLVE_ARGUMENTS = {
    "mixed dtypes": (_f64(1, 5, 5), np.ones((1, 3, 3), np.float32), 0),
    "int dtype": (np.ones((1, 5, 5), np.int64), np.ones((1, 3, 3), np.int64), 0),
    "float16 dtype": (np.ones((1, 5, 5), np.float16), np.ones((1, 3, 3), np.float16), 0),
    "inputs 2-d": (_f64(5, 5), _f64(3, 3), 0),
    "different ndim": (_f64(2, 1, 5, 5), _f64(1, 3, 3), 0),
    "leading axes cannot broadcast": (_f64(2, 4, 5, 5), _f64(3, 1, 3, 3), 0),
    "negative padding": (_f64(1, 5, 5), _f64(1, 3, 3), -1),
    "padding equals kernel": (_f64(1, 5, 5), _f64(1, 3, 3), 3),
    "padding above smaller kernel side": (_f64(1, 5, 5), _f64(1, 3, 2), 2),
    "padding 1.5": (_f64(1, 5, 5), _f64(1, 3, 3), 1.5),
    "padding True": (_f64(1, 5, 5), _f64(1, 3, 3), True),
    "padding string": (_f64(1, 5, 5), _f64(1, 3, 3), "1"),
    "kernel larger than padded input": (_f64(1, 4, 4), _f64(1, 7, 7), 1),
    "kernel taller than input": (_f64(1, 2, 9), _f64(1, 3, 1), 0),
}


@pytest.mark.parametrize("name", list(BAD_CONVOLVE_ARGUMENTS))
def test_convolve_bad_arguments_raise_value_error_naming_the_shapes(name):
    x, w, padding = BAD_CONVOLVE_ARGUMENTS[name]
    with pytest.raises(ValueError) as info:
        convolutions.convolve(x, w, padding=padding)
    assert str(x.shape) in str(info.value) or str(w.shape) in str(info.value), str(info.value)


@pytest.mark.parametrize("which", ["inputs", "weights"])
def test_convolve_refuses_python_lists(which):
    x, w = [np.ones((1, 5, 5)), np.ones((1, 3, 3))]
    args = {"inputs": (x.tolist(), w), "weights": (x, w.tolist())}[which]
    with pytest.raises(ValueError, match="list"):
        convolutions.convolve(*args)


def test_convolve_validation_does_not_rely_on_assert_under_python_dash_o():
    code = ("import numpy as np, convolutions\n"
            "try:\n"
            "    convolutions.convolve(np.ones((1, 5, 5)), np.ones((1, 3, 3)), padding=3)\n"
            "except ValueError as e:\n"
            "    print('ValueError:', e)\n"
            "else:\n"
            "    print('no error')\n")
    result = subprocess.run([sys.executable, "-O", "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ValueError:"), result.stdout
    assert "(1, 5, 5)" in result.stdout


def test_convolve_and_maxpool_accept_read_only_inputs():
    rng = np.random.default_rng(13)
    x, w = rng.standard_normal((2, 6, 6)), rng.standard_normal((2, 3, 3))
    x.flags.writeable = False
    w.flags.writeable = False
    np.testing.assert_allclose(convolutions.convolve(x, w, 0), convolve_reference(x, w, 0), rtol=1e-10, atol=1e-12)
    out, _ = convolutions.maxpool_forward(x[np.newaxis], 2, 2, 0)
    np.testing.assert_array_equal(out, maxpool_reference(x[np.newaxis], 2, 2, 0)[0])


# ----------------------------------------------------------------------------------------
# pre_activation_derivatives (a conv layer's ReLU derivative and bias sums, method 1)
# ----------------------------------------------------------------------------------------

def awkward_values(rng, shape, dtype):
    """Normal values with zeros of both signs, infinities and NaNs mixed in."""
    values = rng.standard_normal(shape)
    flat = values.reshape(-1)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan])
    where = rng.choice(flat.size, size=flat.size // 5, replace=False)
    flat[where] = specials[rng.integers(0, len(specials), where.size)]
    return values.astype(dtype)


def assert_same_bits(a, b):
    """Equal values, NaN where NaN, and the same sign on zeros."""
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.signbit(a), np.signbit(b))


def assert_identical(a, b):
    """The same dtype, shape and bytes: NaN payloads and signs of zeros included."""
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), np.argwhere(a.view(np.uint8) != b.view(np.uint8))[:5]


def assert_same_sums(a, b):
    """The same dtype, shape and values, zeros of the same sign, NaN where NaN (of any sign:
    adding two NaNs, which one's sign the result keeps is the compiler's choice)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b))
    assert a[~nan].tobytes() == b[~nan].tobytes()


PRE_SHAPES = [(1, 1, 1, 1), (2, 3, 1, 7), (5, 4, 3, 3), (3, 2, 13, 11), (7, 16, 8, 8), (2, 5, 16, 16)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("shape", PRE_SHAPES)
def test_pre_activation_derivatives_are_numpys_relu_derivative_and_a_loops_sums_bit_for_bit(shape, relu, dtype):
    # Values with zeros of both signs, infinities and NaNs, in both arguments: d is numpy's
    # d * (outputs > 0) (or d itself), every bit; bias_sum the loop's per-image sums in memory
    # order, then np.sum over the images, every bit but the sign of a NaN.
    rng = np.random.default_rng(sum(shape) + relu)
    d, outputs = awkward_values(rng, shape, dtype), awkward_values(rng, shape, dtype)
    d_before, outputs_before = d.copy(), outputs.copy()
    d_pre, bias_sum = convolutions.pre_activation_derivatives(d, outputs, relu)
    with np.errstate(invalid="ignore"):
        assert_identical(d_pre, d * (outputs > 0) if relu else d)
    want_d, want_sum = pre_activation_reference(d, outputs, relu)
    assert_identical(d_pre, want_d)
    assert_same_sums(bias_sum, want_sum)
    assert bias_sum.shape == (shape[1],) and d_pre.flags.c_contiguous
    assert_identical(d, d_before)  # arguments unchanged
    assert_identical(outputs, outputs_before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("relu", [True, False])
def test_pre_activation_bias_sums_are_added_in_the_documented_order_not_numpys(relu, dtype):
    # Finite values of very different sizes, on maps of 143 positions: numpy's pairwise sum
    # rounds differently from one value at a time, so only the documented order gives these bits.
    rng = np.random.default_rng(3)
    shape = (9, 6, 13, 11)
    d = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-4, 4, shape)).astype(dtype)
    outputs = rng.standard_normal(shape).astype(dtype)
    d_pre, bias_sum = convolutions.pre_activation_derivatives(d, outputs, relu)
    want_d, want_sum = pre_activation_reference(d, outputs, relu)
    assert_identical(bias_sum, want_sum)
    pairwise = want_d.sum(axis=(2, 3)).sum(axis=0)
    assert not np.array_equal(pairwise, want_sum)  # the data tells the two orders apart
    np.testing.assert_allclose(bias_sum, pairwise, rtol=1e-4 if dtype == np.float32 else 1e-12)
    assert_identical(d_pre, want_d)


def test_pre_activation_derivatives_nan_and_infinities():
    # One image, one channel per case, 4 positions each: (d, outputs) -> d', and the channel's sum.
    inf, nan = np.inf, np.nan
    cases = [
        ([inf, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0], [inf, 1.0, 2.0, 3.0], inf),         # passes where on
        ([inf, 1.0, 2.0, 3.0], [0.0, 1.0, 1.0, 1.0], [nan, 1.0, 2.0, 3.0], nan),         # inf * 0 is NaN
        ([-inf, 1.0, 2.0, 3.0], [-1.0, 1.0, 1.0, 1.0], [nan, 1.0, 2.0, 3.0], nan),
        ([nan, 1.0, 2.0, 3.0], [-5.0, 1.0, 1.0, 1.0], [nan, 1.0, 2.0, 3.0], nan),        # NaN * 0 is NaN
        ([4.0, 1.0, 2.0, 3.0], [nan, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0], 6.0),         # NaN > 0 is False
        ([-4.0, 1.0, 2.0, 3.0], [-0.0, 1.0, 1.0, 1.0], [-0.0, 1.0, 2.0, 3.0], 6.0),      # -0.0 is not > 0
        ([4.0, 1.0, 2.0, 3.0], [inf, -inf, 1.0, 0.0], [4.0, 0.0, 2.0, 0.0], 6.0),
        ([inf, -inf, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0], [inf, -inf, 2.0, 3.0], nan),       # inf - inf
        ([1e308, 1e308, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1e308, 1e308, 0.0, 0.0], inf),  # overflow
    ]
    d = np.array([[c[0] for c in cases]])[:, :, None, :]
    outputs = np.array([[c[1] for c in cases]])[:, :, None, :]
    with np.errstate(over="ignore"):
        d_pre, bias_sum = convolutions.pre_activation_derivatives(d, outputs, relu=True)
    np.testing.assert_array_equal(d_pre[0, :, 0], np.array([c[2] for c in cases]))
    assert np.array_equal(np.signbit(d_pre[0, 5, 0]), [True, False, False, False])
    np.testing.assert_array_equal(bias_sum, np.array([c[3] for c in cases]))
    # Without ReLU everything passes unchanged, NaN and infinities included.
    d_pre, bias_sum = convolutions.pre_activation_derivatives(d, outputs, relu=False)
    assert_identical(d_pre, d)
    assert np.isnan(bias_sum[[3, 7]]).all() and bias_sum[0] == inf and bias_sum[4] == 10.0


@pytest.mark.parametrize("layout", ["transposed", "fortran", "flipped", "strided", "read-only", "broadcast"])
def test_pre_activation_derivatives_give_the_same_bits_for_any_memory_layout(layout):
    rng = np.random.default_rng(4)
    shape = (4, 6, 9, 10)
    views = {
        "transposed": lambda a: np.ascontiguousarray(a.swapaxes(2, 3)).swapaxes(2, 3),
        "fortran": np.asfortranarray,
        "flipped": lambda a: np.ascontiguousarray(a[:, :, ::-1, ::-1])[:, :, ::-1, ::-1],
        "strided": lambda a: np.repeat(a, 2, axis=3)[..., ::2],
        "read-only": lambda a: np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape),
        "broadcast": lambda a: np.broadcast_to(a[:1], a.shape),
    }
    for dtype in (np.float64, np.float32):
        d = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)).astype(dtype)
        outputs = rng.standard_normal(shape).astype(dtype)
        d_view, outputs_view = views[layout](d), views[layout](outputs)
        assert np.array_equal(d_view, d) or layout == "broadcast"
        assert not (d_view.flags.c_contiguous and d_view.flags.writeable)
        for relu in (True, False):
            want = convolutions.pre_activation_derivatives(np.ascontiguousarray(d_view),
                                                           np.ascontiguousarray(outputs_view), relu)
            got = convolutions.pre_activation_derivatives(d_view, outputs_view, relu)
            for a, b in zip(got, want, strict=True):
                assert_identical(a, b)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4), (2, 3, 4, 0)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pre_activation_derivatives_of_empty_arrays(shape, dtype):
    d_pre, bias_sum = convolutions.pre_activation_derivatives(np.ones(shape, dtype), np.ones(shape, dtype), True)
    assert d_pre.shape == shape and d_pre.dtype == dtype
    assert bias_sum.dtype == dtype
    assert_identical(bias_sum, np.zeros(shape[1], dtype))


def test_pre_activation_derivatives_the_same_bits_on_one_thread_as_on_every_core():
    code = ("import numpy as np, convolutions, sys\n"
            "rng = np.random.default_rng(6)\n"
            "for dtype in (np.float32, np.float64):\n"
            "    scale = 10.0 ** rng.uniform(-4, 4, (37, 16, 12, 12))\n"
            "    d = (rng.standard_normal((37, 16, 12, 12)) * scale).astype(dtype)\n"
            "    o = rng.standard_normal((37, 16, 12, 12)).astype(dtype)\n"
            "    for part in convolutions.pre_activation_derivatives(d, o, True):\n"
            "        sys.stdout.buffer.write(part.tobytes())\n")
    outputs = []
    for threads in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        assert run.returncode == 0, run.stderr.decode()
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1] == outputs[2]


BAD_PRE_ACTIVATION_ARGUMENTS = {
    "shapes differ": (np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 5))),
    "3-d arrays": (np.ones((2, 3, 4)), np.ones((2, 3, 4))),
    "5-d arrays": (np.ones((1, 2, 3, 4, 4)), np.ones((1, 2, 3, 4, 4))),
    "2-d arrays": (np.ones((2, 3)), np.ones((2, 3))),
    "dtypes differ": (np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4), dtype=np.float32)),
    "float32 and float64": (np.ones((2, 3, 4, 4), dtype=np.float32), np.ones((2, 3, 4, 4))),
    "integer d_outputs": (np.ones((2, 3, 4, 4), dtype=np.int64), np.ones((2, 3, 4, 4), dtype=np.int64)),
    "float16": (np.ones((2, 3, 4, 4), dtype=np.float16), np.ones((2, 3, 4, 4), dtype=np.float16)),
    "complex": (np.ones((2, 3, 4, 4), dtype=complex), np.ones((2, 3, 4, 4), dtype=complex)),
    "bool outputs": (np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4), dtype=bool)),
    "object arrays": (np.ones((2, 3, 4, 4), dtype=object), np.ones((2, 3, 4, 4), dtype=object)),
    "a list": (np.ones((1, 1, 2, 2)).tolist(), np.ones((1, 1, 2, 2))),
    "a list of outputs": (np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)).tolist()),
    "a scalar": (np.float64(1.0), np.float64(1.0)),
    "None": (None, np.ones((1, 1, 2, 2))),
}


@pytest.mark.parametrize("name", list(BAD_PRE_ACTIVATION_ARGUMENTS))
@pytest.mark.parametrize("relu", [True, False])
def test_pre_activation_derivatives_bad_arguments_raise_value_error(name, relu):
    d, outputs = BAD_PRE_ACTIVATION_ARGUMENTS[name]
    with pytest.raises(ValueError, match="pre_activation_derivatives"):
        convolutions.pre_activation_derivatives(d, outputs, relu)

# ----------------------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------------------

@st.composite
def pool_cases(draw):
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, k // 2))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(max(1, k - 2 * padding), 9)), draw(st.integers(max(1, k - 2 * padding), 9)))
    # Small integers: plenty of exact ties.
    values = draw(st.sampled_from(["distinct", "ties", "negative"]))
    return shape, k, stride, padding, values, draw(st.integers(0, 2**32 - 1))


def _pool_inputs(shape, values, seed):
    rng = np.random.default_rng(seed)
    if values == "distinct":
        return rng.standard_normal(shape)
    if values == "ties":
        return rng.integers(0, 3, shape).astype(float)
    return -rng.uniform(1, 2, shape)


@HYPOTHESIS
@given(pool_cases())
def test_maxpool_forward_matches_loop_reference_with_first_maximum_on_ties(case):
    shape, k, stride, padding, values, seed = case
    x = _pool_inputs(shape, values, seed)
    out, argmax = convolutions.maxpool_forward(x, k, stride, padding)
    ref_out, ref_argmax, _ = maxpool_reference(x, k, stride, padding)
    assert argmax.dtype == np.intp
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)


@HYPOTHESIS
@given(pool_cases())
def test_maxpool_backward_matches_loop_reference_and_preserves_the_sum(case):
    shape, k, stride, padding, values, seed = case
    x = _pool_inputs(shape, values, seed)
    out, argmax = convolutions.maxpool_forward(x, k, stride, padding)
    d_out = np.random.default_rng(seed + 1).standard_normal(out.shape)
    d_in = convolutions.maxpool_backward(d_out, argmax, shape)
    _, ref_argmax, _ = maxpool_reference(x, k, stride, padding)
    np.testing.assert_allclose(d_in, maxpool_backward_reference(d_out, ref_argmax, shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_in.sum(axis=(2, 3)), d_out.sum(axis=(2, 3)), rtol=1e-10, atol=1e-10)


def test_maxpool_padding_never_wins_with_all_negative_inputs():
    x = -np.arange(1, 17, dtype=float).reshape(1, 1, 4, 4)  # -1 ... -16
    out, argmax = convolutions.maxpool_forward(x, 3, 2, 1)
    # Windows over padded rows/cols -1..1, 1..3: their best real pixels.
    np.testing.assert_array_equal(out[0, 0], [[-1.0, -2.0], [-5.0, -6.0]])
    np.testing.assert_array_equal(argmax[0, 0], [[0, 1], [4, 5]])
    assert (out < 0).all()


def test_maxpool_ties_send_argmax_to_first_maximum_in_row_major_order():
    x = np.array([[0.0, 3.0, 1.0, 1.0],
                  [3.0, 2.0, 1.0, 1.0],
                  [5.0, 5.0, 0.0, 7.0],
                  [5.0, 5.0, 7.0, 7.0]]).reshape(1, 1, 4, 4)
    out, argmax = convolutions.maxpool_forward(x, 2, 2, 0)
    np.testing.assert_array_equal(out[0, 0], [[3.0, 1.0], [5.0, 7.0]])
    # (0,1) beats (1,0); (0,2) is first of four 1s; (2,0) first of four 5s; (2,3) before (3,2).
    np.testing.assert_array_equal(argmax[0, 0], [[1, 2], [8, 11]])


def test_maxpool_constant_input_sends_each_derivative_to_one_input():
    x = np.zeros((2, 3, 6, 6))
    out, argmax = convolutions.maxpool_forward(x, 2, 2, 0)
    d_in = convolutions.maxpool_backward(np.ones(out.shape), argmax, x.shape)
    # One winner per window (its top-left pixel), derivative 1 each, not 4.
    assert d_in.sum() == out.size
    np.testing.assert_array_equal(d_in[:, :, ::2, ::2], 1.0)
    assert np.count_nonzero(d_in) == out.size


def test_maxpool_overlapping_windows_add_their_derivatives():
    # k 3, stride 2: the 5x5 image's centre pixel lies in all four windows and wins them all.
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 10.0
    out, argmax = convolutions.maxpool_forward(x, 3, 2, 0)
    assert out.shape == (1, 1, 2, 2) and (out == 10).all()
    d_out = np.array([1.0, 2.0, 4.0, 8.0]).reshape(1, 1, 2, 2)
    d_in = convolutions.maxpool_backward(d_out, argmax, x.shape)
    assert d_in[0, 0, 2, 2] == 15.0
    assert np.count_nonzero(d_in) == 1


def test_maxpool_float32_forward_and_backward():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    out, argmax = convolutions.maxpool_forward(x, 3, 2, 1)
    ref_out, ref_argmax, _ = maxpool_reference(x, 3, 2, 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref_out.astype(np.float32))
    np.testing.assert_array_equal(argmax, ref_argmax)
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    d_in = convolutions.maxpool_backward(d_out, argmax, x.shape)
    assert d_in.dtype == np.float32
    np.testing.assert_allclose(d_in, maxpool_backward_reference(d_out.astype(float), ref_argmax, x.shape),
                               rtol=1e-6, atol=1e-6)


def test_maxpool_accepts_non_contiguous_inputs():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 6, 6, 3)).transpose(0, 3, 1, 2)
    out, argmax = convolutions.maxpool_forward(x, 2, 2, 0)
    ref_out, ref_argmax, _ = maxpool_reference(np.array(x), 2, 2, 0)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)


BAD_MAXPOOL_FORWARD_ARGUMENTS = {
    "padding above k // 2": (np.ones((1, 1, 6, 6)), 3, 2, 2),
    "negative padding": (np.ones((1, 1, 6, 6)), 2, 2, -1),
    "3-d inputs": (np.ones((1, 6, 6)), 2, 2, 0),
    "stride 0": (np.ones((1, 1, 6, 6)), 2, 0, 0),
    "int dtype": (np.ones((1, 1, 6, 6), np.int64), 2, 2, 0),
    "kernel larger than input": (np.ones((1, 1, 3, 3)), 5, 1, 0),
    "float kernel": (np.ones((1, 1, 6, 6)), 2.5, 2, 0),
}


@pytest.mark.parametrize("name", list(BAD_MAXPOOL_FORWARD_ARGUMENTS))
def test_maxpool_forward_bad_arguments_raise_value_error(name):
    x, k, stride, padding = BAD_MAXPOOL_FORWARD_ARGUMENTS[name]
    with pytest.raises(ValueError):
        convolutions.maxpool_forward(x, k, stride, padding)


def _backward_case(change):
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4))
    out, argmax = convolutions.maxpool_forward(x, 2, 2, 0)
    args = {"d": np.ones(out.shape), "argmax": argmax, "shape": x.shape}
    change(args)
    return args


BAD_MAXPOOL_BACKWARD_ARGUMENTS = {
    "argmax as int32": lambda a: a.update(argmax=a["argmax"].astype(np.int32)),
    "argmax as list": lambda a: a.update(argmax=a["argmax"].tolist()),
    "argmax of another shape": lambda a: a.update(argmax=a["argmax"][:, :, :1]),
    "index outside the inputs": lambda a: a.update(argmax=a["argmax"] + 16),
    "negative index": lambda a: a.update(argmax=a["argmax"] - 100),
    "input_shape with other channels": lambda a: a.update(shape=(1, 3, 4, 4)),
    "input_shape with 3 entries": lambda a: a.update(shape=(1, 2, 16)),
    "int derivatives": lambda a: a.update(d=np.ones(a["d"].shape, np.int64)),
}


@pytest.mark.parametrize("name", list(BAD_MAXPOOL_BACKWARD_ARGUMENTS))
def test_maxpool_backward_bad_arguments_raise_value_error(name):
    args = _backward_case(BAD_MAXPOOL_BACKWARD_ARGUMENTS[name])
    with pytest.raises(ValueError):
        convolutions.maxpool_backward(args["d"], args["argmax"], args["shape"])


@st.composite
def derivative_cases(draw):
    """pool_cases, and the layers' case (2x2 at stride 2, odd sizes and NaNs too), in both dtypes."""
    if draw(st.booleans()):
        shape, k, stride, padding, values, seed = draw(pool_cases())
    else:
        k, stride, padding = 2, 2, 0
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(2, 19)),
                 draw(st.integers(2, 19)))
        values = draw(st.sampled_from(["distinct", "ties", "negative", "nan"]))
        seed = draw(st.integers(0, 2**32 - 1))
    return shape, k, stride, padding, values, seed, draw(st.sampled_from([np.float32, np.float64]))


@HYPOTHESIS
@given(derivative_cases())
def test_maxpool_derivative_routes_as_the_loop_reference_bit_for_bit(case):
    shape, k, stride, padding, values, seed, dtype = case
    rng = np.random.default_rng(seed)
    x = _pool_inputs(shape, "ties" if values == "nan" else values, seed)
    if values == "nan":
        x[rng.random(shape) < 0.2] = np.nan  # a NaN wins its window; the last NaN of a window wins
    x = x.astype(dtype)
    _, ref_argmax, _ = maxpool_reference(x, k, stride, padding)
    d_out = rng.standard_normal(ref_argmax.shape).astype(dtype)
    d_out.flat[0] = -0.0  # as maxpool_backward: 0 + (-0.0) is 0.0
    d_in = convolutions.maxpool_derivative(d_out, x, k, stride, padding)
    assert d_in.dtype == dtype and d_in.shape == shape
    if values != "nan":  # the reference picks any NaN of a window
        expected = maxpool_backward_reference(d_out, ref_argmax, shape)
        if stride >= k:  # no window shares an input: nothing is added up, so exactly
            assert d_in.tobytes() == (expected.astype(dtype) + np.zeros((), dtype)).tobytes()
        np.testing.assert_allclose(d_in, expected, **tolerance(dtype))
    # The same as the two passes it replaces, bit for bit.
    _, argmax = convolutions.maxpool_forward(x, k, stride, padding)
    assert d_in.tobytes() == convolutions.maxpool_backward(d_out, argmax, shape).tobytes()


BAD_MAXPOOL_DERIVATIVE_ARGUMENTS = {
    "d_outputs of another shape": (np.ones((1, 2, 2, 3)), np.ones((1, 2, 4, 4)), 2, 2, 0),
    "d_outputs of another dtype": (np.ones((1, 2, 2, 2), np.float32), np.ones((1, 2, 4, 4)), 2, 2, 0),
    "d_outputs as a list": ([[[[1.0]]]], np.ones((1, 1, 2, 2)), 2, 2, 0),
    "3-d inputs": (np.ones((2, 2, 2)), np.ones((2, 4, 4)), 2, 2, 0),
    "padding above k // 2": (np.ones((1, 1, 3, 3)), np.ones((1, 1, 6, 6)), 3, 2, 2),
    "stride 0": (np.ones((1, 1, 3, 3)), np.ones((1, 1, 6, 6)), 2, 0, 0),
}


@pytest.mark.parametrize("name", list(BAD_MAXPOOL_DERIVATIVE_ARGUMENTS))
def test_maxpool_derivative_bad_arguments_raise_value_error(name):
    d, x, k, stride, padding = BAD_MAXPOOL_DERIVATIVE_ARGUMENTS[name]
    with pytest.raises(ValueError, match="maxpool_derivative"):
        convolutions.maxpool_derivative(d, x, k, stride, padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(10, 16, 16, 16), (10, 32, 8, 8), (3, 2, 11, 13)])
def test_maxpool_derivative_of_the_layers_windows_with_ties(shape, dtype):
    """convnet1's pooling (2x2, stride 2) on ReLU-like inputs, many ties and a few NaNs:
    the four-windows-at-a-time path against the loop reference."""
    rng = np.random.default_rng(sum(shape))
    x = np.maximum(rng.integers(-2, 3, shape), 0).astype(dtype)
    _, ref_argmax, _ = maxpool_reference(x, 2, 2, 0)
    d_out = rng.standard_normal(ref_argmax.shape).astype(dtype)
    expected = maxpool_backward_reference(d_out, ref_argmax, shape).astype(dtype)
    assert convolutions.maxpool_derivative(d_out, x, 2, 2).tobytes() == expected.tobytes()
    x.reshape(-1)[rng.integers(0, x.size, 20)] = np.nan
    _, argmax = convolutions.maxpool_forward(x, 2, 2, 0)
    assert (convolutions.maxpool_derivative(d_out, x, 2, 2).tobytes()
            == convolutions.maxpool_backward(d_out, argmax, shape).tobytes())


def _winners_2x2_by_the_rule(x):
    """Each 2x2 window's maximum and its input's index in the map, by the rule itself, one
    input at a time: the first maximum in row-major order wins, a NaN wins, the last NaN of
    a window wins."""
    n, c, in_y, in_x = x.shape
    out_y, out_x = in_y // 2, in_x // 2
    oy, ox = np.meshgrid(np.arange(out_y), np.arange(out_x), indexing="ij")
    first = np.broadcast_to(2 * oy * in_x + 2 * ox, (n, c, out_y, out_x))
    best, best_index = x[:, :, 0:2 * out_y:2, 0:2 * out_x:2], first
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        v = x[:, :, dy:2 * out_y:2, dx:2 * out_x:2]
        take = (v > best) | np.isnan(v)
        best = np.where(take, v, best)
        best_index = np.where(take, first + dy * in_x + dx, best_index)
    return best, best_index


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(10, 16, 16, 16), (10, 32, 8, 8), (3, 2, 11, 13), (2, 3, 6, 18), (2, 2, 4, 6)])
def test_maxpool_forward_2x2_finds_the_winners_by_the_rule(shape, dtype):
    """The layers' 2x2 pooling, four windows at a time where a row has four more: on
    ReLU-like inputs (many ties) with a few NaNs, each window's maximum and the index of the
    input that wins it, bit for bit."""
    rng = np.random.default_rng(sum(shape))
    x = np.maximum(rng.integers(-2, 3, shape), 0).astype(dtype) + rng.integers(0, 2, shape).astype(dtype) / 4
    x.reshape(-1)[rng.integers(0, x.size, 3 + x.size // 50)] = np.nan
    out, argmax = convolutions.maxpool_forward(x, 2, 2, 0)
    best, best_index = _winners_2x2_by_the_rule(x)
    assert out.dtype == dtype and out.tobytes() == best.tobytes()
    np.testing.assert_array_equal(argmax, best_index)
