"""BasicSR key layouts of this project's generators (RRDBNet, SRVGGNetCompact, EDSR, MSRResNet): which PyTorch
tensor is which Keras weight, both ways, plus EDSR-PyTorch's official EDSR key names.

One table per architecture (`layout(model)`) drives import (`load_state_dict`) and export (`export_state_dict`):
- conv kernels (out, in, kh, kw) <-> (kh, kw, in, out); a conv feeding PyTorch's PixelShuffle has its output
  channels permuted (PyTorch c*s*s + i*s + j, depth_to_space (i*s + j)*C + c), RRDBNet x2/x1's conv_first its
  input channels (pixel-unshuffle, the same order);
- PReLU slopes (F,) <-> (1, 1, F);
- EDSR's head and tail convs are rescaled: PyTorch EDSR feeds (x - mean) * img_range (255) to its head and
  returns tail / img_range + mean, this EDSR (x - mean) / 127.5 and tail * 127.5 + mean (model/layers.py), so
  the head kernel is times img_range / 2 and the tail kernel and bias times 2 / img_range. Exact: ReLU and the
  zero padding commute with a positive factor.
"""
import re
from dataclasses import dataclass

import numpy as np

from model.archs.rrdbnet import UNSHUFFLE
from model.convert.torch_layout import unshuffle_permutation
from model.layers import DIV2K_RGB_MEAN
from utils import UserError

EDSR_IMG_RANGE = 255.0  # BasicSR's img_range / EDSR-PyTorch's rgb_range of every released EDSR
ARCH_NAMES = {"rrdbnet": "RRDBNet", "srvgg-compact": "SRVGGNetCompact", "edsr": "EDSR", "msrresnet": "MSRResNet"}


@dataclass(frozen=True)
class Conv:
    """A PyTorch conv `key` (weight + bias) <-> the Keras conv layer `layer`."""
    key: str
    layer: str
    shuffle: tuple = None  # (channels, factor): output channels feed PyTorch's PixelShuffle
    unshuffle: int = 1  # input channels come from PyTorch's pixel_unshuffle by this factor
    kernel_factor: float = 1.0  # keras kernel = factor * torch kernel
    bias_factor: float = 1.0


@dataclass(frozen=True)
class PReLU:
    """A PyTorch nn.PReLU `key` (weight only) <-> the Keras PReLU layer `layer`."""
    key: str
    layer: str


def _rrdbnet(scale, num_filters=64, num_res_blocks=23, **_):
    table = [Conv("conv_first", f"conv_first_scale_{scale}", unshuffle=UNSHUFFLE[scale])]
    for n in range(num_res_blocks):
        table += [Conv(f"body.{n}.rdb{m}.conv{k}", f"body_{n}_rdb{m}_conv{k}") for m in (1, 2, 3) for k in range(1, 6)]
    return table + [Conv(name, name) for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")]


def _srvgg(scale, num_filters=64, num_res_blocks=16, activation="prelu", **_):
    act = activation == "prelu"
    table = [Conv("body.0", "conv_first")] + ([PReLU("body.1", "act_first")] if act else [])
    for i in range(num_res_blocks):
        table.append(Conv(f"body.{2 * i + 2}", f"body_{i}_conv"))
        if act:
            table.append(PReLU(f"body.{2 * i + 3}", f"body_{i}_act"))
    return table + [Conv(f"body.{2 * num_res_blocks + 2}", f"conv_up_scale_{scale}",
                         shuffle=(3, scale) if scale > 1 else None)]


def _upsample_factors(scale):
    return {2: [2], 3: [3], 4: [2, 2]}[scale]


def _edsr(scale, num_filters=64, num_res_blocks=16, **_):
    table = [Conv("conv_first", "head", kernel_factor=EDSR_IMG_RANGE / 2)]
    for n in range(num_res_blocks):
        table += [Conv(f"body.{n}.conv1", f"block_{n + 1}_conv1"), Conv(f"body.{n}.conv2", f"block_{n + 1}_conv2")]
    table.append(Conv("conv_after_body", "body_tail"))
    for k, f in enumerate(_upsample_factors(scale)):
        table.append(Conv(f"upsample.{2 * k}", f"upsample_{k + 1}_scale_{scale}", shuffle=(num_filters, f)))
    return table + [Conv("conv_last", "tail", kernel_factor=2 / EDSR_IMG_RANGE, bias_factor=2 / EDSR_IMG_RANGE)]


def _msrresnet(scale, num_filters=64, num_res_blocks=16, **_):
    table = [Conv("conv_first", "conv_first")]
    for n in range(num_res_blocks):
        table += [Conv(f"body.{n}.conv1", f"body_{n}_conv1"), Conv(f"body.{n}.conv2", f"body_{n}_conv2")]
    for k, f in enumerate(_upsample_factors(scale), start=1):
        table.append(Conv(f"upconv{k}", f"upconv{k}_scale_{scale}", shuffle=(num_filters, f)))
    return table + [Conv("conv_hr", "conv_hr"), Conv("conv_last", "conv_last")]


LAYOUTS = {"rrdbnet": _rrdbnet, "srvgg-compact": _srvgg, "edsr": _edsr, "msrresnet": _msrresnet}


def layout(arch, scale, params):
    """[Conv | PReLU] of a generator `arch` at `scale` with `params`, in BasicSR's state-dict order."""
    if arch not in LAYOUTS:
        raise UserError(f"{arch} has no PyTorch reference layout; these do: {', '.join(LAYOUTS)}")
    return LAYOUTS[arch](scale, **{k: v for k, v in params.items() if v is not None})


def _permutations(entry, in_channels):
    out = unshuffle_permutation(*entry.shuffle) if entry.shuffle else None
    inp = unshuffle_permutation(in_channels // entry.unshuffle ** 2, entry.unshuffle) if entry.unshuffle > 1 \
        else None
    return inp, out


def _to_keras(entry, weight, bias):
    kernel = np.transpose(np.asarray(weight, np.float32), (2, 3, 1, 0)) * np.float32(entry.kernel_factor)
    bias = np.asarray(bias, np.float32) * np.float32(entry.bias_factor)
    inp, out = _permutations(entry, kernel.shape[2])
    if inp is not None:
        kernel = kernel[:, :, inp, :]
    if out is not None:
        kernel, bias = kernel[..., out], bias[out]
    return [np.ascontiguousarray(kernel), np.ascontiguousarray(bias)]


def _to_torch(entry, kernel, bias):
    kernel, bias = np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
    inp, out = _permutations(entry, kernel.shape[2])
    if inp is not None:
        kernel = kernel[:, :, np.argsort(inp), :]
    if out is not None:
        kernel, bias = kernel[..., np.argsort(out)], bias[np.argsort(out)]
    weight = np.transpose(kernel, (3, 2, 0, 1)) / np.float32(entry.kernel_factor)
    return [np.ascontiguousarray(weight, np.float32), np.ascontiguousarray(bias / np.float32(entry.bias_factor))]


def _torch_shapes(entry, layer):
    """{torch key: shape} of one table entry, from the built Keras layer."""
    if isinstance(entry, PReLU):
        return {f"{entry.key}.weight": (int(np.prod(layer.weights[0].shape)),)}
    kh, kw, cin, cout = layer.weights[0].shape
    return {f"{entry.key}.weight": (cout, cin, kh, kw), f"{entry.key}.bias": (cout,)}


def describe(arch, scale, params):
    """'EDSR x4, num_filters 64, num_res_blocks 16' for messages."""
    shown = ", ".join(f"{k} {v}" for k, v in params.items() if v is not None and k != "pred_logvar")
    return f"{ARCH_NAMES.get(arch, arch)} x{scale}" + (f", {shown}" if shown else "")


def load_state_dict(model, state, source="state dict"):
    """Copy a PyTorch state dict under BasicSR key names into a built SRModel (arch, scale, params from it).
    Every key must have a weight of the same shape and every weight a key; otherwise UserError naming the
    first mismatching key."""
    label = describe(model.arch, model.scale, model.params)
    table = layout(model.arch, model.scale, model.params)
    expected = {}
    for entry in table:
        expected.update(_torch_shapes(entry, model.get_layer(entry.layer)))
    for key, value in state.items():
        if key not in expected:
            raise UserError(f"{source}: key {key!r} has no place in the model ({label}); the file is another "
                            "size, scale or architecture")
        if tuple(np.shape(value)) != expected[key]:
            raise UserError(f"{source}: key {key!r} has shape {tuple(np.shape(value))} but the model ({label}) "
                            f"needs {expected[key]}; the file is another size or scale")
    missing = [k for k in expected if k not in state]
    if missing:
        raise UserError(f"{source}: key {missing[0]!r} is missing ({len(missing)} of {len(expected)} model "
                        f"weights absent) for {label}; not a complete state dict")
    for entry in table:
        layer = model.get_layer(entry.layer)
        if isinstance(entry, PReLU):
            layer.set_weights([np.asarray(state[f"{entry.key}.weight"], np.float32).reshape(layer.weights[0].shape)])
        else:
            layer.set_weights(_to_keras(entry, state[f"{entry.key}.weight"], state[f"{entry.key}.bias"]))
    return model


def export_state_dict(model):
    """{BasicSR key: float32 numpy array in PyTorch layout} of an SRModel, in BasicSR's state-dict order."""
    params = getattr(model, "params", None)
    if params is None or not hasattr(model, "arch"):
        raise UserError(f"model {model.name!r} does not record its architecture (a file saved before SRModel); "
                        "load and save it again with this version, or export from its training run")
    if params.get("pred_logvar"):
        raise UserError(f"{model.arch} with a log-variance head has no PyTorch reference layout; export a model "
                        "without --pred-logvar")
    state = {}
    for entry in layout(model.arch, model.scale, params):
        layer = model.get_layer(entry.layer)
        if isinstance(entry, PReLU):
            state[f"{entry.key}.weight"] = np.asarray(layer.get_weights()[0], np.float32).reshape(-1)
            continue
        if hasattr(layer, "folded_kernel"):  # weight-normalised conv: its plain equivalent
            from model.weightnorm import fold_weightnorm

            kernel, bias = fold_weightnorm(layer)
        else:
            kernel, bias = layer.get_weights()
        state[f"{entry.key}.weight"], state[f"{entry.key}.bias"] = _to_torch(entry, kernel, bias)
    return state


# --- EDSR-PyTorch (sanghyun-son/EDSR-PyTorch, model/edsr.py) key names -> BasicSR's -----------------------------
_EDSR_OFFICIAL = ((r"head\.0\.(weight|bias)", r"conv_first.\1"),
                  (r"body\.(\d+)\.body\.0\.(weight|bias)", r"body.\1.conv1.\2"),
                  (r"body\.(\d+)\.body\.2\.(weight|bias)", r"body.\1.conv2.\2"),
                  (r"tail\.0\.(\d+)\.(weight|bias)", r"upsample.\1.\2"),
                  (r"tail\.1\.(weight|bias)", r"conv_last.\1"))


def is_edsr_official(state):
    return "head.0.weight" in state and "tail.1.weight" in state


def edsr_official_to_basicsr(state, source="state dict"):
    """EDSR-PyTorch's state dict under BasicSR's EDSR names. Its MeanShift convs (sub_mean, add_mean) must be the
    DIV2K mean at rgb_range 255 with unit std, which this EDSR builds in (any other would change the borders)."""
    num_blocks = len({int(m.group(1)) for k in state for m in [re.match(r"body\.(\d+)\.body\.", k)] if m})
    out = {}
    for key, value in state.items():
        if key.startswith(("sub_mean.", "add_mean.")):
            continue
        m = re.fullmatch(rf"body\.{num_blocks}\.(weight|bias)", key)
        if m:
            out[f"conv_after_body.{m.group(1)}"] = value
            continue
        for pattern, repl in _EDSR_OFFICIAL:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise UserError(f"{source}: key {key!r} is not an EDSR-PyTorch EDSR weight (recognised head.0, "
                            "body.N.body.0/2, tail.0.K, tail.1, sub_mean, add_mean)")
    mean = np.asarray(DIV2K_RGB_MEAN, np.float64)
    for name, sign in (("sub_mean", -1.0), ("add_mean", 1.0)):
        if f"{name}.weight" not in state:
            continue
        weight = np.asarray(state[f"{name}.weight"], np.float64).reshape(3, 3)
        bias = np.asarray(state[f"{name}.bias"], np.float64)
        if not (np.allclose(weight, np.eye(3), atol=1e-6) and np.allclose(bias, sign * mean, rtol=1e-4, atol=1e-3)):
            raise UserError(f"{source}: {name} is not the DIV2K mean at rgb_range 255 with unit std (bias "
                            f"{np.round(bias, 3).tolist()}); only EDSR models trained with EDSR-PyTorch's "
                            "defaults can be imported")
    return out
