"""Convolve a photo with the lecture's three kernels: python play_with_convolutions.py [IMAGE]

Each colour channel is convolved with a Laplacian (edges in every direction) and two
Sobel kernels (horizontal and vertical gradients) by `convolutions.convolve`, with
'same' padding (k // 2) so the results keep the photo's size. Shows a 2x2 figure
(photo + three results); on a machine without a screen it writes a PNG instead.
Without IMAGE it uses the photo of Grace Hopper that matplotlib ships. An image's size is
read from its header before it is decoded: at most MAX_PIXELS pixels (4096 x 4096; a
10000 x 10000 photo would take some 14 GB), at least 2 x 2 (the kernels' 'same' padding).

Exit status: 0, or 2 for bad input (an image that cannot be read or used, an --out that
cannot be written; no kernels at all).
"""

import os
import sys

from plumbing.command_line import start_script

start_script(__name__, "play_with_convolutions.py")  # first: Ctrl-C, a closed output: one line

from plumbing import runtime

runtime.configure("batches")  # threads and memory, before numpy loads

from plumbing.command_line import OneLineParser, entry_point, load_kernels

load_kernels("play_with_convolutions.py")

import numpy as np

import convolutions
from plumbing.display import is_headless
from plumbing.errors import UserError
from plumbing.files import open_regular
from plumbing.run_files import check_output
from plumbing.writing import write_atomically

LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=float)
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)
KERNELS = {"Laplacian": LAPLACIAN, "Sobel": SOBEL_X, "Sobel, transposed": SOBEL_X.T}
# Each pixel costs some 200 bytes on the way (float64 channels, three filtered copies, their
# display scaling, the figure): a 4096 x 4096 RGB PNG peaked at 3.4 GB and took 23 s
# (/usr/bin/time -v python play_with_convolutions.py big.png --out out.png).
MAX_PIXELS = 4096 * 4096
MIN_SIDE = max(len(k) for k in KERNELS.values()) // 2 + 1  # convolve's padding must stay below the size


class ImageError(UserError):
    """An image the kernels cannot be shown on: too large or too small."""


def load_image(path=None):
    """(channels, H, W) float64 in [0, 1] from an image file (default: matplotlib's sample photo),
    its size checked from its header before it is decoded (ImageError)."""
    import matplotlib.image
    from matplotlib import cbook
    from PIL import Image, UnidentifiedImageError  # matplotlib reads images with Pillow: it is there

    if path is None:
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            image = matplotlib.image.imread(f, format="jpg")
    else:
        with open_regular(path) as f:
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the size is checked below
            try:
                with Image.open(f) as header:  # reads the header, not the pixels
                    (width, height), kind = header.size, header.format
            except UnidentifiedImageError:
                raise ImageError("not an image file that Pillow reads (PNG, JPEG, ...)") from None
            finally:
                Image.MAX_IMAGE_PIXELS = limit
            if width * height > MAX_PIXELS:
                raise ImageError(f"{width}x{height} pixels, more than the {MAX_PIXELS // 2**20} megapixels "
                                 "this shows (make it smaller first)")
            if min(width, height) < MIN_SIDE:
                raise ImageError(f"{width}x{height} pixels; the kernels need at least {MIN_SIDE}x{MIN_SIDE}")
            f.seek(0)
            image = matplotlib.image.imread(f, format=(kind or "png").lower())
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


DEFAULT_OUT = "convolutions.png"  # without a screen and without --out


def unused_name(path):
    """`path`, or if something is there already 'convolutions-1.png', '-2', ...: a file the user
    did not name is never replaced."""
    stem, ext = os.path.splitext(path)
    candidate, n = path, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{stem}-{n}{ext}"
    return candidate


@entry_point("play_with_convolutions.py")
def main(argv=None):
    parser = OneLineParser(prog="play_with_convolutions.py",
                           description="Convolve a photo with Laplacian and Sobel kernels.")
    parser.add_argument("image", nargs="?", help="an image file (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument("--out", help="write the figure to this PNG instead of showing it")
    args = parser.parse_args(argv)
    headless = is_headless()  # a backend that cannot draw is one line, before any work
    import matplotlib
    if args.out:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = args.out or (unused_name(DEFAULT_OUT) if headless else None)
    if out:
        check_output(out, "--out", {"the image itself": args.image})
    try:
        image = load_image(args.image)
    except ImageError as e:
        raise ImageError(f"image {args.image}: {e}") from None
    except (OSError, ValueError, SyntaxError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise ImageError(f"cannot read image {args.image}: {reason}") from None
    figure, axes = plt.subplots(2, 2, figsize=(8, 8))
    axes[0, 0].imshow(image.transpose(1, 2, 0).squeeze(), cmap="gray")
    axes[0, 0].set_title("input")
    for ax, (name, kernel) in zip(axes.flat[1:], KERNELS.items()):
        ax.imshow(to_display(filter_image(image, kernel)), cmap="gray")
        ax.set_title(name)
    for ax in axes.flat:
        ax.axis("off")
    figure.tight_layout()
    if out:
        write_atomically(out, lambda f: figure.savefig(f, format="png", dpi=80))
        why = "" if args.out else " (no screen here to show it" + (
            f"; {DEFAULT_OUT} is there already and stays as it is: --out names the file)" if out != DEFAULT_OUT
            else ")")
        print(f"wrote {out}{why}")
    else:
        plt.show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
