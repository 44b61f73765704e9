"""VGG19 convolutional features for the perceptual loss, with the pre-activation outputs reachable.

Convs are linear with a separate ReLU layer (keras.applications.VGG19 fuses the ReLU into the conv, so the
"before ReLU" features BasicSR uses could not be read from it). Layer names conv{b}_{k}, relu{b}_{k}, pool{b}.

Weights are never downloaded; `load_vgg19_weights` reads either
* torchvision's ImageNet `vgg19-dcbb9e9d.pth` (keys features.N.weight / features.N.bias; the file BasicSR's
  perceptual loss uses) through the safe reader model.torch_weights (no unpickling of code), with torchvision's
  preprocessing: RGB in [0, 1], ImageNet mean / std; or
* Keras's `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (layers block{b}_conv{k}; Caffe-converted), with
  that network's own preprocessing: BGR in [0, 255] minus the Caffe means.
The model's input is RGB in [0, 255] (the project's convention); `VGGPreprocess` applies the preprocessing that
goes with the weights.
"""
import os

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


def _torchvision_indices():
    """conv name -> index N in torchvision's vgg19().features (conv, ReLU pairs, a max-pool after each block)."""
    out, i = {}, 0
    for b, n, _ in BLOCKS:
        for k in range(1, n + 1):
            out[f"conv{b}_{k}"] = i
            i += 2
        i += 1
    return out


TORCHVISION_INDEX = _torchvision_indices()


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


def _read_torchvision(path):
    from model.import_weights import torch_to_keras_kernel
    from model.torch_weights import read_state_dict

    state = read_state_dict(path)
    weights = {}
    for conv, i in TORCHVISION_INDEX.items():
        w, b = state.get(f"features.{i}.weight"), state.get(f"features.{i}.bias")
        if w is not None and b is not None:
            weights[conv] = [torch_to_keras_kernel(w), np.asarray(b, np.float32)]
    return weights


def _read_keras_h5(path):
    import h5py

    weights = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for conv in CONV_NAMES:
                b, k = conv[4], conv[6]
                group_name = f"block{b}_conv{k}"
                if group_name not in root:
                    continue
                group = root[group_name]
                names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
                if names:
                    values = [np.asarray(group[n], np.float32) for n in names]
                else:  # a layout without weight_names: the datasets of the layer group, kernel first
                    found = []
                    group.visititems(lambda n, obj: found.append((n, obj)) if isinstance(obj, h5py.Dataset) else None)
                    values = [np.asarray(o, np.float32) for n, o in sorted(found, key=lambda t: "bias" in t[0])]
                weights[conv] = values
    except OSError as e:
        raise UserError(f"--vgg-weights {path}: not a readable HDF5 file ({e})") from None
    return weights


def load_vgg19_weights(path):
    """(weights {conv: [kernel (3,3,in,out), bias]}, preprocessing) from a torchvision .pth or a Keras .h5."""
    if path is None:
        raise UserError(f"the perceptual loss needs ImageNet VGG19 weights (nothing is downloaded): {WEIGHTS_HELP}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"--vgg-weights {path}: file not found; {WEIGHTS_HELP}")
    lower = path.lower()
    if lower.endswith((".pth", ".pt", ".safetensors")):
        weights, preprocessing = _read_torchvision(path), "torch"
    elif lower.endswith((".h5", ".hdf5")):
        weights, preprocessing = _read_keras_h5(path), "caffe"
    else:
        raise UserError(f"--vgg-weights {path}: expected a .pth (torchvision) or .h5 (Keras) VGG19 file")
    if not weights:
        raise UserError(f"--vgg-weights {path}: no VGG19 conv weights found in it; {WEIGHTS_HELP}")
    return weights, preprocessing


def build_vgg19(layers, weights_path=None, random_weights=False, width=1.0):
    """The feature model for `layers` with weights from `weights_path` (UserError without one unless
    `random_weights`: tests). Every conv up to the deepest layer must be in the file."""
    if random_weights:
        return vgg19_features(layers, "torch", width=width)
    weights, preprocessing = load_vgg19_weights(weights_path)
    m = vgg19_features(layers, preprocessing)
    for layer in m.layers:
        if isinstance(layer, keras.layers.Conv2D):
            values = weights.get(layer.name)
            if values is None:
                raise UserError(f"--vgg-weights {weights_path}: {layer.name} is missing; {WEIGHTS_HELP}")
            shapes = [tuple(v.shape) for v in values]
            if shapes != [tuple(w.shape) for w in layer.weights]:
                raise UserError(f"--vgg-weights {weights_path}: {layer.name} has shapes {shapes}, VGG19 needs "
                                f"{[tuple(w.shape) for w in layer.weights]}")
            layer.set_weights(values)
    return m
