"""Which checkpoints to evaluate: finding SR models in run directories and globs, loading one, its scale and epoch."""
import glob
import os
import re

from utils import UserError


def is_model_file(name):
    """An SR model checkpoint by its path: not a train.py resume state, a hidden or temporary file, nor a GAN
    run's discriminator (models/discriminator/epoch-NNN.keras)."""
    from model.io import CHECKPOINT_EXTS  # what a directory search picks up

    base = os.path.basename(name)
    parts = os.path.normpath(os.path.dirname(name)).split(os.sep)
    return (base.lower().endswith(CHECKPOINT_EXTS) and not base.startswith((".", "resume"))
            and "discriminator" not in parts)


def find_checkpoints(specs):
    """Checkpoint files from directories (recursive), globs and files, sorted, without duplicates.

    Directories and globs yield .keras/.h5 checkpoints, never train.py's `resume-*` state files nor a GAN run's
    discriminators; a file named explicitly may be any format model.load_model reads.
    """
    from model.io import MODEL_EXTS  # what -i FILE may name

    found = []
    for spec in specs:
        if os.path.isdir(spec):
            top = spec.rstrip("/" + os.sep) or spec  # -i models/ or models//: keys models/x.keras, never models//x
            paths = [os.path.join(d, f) for d, _, files in os.walk(top) for f in files]
            paths = [p for p in paths if is_model_file(p)]
        elif os.path.isfile(spec):
            if not spec.lower().endswith(MODEL_EXTS):
                raise UserError(f"-i {spec} is not a model file (expected one of {', '.join(MODEL_EXTS)})")
            paths = [spec]
        elif glob.has_magic(spec):
            paths = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p) and is_model_file(p)]
        else:
            raise UserError(f"models directory or file {spec} does not exist; pass -i <run>/models")
        if not paths:
            raise UserError(f"no checkpoints (.keras or .h5) found in {spec}")
        found.extend(sorted(paths))
    return list(dict.fromkeys(found))


def check_model_file(path):
    """Say in one line what is wrong with a model file before any work (model.io: format, signature, and the
    kind a saved model's config names: "... is a discriminator, not a super-resolution model")."""
    from model import io

    io.check_file(path, kind="generator")


def load_checkpoint(path):
    """An SR model from any file model.load_model reads, or a one-line UserError naming the file (a krasserm .h5
    is matched to its network through profiles.PROFILES by its name)."""
    check_model_file(path)
    import model as model_lib
    import profiles

    return model_lib.load_model(path, compile=False, kind="generator", profiles=profiles.PROFILES)


def loss_mode_for(model, path, override=None):
    """The GRAM log-variance convention: `override`, else the checkpoint's own (losses.checkpoint_loss_mode)."""
    if override:
        return override
    import losses

    return losses.checkpoint_loss_mode(model, path)


def checkpoint_scale(model, path):
    import model as model_lib

    try:
        return int(model_lib.model_scale(model))
    except Exception as e:
        raise UserError(f"cannot tell the scale of checkpoint {path}: {e}") from None


def epoch_of(path):
    """The epoch in a train.py checkpoint name (epoch-012-psnr-30.1000.keras -> 12), else None."""
    m = re.search(r"epoch-(\d+)", os.path.basename(str(path)))
    return int(m.group(1)) if m else None
