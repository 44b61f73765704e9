"""SR networks (EDSR, WDSR-A/B, SRResNet, RRDBNet) and GAN discriminators (Keras 3, backend-agnostic): the
registry, the model classes whose config rebuilds them, the one file loader, and their utilities.

Map: registry.py (names -> builders), archs/ (one file per network), sr_model.py / discriminator.py (the saved
classes), io.py (every file format), convert/ (one module per foreign weight format), transfer.py, summary.py,
layers.py / weightnorm.py / discriminator_layers.py (shared layers), bicubic_init.py.
"""
import model.archs  # noqa: F401  (registers every network before anything is built)
from model.convert.krasserm import krasserm_target
from model.discriminator import Discriminator, build_discriminator
from model.io import (CHECKPOINT_EXTS, MODEL_EXTS, file_format, load_discriminator, load_model, model_kind,
                      transfer_weights)
from model.layers import DIV2K_RGB_MEAN, Denormalize, Normalize, PixelShuffle, Scale
from model.registry import (ARCHITECTURES, DISCRIMINATORS, arch_defaults, arch_params, arch_scales,
                            discriminator_params, register_discriminator, register_generator)
from model.sr_model import SRModel, build_model, model_loss_mode, model_scale, predicts_logvar
from model.summary import count_params, describe
from model.weightnorm import (WeightNormConv2D, fold_weightnorm, to_plain_conv, unfold_to_weightnorm,
                              weightnorm_data_init, weightnorm_layers)

__all__ = [
    "ARCHITECTURES", "DISCRIMINATORS", "register_generator", "register_discriminator", "arch_scales", "arch_params",
    "arch_defaults", "discriminator_params", "SRModel", "Discriminator", "build_model", "build_discriminator",
    "load_model", "load_discriminator", "transfer_weights", "model_kind", "model_scale", "predicts_logvar",
    "model_loss_mode", "file_format", "MODEL_EXTS", "CHECKPOINT_EXTS", "krasserm_target", "count_params",
    "describe", "DIV2K_RGB_MEAN", "Normalize", "Denormalize", "PixelShuffle", "Scale", "WeightNormConv2D",
    "fold_weightnorm", "to_plain_conv", "unfold_to_weightnorm", "weightnorm_data_init", "weightnorm_layers",
]
