"""SRVGGNetCompact (Real-ESRGAN's compact network: realesr-general-x4v3, realesr-animevideov3), backend-agnostic."""
import keras

from model.layers import PixelShuffle, Scale, conv2d, lr_input, zero_init
from model.registry import register_generator

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


def _activation(kind, name):
    if kind == "prelu":  # one slope per channel, 0.25 at start as torch.nn.PReLU(num_parameters=F)
        return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name)
    if kind == "leakyrelu":
        return keras.layers.LeakyReLU(negative_slope=0.1, name=name)
    return keras.layers.ReLU(name=name)


@register_generator("srvgg-compact", scales=(1, 2, 3, 4))
def srvgg_compact(scale, num_filters=64, num_res_blocks=16, activation="prelu", pred_logvar=False):
    """Layer for layer as Real-ESRGAN's `SRVGGNetCompact(3, 3, num_feat, num_conv, upscale, act_type)`: a 3x3 conv
    and activation, `num_res_blocks` (= num_conv; the body depth option every network here shares, though these
    are plain, not residual) (3x3 conv, activation) pairs at LR size, a 3x3 conv to 3 * scale^2 channels,
    pixel shuffle, plus the nearest-neighbour upsampled input. Works on [0, 1] RGB inside (no mean); takes and
    returns pixel units like every model here.

    Layer names: conv_first, act_first, body_{i}_conv, body_{i}_act, conv_up_scale_{s}; `pred_logvar=True` adds
    conv_logvar_scale_{s} (zero at start) beside conv_up: 3 raw log-variance channels after the RGB mean.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    x_in = lr_input()
    x01 = Scale(1 / 255, name="to_unit_range")(x_in)
    x = conv2d(num_filters, 3, "conv_first")(x01)
    x = _activation(activation, "act_first")(x)
    for i in range(num_res_blocks):
        x = conv2d(num_filters, 3, f"body_{i}_conv")(x)
        x = _activation(activation, f"body_{i}_act")(x)
    mean = conv2d(3 * scale * scale, 3, f"conv_up_scale_{scale}")(x)
    logvar = conv2d(3 * scale * scale, 3, f"conv_logvar_scale_{scale}", **zero_init(False))(x) \
        if pred_logvar else None
    base = x01
    if scale > 1:
        mean = PixelShuffle(scale, name=f"shuffle_scale_{scale}")(mean)
        base = keras.layers.UpSampling2D(scale, interpolation="nearest", name=f"base_scale_{scale}")(x01)
        if logvar is not None:
            logvar = PixelShuffle(scale, name=f"shuffle_logvar_scale_{scale}")(logvar)
    mean = keras.layers.Add(name="base_add")([mean, base])
    out = Scale(255.0, name="to_pixel_units")(mean)
    if logvar is not None:
        out = keras.layers.Concatenate(axis=-1, name="mean_logvar")([out, logvar])
    return keras.Model(x_in, out, name="srvgg_compact")
