"""Convolve a photo with the lecture's three kernels: python play_with_convolutions.py [IMAGE]

Each colour channel is convolved with a Laplacian (edges in every direction) and two
Sobel kernels (horizontal and vertical gradients) by `convolutions.convolve`, with
'same' padding (k // 2) so the results keep the photo's size. Shows a 2x2 figure
(photo + three results); on a machine without a screen it writes a PNG instead.
Without IMAGE it uses the photo of Grace Hopper that matplotlib ships.
"""

import argparse
import sys

import runtime

runtime.configure("batches")  # threads and memory, before numpy loads

import numpy as np  # noqa: E402

import convolutions  # noqa: E402
from display import is_headless  # noqa: E402

LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=float)
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)
KERNELS = {"Laplacian": LAPLACIAN, "Sobel": SOBEL_X, "Sobel, transposed": SOBEL_X.T}


def load_image(path=None):
    """(channels, H, W) float64 in [0, 1] from an image file (default: matplotlib's sample photo)."""
    import matplotlib.image
    from matplotlib import cbook

    if path is None:
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            image = matplotlib.image.imread(f, format="jpg")
    else:
        image = matplotlib.image.imread(path)
    image = np.asarray(image, dtype=float)
    if image.max() > 1:
        image = image / 255.0
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    return image[:, :, :3].transpose(2, 0, 1)


def filter_image(image, kernel):
    """Convolve every channel of image (C, H, W) with one k x k kernel, 'same' padding."""
    # inputs (C, H, W) with weights (1, k, k): the kernel broadcasts over the channels.
    return convolutions.convolve(image, kernel[np.newaxis], padding=kernel.shape[0] // 2)


def to_display(result):
    """Scale a filtered (C, H, W) image to [0, 1] for showing, as an (H, W, C) picture."""
    magnitude = np.abs(result).transpose(1, 2, 0)
    # Edges are sparse: scaling by a high percentile, not the max, keeps them visible.
    return np.clip(magnitude / max(np.percentile(magnitude, 99.5), 1e-12), 0, 1).squeeze()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convolve a photo with Laplacian and Sobel kernels.")
    parser.add_argument("image", nargs="?", help="an image file (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument("--out", help="write the figure to this PNG instead of showing it")
    args = parser.parse_args(argv)
    import matplotlib
    if args.out:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        image = load_image(args.image)
    except (OSError, ValueError, SyntaxError) as e:
        print(f"play_with_convolutions.py: error: cannot read image {args.image}: {e}", file=sys.stderr)
        return 2
    figure, axes = plt.subplots(2, 2, figsize=(8, 8))
    axes[0, 0].imshow(image.transpose(1, 2, 0).squeeze(), cmap="gray")
    axes[0, 0].set_title("input")
    for ax, (name, kernel) in zip(axes.flat[1:], KERNELS.items()):
        ax.imshow(to_display(filter_image(image, kernel)), cmap="gray")
        ax.set_title(name)
    for ax in axes.flat:
        ax.axis("off")
    figure.tight_layout()
    headless = is_headless()
    out = args.out or ("convolutions.png" if headless else None)
    if out:
        figure.savefig(out, dpi=80)
        print(f"wrote {out}" + (" (no screen here to show it)" if not args.out else ""))
    else:
        plt.show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
