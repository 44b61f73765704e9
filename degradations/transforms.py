"""The LR transforms of --lr-transform (an LR crop made from its HR crop on the fly): `make_transform(name,
scale, config)`, MATLAB bicubic (`BicubicTransform`) or the Real-ESRGAN pipeline, and `hr_patch_of`."""
from imaging.resize import imresize
from utils import UserError


class BicubicTransform:
    """LR from HR by MATLAB-exact bicubic downscaling: `transform(hr_crop_uint8, rng) -> {"lr", "hr"}`."""

    def __init__(self, scale):
        self.scale = int(scale)

    def __call__(self, hr, rng=None):
        return {"lr": imresize(hr, scale=1.0 / self.scale), "hr": hr}


def make_transform(name, scale, config=None):
    """The LR transform named `name` (train.py --lr-transform): "bicubic", or "realesrgan" (the Real-ESRGAN
    degradation pipeline, `degradations.RealESRGANTransform(config)`); None for "none" (paired LR files).

    config: the training config; for "realesrgan" its "degradation" dict overrides the preset, and a
    "realesrgan_crop" (e.g. 400) selects Real-ESRGAN's exact recipe (`crop=True`: the transform takes HR patches
    of that size, see `hr_patch_of`, and cuts the paired GT scale x "lr_patch" / LR "lr_patch" crop itself)."""
    if name in (None, "none"):
        return None
    if name == "bicubic":
        return BicubicTransform(scale)
    if name == "realesrgan":
        from degradations.pipeline import RealESRGANTransform

        config = dict(config or {}, scale=int(scale))
        crop = int(config.get("realesrgan_crop") or 0)
        if not crop:
            return RealESRGANTransform(config)
        config["degradation"] = dict(config.get("degradation") or {}, crop_pad_size=crop)
        return RealESRGANTransform(config, crop=True, gt_size=int(scale) * int(config.get("lr_patch", 64)))
    raise UserError(f"unknown --lr-transform {name!r}; choose none, bicubic or realesrgan")


def hr_patch_of(transform):
    """The HR patch size a transform wants from `data.HRPatches` (None: scale x lr_patch): a cropping
    Real-ESRGAN transform takes crop_pad_size patches (400), flips them itself and pads smaller images."""
    config = getattr(transform, "config", None)
    if getattr(transform, "crop", False) and config and config.get("crop_pad_size"):
        return int(config["crop_pad_size"])
    return None
