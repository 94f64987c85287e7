"""Method 1's patch matrix, and the fast ways a conv layer uses it (a helper of conv_layer.py).

Method 1 puts every k x k patch of the input (all channels) in a column of one matrix
(`convolutions.im2col`), so that a conv layer's forward pass is one matrix product, filters
(rows) times patches (columns). What makes it fast lives here, so the layer reads as the
method:

- A training step keeps the forward pass's patch matrix for the backward pass, which needs
  the very same matrix for the weight derivative (convnet3: an im2col per layer per step).
- The product's columns become maps with the biases added and ReLU applied in one compiled
  pass each way (`channels_to_maps`, `maps_to_channels`): separate numpy passes for the
  transpose, the bias and the activation took about 0.2-0.4 ms more per layer and step.
- The weight derivative in float32 is computed as (patches @ deriv.T).T: the product has
  C*k*k rows where deriv @ patches.T has K, and OpenBLAS shares the work out by rows
  (convnet3's products took 0.6-0.7 of the time on 2 cores). In float64 the two orders can
  round differently, and there the gain was small, so float64 keeps deriv @ patches.T.
- The input derivative's patches, w.T @ deriv, are made a few images at a time, so that
  they are still in the cache when col2im adds them back up.
"""

import numpy as np

import convolutions


class PatchMatrix:
    """The patches of one conv layer's inputs (k x k windows, stride s, padding p)."""

    # Bytes of input-derivative patches (w.T @ deriv) made at a time: a few images' worth
    # stays in the cache for col2im, where a whole batch's (30 MB in convnet3) went to memory.
    chunk_bytes_ = 8 << 20

    def __init__(self, kernel_size, stride, padding):
        self.kernel_size_, self.stride_, self.padding_ = kernel_size, stride, padding
        self.kept_ = None  # (inputs as the layer was given them, their patches), until taken

    def patches(self, given, maps, keep=False):
        """The patch matrix (C*k*k, N*H'*W') of `maps` (N, C, H, W), a column per patch.

        keep: hold it for the backward pass of this very input `given` (a training step).
        """
        patches = convolutions.im2col(maps, self.kernel_size_, self.stride_, self.padding_)
        self.kept_ = (given, patches) if keep else None
        return patches

    def patches_again(self, given, maps):
        """The patch matrix of `maps` for the backward pass: the one kept by `patches` if that
        was given this very array `given`, else made anew. Nothing stays kept after."""
        kept, self.kept_ = self.kept_, None
        if kept is not None and kept[0] is given:
            return kept[1]
        return convolutions.im2col(maps, self.kernel_size_, self.stride_, self.padding_)

    @staticmethod
    def weight_derivative(deriv, patches):
        """deriv (K, N*H'*W') times the patches (C*k*k, N*H'*W') transposed -> (K, C*k*k)."""
        if deriv.dtype == np.float32:
            return np.ascontiguousarray((patches @ deriv.T).T)
        return deriv @ patches.T

    @staticmethod
    def activated_maps(products, biases, layer):
        """products (K, N*H'*W') -> maps (N, K, H', W') plus the biases (1, K), through the
        layer's activation: ReLU in the same compiled pass, softmax by layer.ApplyActivation."""
        num_images = products.shape[1] // (layer.output_size_y_ * layer.output_size_x_)
        maps = convolutions.channels_to_maps(products, biases, num_images, relu=not layer.is_output_)
        maps = maps.reshape(num_images, -1, layer.output_size_y_, layer.output_size_x_)
        return layer.ApplyActivation(maps) if layer.is_output_ else maps

    @staticmethod
    def activation_derivatives(dC_by_doutputs, outputs, layer):
        """(derivatives w.r.t. the pre-activations as columns (K, N*H'*W'), their sums db (K,))
        from those w.r.t. the outputs (N, K, H', W'): through ReLU's derivative in a hidden
        layer (the output layer's pass unchanged, as Layer.ComputeActivationDeriv's do)."""
        n, k = outputs.shape[0], outputs.shape[1]
        return convolutions.maps_to_channels(dC_by_doutputs.reshape(n, k, -1), outputs.reshape(n, k, -1),
                                             relu=not layer.is_output_)

    def input_derivative(self, w, deriv, input_shape):
        """The derivative w.r.t. the inputs (N, C, H, W): the patches' derivatives w.T @ deriv
        added back onto the images by col2im, a few images at a time.

        Each image's numbers are those of one product for the whole batch in float64. OpenBLAS's
        float32 product rounds a column differently with the number of columns, so float32
        makes it whole and keeps the numbers it always gave.
        """
        n, positions = input_shape[0], deriv.shape[1] // max(input_shape[0], 1)
        k, s, p = self.kernel_size_, self.stride_, self.padding_
        per_image = w.shape[1] * positions * deriv.itemsize
        step = max(1, self.chunk_bytes_ // max(per_image, 1))
        if step >= n or deriv.dtype != np.float64:
            return convolutions.col2im(w.T @ deriv, input_shape, k, s, p)
        d_inputs = np.empty(input_shape, dtype=deriv.dtype)
        for start in range(0, n, step):
            stop = min(n, start + step)
            d_inputs[start:stop] = convolutions.col2im(w.T @ deriv[:, start * positions:stop * positions],
                                                       (stop - start,) + tuple(input_shape[1:]), k, s, p)
        return d_inputs
