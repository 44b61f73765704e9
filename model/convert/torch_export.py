"""A Keras generator out to PyTorch: its weights under the reference (BasicSR) key names, as a `.pth` holding
{"params_ema": state_dict} (what Real-ESRGAN's scripts, BasicSR and spandrel read) or a `.safetensors`."""
import os

import keras
import numpy as np

from model.convert.basicsr_archs import describe, export_state_dict
from model.io import SAFETENSORS_EXTS, TORCH_EXTS, file_format
from utils import UserError, atomic_path

CHECK_SIZE = (13, 17)  # LR size of the read-back check (odd, so x2/x1 RRDBNet's padding is exercised)


def write_torch(model, path):
    """Write `model` (an SRModel of a layout in basicsr_archs.LAYOUTS) to `path`: .pth / .pt as torch.save of
    {"params_ema": state_dict}, .safetensors as the flat state dict. Returns the state dict written (numpy)."""
    path = os.fspath(path)
    if file_format(path) != "torch":
        raise UserError(f"{path}: a PyTorch export is written as {', '.join(TORCH_EXTS)}")
    state = export_state_dict(model)
    if path.lower().endswith(SAFETENSORS_EXTS):
        from safetensors.numpy import save_file

        with atomic_path(path) as tmp:
            save_file(state, tmp, metadata={"arch": model.arch, "scale": str(model.scale)})
        return state
    try:
        import torch
    except ImportError:
        raise UserError(f"{path}: writing a .pth needs PyTorch (pip install torch), or write a .safetensors") from None
    with atomic_path(path) as tmp:
        torch.save({"params_ema": {k: torch.from_numpy(v.copy()) for k, v in state.items()}}, tmp)
    return state


def check_torch_export(model, path):
    """Largest |re-imported - model| in grey levels on a random CHECK_SIZE input: the file read back through the
    safe reader and the architecture detection (model/convert/detect.py) gives the same network."""
    from model.convert.detect import load_generator
    from model.convert.torch_pickle import read_state_dict

    back = load_generator(read_state_dict(path), os.path.basename(path))
    if (back.arch, back.scale) != (model.arch, model.scale):
        raise UserError(f"{path} reads back as {back.arch} x{back.scale}, not {model.arch} x{model.scale}")
    x = np.random.default_rng(0).uniform(0, 255, (1, *CHECK_SIZE, 3)).astype(np.float32)
    got, want = (keras.ops.convert_to_numpy(m(x, training=False)) for m in (back, model))
    return float(np.abs(got - want).max())


def export_torch(model, path):
    """write_torch, then check_torch_export; one line saying what was written (convert.py export -o X.pth)."""
    write_torch(model, path)
    diff = check_torch_export(model, path)
    where = "flat" if os.fspath(path).lower().endswith(SAFETENSORS_EXTS) else "under params_ema"
    return (f"wrote {path}: {describe(model.arch, model.scale, model.params)} in BasicSR's key layout ({where}); "
            f"read back: max |diff| {diff:.4f} grey levels")
