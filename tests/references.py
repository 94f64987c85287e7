"""Independent references of the compiled kernels in convolutions.pyx, for the tests that
check them (test_convolutions.py, test_fuzz.py): scipy.signal.convolve2d for convolve, plain
numpy loops for im2col, col2im and max pooling. Each takes any array-like (any memory
layout, any real dtype, nested lists) and computes in float64; the caller converts."""

import numpy as np
import scipy.signal


def window_size(size, k, s, p):
    """Outputs along one axis of a k-wide window at stride s over size + 2p pixels."""
    return (size + 2 * p - k) // s + 1


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


def im2col_reference(x, k, s, p):
    """(C*k*k, N*out_y*out_x): column n*out_y*out_x + oy*out_x + ox holds the (C, k, k)
    window of image n at (oy, ox), flattened, zero padding p."""
    x = np.asarray(x, dtype=np.float64)
    n_img, n_ch, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out_y, out_x = window_size(h, k, s, p), window_size(w, k, s, p)
    cols = np.zeros((n_ch * k * k, n_img * out_y * out_x))
    column = 0
    for n in range(n_img):
        for oy in range(out_y):
            for ox in range(out_x):
                cols[:, column] = xp[n, :, oy * s:oy * s + k, ox * s:ox * s + k].reshape(-1)
                column += 1
    return cols


def col2im_reference(cols, shape, k, s, p):
    """im2col's adjoint: each column added back onto its window of a zero (N, C, H, W) image,
    the padding cut off."""
    cols = np.asarray(cols, dtype=np.float64)
    n_img, n_ch, h, w = shape
    out_y, out_x = window_size(h, k, s, p), window_size(w, k, s, p)
    xp = np.zeros((n_img, n_ch, h + 2 * p, w + 2 * p))
    column = 0
    for n in range(n_img):
        for oy in range(out_y):
            for ox in range(out_x):
                xp[n, :, oy * s:oy * s + k, ox * s:ox * s + k] += cols[:, column].reshape(n_ch, k, k)
                column += 1
    return xp[:, :, p:p + h, p:p + w]


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
