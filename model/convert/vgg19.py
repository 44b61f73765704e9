"""ImageNet VGG19 weights for the perceptual loss's feature model (model/archs/vgg19.py): torchvision's
`vgg19-dcbb9e9d.pth` (through the safe reader, torchvision preprocessing) or Keras's `..._notop.h5` (Caffe
preprocessing); `build_vgg19` gives the feature model with them."""
import os

import keras
import numpy as np

from model.archs.vgg19 import BLOCKS, CONV_NAMES, WEIGHTS_HELP, vgg19_features
from model.convert.torch_layout import torch_to_keras_kernel
from model.convert.torch_pickle import read_state_dict
from model.io import file_format
from utils import UserError


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


def _read_torchvision(path):
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
    fmt = file_format(path)
    if fmt == "torch":
        weights, preprocessing = _read_torchvision(path), "torch"
    elif fmt == "h5":
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
