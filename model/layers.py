"""Small custom layers shared by all architectures (keras.ops only, so any backend runs them).

All are registered serializable (package "sisr"), so plain `keras.models.load_model` restores them
without `custom_objects` and without `safe_mode=False` (no Lambda layers anywhere).
"""
import keras
from keras import ops

# DIV2K training-set RGB mean in pixel units (as EDSR / krasserm): the models normalise their input with it.
DIV2K_RGB_MEAN = (0.4488 * 255, 0.4371 * 255, 0.4040 * 255)
NORM_SCALE = 127.5


@keras.saving.register_keras_serializable(package="sisr")
class Normalize(keras.layers.Layer):
    """x -> (x - mean) / scale, per RGB channel (input in pixel units [0, 255])."""

    def __init__(self, mean=DIV2K_RGB_MEAN, scale=NORM_SCALE, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(m) for m in mean]
        self.scale = float(scale)

    def call(self, x):
        return (x - ops.cast(ops.convert_to_tensor(self.mean), x.dtype)) / self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "scale": self.scale}


@keras.saving.register_keras_serializable(package="sisr")
class Denormalize(Normalize):
    """Inverse of Normalize: x -> x * scale + mean (back to pixel units)."""

    def call(self, x):
        return x * self.scale + ops.cast(ops.convert_to_tensor(self.mean), x.dtype)


@keras.saving.register_keras_serializable(package="sisr")
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel upsampling (Shi et al. 2016): N,H,W,C*s*s -> N,H*s,W*s,C.

    Same channel ordering as `tf.nn.depth_to_space` (NHWC, "DCR"): output pixel (h*s+i, w*s+j, c) is input
    channel (i*s + j)*C + c. Krasserm's converted weights rely on this ordering.
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = int(scale)

    def call(self, x):
        s = self.scale
        shape = ops.shape(x)
        h, w, c = shape[1], shape[2], x.shape[-1] // (s * s)
        x = ops.reshape(x, (-1, h, w, s, s, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, h * s, w * s, c))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        s = self.scale
        if c is not None and c % (s * s):
            raise ValueError(f"PixelShuffle({s}) needs channels divisible by {s * s}, got {c}")
        return (n, None if h is None else h * s, None if w is None else w * s, None if c is None else c // (s * s))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="sisr")
class Scale(keras.layers.Layer):
    """Multiply by a constant (residual scaling, as in EDSR); a serializable stand-in for a Lambda."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, x):
        return x * self.factor

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def conv2d(filters, kernel_size, name, weightnorm=False, activation=None, **kwargs):
    """A 'same'-padded conv, weight-normalised or plain; every layer gets an explicit, deterministic name."""
    if weightnorm:
        from model.weightnorm import WeightNormConv2D

        return WeightNormConv2D(filters, kernel_size, padding="same", activation=activation, name=name, **kwargs)
    return keras.layers.Conv2D(filters, kernel_size, padding="same", activation=activation, name=name, **kwargs)


def sr_output(mean, logvar=None):
    """Final output: denormalised mean (pixel units), plus the raw log-variance channels when given."""
    mean = Denormalize(name="denormalize")(mean)
    if logvar is None:
        return mean
    return keras.layers.Concatenate(axis=-1, name="mean_logvar")([mean, logvar])


def lr_input():
    """The model input: float32 N x H x W x 3 in [0, 255], any spatial size."""
    return keras.Input(shape=(None, None, 3), dtype="float32", name="lr")


def zero_init(weightnorm):
    """Initializer kwargs that make a head start at exactly zero output (weight norm: g = 0)."""
    if weightnorm:
        return {"g_initializer": "zeros"}
    return {"kernel_initializer": "zeros"}
