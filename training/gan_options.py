"""Options of Real-ESRGAN / A-ESRGAN training (group "gan"), declared into the one schema (training/config.py).

No Keras import here (the schema is read before TensorFlow starts). The task itself is training/gan.py.
`--trainer-task realesrgan` selects it (the realesrnet-x4 / realesrgan-x4 / aesrgan-x4 / aesrgan-multi-x4
profiles set it); `--discriminator none` is Real-ESRNet's pixel-only stage with the same optimizer and EMA.
"""
import dataclasses

from training.config import OPTIONS, Option, add_option, non_negative, positive

DISCRIMINATOR_CHOICES = ("none", "attention-unet", "attention-unet-multiscale", "unet-sn")
TASKS = ("pixel", "realesrgan")


def _declare():
    O, add = Option, add_option
    add(O("trainer_task", str, "pixel", "what is trained: pixel (a pixel / GRAM loss) or realesrgan (BasicSR's "
          "Real-ESRNet / Real-ESRGAN / A-ESRGAN recipe: L1 + perceptual + GAN, Adam betas (0.9, 0.99) eps 1e-8, "
          "EMA generator)", "gan", choices=TASKS, profile=True))
    add(O("discriminator", str, "none", "discriminator of --trainer-task realesrgan (none = L1/perceptual only)",
          "gan", choices=DISCRIMINATOR_CHOICES, profile=True))
    add(O("discriminator_filters", int, 64, "discriminator width num_feat", "gan", validator=positive,
          profile=True))
    add(O("pretrained_discriminator", str, None, "initialise the discriminator from a .keras discriminator or an "
          "A-ESRGAN / Real-ESRGAN PyTorch .pth (read without unpickling code)", "gan", path=True, metavar="FILE"))
    add(O("gan_weight", float, 0.1, "weight of the generator's GAN loss (summed over discriminator scales)", "gan",
          validator=non_negative, profile=True))
    add(O("perceptual_weight", float, 0.0, "weight of the VGG19 perceptual loss (0 = off)", "gan",
          validator=non_negative, profile=True))
    add(O("vgg_weights", str, None, "ImageNet VGG19 weights for the perceptual loss: torchvision's "
          "vgg19-dcbb9e9d.pth or Keras's vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (never downloaded)",
          "gan", path=True, metavar="FILE"))
    add(O("random_vgg", bool, False, "untrained VGG19 for the perceptual loss (tests and timing only)", "gan",
          kind="flag"))
    add(O("usm_target", bool, False, "L1 and perceptual losses against the unsharp-masked GT (Real-ESRGAN's "
          "l1_gt_usm / percep_gt_usm; needs --lr-transform realesrgan, which makes hr_usm)", "gan", kind="bool",
          profile=True))
    add(O("d_learning_rate", float, None, "discriminator learning rate (default: --learning-rate)", "gan",
          validator=positive, profile=True))
    add(O("save_discriminator", bool, True, "also save the discriminator after every epoch "
          "(models/discriminator/epoch-NNN.keras: for fine-tuning and the attention-map grid)", "gan", kind="bool"))
    # The Real-ESRGAN profiles are x4 on degraded-on-the-fly HR crops: scale and LR transform come from them.
    for name in ("scale", "lr_transform"):
        if not OPTIONS[name].profile:
            add(dataclasses.replace(OPTIONS[name], profile=True))


def uses_gan_task(config):
    return config.get("trainer_task") == "realesrgan"


_declare()
