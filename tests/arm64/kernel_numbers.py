"""Every public function of the compiled kernels on fixed random inputs, saved to an .npz:
tests/arm64/test_arm64.py runs this with the x86 build (the host's Python) and with the
aarch64 build (the arm64 Python, under emulation) and compares the two files bit for bit.

    python tests/arm64/kernel_numbers.py KERNELS_DIR OUT.npz

KERNELS_DIR holds the convolutions*.so to load. The inputs are made from the raw bits of a
seeded PCG64 (the same on every machine, whatever numpy's version) and saved too, under
"in/...", so that a difference in them is told apart from one in the kernels' numbers."""

import sys

import numpy as np


def uniform(rng, shape, dtype, low=-1.0, high=1.0):
    """Uniform values from the generator's raw 64-bit words, exactly representable in dtype
    (24 or 53 random bits), with a few repeats and zeros of both signs for the max pooling's
    ties and the ReLU's edge."""
    bits = 24 if dtype == np.float32 else 53
    words = rng.bit_generator.random_raw(int(np.prod(shape))).astype(np.uint64)
    values = (words >> np.uint64(64 - bits)).astype(np.float64) / float(2**bits)
    values = (low + (high - low) * values).astype(dtype).reshape(shape)
    flat = values.reshape(-1)
    flat[1::7] = flat[0::7][: len(flat[1::7])]  # ties: each 7th value repeated next to it
    flat[::11] = 0.0
    flat[5::13] = -0.0
    return values


def outputs(convolutions):
    results = {}

    def keep(name, value):
        if isinstance(value, tuple):
            for i, part in enumerate(value):
                results[f"{name}/{i}"] = np.asarray(part)
        else:
            results[name] = np.asarray(value)

    for dtype in (np.float32, np.float64):
        rng = np.random.Generator(np.random.PCG64(321))
        t = np.dtype(dtype).name

        def make(name, shape, rng=rng, t=t, dtype=dtype):
            array = uniform(rng, shape, dtype)
            results[f"in/{t}/{name}"] = array
            return array

        # convolve: a conv layer's forward pass (images x filters, summed over the channels
        # by numpy), maps side by side in vector lanes, and a plain batch of 3-D arrays.
        x = make("conv_x", (3, 1, 4, 13, 11))
        w = make("conv_w", (1, 5, 4, 5, 5))
        for padding in (0, 2, 4):
            keep(f"convolve/{t}/layer/p{padding}", convolutions.convolve(x, w, padding=padding))
        x = make("lanes_x", (2, 1, 17, 7, 7))
        w = make("lanes_w", (1, 6, 17, 3, 3))
        keep(f"convolve/{t}/lanes", convolutions.convolve(x, w, padding=1))
        x = make("batch_x", (6, 19, 19))
        w = make("batch_w", (6, 4, 4))
        keep(f"convolve/{t}/batch", convolutions.convolve(x, w, padding=3))

        # correlate (conv method 1): strides, paddings, bias, ReLU, and a transposed view.
        x = make("corr_x", (5, 3, 15, 14))
        f = make("corr_f", (7, 3, 5, 5))
        bias = make("corr_bias", (7,))
        for stride, padding in ((1, 0), (1, 2), (2, 1), (3, 4)):
            name = f"s{stride}p{padding}"
            keep(f"correlate/{t}/{name}", convolutions.correlate(x, f, stride=stride, padding=padding))
            keep(f"correlate/{t}/{name}/bias_relu",
                 convolutions.correlate(x, f, bias=bias, stride=stride, padding=padding, relu=True))
            out = convolutions.correlate(x, f, stride=stride, padding=padding)
            d = make(f"corr_d_{name}", out.shape)
            keep(f"correlate_weight_derivative/{t}/{name}",
                 convolutions.correlate_weight_derivative(x, d, 5, stride=stride, padding=padding))
        xt = make("corr_xt", (14, 15, 3, 5)).transpose(3, 2, 1, 0)
        keep(f"correlate/{t}/transposed", convolutions.correlate(xt, f, bias=bias, stride=2, padding=2))
        # Many filters: several blocks of output channels.
        f = make("corr_f_many", (37, 3, 3, 3))
        keep(f"correlate/{t}/many_filters", convolutions.correlate(x, f, padding=1))

        # pre_activation_derivatives, with and without ReLU.
        d = make("pre_d", (4, 6, 9, 10))
        o = make("pre_o", (4, 6, 9, 10))
        for relu in (False, True):
            keep(f"pre_activation_derivatives/{t}/relu{int(relu)}",
                 convolutions.pre_activation_derivatives(d, o, relu))

        # Max pooling: 2x2 stride 2 (the kit's), overlapping windows, padding.
        x = make("pool_x", (3, 5, 13, 16))
        for k, s, p in ((2, 2, 0), (3, 2, 1), (3, 1, 0), (2, 1, 1)):
            name = f"k{k}s{s}p{p}"
            pooled, argmax = convolutions.maxpool_forward(x, k, s, padding=p)
            keep(f"maxpool_forward/{t}/{name}", (pooled, argmax.astype(np.int64)))
            d = make(f"pool_d_{name}", pooled.shape)
            keep(f"maxpool_backward/{t}/{name}", convolutions.maxpool_backward(d, argmax, x.shape))
            keep(f"maxpool_derivative/{t}/{name}", convolutions.maxpool_derivative(d, x, k, s, padding=p))
    return results


def main(kernels_dir, out):
    sys.path.insert(0, kernels_dir)
    import convolutions

    results = outputs(convolutions)
    results["meta/module"] = np.array(convolutions.__file__)
    np.savez(out, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
