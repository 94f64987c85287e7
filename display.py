"""Showing what a network computes: a training image and each layer's activations for it.

Shown in a window when matplotlib has a screen to draw on; on a machine without one
(`is_headless`) the figure is written to a PNG instead. play_with_convolutions.py uses the
same test.
"""

import os

import numpy as np

from checkpoints import write_atomically

# matplotlib backends that draw to files only: with one of these there is no window.
NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def is_headless():
    """True if matplotlib's backend draws to files only (no screen to show a window on)."""
    import matplotlib

    return matplotlib.get_backend().lower() in NON_INTERACTIVE


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


class ActivationDisplay:
    """One row of panels: an input image and each layer's activations for it.

    net: the network (its layers, input size, display generator and stats path are read).
    Headless, the figure goes to '<model>_display.png' beside the stats file, which the
    first call says once.
    """

    def __init__(self, net, log):
        import matplotlib.pyplot as plt

        self.net_, self.log_, self.plt_ = net, log, plt
        self.headless_ = is_headless()
        base = os.path.splitext(net.performance_stats_)[0]
        self.png_ = (base[:-len("_stats")] if base.endswith("_stats") else base) + "_display.png"
        self.figure_ = None

    def show(self, batch, states):
        net, plt = self.net_, self.plt_
        i = int(net.display_rng_.integers(batch.shape[0]))
        image = batch[i].reshape(net.input_num_channels_, net.input_image_size_y_, net.input_image_size_x_)
        panels = [("input", tile(image[0] if image.shape[0] == 1 else image))]
        for layer, state in zip(net.layer_[:-1], states[1:-1]):
            panels.append((layer.name_, tile(state[i])))
        if self.figure_ is None:
            if not self.headless_:
                plt.ion()
            self.figure_, axes = plt.subplots(1, len(panels) + 1, figsize=(2.2 * (len(panels) + 1), 2.6))
            self.axes_ = axes
        for ax in self.axes_:
            ax.clear()
            ax.set_xticks([])
            ax.set_yticks([])
        for ax, (title, img) in zip(self.axes_, panels):
            ax.imshow(img, cmap="gray", interpolation="nearest")
            ax.set_title(title, fontsize=9)
        probs = states[-1][i]
        self.axes_[-1].bar(range(10), probs)
        self.axes_[-1].set_ylim(0, 1)
        self.axes_[-1].set_xticks(range(10))
        self.axes_[-1].set_title(f"output: {int(np.argmax(probs))}", fontsize=9)
        if self.headless_:
            write_atomically(self.png_, lambda f: self.figure_.savefig(f, format="png", dpi=72))
            if not getattr(self, "said_", False):
                print(f"display: no screen here; the activations figure is written to {self.png_}",
                      file=self.log_, flush=True)
                self.said_ = True
        else:
            plt.pause(0.001)
