"""Layers of the U-Net discriminators: a spectral-norm conv that behaves the same on every backend, a bilinear
resize to another tensor's size (PyTorch's `align_corners=False`), an input-size check, and the conv / LReLU /
input helpers both discriminators build with.

Why not `keras.layers.SpectralNormalization`: in training mode it *assigns* W / sigma to the wrapped layer's
trainable kernel and then runs the layer on that variable. Under a stateless JAX train step
(`stateless_call`) assignments to trainable variables are dropped (only non-trainable ones come back), so the
kernel the optimizer updates is the raw one there, while on TensorFlow and PyTorch it is the normalised one,
and the gradient does not flow through sigma on TF/torch but does on JAX; in inference mode it uses the raw
kernel, which on JAX was never normalised. The three backends would train three different networks.
`SpectralConv2D` instead keeps the raw kernel (PyTorch's `weight_orig`) as the trainable weight, the power-
iteration vectors u and v (PyTorch's `weight_u`, `weight_v`) as non-trainable weights, and computes
W / sigma inside `call` every time: one power iteration per training call (u, v updated, no gradient through
them), stored u, v in inference, exactly as `torch.nn.utils.spectral_norm`.
"""
import keras
import numpy as np
from keras import ops

from utils import UserError


def torch_conv_init():
    """PyTorch's default conv kernel initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


def _l2_normalize(x, eps=1e-12):
    # torch.nn.functional.normalize: x / max(||x||, eps)
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), eps)


@keras.saving.register_keras_serializable(package="sisr")
class SpectralConv2D(keras.layers.Layer):
    """Conv2D with PyTorch semantics: symmetric integer zero `padding` (as nn.Conv2d(padding=p), which
    Keras's 'same' does not reproduce for stride 2), and optional spectral normalisation of the kernel.

    Kernel layout is Keras's (kh, kw, in, out); sigma is the largest singular value of the (out, kh*kw*in)
    matrix, the same matrix as PyTorch's (out, in*kh*kw) up to a column permutation, so sigma is the same.
    `v` is stored in Keras's (kh, kw, in) order (an importer permutes PyTorch's (in, kh, kw) `weight_v`).
    """

    def __init__(self, filters, kernel_size, strides=1, padding=0, use_bias=True, spectral_norm=True,
                 eps=1e-12, init_power_iterations=15, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = int(padding)
        self.use_bias = bool(use_bias)
        self.spectral_norm = bool(spectral_norm)
        self.eps = float(eps)
        self.init_power_iterations = int(init_power_iterations)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or torch_conv_init())

    def build(self, input_shape):
        channels = int(input_shape[-1])
        k = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, channels, self.filters),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None
        if self.spectral_norm:
            # One replica's power iteration is as good as the average of several (and averaging would
            # un-normalise the vectors), hence only_first_replica under a distribution strategy.
            self.u = self.add_weight(name="u", shape=(self.filters,), initializer="zeros", trainable=False,
                                     aggregation="only_first_replica")
            self.v = self.add_weight(name="v", shape=(k * k * channels,), initializer="zeros", trainable=False,
                                     aggregation="only_first_replica")
            # Start u, v at a converged estimate for the initial kernel (as torch's parametrizations.spectral_norm,
            # 15 iterations), so inference before any training step already sees W / sigma_max.
            w = keras.ops.convert_to_numpy(self.kernel).reshape(-1, self.filters).astype(np.float64)
            rng = np.random.default_rng(0)
            u = rng.standard_normal(self.filters)
            u /= np.linalg.norm(u)
            v = w @ u
            for _ in range(max(1, self.init_power_iterations)):
                v = w @ u
                v /= max(np.linalg.norm(v), self.eps)
                u = w.T @ v
                u /= max(np.linalg.norm(u), self.eps)
            self.u.assign(u.astype("float32"))
            self.v.assign(v.astype("float32"))

    def effective_kernel(self, training=False):
        """W / sigma (or W without spectral norm); in training, one power iteration updates u and v first."""
        kernel = self.kernel
        if not self.spectral_norm:
            return kernel
        w = ops.reshape(kernel, (-1, self.filters))  # (kh*kw*in, out) = W_mat^T
        if training:
            w_const = ops.stop_gradient(w)
            v = _l2_normalize(ops.matmul(w_const, ops.convert_to_tensor(self.u)), self.eps)
            u = _l2_normalize(ops.matmul(ops.transpose(w_const), v), self.eps)
            u, v = ops.stop_gradient(u), ops.stop_gradient(v)
            self.u.assign(u)
            self.v.assign(v)
        else:
            u, v = ops.convert_to_tensor(self.u), ops.convert_to_tensor(self.v)
        sigma = ops.sum(v * ops.matmul(w, u))  # u^T W_mat v, differentiable in W as in PyTorch
        return kernel / sigma

    def call(self, x, training=False):
        kernel = self.effective_kernel(training=bool(training))
        if self.padding:
            p = self.padding
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        y = ops.conv(x, ops.cast(kernel, x.dtype), strides=self.strides, padding="valid")
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else (n + 2 * self.padding - self.kernel_size) // self.strides + 1
        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "use_bias": self.use_bias,
                "spectral_norm": self.spectral_norm, "eps": self.eps,
                "init_power_iterations": self.init_power_iterations,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="sisr")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of x to the spatial size of `reference`, PyTorch `F.interpolate(mode='bilinear',
    align_corners=False)` semantics (keras.ops.image.resize, antialias off; checked against torch in tests)."""

    def call(self, x, reference):
        size = ops.shape(reference)[1:3]
        return ops.image.resize(x, (size[0], size[1]), interpolation="bilinear", antialias=False)

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[-1])


@keras.saving.register_keras_serializable(package="sisr")
class InputSizeCheck(keras.layers.Layer):
    """Identity that rejects images whose height or width is not a multiple of `multiple` (the U-Net's
    encoder halves the size `log2(multiple)` times and the decoder must land on the skip's size)."""

    def __init__(self, multiple, label="discriminator", **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)
        self.label = str(label)

    def check(self, shape):
        sizes = [d for d in tuple(shape)[1:3] if d is not None]
        if any(int(d) % self.multiple for d in sizes):
            error = UserError(f"{self.label} input is {shape[1]}x{shape[2]}; its height and width must be multiples "
                              f"of {self.multiple} (crop or pad the image)")
            # Keras rewrites exceptions raised inside a layer call into a multi-line message unless this flag
            # says the call information was already added; the user should see one line.
            error._keras_call_info_injected = True
            raise error

    def call(self, x):
        self.check(tuple(x.shape))
        return x

    def compute_output_shape(self, input_shape):
        self.check(input_shape)
        return input_shape

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "label": self.label}


def check_input_size(discriminator, shape):
    """Raise UserError unless an image of `shape` (N, H, W, C or H, W, C) fits `discriminator`."""
    multiple = getattr(discriminator, "size_multiple", None)
    for layer in discriminator.layers:
        if isinstance(layer, InputSizeCheck):
            multiple = max(multiple or 1, layer.multiple)
    if multiple:
        shape = tuple(shape)
        if len(shape) == 3:
            shape = (1,) + shape
        InputSizeCheck(multiple, label=discriminator.name).check(shape)


SLOPE = 0.2


def torch_conv(filters, kernel_size, name, strides=1, padding="same", use_bias=True):
    """Plain conv with PyTorch's default init (identical to nn.Conv2d for 'same' stride 1 and 'valid')."""
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                               kernel_initializer=torch_conv_init(), name=name)


def sn_conv(filters, kernel_size, name, strides=1, padding=1):
    return SpectralConv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=name)


def lrelu(x, name):
    return keras.layers.LeakyReLU(negative_slope=SLOPE, name=name)(x)


def image_input(multiple, label):
    """The discriminator input (N x H x W x 3 in [0, 255], H and W multiples of `multiple`) and it in [0, 1]."""
    x_in = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    x = InputSizeCheck(multiple, label=label, name="size_check")(x_in)
    x = keras.layers.Rescaling(1.0 / 255.0, name="to_unit_range")(x)
    return x_in, x
