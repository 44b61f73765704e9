"""Real-ESRNet / Real-ESRGAN / A-ESRGAN training as a `Task` of the trainer (BasicSR's recipe).

Each step (phases "generator" then "discriminator"):
1. G: l1 = mean|SR - T| (images in [0, 1], as BasicSR) + perceptual(T, SR) (VGG19 before ReLU, 0.1/0.1/1/1/1)
   + gan_weight * sum over D outputs of BCE(D(SR), 1); T = the unsharp-masked GT `hr_usm` with --usm-target
   (Real-ESRGAN's l1_gt_usm / percep_gt_usm), else `hr`.
2. D: sum over outputs of BCE(D(hr), 1) + BCE(D(stop_gradient(SR)), 0) on the plain GT (gan_gt_usm False).
Every D pass runs in training mode (BatchNorm batch statistics, one spectral-norm power iteration), as BasicSR's
net_d.train() does for the G-step pass and both D-step passes. The D phase runs G again (no gradient) on the
generator just updated: the trainer's phases are separate functions (BasicSR reuses the pre-update SR; the
difference is one optimizer step of G). Adam lr 1e-4 (G and D), betas (0.9, 0.99), eps 1e-8; EMA of G 0.999 is
what is validated and saved. Logged: l1, perceptual, gan (G), d_loss_real, d_loss_fake, d_real, d_fake (D's
mean sigmoid on real and fake), p_fake_g (mean sigmoid of D on SR during the G step).
Checkpoints: the resume state holds G, EMA of G, D and both optimizers (the trainer saves every network of a
task); `GANTrainer` also writes models/discriminator/epoch-NNN.keras after every epoch.
"""
import math
import os

import keras
from keras import ops

from losses.adversarial import gan_loss, mean_probability
from training.task import Task
from training.trainer import Trainer
from utils import UserError, atomic_path

ADAM = {"beta_1": 0.9, "beta_2": 0.99, "epsilon": 1e-8}  # BasicSR's Adam (Keras defaults: 0.999, 1e-7)


def basicsr_adam(learning_rate, boundaries=None, decay=0.5):
    from optimizer.schedules import make_schedule

    return keras.optimizers.Adam(learning_rate=make_schedule(learning_rate, boundaries, decay), **ADAM)


class GANTask(Task):
    """networks {"generator": G, "discriminator": D} (D None: pixel + perceptual only, Real-ESRNet)."""

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer=None, perceptual=None,
                 pixel_weight=1.0, perceptual_weight=1.0, gan_weight=0.1, usm_target=True, ema_decay=0.999):
        networks, optimizers = {"generator": generator}, {"generator": g_optimizer}
        if discriminator is not None:
            networks["discriminator"], optimizers["discriminator"] = discriminator, d_optimizer
        super().__init__(networks, optimizers, tuple(optimizers), {"generator": ema_decay} if ema_decay else None)
        self.perceptual = perceptual
        self.pixel_weight, self.perceptual_weight = float(pixel_weight), float(perceptual_weight)
        self.gan_weight, self.usm_target = float(gan_weight), bool(usm_target)
        self.save_discriminator = True  # GANTrainer saves D after every epoch (--no-save-discriminator: off)
        import losses

        self.loss = losses.make_loss("mae")  # what train.py's checkpoint saver compiles the generator with

    trainer_class = None  # set below: GANTrainer (train.py builds the task's trainer class when it has one)

    def _target(self, batch):
        if self.usm_target and "hr_usm" in batch:
            return batch["hr_usm"]
        return batch["hr"]

    def compute_losses(self, phase, batch, training=True):
        g = self.networks["generator"]
        d = self.networks.get("discriminator")
        if phase == "generator":
            sr = g(batch["lr"], training=training)[..., :3]
            target = ops.cast(self._target(batch), sr.dtype)
            terms = {"l1": ops.mean(ops.abs(sr - target)) / 255.0}
            total = self.pixel_weight * terms["l1"]
            if self.perceptual is not None and self.perceptual_weight > 0:
                terms["perceptual"] = self.perceptual(target, sr)
                total = total + self.perceptual_weight * terms["perceptual"]
            if d is not None:
                fake = d(sr, training=True)
                terms["gan"] = gan_loss(fake, True)
                terms["p_fake_g"] = ops.stop_gradient(mean_probability(fake))
                total = total + self.gan_weight * terms["gan"]
            return total, terms
        if phase == "discriminator":
            sr = ops.stop_gradient(g(batch["lr"], training=False)[..., :3])
            real = d(ops.cast(batch["hr"], sr.dtype), training=True)
            fake = d(sr, training=True)
            terms = {"d_loss_real": gan_loss(real, True), "d_loss_fake": gan_loss(fake, False)}
            terms["d_real"] = ops.stop_gradient(mean_probability(real))
            terms["d_fake"] = ops.stop_gradient(mean_probability(fake))
            return terms["d_loss_real"] + terms["d_loss_fake"], terms
        raise ValueError(f"unknown phase {phase!r}")


class GANTrainer(Trainer):
    """The trainer, plus the discriminator saved after every epoch (models/discriminator/epoch-NNN.keras)."""

    def _end_epoch(self, logs):
        d = self.task.networks.get("discriminator")
        if d is not None and self.task.save_discriminator and getattr(self, "chief", True):
            path = os.path.join(self.run_dir, "models", "discriminator", f"epoch-{self.epoch + 1:03d}.keras")
            with atomic_path(path) as tmp:
                d.save(tmp)
        return super()._end_epoch(logs)


GANTask.trainer_class = GANTrainer


def build_discriminator(config):
    """The config's discriminator (None for "none"), initialised from --pretrained-discriminator if given."""
    from model import build_discriminator as build

    name = config.get("discriminator", "none")
    if name in (None, "none"):
        return None
    d = build(name, num_feat=config.get("discriminator_filters") or 64)
    path = config.get("pretrained_discriminator")
    if path:
        load_discriminator_weights(d, path)
    return d


def load_discriminator_weights(d, path):
    """Weights into `d` from a .keras discriminator (same layer names and shapes) or a PyTorch .pth/.safetensors
    of A-ESRGAN / Real-ESRGAN (converted in memory by the safe reader)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"--pretrained-discriminator {path}: file not found")
    if path.lower().endswith((".pth", ".pt", ".safetensors")):
        from model.attention_unet import load_torch_state_dict
        from model.torch_weights import read_state_dict

        load_torch_state_dict(d, read_state_dict(path))
    else:
        from model import transfer_weights

        transfer_weights(d, path)


def build_perceptual(config):
    if not config.get("perceptual_weight"):
        return None
    from losses.perceptual import LAYER_WEIGHTS, PerceptualLoss
    from model.vgg19 import build_vgg19

    vgg = build_vgg19(list(LAYER_WEIGHTS), config.get("vgg_weights"), random_weights=bool(config.get("random_vgg")))
    return PerceptualLoss(vgg, LAYER_WEIGHTS)


def make_gan_task(config, generator):
    """The GANTask of a resolved train.py config (see training/gan_options.py)."""
    perceptual = build_perceptual(config)
    d = build_discriminator(config)
    boundaries, decay = config.get("lr_boundaries"), config.get("lr_decay", 0.5)
    g_opt = basicsr_adam(config["learning_rate"], boundaries, decay)
    d_opt = basicsr_adam(config.get("d_learning_rate") or config["learning_rate"], boundaries, decay) if d else None
    task = GANTask(generator, d, g_opt, d_opt, perceptual=perceptual, pixel_weight=config.get("pixel_weight", 1.0),
                   perceptual_weight=config.get("perceptual_weight", 0.0), gan_weight=config.get("gan_weight", 0.1),
                   usm_target=bool(config.get("usm_target")),
                   ema_decay=config["ema_decay"] if config.get("ema") else None)
    if d is not None and config.get("lr_patch"):
        from model.discriminator_layers import check_input_size

        hr = int(config["lr_patch"]) * int(config["scale"])
        check_input_size(d, (1, hr, hr, 3))  # a crop the D cannot take fails now, not in the first step
    task.save_discriminator = bool(config.get("save_discriminator", True))  # this run's, not every GANTrainer's
    return task


def describe_discriminator(config):
    """The discriminator's summary text for --print-model-summary (None without one)."""
    from model import describe

    d = build_discriminator(dict(config, pretrained_discriminator=None))
    if d is None:
        return None
    trainable = sum(math.prod(v.shape) for v in d.trainable_weights)
    return describe(d) + f"\nDiscriminator trainable parameters (PyTorch's count): {trainable:,}"
