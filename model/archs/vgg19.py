"""VGG19 convolutional features for the perceptual loss, with the pre-activation outputs reachable.

Convs are linear with a separate ReLU layer (keras.applications.VGG19 fuses the ReLU into the conv, so the
"before ReLU" features BasicSR uses could not be read from it). Layer names conv{b}_{k}, relu{b}_{k}, pool{b}.

Weights are never downloaded; model/convert/vgg19.py reads either
* torchvision's ImageNet `vgg19-dcbb9e9d.pth` (keys features.N.weight / features.N.bias; the file BasicSR's
  perceptual loss uses) through the safe reader model/convert/torch_pickle.py (no unpickling of code), with torchvision's
  preprocessing: RGB in [0, 1], ImageNet mean / std; or
* Keras's `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (layers block{b}_conv{k}; Caffe-converted), with
  that network's own preprocessing: BGR in [0, 255] minus the Caffe means.
The model's input is RGB in [0, 255] (the project's convention); `VGGPreprocess` applies the preprocessing that
goes with the weights.
"""
import keras
import numpy as np
from keras import ops

from utils import UserError

# (block, convs per block, filters)
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
CONV_NAMES = [f"conv{b}_{k}" for b, n, _ in BLOCKS for k in range(1, n + 1)]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSING = ("torch", "caffe")

TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
KERAS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_HELP = (f"pass --vgg-weights with torchvision's ImageNet VGG19 {TORCHVISION_FILE} (the file BasicSR uses; "
                f"https://download.pytorch.org/models/{TORCHVISION_FILE}) or Keras's {KERAS_FILE} "
                f"(https://storage.googleapis.com/tensorflow/keras-applications/vgg19/{KERAS_FILE})")


@keras.saving.register_keras_serializable(package="sisr")
class VGGPreprocess(keras.layers.Layer):
    """RGB [0, 255] -> the input the weights were trained on: "torch" ((x/255 - mean) / std, RGB) or "caffe"
    (BGR, x - Caffe mean)."""

    def __init__(self, mode="torch", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING:
            raise ValueError(f"VGG preprocessing must be one of {PREPROCESSING}, got {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "torch":
            mean = ops.convert_to_tensor(np.array(IMAGENET_MEAN, "float32") * 255.0)
            std = ops.convert_to_tensor(np.array(IMAGENET_STD, "float32") * 255.0)
            return (x - ops.cast(mean, x.dtype)) / ops.cast(std, x.dtype)
        x = ops.flip(x, axis=-1)  # RGB -> BGR
        return x - ops.cast(ops.convert_to_tensor(np.array(CAFFE_MEAN_BGR, "float32")), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def vgg19_features(layers=("conv5_4",), preprocessing="torch", width=1.0, name="vgg19_features"):
    """A frozen functional model: RGB N x H x W x 3 in [0, 255] -> {layer: pre-ReLU features} for `layers`
    (conv names), built up to the deepest one. `width` scales the filter counts (tests only: tiny random VGGs)."""
    layers = list(layers)
    unknown = [n for n in layers if n not in CONV_NAMES]
    if unknown:
        raise UserError(f"unknown VGG19 layer {unknown[0]!r}; choose from {', '.join(CONV_NAMES)}")
    last = max(CONV_NAMES.index(n) for n in layers)
    x_in = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
    x = VGGPreprocess(preprocessing, name="preprocess")(x_in)
    outputs, done = {}, 0
    for b, n, filters in BLOCKS:
        if b > 1:
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{b - 1}")(x)
        for k in range(1, n + 1):
            conv = f"conv{b}_{k}"
            x = keras.layers.Conv2D(max(1, int(round(filters * width))), 3, padding="same", name=conv)(x)
            if conv in layers:
                outputs[conv] = x
            done += 1
            if done > last:
                break
            x = keras.layers.ReLU(name=f"relu{b}_{k}")(x)
        if done > last:
            break
    m = keras.Model(x_in, {n: outputs[n] for n in layers}, name=name)
    m.trainable = False
    return m
