"""PyTorch discriminator weights (A-ESRGAN's UNetDiscriminatorAesrgan and its multi-scale wrapper, Real-ESRGAN's
UNetDiscriminatorSN) into the Keras discriminators of model/archs: key names, spectral-norm u / v, BatchNorm."""
import keras
import numpy as np

from model.convert.torch_layout import torch_to_keras_kernel
from model.discriminator_layers import SpectralConv2D
from utils import UserError


def set_torch_conv(layer, state_dict, key):
    """Copy a PyTorch conv (plain: `key.weight`/`key.bias`; spectral norm: `key.weight_orig`, `key.weight_u`,
    `key.weight_v`) into a Keras Conv2D or SpectralConv2D. Returns the state-dict keys used."""
    used = []

    def take(name):
        used.append(f"{key}.{name}")
        return np.asarray(state_dict[f"{key}.{name}"], dtype=np.float32)

    if isinstance(layer, SpectralConv2D) and layer.spectral_norm:
        weight = take("weight_orig")
        out, cin, kh, kw = weight.shape
        values = [torch_to_keras_kernel(weight)]
        if layer.use_bias:
            values.append(take("bias"))
        # torch's v runs over (in, kh, kw); ours over (kh, kw, in), the order of Keras's flattened kernel.
        v = take("weight_v").reshape(cin, kh, kw).transpose(1, 2, 0).reshape(-1)
        values += [take("weight_u"), v]
    else:
        values = [torch_to_keras_kernel(take("weight"))]
        if layer.use_bias:
            values.append(take("bias"))
    expected = [tuple(w.shape) for w in layer.weights]
    if [v.shape for v in values] != expected:
        raise UserError(f"PyTorch weights {key}: shapes {[v.shape for v in values]} do not fit layer {layer.name} "
                        f"{expected}; the checkpoint is for another discriminator or width")
    layer.set_weights(values)
    return used


def set_torch_batchnorm(layer, state_dict, key):
    names = ("weight", "bias", "running_mean", "running_var")
    layer.set_weights([np.asarray(state_dict[f"{key}.{n}"], dtype=np.float32) for n in names])
    return [f"{key}.{n}" for n in names] + ([f"{key}.num_batches_tracked"]
                                            if f"{key}.num_batches_tracked" in state_dict else [])


_TORCH_PREFIX = {"full_": "layer1.", "half_": "layer0."}  # multiscale_arch.py: layer1 on the image, layer0 on x/2


def _torch_key(name):
    """Keras layer name -> PyTorch module path in A-ESRGAN / BasicSR state dicts."""
    prefix = ""
    for keras_prefix, torch_prefix in _TORCH_PREFIX.items():
        if name.startswith(keras_prefix):
            name, prefix = name[len(keras_prefix):], torch_prefix
    if name.startswith("attn_"):
        gate, part = name[:6], name[7:]
        part = {"W": "W.0", "bn": "W.1"}.get(part, part)
        return f"{prefix}{gate}.{part}"
    if name.startswith("cat_"):
        return f"{prefix}{name[:5]}.{name[6:]}"
    return prefix + name


def load_torch_state_dict(discriminator, state_dict):
    """Copy a PyTorch state dict of UNetDiscriminatorAesrgan, its multi-scale wrapper (layer0/layer1) or
    Real-ESRGAN's UNetDiscriminatorSN into the matching Keras discriminator built here (same num_feat).

    `state_dict`: name -> numpy array (model/convert/torch_pickle.read_state_dict gives one without unpickling code;
    BasicSR's {"params": ...} nesting is undone by the caller). UserError when keys are missing or left over.
    """
    used = set()
    try:
        for layer in discriminator.layers:
            if not layer.weights:
                continue
            key = _torch_key(layer.name)
            if isinstance(layer, keras.layers.BatchNormalization):
                used.update(set_torch_batchnorm(layer, state_dict, key))
            else:
                used.update(set_torch_conv(layer, state_dict, key))
    except KeyError as e:
        raise UserError(f"PyTorch discriminator weights lack {e.args[0]!r}; they are not a "
                        f"{discriminator.name} checkpoint") from e
    left = sorted(set(state_dict) - used)
    if left:
        raise UserError(f"PyTorch discriminator weights have {len(left)} entries {discriminator.name} does not use "
                        f"(e.g. {left[0]!r}); pass the checkpoint of the matching discriminator")
    return sorted(used)


def is_discriminator_state_dict(state_dict):
    """True for the tensor table of a U-Net discriminator (spectral-norm convs conv1.. or attention gates)."""
    return any(k.endswith(".weight_orig") for k in state_dict) or any(k.startswith(("attn_", "layer0.", "layer1."))
                                                                       for k in state_dict)


def infer_discriminator(state_dict, source="state dict"):
    """(arch, params) of a U-Net discriminator's tensor table: attention gates -> attention-unet (layer0. /
    layer1. prefixes: the multi-scale pair), otherwise unet-sn; num_feat from conv0's width."""
    multi = any(k.startswith("layer1.") for k in state_dict)
    prefix = "layer1." if multi else ""
    first = state_dict.get(f"{prefix}conv0.weight")
    if first is None or np.ndim(first) != 4:
        raise UserError(f"{source}: no '{prefix}conv0.weight' conv kernel; not an A-ESRGAN / Real-ESRGAN U-Net "
                        "discriminator")
    attention = any(k.startswith(f"{prefix}attn_") for k in state_dict)
    arch = ("attention-unet-multiscale" if multi else "attention-unet") if attention else "unet-sn"
    return arch, {"num_feat": int(np.shape(first)[0])}
