"""SR models: EDSR, WDSR-A/B, SRResNet, RRDBNet (Keras 3, backend-agnostic) and their utilities.

`model.krasserm`, `model.torch_weights`, `model.import_weights` (weight readers / converters) are imported on
demand, not here; `model.load_model` opens every supported format.
"""
from model.layers import DIV2K_RGB_MEAN, Denormalize, Normalize, PixelShuffle, Scale
from model.registry import DISCRIMINATORS, build_discriminator  # noqa: F401  (GAN discriminators)
from model.registry import (ARCHITECTURES, SCALES, arch_params, arch_scales, build_model, count_params, describe, load_model,
                            model_scale, predicts_logvar, transfer_weights)
from model.weightnorm import (WeightNormConv2D, fold_weightnorm, to_plain_conv, unfold_to_weightnorm,
                              weightnorm_data_init, weightnorm_layers)

__all__ = [
    "ARCHITECTURES", "SCALES", "arch_scales", "DIV2K_RGB_MEAN", "Normalize", "Denormalize", "PixelShuffle", "Scale",
    "WeightNormConv2D", "arch_params", "build_model", "count_params", "describe", "load_model", "model_scale",
    "predicts_logvar", "transfer_weights", "fold_weightnorm", "to_plain_conv", "unfold_to_weightnorm",
    "weightnorm_data_init", "weightnorm_layers",
    "DISCRIMINATORS", "build_discriminator",
]
