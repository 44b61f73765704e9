"""THE place that knows a checkpoint's log-variance convention (GRAM loss mode "l1" or "l2").

train.py stores it twice: in the model itself (epoch checkpoints are saved compiled with their `SRLoss`,
whose config holds `loss_mode`; readable from the .keras file even when it is loaded with compile=False) and in
args.json of the run directory beside `models/`. bench.py and demo.py call `checkpoint_loss_mode`.
"""
import json
import os
import zipfile

DEFAULT_LOSS_MODE = "l2"


def _from_compiled(model):
    from losses.pixel import SRLoss

    loss = getattr(model, "loss", None)
    if isinstance(loss, SRLoss):
        return loss.loss_mode if loss.pred_logvar else None
    return None


def _from_keras_file(path):
    """loss_mode of the compiled SRLoss recorded in a .keras zip's config.json, or None."""
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    loss = (config.get("compile_config") or {}).get("loss")
    if isinstance(loss, dict) and loss.get("class_name") == "SRLoss":
        c = loss.get("config") or {}
        if c.get("pred_logvar") and c.get("loss_mode") in ("l1", "l2"):
            return c["loss_mode"]
    return None


def _from_run_dir(path):
    """loss_mode from the args.json of the run the checkpoint belongs to (RUN/models/x.keras or RUN/x.keras)."""
    folder = os.path.dirname(os.path.abspath(path))
    for d in (folder, os.path.dirname(folder)):
        try:
            with open(os.path.join(d, "args.json")) as f:
                args = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(args, dict) and args.get("pred_logvar") and args.get("loss_mode") in ("l1", "l2"):
            return args["loss_mode"]
    return None


def checkpoint_loss_mode(model=None, path=None, default=DEFAULT_LOSS_MODE):
    """The loss mode ("l1" Laplace / "l2" Gaussian) a log-variance checkpoint was trained with.

    Looks at the model's config (SRModel.loss_mode), its compiled SRLoss, then the .keras file at `path` (or
    `model.source_path`), then the run's args.json; `default` when none says (plain models, foreign weights).
    """
    # the model's own config first (model.SRModel records its loss mode), then its compiled SRLoss
    mode = (getattr(model, "loss_mode", None) or _from_compiled(model)) if model is not None else None
    path = path or getattr(model, "source_path", None)
    if mode is None and path and os.path.isfile(os.fspath(path)):
        path = os.fspath(path)
        from model.io import file_format

        mode = _from_keras_file(path) if file_format(path) == "keras" else None
        mode = mode or _from_run_dir(path)
    return mode or default
