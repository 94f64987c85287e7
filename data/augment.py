"""Data augmentation of training images: random small shifts, rotations and zooms.

Each image of a batch gets its own random affine transform about its centre: zoomed by a
factor s in [1 - scale, 1 + scale], rotated by an angle in [-rotate, rotate] degrees
(counter-clockwise as displayed, rows going down), then shifted by (dy, dx), each in
[-translate, translate] pixels. Pixels are resampled bilinearly (order 1); what comes in
from beyond the border is 0, the USPS background. All channels of an image move together.

Only the training loop calls this (net.py, when a config sets augment_translate,
augment_rotate or augment_scale); validation and test images are never augmented.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentSettings:
    """The net-level config keys augment_translate (pixels), augment_rotate (degrees) and
    augment_scale (fraction); all 0 means off."""

    translate: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0

    @property
    def active(self):
        return bool(self.translate or self.rotate or self.scale)


def augment(images, rng, settings, image_shape):
    """Randomly transformed copies of a batch of images.

    images:      (N, C*H*W), each row an image laid out as (C, H, W), as the layers read it
    rng:         np.random.Generator; each call draws 4N numbers (N shift pairs, N angles,
                 N zooms), so the same generator state gives the same batch
    settings:    AugmentSettings
    image_shape: (C, H, W)
    returns:     (N, C*H*W), the dtype of images; a plain copy when settings are all 0
    """
    images = np.asarray(images)
    if not settings.active:
        return images.copy()
    n = images.shape[0]
    shifts = rng.uniform(-settings.translate, settings.translate, (n, 2))
    angles = rng.uniform(-settings.rotate, settings.rotate, n)
    scales = 1.0 + rng.uniform(-settings.scale, settings.scale, n)
    return transform_images(images, image_shape, shifts, angles, scales)


def transform_images(images, image_shape, shifts, angles, scales):
    """Apply one given affine transform per image (the deterministic half of augment).

    images: (N, C*H*W) as (C, H, W); shifts: (N, 2) pixels (dy, dx), positive moving the
    content down and right; angles: (N,) degrees; scales: (N,) zoom factors > 0.
    returns: (N, C*H*W), the dtype of images. An integer shift with angle 0 and scale 1 moves
    the pixels exactly (bilinear weights are then 1 and 0).
    """
    # Imported here: scipy.ndimage takes longer to load than the rest of the kit, and only
    # training with augmentation needs it.
    from scipy import ndimage

    images = np.asarray(images)
    c, h, w = image_shape
    n = images.shape[0]
    if images.ndim != 2 or images.shape[1] != c * h * w:
        raise ValueError(f"images of shape {images.shape} are not (N, {c}*{h}*{w})")
    centre_y, centre_x = (h - 1) / 2, (w - 1) / 2
    theta = np.deg2rad(np.asarray(angles, dtype=np.float64))[:, None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    inverse_scale = 1.0 / np.asarray(scales, dtype=np.float64)[:, None, None]
    shifts = np.asarray(shifts, dtype=np.float64)
    # For each output pixel, where it comes from: the inverse transform, centre-relative.
    out_y, out_x = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    dy = out_y - centre_y - shifts[:, 0, None, None]
    dx = out_x - centre_x - shifts[:, 1, None, None]
    in_y = centre_y + inverse_scale * (cos * dy + sin * dx)
    in_x = centre_x + inverse_scale * (cos * dx - sin * dy)
    # One call for the whole batch: the maps are stacked (N*C, H, W) and the first
    # coordinate is each map's own (integer) index, so no map reads from its neighbours.
    maps = images.reshape(n * c, h, w)
    in_y = np.broadcast_to(in_y[:, None], (n, c, h, w)).reshape(n * c, h, w)
    in_x = np.broadcast_to(in_x[:, None], (n, c, h, w)).reshape(n * c, h, w)
    index = np.broadcast_to(np.arange(n * c, dtype=np.float64)[:, None, None], in_y.shape)
    # grid-constant: beyond the border is 0 and is interpolated with, so edges fade as
    # they would on a larger blank sheet.
    out = ndimage.map_coordinates(maps, np.stack([index, in_y, in_x]), output=images.dtype, order=1,
                                  mode="grid-constant", cval=0.0)
    return out.reshape(n, c * h * w)
