"""Start a WDSR model as bicubic interpolation: the linear skip branch gets the bicubic upsampling kernel
and the main branch's last conv starts at zero, so training only has to learn the residual detail.

An initialisation, not an architecture change: the network is the same WDSR. It shortens the early phase in
which a fresh model is far worse than interpolation (useful for short CPU runs such as `make train`).
"""
import numpy as np

from utils import UserError


def bicubic_upsampling_kernel(scale, size=5, channels=3):
    """(size, size, C, C*s*s) kernel: a 'same' conv followed by PixelShuffle(s) = MATLAB bicubic upscaling x s.

    Output pixel s*h + i sits at LR coordinate h + d_i with d_i = (i + 0.5)/s - 0.5 (MATLAB's pixel-centre
    mapping); its 4 Keys-cubic taps (a = -0.5) lie within +-2 of h, so a 5x5 kernel holds every phase.
    Each phase's weights sum to 1, which makes the kernel commute with the models' mean/scale normalisation.
    """
    from imaging.resize import _cubic

    half = size // 2
    offsets = np.arange(size) - half
    phases = [(i + 0.5) / scale - 0.5 for i in range(scale)]
    w1 = np.stack([_cubic(d - offsets) for d in phases])  # (s, size): 1-D weights per phase
    w1 /= w1.sum(axis=1, keepdims=True)
    kernel = np.zeros((size, size, channels, channels * scale * scale), np.float32)
    for i in range(scale):
        for j in range(scale):
            for c in range(channels):
                kernel[:, :, c, (i * scale + j) * channels + c] = np.outer(w1[i], w1[j])
    return kernel


def _set_conv(layer, kernel, zero=False):
    """Give a Conv2D or WeightNormConv2D the effective kernel `kernel` (or zero output) and zero bias."""
    weights = {w.path.split("/")[-1]: w for w in layer.weights}
    if "v" in weights:  # weight norm: kernel = g * v / ||v||
        if zero:
            weights["g"].assign(np.zeros(weights["g"].shape, np.float32))
        else:
            weights["v"].assign(kernel)
            weights["g"].assign(np.sqrt((kernel.astype(np.float64) ** 2).sum(axis=(0, 1, 2))).astype(np.float32))
    else:
        weights["kernel"].assign(np.zeros(weights["kernel"].shape, np.float32) if zero else kernel)
    if "bias" in weights:
        weights["bias"].assign(np.zeros(weights["bias"].shape, np.float32))


def init_bicubic(model):
    """Make a WDSR model compute bicubic upscaling (interior pixels); returns the names of the layers set."""
    skip = [layer for layer in model.layers if layer.name.startswith("conv2d_skip_scale_")]
    main = [layer for layer in model.layers if layer.name.startswith("conv2d_main_scale_")]
    if len(skip) != 1 or len(main) != 1:
        raise UserError(f"--bicubic-init needs a WDSR model (linear 5x5 skip branch); {model.name} has none")
    scale = int(skip[0].name.rsplit("_", 1)[1])
    size = skip[0].kernel_size[0] if hasattr(skip[0], "kernel_size") else 5
    _set_conv(skip[0], bicubic_upsampling_kernel(scale, size))
    _set_conv(main[0], None, zero=True)
    return [skip[0].name, main[0].name]
