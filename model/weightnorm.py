"""Weight normalization (Salimans & Kingma 2016) as a Keras 3 conv layer, plus data-dependent init and folding.

The kernel is reparametrised as `kernel = g * v / ||v||`, the norm taken over all axes but the output channel,
so the optimizer sees plain variables `v`, `g`, `bias`: any optimizer and any backend train it, and it
saves/loads like any other layer. `fold_weightnorm` turns a trained layer into the equivalent plain kernel.
"""
import itertools

import keras
import numpy as np
from keras import ops

_NORM_AXES = (0, 1, 2)


def _norm(v, epsilon):
    return ops.sqrt(ops.sum(ops.square(v), axis=_NORM_AXES) + epsilon)


@keras.saving.register_keras_serializable(package="sisr")
class WeightNormConv2D(keras.layers.Layer):
    """2D convolution (channels_last) with a weight-normalised kernel.

    Weights, in creation order: `v` (kh, kw, cin, cout) direction, `g` (cout,) per-channel length,
    `bias` (cout,). `v` starts N(0, 0.05) as in the paper unless `kernel_initializer` says otherwise.
    `g_initializer=None` sets g = ||v|| at build, so the layer starts as a plain conv with kernel v (the
    usual convention, e.g. torch weight_norm); `weightnorm_data_init` then rescales g and bias from data.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="same", dilation_rate=1, activation=None,
                 use_bias=True, kernel_initializer=None, bias_initializer="zeros", g_initializer=None,
                 epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size)
        self.strides = _pair(strides)
        self.padding = padding
        self.dilation_rate = _pair(dilation_rate)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.RandomNormal(mean=0.0, stddev=0.05))
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.g_initializer = None if g_initializer is None else keras.initializers.get(g_initializer)
        self.epsilon = float(epsilon)
        self._data_init = False  # set by weightnorm_data_init for one eager forward pass

    def build(self, input_shape):
        cin = input_shape[-1]
        self.v = self.add_weight(name="v", shape=(*self.kernel_size, cin, self.filters),
                                 initializer=self.kernel_initializer)
        if self.g_initializer is None:
            v = self.v

            def g_init(shape, dtype=None):
                return ops.cast(_norm(ops.convert_to_tensor(v), self.epsilon), dtype or "float32")

            self.g = self.add_weight(name="g", shape=(self.filters,), initializer=g_init)
        else:
            self.g = self.add_weight(name="g", shape=(self.filters,), initializer=self.g_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
                     if self.use_bias else None)

    def _conv(self, x, kernel):
        return ops.conv(x, kernel, strides=self.strides, padding=self.padding,
                        dilation_rate=self.dilation_rate, data_format="channels_last")

    def folded_kernel(self):
        """The effective kernel g * v / ||v|| (a tensor)."""
        return self.v * (self.g / _norm(self.v, self.epsilon))

    def call(self, x):
        if self._data_init:
            return self._call_data_init(x)
        y = self._conv(x, self.folded_kernel())
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)

    def _call_data_init(self, x):
        # Pre-activation with unit-length directions, then choose g, b so that g*t + b is zero-mean, unit-variance
        # per output channel on this data (Salimans & Kingma 2016, section 3).
        t = self._conv(x, self.v / _norm(self.v, self.epsilon))
        mean = ops.mean(t, axis=(0, 1, 2))
        inv_std = 1.0 / ops.sqrt(ops.var(t, axis=(0, 1, 2)) + 1e-6)
        self.g.assign(ops.cast(inv_std, self.g.dtype))
        if self.use_bias:
            self.bias.assign(ops.cast(-mean * inv_std, self.bias.dtype))
            y = (t - mean) * inv_std
        else:
            y = t * inv_std
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape

        def out(size, k, s, d):
            if size is None:
                return None
            if self.padding.lower() == "same":
                return -(-size // s)
            return (size - d * (k - 1) - 1) // s + 1

        return (n, out(h, self.kernel_size[0], self.strides[0], self.dilation_rate[0]),
                out(w, self.kernel_size[1], self.strides[1], self.dilation_rate[1]), self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "g_initializer": (None if self.g_initializer is None
                              else keras.initializers.serialize(self.g_initializer)),
            "epsilon": self.epsilon,
        }


def _pair(x):
    return tuple(int(i) for i in x) if isinstance(x, (tuple, list)) else (int(x), int(x))


def weightnorm_layers(model):
    """All WeightNormConv2D layers of `model` (nested ones included), in topological order."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, WeightNormConv2D)]


def _take_batches(batches, num_batches):
    """First `num_batches` LR batches from an array, a list, a PyDataset or any iterable of (lr, hr) or lr."""
    if isinstance(batches, np.ndarray) or hasattr(batches, "numpy"):
        taken = [batches]
    elif hasattr(batches, "__getitem__") and hasattr(batches, "__len__"):
        taken = [batches[i] for i in range(min(num_batches, len(batches)))]
    else:
        taken = list(itertools.islice(iter(batches), num_batches))
    taken = [b[0] if isinstance(b, (tuple, list)) else b for b in taken]
    if not taken:
        raise ValueError("weight-norm data init needs at least one batch")
    return np.concatenate([np.asarray(b, dtype="float32") for b in taken], axis=0)


def weightnorm_data_init(model, batches, num_init_batches=1):
    """Data-dependent initialisation of every weight-norm layer of `model` (Salimans & Kingma 2016).

    Runs the first `num_init_batches` LR batches (pooled into one batch) through the model once, eagerly:
    each WeightNormConv2D, in topological order, sets g = 1/std and bias = -mean/std of its pre-activations
    (per output channel) before passing its now-normalised output on, so later layers see the initialised
    earlier ones. `v` (the direction) is left as it is. Returns the names of the initialised layers.
    """
    layers = weightnorm_layers(model)
    if not layers:
        return []
    x = _take_batches(batches, num_init_batches)
    for layer in layers:
        layer._data_init = True
    try:
        model(x, training=False)
    finally:
        for layer in layers:
            layer._data_init = False
    return [layer.name for layer in layers]


def fold_weightnorm(layer):
    """(kernel, bias) numpy arrays of the plain conv equivalent to a WeightNormConv2D (bias None without bias)."""
    kernel = ops.convert_to_numpy(layer.folded_kernel())
    bias = ops.convert_to_numpy(layer.bias) if layer.use_bias else None
    return kernel, bias


def unfold_to_weightnorm(kernel, bias=None):
    """Weights [v, g, (bias)] of a WeightNormConv2D equal to a plain conv with `kernel` (and `bias`)."""
    kernel = np.asarray(kernel, dtype="float32")
    g = np.sqrt(np.sum(np.square(kernel), axis=_NORM_AXES))
    return [kernel, g] + ([np.asarray(bias, dtype="float32")] if bias is not None else [])


def to_plain_conv(layer):
    """A built keras Conv2D with the folded kernel of a WeightNormConv2D (same outputs)."""
    kernel, bias = fold_weightnorm(layer)
    conv = keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                               dilation_rate=layer.dilation_rate, activation=layer.activation,
                               use_bias=layer.use_bias, name=layer.name)
    conv.build((None, None, None, kernel.shape[2]))
    conv.set_weights([kernel] + ([bias] if bias is not None else []))
    return conv
