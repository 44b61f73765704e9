"""Published PyTorch RRDBNet weights (Real-ESRGAN / BasicSR, ESRGAN) into this project's Keras RRDBNet.

Key names accepted (a DataParallel `module.` prefix is dropped):
- Real-ESRGAN / BasicSR: conv_first, body.N.rdbM.convK, conv_body, conv_up1, conv_up2, conv_hr, conv_last;
- ESRGAN (xinntao/ESRGAN RRDBNet_arch.py): conv_first, RRDB_trunk.N.RDBk.convM, trunk_conv, upconv1, upconv2,
  HRconv, conv_last;
- ESRGAN's first release (architecture.py, RRDB_ESRGAN_x4.pth): model.0, model.1.sub.N.RDBk.convM.0,
  model.1.sub.<num_block> (trunk conv), model.3, model.6, model.8, model.10.
Kernels go from PyTorch (out, in, kh, kw) to Keras (kh, kw, in, out) (model/convert/torch_layout.py). For x2/x1
models conv_first's input channels are permuted: PyTorch's pixel_unshuffle puts (c, i, j) at channel
c*s*s + i*s + j, space_to_depth (this model) at (i*s + j)*C + c.
"""
import os
import re

import numpy as np

from model.archs.rrdbnet import UNSHUFFLE
from model.convert.torch_layout import torch_to_keras_kernel
from model.convert.torch_pickle import read_state_dict
from model.sr_model import build_model, model_scale
from utils import UserError

UNSHUFFLE_TO_SCALE = {factor: scale for scale, factor in UNSHUFFLE.items()}
TOP_LEVEL = ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")
_OLD_NAMES = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "HRconv": "conv_hr"}
_FIRST_RELEASE = {"0": "conv_first", "3": "conv_up1", "6": "conv_up2", "8": "conv_hr", "10": "conv_last"}


def canonical_key(key, num_block=None):
    """The Real-ESRGAN name of an (old or new) RRDBNet key, or None when it is not an RRDBNet key."""
    key = key[len("module."):] if key.startswith("module.") else key
    m = re.fullmatch(r"(\w+)\.(weight|bias)", key)
    if m and m.group(1) in TOP_LEVEL:
        return key
    if m and m.group(1) in _OLD_NAMES:
        return f"{_OLD_NAMES[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"(?:body\.(\d+)\.rdb|RRDB_trunk\.(\d+)\.RDB)([123])\.conv([1-5])\.(weight|bias)", key)
    if m:
        n = m.group(1) or m.group(2)
        return f"body.{n}.rdb{m.group(3)}.conv{m.group(4)}.{m.group(5)}"
    m = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)", key)
    if m:
        return f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"
    m = re.fullmatch(r"model\.1\.sub\.(\d+)\.(weight|bias)", key)
    if m and num_block is not None and int(m.group(1)) == num_block:
        return f"conv_body.{m.group(2)}"
    m = re.fullmatch(r"model\.(\d+)\.(weight|bias)", key)
    if m and m.group(1) in _FIRST_RELEASE:
        return f"{_FIRST_RELEASE[m.group(1)]}.{m.group(2)}"
    return None


def _first_release_blocks(state_dict):
    blocks = {int(m.group(1)) for k in state_dict for m in [re.match(r"(?:module\.)?model\.1\.sub\.(\d+)\.RDB", k)] if m}
    return max(blocks) + 1 if blocks else None


def canonical_state_dict(state_dict, source="state dict"):
    """The state dict under Real-ESRGAN key names; UserError naming the first key that is not RRDBNet's."""
    num_block = _first_release_blocks(state_dict)
    out = {}
    for key, value in state_dict.items():
        name = canonical_key(key, num_block)
        if name is None:
            raise UserError(f"{source}: key {key!r} is not an RRDBNet (ESRGAN / Real-ESRGAN) weight; "
                            "only RRDBNet weights can be imported")
        out[name] = np.asarray(value)
    return out


def infer_config(state_dict, source="state dict"):
    """{"scale", "num_filters", "num_res_blocks", "growth_channels"} of a canonical RRDBNet state dict."""
    for key in ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_last.weight"):
        if key not in state_dict:
            raise UserError(f"{source}: key {key!r} is missing; this is not a complete RRDBNet state dict")
    first = state_dict["conv_first.weight"]
    if first.ndim != 4:
        raise UserError(f"{source}: key 'conv_first.weight' has shape {first.shape}, not a conv kernel")
    unshuffle = int(round(np.sqrt(first.shape[1] / 3)))
    if 3 * unshuffle * unshuffle != first.shape[1] or unshuffle not in UNSHUFFLE_TO_SCALE:
        raise UserError(f"{source}: key 'conv_first.weight' takes {first.shape[1]} input channels; RGB RRDBNet "
                        "models take 3 (x4), 12 (x2) or 48 (x1)")
    if state_dict["conv_last.weight"].shape[0] != 3:
        raise UserError(f"{source}: key 'conv_last.weight' has {state_dict['conv_last.weight'].shape[0]} output "
                        "channels; only RGB (3) models are supported")
    blocks = {int(k.split(".")[1]) for k in state_dict if k.startswith("body.")}
    return {"scale": UNSHUFFLE_TO_SCALE[unshuffle], "num_filters": int(first.shape[0]),
            "num_res_blocks": max(blocks) + 1, "growth_channels": int(state_dict["body.0.rdb1.conv1.weight"].shape[0])}


def expected_shapes(scale, num_filters, num_res_blocks, growth_channels):
    """{canonical key: PyTorch shape} of an RRDBNet of this size, in BasicSR's state-dict order."""
    f, g = num_filters, growth_channels
    shapes = {"conv_first.weight": (f, 3 * UNSHUFFLE[scale] ** 2, 3, 3), "conv_first.bias": (f,)}
    for n in range(num_res_blocks):
        for m in (1, 2, 3):
            for k in range(1, 6):
                out = g if k < 5 else f
                shapes[f"body.{n}.rdb{m}.conv{k}.weight"] = (out, f + (k - 1) * g, 3, 3)
                shapes[f"body.{n}.rdb{m}.conv{k}.bias"] = (out,)
    for name in TOP_LEVEL[1:]:
        out = 3 if name == "conv_last" else f
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, f, 3, 3), (out,)
    return shapes


def check_shapes(state_dict, config, source="state dict"):
    """UserError naming the first key of a canonical state dict that does not fit an RRDBNet of `config`."""
    want = expected_shapes(**config)
    label = (f"num_filters {config['num_filters']}, num_res_blocks {config['num_res_blocks']}, "
             f"growth {config['growth_channels']}, x{config['scale']}")
    for key, value in state_dict.items():
        if key not in want:
            raise UserError(f"{source}: key {key!r} has no place in the model ({label}); the file is another RRDBNet "
                            "size or scale")
        if tuple(value.shape) != want[key]:
            raise UserError(f"{source}: key {key!r} has shape {tuple(value.shape)} but the model ({label}) needs "
                            f"{want[key]}; the file is another RRDBNet size or scale")
    missing = [k for k in want if k not in state_dict]
    if missing:
        raise UserError(f"{source}: key {missing[0]!r} is missing ({len(missing)} of {len(want)} model weights "
                        "absent); the file is another RRDBNet size or not a complete state dict")


def load_rrdbnet_state_dict(model, state_dict, source="state dict"):
    """Copy a PyTorch RRDBNet state dict (any supported key naming) into a built Keras RRDBNet.

    Every key must have a layer of the same shape and every conv of the model a weight and bias in the file;
    otherwise UserError naming the first mismatching key.
    """
    sd = canonical_state_dict(state_dict, source)
    scale = model_scale(model)
    unshuffle = UNSHUFFLE.get(scale, 1)
    convs = {layer.name: layer for layer in model.layers if layer.name != "conv_logvar" and layer.weights}
    expected = {}
    for name, layer in convs.items():
        conv = "conv_first" if name.startswith("conv_first") else re.sub(
            r"body_(\d+)_rdb(\d)_conv(\d)", r"body.\1.rdb\2.conv\3", name)
        expected[f"{conv}.weight"] = (layer, 0)
        expected[f"{conv}.bias"] = (layer, 1)
    values = {name: [None, None] for name in convs}
    for key, value in sd.items():
        if key not in expected:
            raise UserError(f"{source}: key {key!r} has no place in the model ({model_size(model)}); the file is "
                            "another RRDBNet size or scale")
        layer, idx = expected[key]
        want = tuple(layer.weights[idx].shape)
        if idx == 0:
            got_torch = tuple(value.shape)
            if value.ndim != 4:
                raise UserError(f"{source}: key {key!r} has shape {got_torch}, not a conv kernel")
            arr = torch_to_keras_kernel(value, unshuffle if key == "conv_first.weight" else 1)
        else:
            arr = np.asarray(value, np.float32)
        if tuple(arr.shape) != want:
            torch_shape = (want[3], want[2], want[0], want[1]) if idx == 0 else want
            raise UserError(f"{source}: key {key!r} has shape {tuple(value.shape)} but the model ({model_size(model)}) "
                            f"needs {torch_shape}; the file is another RRDBNet size or scale")
        values[layer.name][idx] = arr
    missing = [k for k, (layer, idx) in expected.items() if values[layer.name][idx] is None]
    if missing:
        raise UserError(f"{source}: key {missing[0]!r} is missing ({len(missing)} of {len(expected)} model weights "
                        "absent); the file is another RRDBNet size or not a complete state dict")
    for name, layer in convs.items():
        layer.set_weights(values[name])
    return model


def model_size(model):
    """'num_filters F, num_res_blocks B, growth G, xS' of a Keras RRDBNet, for messages."""
    blocks = len({m.group(1) for layer in model.layers for m in [re.match(r"body_(\d+)_", layer.name)] if m})
    try:
        feat = model.get_layer("conv_body").filters
        growth = model.get_layer("body_0_rdb1_conv1").filters
    except ValueError:
        return "not an RRDBNet"
    return f"num_filters {feat}, num_res_blocks {blocks}, growth {growth}, x{model_scale(model)}"


def convert_state_dict(state_dict, source="state dict", scale=None, params=None, pred_logvar=False):
    """A Keras RRDBNet (SRModel) holding a PyTorch RRDBNet state dict (any supported key naming).

    Sizes and scale come from the tensors. `scale` and `params` (num_filters, num_res_blocks, growth_channels,
    e.g. a profile's), when given, must agree with them: otherwise UserError naming the first mismatching key.
    `pred_logvar` adds a zero-initialised GRAM head.
    """
    sd = canonical_state_dict(state_dict, source)
    config = infer_config(sd, source)
    if scale is not None and int(scale) != config["scale"]:
        raise UserError(f"{source}: key 'conv_first.weight' takes {sd['conv_first.weight'].shape[1]} input channels, "
                        f"a x{config['scale']} model, but --scale {scale} was asked for")
    sizes = {k: v for k, v in config.items() if k != "scale"}
    sizes.update({k: params[k] for k in sizes if (params or {}).get(k) is not None})
    check_shapes(sd, {"scale": config["scale"], **sizes}, source)  # before building: cheap, names the key
    model = build_model("rrdbnet", config["scale"], pred_logvar=bool(pred_logvar), **sizes)
    return load_rrdbnet_state_dict(model, sd, source)


def convert_torch_weights(path, scale=None, params=None, pred_logvar=False):
    """`convert_state_dict` of a .pth / .pt / .safetensors file (read without unpickling code)."""
    path = os.fspath(path)
    return convert_state_dict(read_state_dict(path), os.path.basename(path), scale, params, pred_logvar)
