"""A Keras generator out to PyTorch: its weights under the reference (BasicSR) key names, as a `.pth` holding
{"params_ema": state_dict} (what Real-ESRGAN's scripts, BasicSR and spandrel read) or a `.safetensors`."""
import os

from model.convert.basicsr_archs import export_state_dict
from model.io import TORCH_EXTS, file_format
from utils import UserError, atomic_path

SAFETENSORS_EXT = TORCH_EXTS[-1]


def export_torch(model, path):
    """Write `model` (an SRModel of a layout in basicsr_archs.LAYOUTS) to `path` (.pth / .pt: torch.save of
    {"params_ema": ...}; .safetensors: the flat state dict). Returns the state dict written (numpy)."""
    path = os.fspath(path)
    if file_format(path) != "torch":
        raise UserError(f"{path}: a PyTorch export is written as {', '.join(TORCH_EXTS)}")
    state = export_state_dict(model)
    if path.lower().endswith(SAFETENSORS_EXT):
        from safetensors.numpy import save_file

        metadata = {"arch": model.arch, "scale": str(model.scale)}
        with atomic_path(path) as tmp:
            save_file(state, tmp, metadata=metadata)
        return state
    try:
        import torch
    except ImportError:
        raise UserError(f"{path}: writing a .pth needs PyTorch (pip install torch), or write a .safetensors") from None
    with atomic_path(path) as tmp:
        torch.save({"params_ema": {k: torch.from_numpy(v.copy()) for k, v in state.items()}}, tmp)
    return state
