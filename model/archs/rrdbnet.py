"""RRDBNet (Wang et al. 2018, ESRGAN; the Real-ESRGAN and A-ESRGAN generator), backend-agnostic Keras 3.

Layer for layer as BasicSR's `RRDBNet(num_in_ch=3, num_out_ch=3, num_feat, num_block, num_grow_ch, scale)`:
conv_first, `num_res_blocks` residual-in-residual dense blocks, conv_body + long skip, two (nearest x2,
conv, LeakyReLU) stages, conv_hr + LeakyReLU, conv_last. All convs 3x3 with bias, LeakyReLU slope 0.2.
x2 and x1 models pixel-unshuffle the input first (by 2 / by 4) so the body always runs at 1/4 output size.

Conventions: the network itself works on RGB in [0, 1] with no mean subtraction (as Real-ESRGAN); this model
takes input in [0, 255] and returns pixel units like every model here (scaled inside). Unshuffle uses
space_to_depth channel order `(i*s + j)*C + c`, not PyTorch's `c*s*s + i*s + j`: model/convert/esrgan.py
permutes conv_first's input channels when importing PyTorch weights.
"""
import keras
from keras import ops

from model.layers import Scale, conv2d, lr_input, zero_init
from model.registry import register_generator

UNSHUFFLE = {4: 1, 2: 2, 1: 4}  # model scale -> pixel-unshuffle factor of the input
RRDB_SCALES = tuple(sorted(UNSHUFFLE))
LRELU = "leaky_relu"  # keras.activations.leaky_relu: negative_slope 0.2 by default, as ESRGAN's


def _rdb_init():
    """BasicSR's RDB init: kaiming-normal (fan-in, gain sqrt 2) times 0.1, i.e. variance 0.02 / fan_in."""
    return keras.initializers.VarianceScaling(scale=0.02, mode="fan_in", distribution="untruncated_normal")


@keras.saving.register_keras_serializable(package="sisr")
class PadToMultiple(keras.layers.Layer):
    """Reflect-pad bottom/right to a multiple of `multiple` (Real-ESRGAN's inferencer does this for x2/x1)."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        m = self.multiple
        shape = ops.shape(x)
        for axis in (1, 2):
            n = shape[axis]
            # (m - n % m) % m rather than (-n) % m: the ONNX converter gets the mod of a negative number wrong
            i = ops.arange(n + (m - n % m) % m)
            # reflection by index: ops.pad's reflect mode fails on the torch backend when nothing is padded
            x = ops.take(x, ops.where(i < n, i, 2 * (n - 1) - i), axis=axis)
        return x

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        m = self.multiple
        return (n, None if h is None else -(-h // m) * m, None if w is None else -(-w // m) * m, c)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="sisr")
class PixelUnshuffle(keras.layers.Layer):
    """N,H,W,C -> N,H/s,W/s,C*s*s with space_to_depth order: output channel (i*s + j)*C + c (inverse of
    model.PixelShuffle)."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        return ops.space_to_depth(x, self.factor)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        s = self.factor
        return (n, None if h is None else h // s, None if w is None else w // s, None if c is None else c * s * s)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="sisr")
class CropToScale(keras.layers.Layer):
    """[sr, lr] -> sr cropped to (scale * H_lr, scale * W_lr): undoes PadToMultiple on the output."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, inputs):
        sr, lr = inputs
        shape = ops.shape(lr)
        return sr[:, : shape[1] * self.scale, : shape[2] * self.scale, :]

    def compute_output_shape(self, input_shapes):
        sr, lr = input_shapes
        s = self.scale
        return (sr[0], None if lr[1] is None else lr[1] * s, None if lr[2] is None else lr[2] * s, sr[3])

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def _conv(filters, name, activation=None, **kwargs):
    return conv2d(filters, 3, name, activation=activation, **kwargs)


def _rdb(x, name, growth_channels):
    """Residual dense block: conv1..conv4 (growth channels each, LeakyReLU) on the concatenation of the block
    input and all previous outputs, conv5 back to the input width, out = x + 0.2 * conv5."""
    num_filters = x.shape[-1]
    features = [x]
    for k in range(1, 5):
        inp = features[0] if k == 1 else keras.layers.Concatenate(name=f"{name}_cat{k}")(features)
        features.append(_conv(growth_channels, f"{name}_conv{k}", LRELU, kernel_initializer=_rdb_init())(inp))
    y = _conv(num_filters, f"{name}_conv5", kernel_initializer=_rdb_init())(keras.layers.Concatenate(name=f"{name}_cat5")(features))
    y = Scale(0.2, name=f"{name}_scaling")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


def _rrdb(x, name, growth_channels):
    y = x
    for m in range(1, 4):
        y = _rdb(y, f"{name}_rdb{m}", growth_channels)
    y = Scale(0.2, name=f"{name}_scaling")(y)
    return keras.layers.Add(name=f"{name}_add")([x, y])


@register_generator("rrdbnet", scales=RRDB_SCALES)
def rrdbnet(scale, num_filters=64, num_res_blocks=23, growth_channels=32, pred_logvar=False):
    """RRDBNet at `scale` 4, 2 or 1 (BasicSR num_feat = num_filters, num_block = num_res_blocks,
    num_grow_ch = growth_channels). Any input size: x2/x1 inputs are reflect-padded to a multiple of the unshuffle
    factor inside and the output is cropped back to scale x input size.

    Layer names follow BasicSR's keys: conv_first_scale_{s} (its input width depends on the scale),
    body_{n}_rdb{m}_conv{k}, conv_body, conv_up1, conv_up2, conv_hr, conv_last.
    `pred_logvar=True` adds `conv_logvar`, a 3x3 conv on the same features as conv_last, zero at start: its 3 raw
    log-variance channels follow the RGB mean (pixel units) in a 6-channel output, as in the other architectures.
    """
    if scale not in UNSHUFFLE:
        raise ValueError(f"RRDBNet supports scales {RRDB_SCALES}, got {scale}")
    factor = UNSHUFFLE[scale]
    x_in = lr_input()
    x = Scale(1 / 255, name="to_unit_range")(x_in)
    if factor > 1:
        x = PadToMultiple(factor, name=f"pad_scale_{scale}")(x)
        x = PixelUnshuffle(factor, name=f"unshuffle_scale_{scale}")(x)
    feat = _conv(num_filters, f"conv_first_scale_{scale}")(x)
    body = feat
    for n in range(num_res_blocks):
        body = _rrdb(body, f"body_{n}", growth_channels)
    body = _conv(num_filters, "conv_body")(body)
    x = keras.layers.Add(name="body_add")([feat, body])
    for k in (1, 2):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"upsample{k}")(x)
        x = _conv(num_filters, f"conv_up{k}", LRELU)(x)
    x = _conv(num_filters, "conv_hr", LRELU)(x)
    mean = _conv(3, "conv_last")(x)
    logvar = _conv(3, "conv_logvar", **zero_init(False))(x) if pred_logvar else None
    if factor > 1:
        crop = CropToScale(scale, name=f"crop_scale_{scale}")
        mean = crop([mean, x_in])
        if logvar is not None:
            logvar = CropToScale(scale, name=f"crop_logvar_scale_{scale}")([logvar, x_in])
    out = Scale(255.0, name="to_pixel_units")(mean)
    if logvar is not None:
        out = keras.layers.Concatenate(axis=-1, name="mean_logvar")([out, logvar])
    return keras.Model(x_in, out, name="rrdbnet")
