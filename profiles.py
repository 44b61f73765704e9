"""Named model + training profiles (plain data), as in krasserm/wdsr's `train.py` and GRAM's `sr-resnet`.

Each profile: {"arch": ..., "model": {build_model params}, "train": {loss, optimizer and schedule, batches}}.
Every key is an option of the training schema (training/config.py) and is checked against it: an unknown key
or a bad value is an error (`check()`; tests/test_profiles.py runs it on every profile). `flat(name)` is the
profile as one dict; `resolve(name, overrides)` merges overrides (None = not given); `build_from_profile`
builds the model. Learning rates step-decay by `lr_decay` at `lr_boundaries` (optimizer steps): krasserm
halves every 200 epochs of 1000 steps, i.e. at 200k steps; 300 epochs in all.
"""
import copy

from utils import UserError

from training.config import MODEL_KEYS, OPTIONS, check_profile  # noqa: E402  (the one schema)

_TRAIN = {
    "loss": "mae",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "lr_boundaries": [200000],
    "lr_decay": 0.5,
    "ema": False,
    "batch_size": 16,
    "lr_patch": 48,
    "epochs": 300,
    "steps_per_epoch": 1000,
    "num_init_batches": 0,
}


def _wdsr(block, num_res_blocks, res_expansion):
    return {
        "arch": f"wdsr-{block}",
        "model": {"num_filters": 32, "num_res_blocks": num_res_blocks, "res_expansion": res_expansion,
                  "res_scaling": None, "weightnorm": True, "pred_logvar": False},
        "train": {**_TRAIN, "learning_rate": 1e-3},
    }


def _edsr(num_filters, num_res_blocks, res_scaling=None):
    return {
        "arch": "edsr",
        "model": {"num_filters": num_filters, "num_res_blocks": num_res_blocks, "res_scaling": res_scaling,
                  "weightnorm": False, "pred_logvar": False},
        "train": {**_TRAIN, "learning_rate": 1e-4},
    }


def _realesrgan(discriminator, batch_size, learning_rate=1e-4, epochs=400, perceptual_weight=1.0):
    return {
        "arch": "rrdbnet",
        "model": {"num_filters": 64, "num_res_blocks": 23, "growth_channels": 32, "pred_logvar": False},
        "train": {**_TRAIN, "trainer_task": "realesrgan", "discriminator": discriminator or "none",
                  "scale": 4, "lr_transform": "realesrgan", "realesrgan_crop": 400, "lr_patch": 64,
                  "batch_size": batch_size,
                  "loss": "mae", "learning_rate": learning_rate, "lr_boundaries": [epochs * 1000], "lr_decay": 0.5,
                  "ema": True, "ema_decay": 0.999, "epochs": epochs, "steps_per_epoch": 1000,
                  "perceptual_weight": perceptual_weight, "gan_weight": 0.1, "usm_target": True},
    }


PROFILES = {
    # WDSR-B baseline (8 blocks as in the WDSR paper) and deeper variants; expansion 6.
    "wdsr-b-8": _wdsr("b", 8, 6),
    "wdsr-b-16": _wdsr("b", 16, 6),
    "wdsr-b-32": _wdsr("b", 32, 6),
    # WDSR-A; expansion 4 by default (the seed's experimental 3.55M models use --res-expansion 6).
    "wdsr-a-8": _wdsr("a", 8, 4),
    "wdsr-a-16": _wdsr("a", 16, 4),
    "wdsr-a-32": _wdsr("a", 32, 4),
    # EDSR baselines and the full EDSR (32 x 256, residual scaling 0.1).
    "edsr-8": _edsr(64, 8),
    "edsr-16": _edsr(64, 16),
    "edsr": _edsr(256, 32, 0.1),
    # SRResNet as trained by GRAM: MSE loss, Adam 1e-4.
    "sr-resnet": {
        "arch": "sr-resnet",
        "model": {"num_filters": 64, "num_res_blocks": 16, "weightnorm": False, "pred_logvar": False},
        "train": {**_TRAIN, "loss": "mse", "learning_rate": 1e-4},
    },
    # RRDBNet (ESRGAN / Real-ESRGAN generator, scales 4, 2, 1): Real-ESRNet's L1 pre-training, Adam 2e-4, EMA.
    "rrdbnet": {
        "arch": "rrdbnet",
        "model": {"num_filters": 64, "num_res_blocks": 23, "growth_channels": 32, "pred_logvar": False},
        "train": {**_TRAIN, "loss": "mae", "learning_rate": 2e-4, "ema": True, "lr_patch": 64},
    },
    # The same layer types at a test-sized width and depth.
    "rrdbnet-tiny": {
        "arch": "rrdbnet",
        "model": {"num_filters": 8, "num_res_blocks": 1, "growth_channels": 4, "pred_logvar": False},
        "train": {**_TRAIN, "loss": "mae", "learning_rate": 2e-4, "lr_patch": 16},
    },
    # Real-ESRNet / Real-ESRGAN / A-ESRGAN (training/gan.py; values from the sources' configs, batch = per GPU
    # of their 4): x4 RRDBNet on 256px GT crops of 400px HR patches degraded on the fly (realesrgan_crop), L1 (+ perceptual + GAN) against the
    # unsharp-masked GT, Adam (0.9, 0.99) eps 1e-8, EMA 0.999. Start from --pretrained-model.
    "realesrnet-x4": _realesrgan(None, batch_size=12, learning_rate=2e-4, epochs=1000, perceptual_weight=0.0),
    "realesrgan-x4": _realesrgan("unet-sn", batch_size=12),
    "aesrgan-x4": _realesrgan("attention-unet", batch_size=6),
    "aesrgan-multi-x4": _realesrgan("attention-unet-multiscale", batch_size=16),
}


def profile_names():
    return list(PROFILES)


def check():
    """ValueError naming the profile and key when any profile is not valid data for the schema."""
    for name, profile in PROFILES.items():
        check_profile(name, profile)


def flat(name):
    """The profile as one flat dict {option: value} (plus "arch")."""
    p = PROFILES[name]
    return {"arch": p["arch"], **p["model"], **p["train"]}


def resolve(profile, overrides=None, **kwargs):
    """Merged config {"profile", "arch", "model", "train"} of a profile and overrides (None values ignored).

    Overrides are flat keys (`num_filters=...`, `learning_rate=...`): model keys go to "model", all others to
    "train". They may be given as a dict, as keyword arguments, or both.
    """
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    config = copy.deepcopy(PROFILES[profile])
    config["profile"] = profile
    for key, value in {**(overrides or {}), **kwargs}.items():
        if value is None:
            continue
        if key in MODEL_KEYS:
            if key not in config["model"]:
                raise UserError(f"profile {profile} ({config['arch']}) has no {key.replace('_', '-')} option")
            config["model"][key] = OPTIONS[key].check(value, "override")
        elif key == "arch":
            raise UserError("the architecture comes from the profile; choose another profile instead")
        elif key not in OPTIONS:
            raise UserError(f"unknown option {key!r} for profile {profile}; see train.py --help")
        else:
            config["train"][key] = OPTIONS[key].check(value, "override")
    return config


def build_from_profile(profile, scale, **overrides):
    """(model, config) for a profile at `scale`; config as `resolve` plus "scale". What train.py calls."""
    from model import build_model

    config = resolve(profile, **overrides)
    config["scale"] = int(scale)
    model = build_model(config["arch"], int(scale), **config["model"])
    return model, config
