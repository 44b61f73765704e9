"""Which generator a PyTorch state dict holds, and its hyper-parameters, from the tensor names and shapes alone
(spandrel's way); `load_generator` builds it and copies the weights in.

Recognised (a DataParallel `module.` prefix is dropped; model/convert/torch_pickle.py already prefers
`params_ema` over `params`):
- RRDBNet: BasicSR / Real-ESRGAN (body.N.rdbM.convK), ESRGAN (RRDB_trunk, trunk_conv, upconv1, HRconv) and its
  first release (model.1.sub...): any num_feat / num_block / num_grow_ch, x4 / x2 / x1 (model/convert/esrgan.py);
- SRVGGNetCompact: body.N only (conv, PReLU, ..., conv to 3 * scale^2 channels); its num_conv is num_res_blocks;
- EDSR: BasicSR (conv_after_body, upsample.K) and EDSR-PyTorch (head.0, body.N.body.K, tail.0.K, tail.1);
  res_scale is not in the file: 0.1 for the paper's full EDSR (256 features), else 1;
- MSRResNet: BasicSR (conv_first, body.N.conv1/2, upconv1/2, conv_hr, conv_last).
"""
import re

import numpy as np

from model.convert import basicsr_archs
from model.convert.basicsr_archs import ARCH_NAMES
from model.convert.esrgan import canonical_key, canonical_state_dict, convert_state_dict, infer_config
from utils import UserError

FULL_EDSR_FEATURES = 256  # EDSR-PyTorch's full model (32 blocks x 256, res_scale 0.1); the baselines use 1
_SRVGG_KEY = re.compile(r"body\.(\d+)\.(weight|bias)")
_KNOWN_NAMES = ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last", "body", "trunk_conv",
                "RRDB_trunk", "upconv1", "upconv2", "HRconv", "model", "conv_after_body", "upsample", "head", "tail",
                "sub_mean", "add_mean")


def _strip(state):
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _is_rrdbnet(state):
    return any(re.search(r"\.rdb[123]\.|\.RDB[123]\.|^RRDB_trunk\.", k) for k in state)


def _is_srvgg(state):
    return "body.0.weight" in state and all(_SRVGG_KEY.fullmatch(k) for k in state)


def _conv_count(state, pattern):
    return len({int(m.group(1)) for k in state for m in [re.fullmatch(pattern, k)] if m})


def _shape(state, key, source, ndim=4):
    if key not in state:
        raise UserError(f"{source}: key {key!r} is missing; not a complete state dict")
    shape = tuple(np.shape(state[key]))
    if len(shape) != ndim:
        raise UserError(f"{source}: key {key!r} has shape {shape}, not a {'conv kernel' if ndim == 4 else 'vector'}")
    return shape


def _rgb_in(state, key, source):
    if _shape(state, key, source)[1] != 3:
        raise UserError(f"{source}: key {key!r} takes {np.shape(state[key])[1]} input channels; only RGB models "
                        "are supported")


def _upsample_scale(state, first, second, num_filters, source):
    """x2 / x3 / x4 of a sub-pixel upsampler: one conv to 4F (x2) or 9F (x3), or two to 4F (x4)."""
    out = _shape(state, f"{first}.weight", source)[0]
    if out == 9 * num_filters and f"{second}.weight" not in state:
        return 3
    if out == 4 * num_filters:
        return 4 if f"{second}.weight" in state else 2
    raise UserError(f"{source}: key '{first}.weight' has {out} output channels; a x2 / x3 / x4 upsampler of "
                    f"{num_filters} features has {4 * num_filters} or {9 * num_filters}")


def _edsr(state, source):
    _rgb_in(state, "conv_first.weight", source)
    num_filters = _shape(state, "conv_first.weight", source)[0]
    blocks = _conv_count(state, r"body\.(\d+)\.conv1\.weight")
    scale = _upsample_scale(state, "upsample.0", "upsample.2", num_filters, source)
    res_scaling = 0.1 if num_filters >= FULL_EDSR_FEATURES else None
    return scale, {"num_filters": num_filters, "num_res_blocks": blocks, "res_scaling": res_scaling}


def _msrresnet(state, source):
    _rgb_in(state, "conv_first.weight", source)
    num_filters = _shape(state, "conv_first.weight", source)[0]
    scale = _upsample_scale(state, "upconv1", "upconv2", num_filters, source)
    return scale, {"num_filters": num_filters, "num_res_blocks": _conv_count(state, r"body\.(\d+)\.conv1\.weight")}


def _srvgg(state, source):
    _rgb_in(state, "body.0.weight", source)
    last = max(int(_SRVGG_KEY.fullmatch(k).group(1)) for k in state)
    num_filters = _shape(state, "body.0.weight", source)[0]
    if "body.1.weight" not in state:
        raise UserError(f"{source}: an SRVGGNetCompact body (body.N) without PReLU weights: its activation (relu or "
                        "leakyrelu) is not in the file; only the PReLU models (every released one) are supported")
    out = _shape(state, f"body.{last}.weight", source)[0]
    scale = int(round(np.sqrt(out / 3)))
    if 3 * scale * scale != out:
        raise UserError(f"{source}: key 'body.{last}.weight' has {out} output channels; SRVGGNetCompact's last "
                        "conv has 3 * scale^2")
    return scale, {"num_filters": num_filters, "num_res_blocks": (last - 2) // 2, "activation": "prelu"}


def _unknown(state, source):
    names = sorted({k.split(".")[0] for k in state})
    known = [n for n in names if n in _KNOWN_NAMES]
    other = [k for k in state if k.split(".")[0] not in _KNOWN_NAMES]
    seen = f"recognised {', '.join(known)} but " if known else ""
    rest = f"not {', '.join(repr(k) for k in other[:3])}" + (f" (+{len(other) - 3} more)" if len(other) > 3 else "") \
        if other else f"not this combination of {len(state)} tensors"
    return UserError(f"{source}: not a known super-resolution network: {seen}{rest}; this reads RRDBNet (BasicSR, "
                     "ESRGAN), SRVGGNetCompact, EDSR (BasicSR, EDSR-PyTorch) and MSRResNet state dicts")


def detect(state, source="state dict"):
    """(arch, scale, params, state under BasicSR's key names) of a PyTorch generator state dict; UserError saying
    what was recognised and what not for anything else."""
    state = _strip(state)
    if not state:
        raise UserError(f"{source}: the file holds no tensors")
    if _is_rrdbnet(state) or ("conv_body.weight" in state and "body.0.rdb1.conv1.weight" in state):
        if any(canonical_key(k) is None and not k.startswith("model.1.sub.") for k in state):
            raise _unknown({k: v for k, v in state.items() if canonical_key(k) is None}, source)
        sd = canonical_state_dict(state, source)
        config = infer_config(sd, source)
        scale = config.pop("scale")
        return "rrdbnet", scale, config, sd
    if _is_srvgg(state):
        scale, params = _srvgg(state, source)
        return "srvgg-compact", scale, params, state
    if basicsr_archs.is_edsr_official(state):
        state = basicsr_archs.edsr_official_to_basicsr(state, source)
    if "conv_after_body.weight" in state and "upsample.0.weight" in state:
        scale, params = _edsr(state, source)
        return "edsr", scale, params, state
    if "upconv1.weight" in state and "conv_hr.weight" in state and "body.0.conv1.weight" in state:
        scale, params = _msrresnet(state, source)
        return "msrresnet", scale, params, state
    raise _unknown(state, source)


def load_generator(state, source="state dict", scale=None, arch=None, params=None):
    """An SRModel holding a PyTorch generator state dict: architecture, sizes and scale from the tensor table.
    `scale` / `arch`, when given, must agree with the file; `params` (e.g. a profile's) override the detected
    sizes and the first key that then does not fit is named."""
    from model.sr_model import build_model

    found, found_scale, found_params, sd = detect(state, source)
    name = ARCH_NAMES[found]
    if arch is not None and arch != found:
        raise UserError(f"{source} holds {name} weights but {arch} was asked for; use {found} (or leave it out: "
                        "the architecture comes from the file)")
    pred_logvar = bool((params or {}).get("pred_logvar"))
    if found == "rrdbnet":  # model/convert/esrgan.py: checks the sizes before building, names the first key
        return convert_state_dict(sd, source, scale, params, pred_logvar)
    if scale is not None and int(scale) != found_scale:
        raise UserError(f"{source} holds a x{found_scale} {name} but --scale {scale} was asked for")
    sizes = dict(found_params)
    sizes.update({k: v for k, v in (params or {}).items() if v is not None and k in sizes})
    return basicsr_archs.load_state_dict(build_model(found, found_scale, pred_logvar=pred_logvar, **sizes), sd,
                                         source)
