"""Load krasserm/super-resolution's published Keras weight files into this project's models.

Those files are Keras 2 / TF 2 era HDF5 weight files (`model.save_weights('weights.h5')`). Their WDSR and
EDSR convolutions are `tfa.layers.WeightNormalization(Conv2D(...), data_init=False)` wrappers, stored per
layer as `g` (cout,), `kernel` (the direction v, kh x kw x cin x cout) and `bias` (cout,), plus an
`initialized` flag; plain Conv2D layers store `kernel` and `bias`. The effective kernel is
g * v / ||v|| with the norm over all axes but the last, which is exactly this project's WeightNormConv2D
(weights v, g, bias), so weights copy over unchanged; into a model built without weight norm they are folded.

Both projects normalise input as (x - DIV2K mean) / 127.5 and upsample with depth_to_space channel order
(see model/layers.py), so no re-ordering or re-scaling is needed. Layers are matched in creation order,
with the 5x5 skip convolution matched by its role, and every shape is checked.
"""
import os
import re

import keras
import numpy as np

from model.sr_model import build_model
from model.weightnorm import WeightNormConv2D
from utils import UserError


def read_h5_layers(h5_path):
    """[(layer name, {weight role: array})] of a Keras 2 HDF5 weight file, in the file's layer order.

    Roles: "g", "kernel", "bias" (and "initialized" for tfa weight norm). Layers without weights are left out.
    """
    import h5py

    if not os.path.isfile(h5_path):
        raise UserError(f"weights file {h5_path} does not exist")
    try:
        f = h5py.File(h5_path, "r")
    except OSError as e:
        raise UserError(f"cannot read {h5_path} as HDF5: {e}") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f  # a full-model h5 holds weights there
        if "layer_names" not in root.attrs:
            raise UserError(f"{h5_path} is not a Keras 2 weights file (no layer_names attribute)")
        layers = []
        for name in root.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else str(name)
            group = root[name]
            weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
            if not weight_names:
                continue
            weights = {}
            for w in weight_names:
                role = re.sub(r":\d+$", "", w).split("/")[-1]
                weights[role] = np.asarray(group[w])
            layers.append((name, weights))
    return layers


def _source_kernel(weights, weightnorm):
    """(kernel-or-v, g-or-None, bias) of one source layer, folding weight norm if the target has none."""
    if "kernel" not in weights:
        raise UserError(f"layer has no kernel (weights {sorted(weights)})")
    v = weights["kernel"].astype(np.float32)
    bias = weights.get("bias")
    g = weights.get("g")
    if g is None:
        if weightnorm:  # plain source conv into a weight-norm layer: g = ||v|| makes it the same conv
            g = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=(0, 1, 2))).astype(np.float32)
        return v, g, bias
    if not weightnorm:
        norm = np.sqrt(np.maximum(np.sum(v.astype(np.float64) ** 2, axis=(0, 1, 2)), 1e-12))
        return (v * (g / norm)).astype(np.float32), None, bias
    return v, g.astype(np.float32), bias


def _target_layers(model):
    """Conv layers of the target model (weight-norm or plain Conv2D) in topological order."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, (WeightNormConv2D, keras.layers.Conv2D))]


def _kernel_shape(layer):
    return tuple((layer.v if isinstance(layer, WeightNormConv2D) else layer.kernel).shape)


def _split_skip(items, kernel_shape):
    """Move the (single) 5x5 skip convolution of WDSR to the end, keeping the rest in order."""
    skip = [i for i, it in enumerate(items) if tuple(kernel_shape(it)[:2]) == (5, 5)]
    if len(skip) != 1:
        return items
    return [it for i, it in enumerate(items) if i != skip[0]] + [items[skip[0]]]


def krasserm_target(name, profiles):
    """(arch, params) of a krasserm model name: an entry of `profiles` (the caller's profile table, name ->
    {"arch", "model"}), or wdsr-a-N / wdsr-b-N (krasserm's WDSR at N residual blocks). Pure: takes the table."""
    if name in profiles:
        return profiles[name]["arch"], dict(profiles[name]["model"])
    m = re.fullmatch(r"(wdsr-[ab])-(\d+)", name)
    if not m:
        raise UserError(f"unknown profile {name!r}; choose one of {', '.join(profiles)} "
                        f"(or wdsr-a-N / wdsr-b-N for N residual blocks)")
    arch, blocks = m.group(1), int(m.group(2))
    return arch, {"num_filters": 32, "num_res_blocks": blocks, "res_expansion": 6 if arch == "wdsr-b" else 4,
                  "weightnorm": True}


def name_and_scale(path, name=None, scale=None):
    """Model name (e.g. wdsr-a-32, for `krasserm_target`) and scale of a krasserm weights file, from the arguments
    or its file name (wdsr-a-32-x4-...h5) or folder name (krasserm-wdsr-b-32-x4/weights.h5)."""
    # the file name first (wdsr-a-32-x4-psnr-29.1736.h5), then its folder (krasserm-wdsr-b-32-x4/weights.h5)
    names = [os.path.basename(path).lower(), os.path.basename(os.path.dirname(os.path.abspath(path))).lower()]
    for text in names:
        if name is None:
            m = re.search(r"((?:wdsr-[ab]|edsr)-\d+|sr-resnet)", text)
            name = m.group(1) if m else None
        if scale is None:
            m = re.search(r"(?:^|[^a-z0-9])x([2-4])(?:\D|$)", text)
            scale = int(m.group(1)) if m else None
    if name is None or scale is None:
        raise UserError(f"{path} is a Keras 2 weights file: give its --profile (e.g. wdsr-a-32) and --scale")
    return name, int(scale)


def load_krasserm_weights(model, h5_path):
    """Copy a krasserm weights file into `model` (built already); UserError on any count or shape mismatch."""
    source = read_h5_layers(h5_path)
    target = _target_layers(model)
    if len(source) != len(target):
        raise UserError(f"{h5_path} has {len(source)} weighted layers but the model has {len(target)} conv layers; "
                        f"pick the matching --profile / --scale (e.g. wdsr-b-32 --scale 4)")
    source = _split_skip(source, lambda it: it[1].get("kernel", np.zeros((0, 0))).shape)
    target = _split_skip(target, _kernel_shape)
    for (name, weights), layer in zip(source, target):
        wn = isinstance(layer, WeightNormConv2D)
        try:
            v, g, bias = _source_kernel(weights, wn)
        except UserError as e:
            raise UserError(f"{h5_path}: layer {name}: {e}") from None
        want = _kernel_shape(layer)
        if tuple(v.shape) != want:
            raise UserError(f"{h5_path}: layer {name} kernel {tuple(v.shape)} does not fit model layer {layer.name} "
                            f"{want}; pick the matching --profile / --scale")
        has_bias = (layer.bias is not None) if wn else layer.use_bias
        if has_bias != (bias is not None) or (bias is not None and bias.shape != (want[-1],)):
            raise UserError(f"{h5_path}: layer {name} bias does not fit model layer {layer.name}")
        values = [v] + ([g] if wn else []) + ([bias.astype(np.float32)] if bias is not None else [])
        layer.set_weights(values)
    return model


def convert_krasserm_weights(h5_path, arch, scale, params=None):
    """An SRModel of `arch` at `scale` with `params` holding the weights of krasserm's weight file `h5_path`."""
    return load_krasserm_weights(build_model(arch, int(scale), **(params or {})), h5_path)
