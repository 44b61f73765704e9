"""THE loader of every file format the project reads (.keras, Keras-2 .h5, .pth / .pt, .safetensors; generator or
discriminator), THE one place that spells weight-file extensions, and the one check that says in one line what a
file is when it is the wrong kind."""
import json
import os
import zipfile

import keras

from model.discriminator import Discriminator, build_discriminator
from model.discriminator_layers import InputSizeCheck, SpectralConv2D
from model.sr_model import SRModel
from model.transfer import copy_weights
from utils import UserError

KERAS_EXTS = (".keras",)
H5_EXTS = (".h5", ".hdf5")
SAFETENSORS_EXTS = (".safetensors",)
TORCH_EXTS = (".pth", ".pt") + SAFETENSORS_EXTS  # read by model/convert/torch_pickle.py (never unpickling code)
ONNX_EXTS = (".onnx",)  # deployment formats model/export.py writes (never read back as models)
TFLITE_EXTS = (".tflite",)
MODEL_EXTS = KERAS_EXTS + H5_EXTS + TORCH_EXTS  # every file load_model opens
CHECKPOINT_EXTS = KERAS_EXTS + H5_EXTS  # what this project's runs write (and a folder search picks up)
FORMATS = {"keras": KERAS_EXTS, "h5": H5_EXTS, "torch": TORCH_EXTS}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
KINDS = {"generator": "a super-resolution model", "discriminator": "a discriminator"}
_DISCRIMINATOR_LAYERS = ("InputSizeCheck", "SpectralConv2D")


def file_format(path):
    """"keras", "h5" or "torch" from the file name (None for anything else)."""
    lower = os.fspath(path).lower()
    for fmt, exts in FORMATS.items():
        if lower.endswith(exts):
            return fmt
    return None


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _keras_config(path):
    """config.json of a .keras archive; UserError saying in one line what the file is otherwise."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head == ZIP_SIGNATURE:
            raise UserError(f"{path} is truncated: a .keras zip archive without its end (copy the file again)")
        raise UserError(f"{path} is not a Keras model: a .keras file is a zip archive, this one is not "
                        "(another format renamed?)")
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    except KeyError:
        raise UserError(f"{path} is a zip archive but not a Keras model (no config.json)") from None
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise UserError(f"{path} is corrupt or truncated ({_first_line(e)})") from None


def _h5_config(path):
    """The model_config of a whole-model Keras .h5 (None for a weights-only file); UserError if not HDF5."""
    with open(path, "rb") as f:
        if f.read(8) != HDF5_SIGNATURE:
            raise UserError(f"{path} is not an HDF5 file (no HDF5 signature); a .h5 model or weights file must be "
                            "HDF5")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except OSError as e:
        raise UserError(f"{path} is a corrupt or truncated HDF5 file ({_first_line(e)})") from None
    if config is None:
        return None
    return json.loads(config.decode() if isinstance(config, bytes) else config)


def config_kind(config):
    """"generator" / "discriminator" of a saved model's config (the class, else its layers for older files)."""
    name = config.get("class_name") if isinstance(config, dict) else None
    if name == "Discriminator":
        return "discriminator"
    if name == "SRModel":
        return "generator"
    text = json.dumps(config)
    return "discriminator" if any(f'"{n}"' in text for n in _DISCRIMINATOR_LAYERS) else "generator"


def model_kind(model):
    """"generator" or "discriminator" of a built model (its class; for older files its layers)."""
    if isinstance(model, Discriminator):
        return "discriminator"
    if isinstance(model, SRModel):
        return "generator"
    layers = model._flatten_layers(include_self=False, recursive=True)
    return "discriminator" if any(isinstance(layer, (InputSizeCheck, SpectralConv2D)) for layer in layers) \
        else "generator"


def check_kind(path, found, kind):
    """UserError "PATH is a discriminator, not a super-resolution model" (or the reverse) when `found` != `kind`."""
    if kind is not None and found != kind:
        raise UserError(f"{path} is {KINDS[found]}, not {KINDS[kind]}")


def check_file(path, label="model file", kind=None):
    """(format, saved config or None), before any model is built: the file exists, has a known extension, is what
    its extension says, and (`kind` given, the config known) is that kind of model."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{label} {path} not found")
    fmt = file_format(path)
    if fmt is None:
        raise UserError(f"{path}: unknown model file type; expected {', '.join(MODEL_EXTS)}")
    config = _keras_config(path) if fmt == "keras" else _h5_config(path) if fmt == "h5" else None
    if config is not None:
        check_kind(path, config_kind(config), kind)
    return fmt, config


def _keras_load(path, compile, custom_objects):
    try:
        return keras.models.load_model(path, compile=compile, custom_objects=custom_objects)
    except UserError:
        raise
    except Exception as e:  # keras raises many types for corrupt/foreign files
        raise UserError(f"cannot load model {path}: {_first_line(e)}") from e


def load_model(path, compile=False, kind="generator", scale=None, profile=None, profiles=None,
               custom_objects=None):
    """The model a file holds, or UserError (one line naming the file). `kind` "generator" (an SR model),
    "discriminator", or None (either).

    - .keras / whole-model .h5: as saved (an SRModel / Discriminator carries its config; older files load as
      plain functional models). compile=True needs the loss and metric classes imported (losses, metrics).
    - .pth / .pt / .safetensors: converted in memory without running the pickle: a generator whose architecture,
      sizes and scale come from the tensor table (model/convert/detect.py; `scale` and `profile` checked against
      it) or a U-Net discriminator (model/convert/discriminators.py).
    - weights-only .h5: krasserm's Keras 2 weights (model/convert/krasserm.py) at `scale`, into the network of
      `profile`, else of the file or folder name (wdsr-a-32-x4-...).
    `profiles`: the caller's profile table (name -> {"arch", "model"}, e.g. profiles.PROFILES) that `profile`
    and file names are looked up in; model/ itself knows no profile.
    """
    path = os.fspath(path)
    fmt, config = check_file(path, kind=kind)
    if config is not None:
        model = _keras_load(path, compile, custom_objects)
        check_kind(path, model_kind(model), kind)
        return model
    if fmt == "torch":
        from model.convert.discriminators import is_discriminator_state_dict
        from model.convert.torch_pickle import read_state_dict

        state = read_state_dict(path)
        if is_discriminator_state_dict(state):
            check_kind(path, "discriminator", kind)
            return _torch_discriminator(path, state)
        check_kind(path, "generator", kind)
        return _torch_generator(path, state, scale, profile, profiles)
    check_kind(path, "generator", kind)
    return _krasserm(path, scale, profile, profiles)


def _target(profile, profiles, path):
    """(arch, params) of a profile name in the caller's table (model/convert/krasserm.krasserm_target)."""
    from model.convert.krasserm import krasserm_target

    return krasserm_target(profile, profiles or {})  # without a table: krasserm's wdsr-a-N / wdsr-b-N names only


def _torch_generator(path, state, scale, profile, profiles):
    """A PyTorch generator state dict as an SRModel: architecture, sizes and scale from its tensor table
    (model/convert/detect.py); `profile` and `scale`, when given, checked against it."""
    from model.convert.basicsr_archs import ARCH_NAMES
    from model.convert.detect import detect, load_generator

    source = os.path.basename(path)
    arch = params = None
    if profile is not None:
        found = detect(state, source)[0]  # not a known generator: that is the error to report
        arch, params = _target(profile, profiles, path)
        if arch != found:
            raise UserError(f"{source} holds {ARCH_NAMES[found]} weights but profile {profile} is {arch}; use a "
                            f"{found} profile (or leave it out: the sizes come from the file)")
    return load_generator(state, source, scale, arch, params)


def _krasserm(path, scale, profile, profiles):
    from model.convert.krasserm import convert_krasserm_weights, name_and_scale

    if profile is None or scale is None:
        name, scale = name_and_scale(path, profile, scale)
        profile = profile or name
    arch, params = _target(profile, profiles, path)
    try:
        return convert_krasserm_weights(path, arch, scale, params)
    except UserError:
        raise
    except Exception as e:  # h5py/keras errors on foreign files
        raise UserError(f"cannot load weights {path} as {profile} x{scale}: {_first_line(e)}") from None


def _torch_discriminator(path, state, into=None, arch=None, params=None):
    from model.convert.discriminators import infer_discriminator, load_torch_state_dict

    if into is None:
        found_arch, found_params = infer_discriminator(state, os.path.basename(path))
        into = build_discriminator(arch or found_arch, **(params or found_params))
    load_torch_state_dict(into, state)
    return into


def load_discriminator(path, into=None, arch=None, params=None, label="discriminator"):
    """A discriminator from a .keras file or an A-ESRGAN / Real-ESRGAN .pth / .safetensors (architecture and
    width from the tensor table unless `arch` / `params` say). With `into` (a built discriminator), its weights
    are set from the file (by layer name and shape) and `into` is returned."""
    path = os.fspath(path)
    fmt, config = check_file(path, label)
    if fmt == "torch":
        from model.convert.discriminators import is_discriminator_state_dict
        from model.convert.torch_pickle import read_state_dict

        state = read_state_dict(path)
        check_kind(path, "discriminator" if is_discriminator_state_dict(state) else "generator", "discriminator")
        return _torch_discriminator(path, state, into, arch, params)
    if config is None:
        check_kind(path, "generator", "discriminator")  # a krasserm weights file
    d = load_model(path, kind="discriminator")
    if into is None:
        return d
    copy_weights(into, d, path)
    return into


def transfer_weights(model, source, profiles=None):
    """Copy weights of same-named, same-shaped layers from `source` (a model, or a file load_model /
    load_discriminator opens: the same kind as `model`; `profiles` as for load_model) into `model`
    (model/transfer.py). Returns the layer names set; UserError when nothing fits or a same-named layer has
    another shape."""
    if isinstance(source, (str, os.PathLike)):
        label = os.fspath(source)
        if model_kind(model) == "discriminator":
            return [layer.name for layer in load_discriminator(source, into=model).layers if layer.weights]
        source = load_model(source, profiles=profiles)
    else:
        label = f"model {source.name!r}"
    return copy_weights(model, source, label)
