"""play_with_convolutions.py: the three filters on tiny images, and the figure."""

import numpy as np
import pytest
import scipy.signal

import play_with_convolutions as play

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", list(play.KERNELS))
def test_filter_image_matches_scipy_same_mode_per_channel(name):
    kernel = play.KERNELS[name]
    image = np.random.default_rng(0).uniform(0, 1, (3, 5, 7))
    out = play.filter_image(image, kernel)
    assert out.shape == image.shape
    for c in range(3):
        np.testing.assert_allclose(out[c], scipy.signal.convolve2d(image[c], kernel, mode="same"),
                                   rtol=1e-12, atol=1e-12)


def test_laplacian_of_an_impulse_is_the_laplacian_kernel():
    image = np.zeros((1, 5, 5))
    image[0, 2, 2] = 1.0
    out = play.filter_image(image, play.LAPLACIAN)
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = [[0, -1, 0], [-1, 4, -1], [0, -1, 0]]
    np.testing.assert_allclose(out[0], expected, atol=1e-15)


def test_laplacian_of_a_linear_ramp_is_zero_inside():
    image = np.add.outer(np.arange(6.0), 2 * np.arange(6.0))[np.newaxis]  # y + 2x
    out = play.filter_image(image, play.LAPLACIAN)
    np.testing.assert_allclose(out[0, 1:-1, 1:-1], 0.0, atol=1e-12)


def test_sobel_responds_to_horizontal_gradients_and_its_transpose_to_vertical_ones():
    ramp_x = np.tile(np.arange(6.0), (6, 1))[np.newaxis]  # value = column index
    # Convolution flips the kernel: per row (x-1) - (x+1) = -2, weighted 1 + 2 + 1.
    np.testing.assert_allclose(play.filter_image(ramp_x, play.SOBEL_X)[0, 1:-1, 1:-1], -8.0)
    np.testing.assert_allclose(play.filter_image(ramp_x, play.SOBEL_X.T)[0, 1:-1, 1:-1], 0.0, atol=1e-12)
    ramp_y = ramp_x.transpose(0, 2, 1)
    np.testing.assert_allclose(play.filter_image(ramp_y, play.SOBEL_X.T)[0, 1:-1, 1:-1], -8.0)
    np.testing.assert_allclose(play.filter_image(ramp_y, play.SOBEL_X)[0, 1:-1, 1:-1], 0.0, atol=1e-12)


def test_to_display_scales_magnitudes_into_unit_interval_as_an_image():
    result = np.random.default_rng(1).standard_normal((3, 4, 5)) * 100
    shown = play.to_display(result)
    assert shown.shape == (4, 5, 3)
    assert shown.min() >= 0 and shown.max() == 1.0
    assert play.to_display(np.zeros((1, 4, 5))).shape == (4, 5)


def test_load_image_gives_channels_first_in_unit_interval(tmp_path):
    import matplotlib.image
    rgb = np.random.default_rng(2).uniform(0, 1, (6, 8, 3))
    path = tmp_path / "tiny.png"
    matplotlib.image.imsave(path, rgb)
    image = play.load_image(str(path))
    assert image.shape == (3, 6, 8)
    np.testing.assert_allclose(image.transpose(1, 2, 0), rgb, atol=1 / 255 + 1e-9)


def test_main_writes_the_figure_to_a_png(tmp_path, capsys):
    out = tmp_path / "figure.png"
    assert play.main(["--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert str(out) in capsys.readouterr().out


def test_main_filters_a_given_image(tmp_path):
    import matplotlib.image
    source = tmp_path / "gray.png"
    matplotlib.image.imsave(source, np.random.default_rng(3).uniform(0, 1, (12, 10)), cmap="gray")
    out = tmp_path / "figure.png"
    assert play.main([str(source), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_main_reports_an_unreadable_image_in_one_line(tmp_path, capsys):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    assert play.main([str(bad), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("play_with_convolutions.py: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_without_a_screen_a_figure_already_there_is_never_replaced(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "convolutions.png").write_bytes(b"the user's own")
    (tmp_path / "convolutions-1.png").write_bytes(b"and another")
    assert play.main([]) == 0
    assert (tmp_path / "convolutions.png").read_bytes() == b"the user's own"
    assert (tmp_path / "convolutions-1.png").read_bytes() == b"and another"
    assert (tmp_path / "convolutions-2.png").read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert "wrote convolutions-2.png" in out and "convolutions.png is there already" in out


# A name matplotlib does not know; a toolkit that is not installed (Qt is not a dependency).
@pytest.mark.parametrize("script,backend", [("play_with_convolutions.py", "nosuch"), ("train.py", "qtagg")])
def test_a_backend_that_cannot_draw_is_one_line_before_any_work(tmp_path, small_npz, script, backend):
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT, write_config
    args = [] if script.startswith("play") else [str(write_config(tmp_path, "logreg.yaml", small_npz, display=True))]
    env = {**os.environ, "MPLBACKEND": backend}
    result = subprocess.run([sys.executable, str(REPO_ROOT / script), *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"MPLBACKEND={backend}" in lines[0] and "MPLBACKEND=Agg" in lines[0]
    assert "Epoch" not in result.stdout and not (tmp_path / "runs").exists()
