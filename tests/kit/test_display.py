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
