"""Showing what a network computes: a training image and each layer's activations for it,
and its output for each class.

Shown in a window every display_after steps when matplotlib has a screen to draw on. On a
machine without one (`is_headless`) the figure is written to a PNG instead, and only between
epochs, at most every REFRESH_SECONDS and after the last one: drawing a figure takes longer than
a logistic regression's whole epoch, and nobody watches a file step by step.
play_with_convolutions.py uses the same test.
"""

import os
import time

import numpy as np

from plumbing.errors import UserError
from plumbing.writing import write_atomically

# matplotlib backends that draw to files only: with one of these there is no window.
NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
REFRESH_SECONDS = 10.0  # headless: the PNG is redrawn after an epoch at most this often


def is_headless():
    """True if matplotlib's backend draws to files only (no screen to show a window on).

    The backend is loaded here, before any work: one that matplotlib does not know, or whose
    toolkit is missing or has no screen (MPLBACKEND=qtagg without Qt, say), is a UserError in
    one line, not a traceback in the middle of a run."""
    try:
        import matplotlib

        backend = matplotlib.get_backend()
        if backend.lower() not in NON_INTERACTIVE:
            import matplotlib.pyplot as plt

            plt.switch_backend(backend)  # imports the toolkit now
    except (ValueError, ImportError, RuntimeError) as e:
        reason = " ".join(str(e).split()).split(";")[0]  # not the list of every backend
        raise UserError(f"matplotlib cannot draw with the backend it is given (MPLBACKEND="
                        f"{os.environ.get('MPLBACKEND', '(unset)')}): {reason}; set MPLBACKEND=Agg to draw "
                        "to files, or unset it") from None
    return backend.lower() in NON_INTERACTIVE


def png_path(performance_stats):
    """Where a run without a screen writes its figure: '<model>_display.png' beside the stats
    file ('runs/convnet1_stats.npy' -> 'runs/convnet1_display.png')."""
    base = os.path.splitext(performance_stats)[0]
    return (base[:-len("_stats")] if base.endswith("_stats") else base) + "_display.png"


def tile(activation):
    """(C, H, W) maps -> one mosaic image; a vector -> a near-square image; an image stays."""
    a = np.asarray(activation, dtype=float)
    if a.ndim == 2:
        return a
    if a.ndim == 1:
        side = int(np.ceil(np.sqrt(a.size)))
        return np.pad(a, (0, side * side - a.size), constant_values=np.nan).reshape(side, side)
    c, h, w = a.shape
    cols = int(np.ceil(np.sqrt(c)))
    rows = -(-c // cols)
    mosaic = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for i in range(c):
        r, q = divmod(i, cols)
        mosaic[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = a[i]
    return mosaic


def input_picture(image):
    """An input image (C, H, W) as drawn: gray for 1 channel, in colour for 3 (red, green, blue,
    clipped to [0, 1]), otherwise its channels side by side (a stereo pair: 2)."""
    if image.shape[0] == 1:
        return np.asarray(image[0], dtype=float)
    if image.shape[0] == 3:
        return np.clip(np.asarray(image, dtype=float).transpose(1, 2, 0), 0, 1)
    return tile(image)


class ActivationDisplay:
    """One row of panels: an input image and each layer's activations for it.

    net: the network (its layers, input size, display generator, display_after and stats path
    are read). Headless, the figure goes to '<model>_display.png' beside the stats file, which
    the first epoch says once. matplotlib is imported at the first drawing, not before.
    """

    def __init__(self, net, log):
        self.net_, self.log_ = net, log
        self.headless_ = is_headless()
        self.png_ = png_path(net.settings_.performance_stats)
        self.figure_ = None
        self.drawn_at_ = time.monotonic()
        self.said_ = False  # headless: where the figure goes is said once

    def after_step(self, step, batch, states):
        """On a screen, show the figure every display_after steps (step counts from 1)."""
        if not self.headless_ and step % self.net_.settings_.display_after == 0:
            self.show(batch, states)

    def after_epoch(self, batch, states, last):
        """Headless, write the PNG for the epoch's last batch when REFRESH_SECONDS have passed
        since the last one, and after the last epoch. One image is drawn at random every epoch
        either way, so the display's generator does not depend on the clock."""
        if not self.headless_:
            return
        if not self.said_:
            print(f"display: no screen here; the activations figure is written to {self.png_} "
                  f"(after an epoch, at most every {REFRESH_SECONDS:g} s, and at the end)", file=self.log_, flush=True)
            self.said_ = True
        i = self._pick(batch)
        if last or time.monotonic() - self.drawn_at_ >= REFRESH_SECONDS:
            self.show(batch, states, i)

    def _pick(self, batch):
        return int(self.net_.display_rng_.integers(batch.shape[0]))

    def show(self, batch, states, i=None):
        """Draw image i of the batch (default: one at random) and its activations: in the
        window, or headless into the PNG."""
        net = self.net_
        i = self._pick(batch) if i is None else i
        settings = net.settings_
        image = batch[i].reshape(settings.input_num_channels, settings.input_image_size_y, settings.input_image_size_x)
        panels = [("input", input_picture(image))]
        for layer, state in zip(net.layer_[:-1], states[1:-1]):
            panels.append((layer.name_, tile(state[i])))
        if self.figure_ is None:
            self._make_figure(len(panels) + 1)
        for ax in self.axes_:
            ax.clear()
            ax.set_xticks([])
            ax.set_yticks([])
        for ax, (title, img) in zip(self.axes_, panels):
            ax.imshow(img, cmap="gray", interpolation="nearest")
            ax.set_title(title, fontsize=9)
        probs = states[-1][i]  # one per class
        self.axes_[-1].bar(range(len(probs)), probs)
        self.axes_[-1].set_ylim(0, 1)
        self.axes_[-1].set_xticks(range(0, len(probs), -(-len(probs) // 10)))  # at most 10 labels
        self.axes_[-1].set_title(f"output: {int(np.argmax(probs))}", fontsize=9)
        if self.headless_:
            write_atomically(self.png_, lambda f: self.figure_.savefig(f, format="png", dpi=72))
            self.drawn_at_ = time.monotonic()
        else:
            self.plt_.pause(0.001)

    def _make_figure(self, columns):
        size = (2.2 * columns, 2.6)
        if self.headless_:  # a figure of its own, drawn to files: no pyplot, no window
            from matplotlib.figure import Figure

            self.figure_ = Figure(figsize=size)
            self.axes_ = self.figure_.subplots(1, columns)
        else:
            import matplotlib.pyplot as plt

            self.plt_ = plt
            plt.ion()
            self.figure_, self.axes_ = plt.subplots(1, columns, figsize=size)
