"""PyTorch -> Keras tensor layouts shared by every converter: conv kernels (out, in, kh, kw) -> (kh, kw, in, out),
and the channel order of pixel-unshuffle (PyTorch c*s*s + i*s + j, space_to_depth (i*s + j)*C + c)."""
import numpy as np


def unshuffle_permutation(channels, factor):
    """perm with keras_channel k <- torch_channel perm[k], for pixel-unshuffle of `channels` by `factor`."""
    perm = np.empty(channels * factor * factor, dtype=np.int64)
    for i in range(factor):
        for j in range(factor):
            for c in range(channels):
                perm[(i * factor + j) * channels + c] = c * factor * factor + i * factor + j
    return perm


def torch_to_keras_kernel(weight, unshuffle=1):
    """(out, in, kh, kw) -> (kh, kw, in, out), with conv_first's input channels permuted for pixel-unshuffle."""
    kernel = np.transpose(np.asarray(weight, np.float32), (2, 3, 1, 0))
    if unshuffle > 1:
        kernel = kernel[:, :, unshuffle_permutation(kernel.shape[2] // (unshuffle * unshuffle), unshuffle), :]
    return np.ascontiguousarray(kernel)
