"""EDSR (Lim et al. 2017), layer for layer as krasserm/super-resolution's `edsr.py`, with deterministic names."""
import keras

from model.layers import Normalize, PixelShuffle, Scale, conv2d, lr_input, sr_output, zero_init
from model.registry import register_generator


@register_generator("edsr", scales=(2, 3, 4))
def edsr(scale, num_filters=64, num_res_blocks=16, res_scaling=None, weightnorm=False, pred_logvar=False):
    """EDSR: head conv, `num_res_blocks` conv-ReLU-conv blocks (times `res_scaling` before the add), body conv +
    long skip, upsampler (x2/x3 one sub-pixel stage, x4 two x2 stages, named `upsample_{k}_scale_{s}`),
    3x3 tail conv to RGB.

    `pred_logvar=True` adds a second 3x3 conv `tail_logvar` on the same upsampled features as the RGB tail; its
    3 channels (the per-pixel log-variance, raw, not denormalised) follow the RGB mean in a 6-channel output.
    It starts at zero (zero kernel and bias), i.e. unit variance in normalised units.
    """
    wn = bool(weightnorm)
    x_in = lr_input()
    x = Normalize(name="normalize")(x_in)
    x = b = conv2d(num_filters, 3, "head", wn)(x)
    for i in range(1, num_res_blocks + 1):
        r = conv2d(num_filters, 3, f"block_{i}_conv1", wn, activation="relu")(b)
        r = conv2d(num_filters, 3, f"block_{i}_conv2", wn)(r)
        if res_scaling:
            r = Scale(res_scaling, name=f"block_{i}_scaling")(r)
        b = keras.layers.Add(name=f"block_{i}_add")([b, r])
    b = conv2d(num_filters, 3, "body_tail", wn)(b)
    x = keras.layers.Add(name="body_add")([x, b])

    factors = {2: [2], 3: [3], 4: [2, 2]}[scale]
    for k, f in enumerate(factors, start=1):
        x = conv2d(num_filters * f * f, 3, f"upsample_{k}_scale_{scale}", wn)(x)
        x = PixelShuffle(f, name=f"upsample_{k}_shuffle_scale_{scale}")(x)

    mean = conv2d(3, 3, "tail", wn)(x)
    logvar = conv2d(3, 3, "tail_logvar", wn, **zero_init(wn))(x) if pred_logvar else None
    return keras.Model(x_in, sr_output(mean, logvar), name="edsr")

