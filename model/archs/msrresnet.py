"""MSRResNet (BasicSR's modified SRResNet: residual blocks without batch norm, bilinear skip), backend-agnostic."""
import keras

from model.layers import PixelShuffle, Scale, conv2d, lr_input, zero_init
from model.registry import register_generator

LRELU_SLOPE = 0.1  # BasicSR MSRResNet's LeakyReLU


def _lrelu(name):
    return keras.layers.LeakyReLU(negative_slope=LRELU_SLOPE, name=name)


@register_generator("msrresnet", scales=(2, 3, 4))
def msrresnet(scale, num_filters=64, num_res_blocks=16, pred_logvar=False):
    """Layer for layer as BasicSR's `MSRResNet(3, 3, num_feat, num_block, upscale)`: conv_first + LeakyReLU 0.1,
    `num_res_blocks` conv-ReLU-conv residual blocks (no long skip), sub-pixel upsampling (x2/x3 one stage
    upconv1 -> shuffle -> LeakyReLU, x4 two x2 stages), conv_hr + LeakyReLU, conv_last, plus the bilinearly
    upsampled input. Works on [0, 1] RGB inside (no mean); takes and returns pixel units like every model here.

    Layer names follow BasicSR's keys: conv_first, body_{n}_conv1/2, upconv{k}_scale_{s}, conv_hr, conv_last;
    `pred_logvar=True` adds conv_logvar (zero at start) beside conv_last: 3 raw log-variance channels.
    """
    x_in = lr_input()
    x01 = Scale(1 / 255, name="to_unit_range")(x_in)
    x = _lrelu("lrelu_first")(conv2d(num_filters, 3, "conv_first")(x01))
    for n in range(num_res_blocks):
        r = conv2d(num_filters, 3, f"body_{n}_conv1", activation="relu")(x)
        r = conv2d(num_filters, 3, f"body_{n}_conv2")(r)
        x = keras.layers.Add(name=f"body_{n}_add")([x, r])
    factors = {2: [2], 3: [3], 4: [2, 2]}[scale]
    for k, f in enumerate(factors, start=1):
        x = conv2d(num_filters * f * f, 3, f"upconv{k}_scale_{scale}")(x)
        x = PixelShuffle(f, name=f"shuffle{k}_scale_{scale}")(x)
        x = _lrelu(f"lrelu_up{k}_scale_{scale}")(x)
    x = _lrelu("lrelu_hr")(conv2d(num_filters, 3, "conv_hr")(x))
    mean = conv2d(3, 3, "conv_last")(x)
    base = keras.layers.UpSampling2D(scale, interpolation="bilinear", name=f"base_scale_{scale}")(x01)
    mean = keras.layers.Add(name="base_add")([mean, base])
    out = Scale(255.0, name="to_pixel_units")(mean)
    if pred_logvar:
        logvar = conv2d(3, 3, "conv_logvar", **zero_init(False))(x)
        out = keras.layers.Concatenate(axis=-1, name="mean_logvar")([out, logvar])
    return keras.Model(x_in, out, name="msrresnet")
