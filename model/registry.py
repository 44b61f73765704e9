"""Architecture registry and model utilities: build, load, scale/logvar detection, weight transfer, counting."""
import inspect
import os

import keras
import numpy as np

from model.attention_unet import attention_unet, attention_unet_multiscale
from model.edsr import edsr
from model.rrdbnet import RRDB_SCALES, rrdbnet
from model.srresnet import sr_resnet
from model.unet_discriminator import unet_discriminator_sn
from model.wdsr import wdsr_a, wdsr_b
from model.weightnorm import WeightNormConv2D, unfold_to_weightnorm
from utils import UserError

ARCHITECTURES = {
    "edsr": edsr,
    "wdsr-a": wdsr_a,
    "wdsr-b": wdsr_b,
    "sr-resnet": sr_resnet,
    "rrdbnet": rrdbnet,
}
SCALES = (2, 3, 4)
# Architectures whose scales differ from SCALES (RRDBNet: x4, and x2/x1 through pixel-unshuffle; no x3).
ARCH_SCALES = {"rrdbnet": RRDB_SCALES}


def arch_scales(arch):
    """Scales `build_model(arch, ...)` supports."""
    _builder(arch)
    return tuple(ARCH_SCALES.get(arch, SCALES))


def arch_params(arch):
    """Names of the parameters `build_model(arch, scale, ...)` accepts."""
    return [p for p in inspect.signature(_builder(arch)).parameters if p != "scale"]


def _builder(arch):
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_model(arch, scale, **params):
    """A fresh functional keras.Model; `params` as in the architecture's builder. None values mean default."""
    builder = _builder(arch)
    if scale not in arch_scales(arch):
        raise UserError(f"unsupported scale {scale!r} for {arch}; choose one of {', '.join(map(str, arch_scales(arch)))}")
    params = {k: v for k, v in params.items() if v is not None}
    allowed = arch_params(arch)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise UserError(f"{arch} does not take {', '.join(unknown)}; its parameters are {', '.join(allowed)}")
    return builder(int(scale), **params)


TORCH_EXTS = (".pth", ".pt", ".safetensors")
H5_EXTS = (".h5", ".hdf5")


def load_model(path, compile=True, profile=None, scale=None):
    """One loader for every model file format; UserError (one line naming the file) otherwise.

    - .keras: a model saved by this project (plain keras.models.load_model works too);
    - .pth / .pt / .safetensors: RRDBNet weights (Real-ESRGAN / ESRGAN), converted in memory without running the
      pickle (model/import_weights.py); sizes and scale from the file, `profile` / `scale` checked against it;
    - .h5 / .hdf5: a krasserm weights file (profile and scale from the arguments or the file name, see
      model.krasserm.profile_and_scale), or a full legacy Keras model file.
    Converted files load uncompiled.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"model file {path} not found")
    lower = path.lower()
    if lower.endswith(TORCH_EXTS):
        from model.import_weights import convert_torch_weights

        return convert_torch_weights(path, profile=profile, scale=scale)
    if lower.endswith(H5_EXTS) and not _is_full_keras_h5(path):
        from model.krasserm import convert_krasserm_weights, profile_and_scale

        profile, scale = profile_and_scale(path, profile, scale)
        try:
            return convert_krasserm_weights(path, profile, scale)
        except UserError:
            raise
        except Exception as e:  # h5py/keras errors on foreign files
            raise UserError(f"cannot load weights {path} as {profile} x{scale}: {_first_line(e)}") from None
    custom_objects = None
    if compile:
        import losses  # noqa: F401  registers SRLoss, the loss train.py compiles checkpoints with
        import metrics

        custom_objects = {"psnr": metrics.psnr_metric}  # train.py's progress-bar metric, saved by its name
    try:
        return keras.models.load_model(path, compile=compile, custom_objects=custom_objects)
    except Exception as e:  # keras raises many types for corrupt/foreign files
        raise UserError(f"cannot load model {path}: {_first_line(e)}") from e


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_full_keras_h5(path):
    """True for a whole-model legacy Keras .h5 (model_config attribute), False for a weights-only file."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "model_config" in f.attrs
    except Exception:  # not HDF5 at all: the krasserm reader gives the one-line error
        return False


def model_scale(model):
    """Upscaling factor of an SR model: output size over input size for an 8x8 input.

    Symbolic shape inference first (no compute); a forward pass on zeros for models where that fails.
    """
    size = 8
    try:
        height = model.compute_output_spec(keras.KerasTensor((1, size, size, 3))).shape[1]
    except Exception:
        height = None
    if height is None:
        height = model(np.zeros((1, size, size, 3), dtype="float32"), training=False).shape[1]
    return int(height) // size


def predicts_logvar(model):
    """True when the model outputs 6 channels (RGB mean then log-variance)."""
    return int(model.outputs[0].shape[-1]) == 6


def _weights_for(src, dst):
    """Source layer weights converted to the destination layer's layout, or None when shapes do not fit.

    Plain conv <-> weight-norm conv of the same shape convert exactly (fold / unfold), so a model trained with
    weight norm can initialise one without it and back.
    """
    weights = src.get_weights()
    if isinstance(src, WeightNormConv2D) and not isinstance(dst, WeightNormConv2D):
        kernel, bias = src.folded_kernel(), src.bias
        weights = [keras.ops.convert_to_numpy(kernel)] + ([keras.ops.convert_to_numpy(bias)] if src.use_bias else [])
    elif isinstance(dst, WeightNormConv2D) and not isinstance(src, WeightNormConv2D) and weights:
        weights = unfold_to_weightnorm(weights[0], weights[1] if len(weights) > 1 else None)
    expected = [tuple(w.shape) for w in dst.weights]
    if [tuple(w.shape) for w in weights] != expected:
        return None
    return weights


def transfer_weights(model, source):
    """Copy weights of same-named, same-shaped layers from `source` (a model or a .keras path) into `model`.

    This is the x2 -> x4 recipe: scale-dependent layers carry `scale_{s}` in their names, so they do not match
    and keep their fresh initialisation. Returns the transferred layer names. Raises UserError when nothing fits
    or a same-named layer has another shape (a different architecture or width).
    """
    label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"model {source.name!r}"
    if isinstance(source, (str, os.PathLike)):
        source = load_model(source, compile=False)
    src_layers = {layer.name: layer for layer in source.layers if layer.weights}
    transferred = []
    for layer in model.layers:
        src = src_layers.get(layer.name)
        if src is None or not layer.weights:
            continue
        weights = _weights_for(src, layer)
        if weights is None:
            got = [tuple(w.shape) for w in src.weights]
            want = [tuple(w.shape) for w in layer.weights]
            raise UserError(f"{label}: layer {layer.name!r} has weights {got} but the model needs {want}; "
                            "the pretrained model must have the same architecture and size")
        layer.set_weights(weights)
        transferred.append(layer.name)
    if not transferred:
        raise UserError(f"{label}: no layer matches the model by name; pass a model of the same architecture")
    return transferred


def count_params(model):
    """Parameters of the equivalent plain model: all weights (BN statistics included, as Keras's 'Total params')
    except weight norm's per-channel g, a redundant scale that folds into the kernel (the seed table's count)."""
    total = 0
    for w in model.weights:
        total += int(np.prod(w.shape))
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, WeightNormConv2D):
            total -= int(np.prod(layer.g.shape))
    return total


def describe(model):
    """Keras's summary text (with its 'Total params:' line) and the seed-table parameter count."""
    lines = []
    # Keras renders the table with rich, whose console width comes from COLUMNS (80 when not a terminal),
    # which would crop the 'Connected to' column; widen it for this call only.
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "120"
    try:
        model.summary(print_fn=lambda text, line_break=False: lines.append(text))
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    n = count_params(model)
    lines.append(f"Parameters (seed-table count, weight-norm g excluded): {n:,} ({n / 1e6:.2f}M)")
    return "\n".join(line.rstrip("\n") for line in lines)


# Discriminators for GAN training (model/attention_unet.py, model/unet_discriminator.py): name -> builder.
DISCRIMINATORS = {
    "attention-unet": attention_unet,
    "attention-unet-multiscale": attention_unet_multiscale,
    "unet-sn": unet_discriminator_sn,
}


def build_discriminator(name, **params):
    """A fresh discriminator: RGB N x H x W x 3 in [0, 255] -> per-pixel logits N x H x W x 1 (multi-scale: a list,
    full resolution first). `params`: num_feat (64). None values mean default."""
    if name not in DISCRIMINATORS:
        raise UserError(f"unknown discriminator {name!r}; choose one of {', '.join(DISCRIMINATORS)}")
    builder = DISCRIMINATORS[name]
    params = {k: v for k, v in params.items() if v is not None}
    allowed = list(inspect.signature(builder).parameters)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise UserError(f"discriminator {name} does not take {', '.join(unknown)}; its parameters are "
                        f"{', '.join(allowed)}")
    return builder(**params)
