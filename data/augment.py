"""Data augmentation of training images: random small shifts, rotations, zooms and elastic
distortions.

Each image of a batch gets its own random affine transform about its centre: zoomed by a
factor s in [1 - scale, 1 + scale], rotated by an angle in [-rotate, rotate] degrees
(counter-clockwise as displayed, rows going down), then shifted by (dy, dx), each in
[-translate, translate] pixels. With elastic_alpha > 0 each image also gets its own elastic
distortion (Simard, Steinkraus and Platt, 2003): a random displacement field, uniform in
[-1, 1] for each pixel and direction, smoothed by a Gaussian of standard deviation
elastic_sigma pixels and multiplied by elastic_alpha, is added to where each output pixel
reads from. Pixels are resampled bilinearly (order 1), affine and elastic in one pass; what
comes in from beyond the border is 0, the USPS background. All channels of an image move
together.

Only the training loop calls this (net.py, when a config sets augment_translate,
augment_rotate, augment_scale or augment_elastic_alpha); validation and test images are
never augmented.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentSettings:
    """The net-level config keys augment_translate (pixels), augment_rotate (degrees),
    augment_scale (fraction), augment_elastic_alpha (pixels) and augment_elastic_sigma
    (pixels); translate, rotate, scale and elastic_alpha all 0 means off."""

    translate: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0

    @property
    def active(self):
        return bool(self.translate or self.rotate or self.scale or self.elastic_alpha)


def augment(images, rng, settings, image_shape):
    """Randomly transformed copies of a batch of images.

    images:      (N, C*H*W), each row an image laid out as (C, H, W), as the layers read it
    rng:         np.random.Generator; each call draws 4N numbers (N shift pairs, N angles,
                 N zooms), then, with elastic_alpha > 0, 2N*H*W more (the displacement
                 fields), so the same generator state gives the same batch
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
    displacements = None
    if settings.elastic_alpha:
        _, h, w = image_shape
        displacements = elastic_displacements(rng.uniform(-1.0, 1.0, (n, 2, h, w)), settings.elastic_alpha,
                                              settings.elastic_sigma)
    return transform_images(images, image_shape, shifts, angles, scales, displacements)


def elastic_displacements(noise, alpha, sigma):
    """Simard et al.'s displacement fields from given noise: each field smoothed by a Gaussian.

    noise:   (N, 2, H, W), one (dy, dx) field per image, e.g. uniform in [-1, 1]
    alpha:   the fields' scale, in pixels; sigma: the Gaussian's standard deviation, in pixels
    returns: (N, 2, H, W) float64, alpha * (Gaussian of std sigma) * noise over the last two
             axes only (each field on its own; beyond the border the field is mirrored)
    """
    from scipy import ndimage

    noise = np.asarray(noise, dtype=np.float64)
    if noise.ndim != 4 or noise.shape[1] != 2:
        raise ValueError(f"noise of shape {noise.shape} is not (N, 2, H, W)")
    if not sigma > 0:
        raise ValueError(f"sigma must be above 0, got {sigma!r}")
    return alpha * ndimage.gaussian_filter(noise, sigma=(0, 0, sigma, sigma), mode="reflect")


def transform_images(images, image_shape, shifts, angles, scales, displacements=None):
    """Apply one given affine transform (and displacement field) per image: the deterministic
    half of augment.

    images: (N, C*H*W) as (C, H, W); shifts: (N, 2) pixels (dy, dx), positive moving the
    content down and right; angles: (N,) degrees; scales: (N,) zoom factors > 0;
    displacements: None, or (N, 2, H, W) pixels (dy, dx) added to where each output pixel
    reads from after the affine transform (output pixel (y, x) reads the input at the
    affine's source of (y, x) plus displacements[:, :, y, x]).
    returns: (N, C*H*W), the dtype of images. An integer shift with angle 0, scale 1 and no
    displacement moves the pixels exactly (bilinear weights are then 1 and 0).
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
    if displacements is not None:
        displacements = np.asarray(displacements, dtype=np.float64)
        if displacements.shape != (n, 2, h, w):
            raise ValueError(f"displacements of shape {displacements.shape} are not ({n}, 2, {h}, {w})")
        in_y = in_y + displacements[:, 0]
        in_x = in_x + displacements[:, 1]
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
