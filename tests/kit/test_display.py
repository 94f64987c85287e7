"""plumbing/display.py in training: on a screen the figure every display_after steps; headless the PNG
between epochs only (at most every REFRESH_SECONDS, and after the last), with training itself,
and the display's random draws, the same whatever the clock says."""

import io
import types

import numpy as np
import pytest
from conftest import small_config, synthetic_npz

from net import NeuralNet
from plumbing import display

EPOCHS, STEPS = 3, 5  # 250 synthetic images in batches of 50


def train(tmp_path, monkeypatch, headless=True, refresh=display.REFRESH_SECONDS, **keys):
    """Train a small net with the display on; return (net, the steps the figure was drawn at, log)."""
    data = tmp_path / "syn.npz"
    if not data.exists():
        synthetic_npz(data)
    config = small_config(tmp_path, data, max_epochs=EPOCHS, batch_size=50,
                          **{"display": True, "display_after": 1, **keys})
    monkeypatch.setattr(display, "is_headless", lambda: headless)
    monkeypatch.setattr(display, "REFRESH_SECONDS", refresh)
    drawn = []
    original = display.ActivationDisplay.show

    def counted(self, batch, states, i=None):
        drawn.append(len(drawn))
        if headless:  # on "a screen" here no window is opened: only the calls are counted
            original(self, batch, states, i)

    monkeypatch.setattr(display.ActivationDisplay, "show", counted)
    log = io.StringIO()
    net = NeuralNet(config, seed=3)
    net.Train(log=log)
    return net, drawn, log.getvalue()


def test_headless_the_png_is_written_once_for_a_short_run_and_said_once(tmp_path, monkeypatch):
    net, drawn, log = train(tmp_path, monkeypatch)
    assert len(drawn) == 1  # after the last epoch; not after each of the 15 steps
    png = tmp_path / "stats_display.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    said = [line for line in log.splitlines() if "no screen" in line]
    assert len(said) == 1 and str(png) in said[0]


def test_headless_the_png_is_redrawn_between_epochs_never_between_steps(tmp_path, monkeypatch):
    _, drawn, _ = train(tmp_path, monkeypatch, refresh=0.0)
    assert len(drawn) == EPOCHS


def test_on_a_screen_the_figure_is_shown_every_display_after_steps(tmp_path, monkeypatch):
    _, drawn, log = train(tmp_path, monkeypatch, headless=False, display_after=2)
    assert len(drawn) == EPOCHS * (STEPS // 2)
    assert "no screen" not in log


def test_training_and_the_displays_draws_do_not_depend_on_the_display_or_the_clock(tmp_path, monkeypatch):
    runs = {}
    for name, keys, refresh in (("off", {"display": False}, 10.0), ("once", {}, 10.0), ("every epoch", {}, 0.0)):
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        net, _, _ = train(folder, monkeypatch, refresh=refresh, **keys)
        runs[name] = net
    reference = runs["off"].GetParameters()
    for name in ("once", "every epoch"):
        parameters = runs[name].GetParameters()
        assert sorted(parameters) == sorted(reference) and reference
        for key, value in reference.items():
            np.testing.assert_array_equal(parameters[key], value)
    assert (runs["once"].display_rng_.bit_generator.state == runs["every epoch"].display_rng_.bit_generator.state)


@pytest.mark.parametrize("stats, png", [("runs/logreg_stats.npy", "runs/logreg_display.png"),
                                        ("out/s.npy", "out/s_display.png")])
def test_the_png_goes_beside_the_stats_file(tmp_path, stats, png):
    class Net:
        settings_ = types.SimpleNamespace(performance_stats=str(tmp_path / stats))

    assert display.ActivationDisplay(Net(), io.StringIO()).png_ == str(tmp_path / png)


def test_input_pictures_gray_colour_and_stereo():
    rng = np.random.default_rng(0)
    gray, colour, stereo = rng.uniform(0, 1, (1, 4, 5)), rng.uniform(-0.1, 1.1, (3, 4, 5)), rng.uniform(0, 1, (2, 4, 5))
    np.testing.assert_array_equal(display.input_picture(gray), gray[0])
    picture = display.input_picture(colour)
    assert picture.shape == (4, 5, 3)  # rows, columns, red green blue
    np.testing.assert_array_equal(picture[2, 3], np.clip(colour[:, 2, 3], 0, 1))
    picture = display.input_picture(stereo)  # the two cameras side by side, a column of NaN between
    assert picture.shape == (4, 11)
    np.testing.assert_array_equal(picture[:, :5], stereo[0])
    np.testing.assert_array_equal(picture[:, 6:], stereo[1])


@pytest.mark.parametrize("classes,channels", [(100, 3), (5, 2)])
def test_the_figure_shows_any_number_of_channels_and_one_bar_per_class(tmp_path, monkeypatch, classes, channels):
    rng = np.random.default_rng(1)
    arrays = {}
    for name in ("train", "validation", "test"):
        arrays[name] = rng.uniform(0, 1, (50, channels * 36))
        arrays[name + "_labels"] = np.eye(classes)[np.arange(50) % classes]
    np.savez(tmp_path / "d.npz", **arrays)
    network = [{"name": "conv1", "type": "CONVOLUTIONAL", "num_channels": 2, "kernel_size": 3, "padding": 1,
                "init_wt": 0.1, "epsilon": 0.01},
               {"name": "output", "type": "FC", "num_channels": classes, "init_wt": 0.1, "epsilon": 0.01}]
    config = small_config(tmp_path, tmp_path / "d.npz", network=network, max_epochs=1, batch_size=50, display=True,
                          input_image_size_y=6, input_image_size_x=6, input_num_channels=channels)
    monkeypatch.setattr(display, "is_headless", lambda: True)
    shown = {}
    original = display.ActivationDisplay.show

    def kept(self, batch, states, i=None):
        original(self, batch, states, i)
        shown["axes"] = self.axes_

    monkeypatch.setattr(display.ActivationDisplay, "show", kept)
    NeuralNet(config, seed=2).Train(log=io.StringIO())
    assert (tmp_path / "stats_display.png").read_bytes()[:4] == b"\x89PNG"
    axes = shown["axes"]
    assert axes[0].get_images()[0].get_array().shape == ((6, 6, 3) if channels == 3 else (6, 13))
    assert len(axes[-1].patches) == classes
    assert len(axes[-1].get_xticks()) <= 10
