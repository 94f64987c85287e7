"""Independent references of the compiled kernels in convolutions.pyx, for the tests that
check them (test_convolutions.py, test_fuzz.py): scipy.signal.convolve2d for convolve, plain
numpy loops for max pooling and pre_activation_derivatives. Each takes any array-like (any
memory layout, any real dtype, nested lists) and computes in float64, the caller converting,
except pre_activation_reference, which computes in its arguments' dtype (its sums are
promised bit for bit)."""

import numpy as np
import scipy.signal


def window_size(size, k, s, p):
    """Outputs along one axis of a k-wide window at stride s over size + 2p pixels."""
    return (size + 2 * p - k) // s + 1


def fitting_size(n, k, s, p):
    """The smallest input size >= n along which a k-wide window at stride s with padding p
    ends exactly on the last padded pixel: (size + 2p - k) / s + 1 a whole number >= 1, as
    plumbing.shapes.output_size requires of every conv and pooling layer."""
    size = max(n, k - 2 * p, 1)
    while (size + 2 * p - k) % s:
        size += 1
    return size


def convolve_reference(x, w, padding):
    """scipy's true 2-D convolution ('valid', after zero padding) of every broadcast (image,
    kernel) pair of the leading axes."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    lead = np.broadcast_shapes(x.shape[:-2], w.shape[:-2])
    xb, wb = np.broadcast_to(x, lead + x.shape[-2:]), np.broadcast_to(w, lead + w.shape[-2:])
    out = np.empty(lead + (x.shape[-2] + 2 * padding - w.shape[-2] + 1, x.shape[-1] + 2 * padding - w.shape[-1] + 1))
    for idx in np.ndindex(*lead):
        out[idx] = scipy.signal.convolve2d(np.pad(xb[idx], padding), wb[idx], mode="valid")
    return out


def maxpool_reference(x, k, s, p):
    """(outputs, argmax, window_has_nan): max over each window clipped to the real pixels
    (padding never wins); argmax the flat index h*W + w of the first maximum in row-major
    order (for a window with a NaN: any NaN)."""
    x = np.asarray(x, dtype=np.float64)
    n_img, n_ch, h, w = x.shape
    out_y, out_x = window_size(h, k, s, p), window_size(w, k, s, p)
    out = np.empty((n_img, n_ch, out_y, out_x))
    argmax = np.empty((n_img, n_ch, out_y, out_x), dtype=np.int64)
    has_nan = np.zeros((n_img, n_ch, out_y, out_x), dtype=bool)
    for oy in range(out_y):
        y0, y1 = max(oy * s - p, 0), min(oy * s - p + k, h)
        for ox in range(out_x):
            x0, x1 = max(ox * s - p, 0), min(ox * s - p + k, w)
            for n in range(n_img):
                for c in range(n_ch):
                    window = x[n, c, y0:y1, x0:x1].reshape(-1)
                    i = int(np.argmax(window))
                    out[n, c, oy, ox] = window[i]
                    argmax[n, c, oy, ox] = (y0 + i // (x1 - x0)) * w + x0 + i % (x1 - x0)
                    has_nan[n, c, oy, ox] = np.isnan(window).any()
    return out, argmax, has_nan


def maxpool_backward_reference(d_outputs, argmax, shape):
    """Each output's derivative added onto the input pixel its argmax names."""
    n_img, n_ch, h, w = shape
    d = np.asarray(d_outputs, dtype=np.float64)
    am = np.asarray(argmax).astype(np.int64)
    d_in = np.zeros((n_img, n_ch, h * w))
    for n in range(n_img):
        for c in range(n_ch):
            np.add.at(d_in[n, c], am[n, c].reshape(-1), d[n, c].reshape(-1))
    return d_in.reshape(shape)


def pre_activation_reference(d_outputs, outputs, relu):
    """(d, bias_sum) as pre_activation_derivatives documents them, in d_outputs' dtype, one
    value at a time: d = d_outputs * (outputs > 0) (a product: inf or NaN times 0 is NaN) if
    relu, else d_outputs; each image's sum over its positions in row-major order, one addition
    at a time from +0, then np.sum of those per-image sums over the images."""
    d = np.asarray(d_outputs)
    d = d.astype(d.dtype.newbyteorder("="))
    o = np.asarray(outputs)
    real = d.dtype.type
    n_img, n_ch, h, w = d.shape
    d_pre = np.empty(d.shape, dtype=d.dtype)
    image_sums = np.zeros((n_img, n_ch), dtype=d.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        for n in range(n_img):
            for f in range(n_ch):
                total = real(0)
                for y in range(h):
                    for x in range(w):
                        v = d[n, f, y, x]
                        if relu:
                            v = v * real(o[n, f, y, x] > 0)
                        d_pre[n, f, y, x] = v
                        total = total + v
                image_sums[n, f] = total
        return d_pre, np.sum(image_sums, axis=0)

