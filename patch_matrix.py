"""Method 1: every filter's dot product with every patch, computed fast (a helper of conv_layer.py).

A patch is the k x k window of the input (all channels) under one output position. Method 1
takes the dot product of each filter with each patch. Two ways to compute it live here,
so that the layer reads as the method:

- Read in place (`convolutions.correlate`, stride 1): the compiled kernel reads each patch
  where it lies in the zero-padded input, with the filters' output channels side by side
  in vector registers, and one fused multiply-add per term. The backward pass is the same
  kernel with the filters flipped and their channel axes swapped (the input derivative),
  and `convolutions.correlate_weight_derivative`. Nothing of the size of the patches is
  ever written to memory: the patch matrix of convnet3's second layer is 9 times its input,
  and writing it (im2col), reading it, and adding the input derivative's back (col2im) took
  most of a method-1 epoch.
- As a matrix (`convolutions.im2col`, any stride): the patches are the columns of one
  matrix, so the whole layer is one matrix product, filters (rows) times patches
  (columns). The layer uses it for strides above 1. For it:
  - A training step keeps the forward pass's patch matrix for the backward pass, which needs
    the very same matrix for the weight derivative.
  - The product's columns become maps with the biases added and ReLU applied in one compiled
    pass each way (`channels_to_maps`, `maps_to_channels`).
  - The weight derivative in float32 is computed as (patches @ deriv.T).T: the product has
    C*k*k rows where deriv @ patches.T has K, and OpenBLAS shares the work out by rows. In
    float64 the two orders can round differently, so float64 keeps deriv @ patches.T.
  - The input derivative's patches, w.T @ deriv, are made a few images at a time, so that
    they are still in the cache when col2im adds them back up.
"""

import numpy as np

import convolutions


class PatchMatrix:
    """The patches of one conv layer's inputs (k x k windows, stride s, padding p), and the
    filters' dot products with them, forward and backward."""

    # Bytes of input-derivative patches (w.T @ deriv) made at a time: a few images' worth
    # stays in the cache for col2im, where a whole batch's (30 MB in convnet3) went to memory.
    chunk_bytes_ = 8 << 20

    def __init__(self, kernel_size, stride, padding):
        self.kernel_size_, self.stride_, self.padding_ = kernel_size, stride, padding
        self.kept_ = None  # (inputs as the layer was given them, their patches), until taken
        # Read in place at stride 1 (at larger strides most of each patch is skipped over).
        self.in_place_ = stride == 1

    def forward(self, w, b, given, maps, layer):
        """Every filter's dot product with every patch, plus its bias, through the layer's
        activation: maps (N, C, H, W) -> (N, K, H', W'). w: (K, C*k*k); b: (1, K); given:
        the inputs as the layer was given them (what a training step's patches are kept for)."""
        if not self.in_place_:
            products = w @ self.patches(given, maps, keep=layer.training_)  # (K, N*H'*W')
            return self.activated_maps(products, b, layer)
        filters = w.reshape(w.shape[0], maps.shape[1], self.kernel_size_, self.kernel_size_)
        outputs = convolutions.correlate(maps, filters, b, padding=self.padding_, relu=not layer.is_output_)
        return layer.ApplyActivation(outputs) if layer.is_output_ else outputs

    def weight_derivative(self, deriv, given, maps):
        """dw (K, C*k*k), summed over the batch: each filter's derivative, the patches times the
        derivatives of that filter's dot products with them. deriv: (K, N*H'*W'), from
        activation_derivatives; given, maps: the layer's inputs, as given and as (N, C, H, W)."""
        if not self.in_place_:
            return self.matrix_weight_derivative(deriv, self.patches_again(given, maps))
        k = self.kernel_size_
        dw = convolutions.correlate_weight_derivative(maps, self._as_maps(deriv, maps.shape), k,
                                                      padding=self.padding_)
        return dw.reshape(deriv.shape[0], -1)

    def input_derivative(self, w, deriv, maps):
        """dC_by_dinputs (N, C, H, W): each input pixel gets the filters' weights times the
        derivatives of the dot products it was in. w: (K, C*k*k); deriv: (K, N*H'*W')."""
        if not self.in_place_:
            return self.matrix_input_derivative(w, deriv, maps.shape)
        k, n_out = self.kernel_size_, w.shape[0]
        # out = correlate(in, w): each input meets the outputs it fed through the same
        # weights, flipped, from the other side: correlate(d_out, w flipped, channels
        # swapped), padded so that every output that saw the input is reached.
        flipped = w.reshape(n_out, maps.shape[1], k, k)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
        return convolutions.correlate(self._as_maps(deriv, maps.shape), flipped,
                                      padding=k - 1 - self.padding_)

    def _as_maps(self, deriv, input_shape):
        """deriv (K, N*H'*W') viewed as maps (N, K, H', W'), without a copy."""
        k, s, p = self.kernel_size_, self.stride_, self.padding_
        n, _, h, w = input_shape
        out_y, out_x = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return deriv.reshape(deriv.shape[0], n, out_y, out_x).transpose(1, 0, 2, 3)

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
    def matrix_weight_derivative(deriv, patches):
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

    def matrix_input_derivative(self, w, deriv, input_shape):
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
