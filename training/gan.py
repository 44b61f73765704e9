"""Real-ESRNet / Real-ESRGAN / A-ESRGAN training as a `Task` of the trainer (BasicSR's RealESRGANModel step).

Each step (phases "generator" then "discriminator"), ONE generator forward:
1. G: SR = G(lr); l1 = mean|SR - T| (images in [0, 1], as BasicSR) + perceptual(T, SR) (VGG19 before ReLU,
   0.1/0.1/1/1/1) + gan_weight * sum over D outputs of BCE(D(SR), 1); T = the unsharp-masked GT with --usm-target
   (Real-ESRGAN's l1_gt_usm / percep_gt_usm: the pipeline's `hr_usm`, or, for paired batches, the GT sharpened
   in the step as realesrgan_model.py's feed_data does), else `hr`. The phase hands SR on (computed before G's
   update).
2. D: sum over outputs of BCE(D(hr), 1) + BCE(D(SR), 0) on the plain GT (gan_gt_usm False), SR the G phase's
   under stop_gradient (BasicSR's `self.output.detach()`).
Every D pass runs in training mode (BatchNorm batch statistics, one spectral-norm power iteration), in BasicSR's
order: D(fake) in the G phase, D(real) then D(fake) in the D phase. Optimizers come from the one factory
(optimizer.make_optimizer(config, network)); the profiles give BasicSR's Adam (0.9, 0.99), eps 1e-8, lr 1e-4.
Logged: l1, perceptual, gan (G), d_loss_real, d_loss_fake, d_real, d_fake (D's mean sigmoid on real and fake),
p_fake_g (mean sigmoid of D on SR during the G step).
Checkpoints: the resume state holds G, EMA of G, D and both optimizers (the trainer saves every network of a
task); `GANTrainer` also writes models/discriminator/epoch-NNN.keras after every epoch.
"""
import math
import os

from keras import ops

from losses.adversarial import gan_loss, mean_probability
from losses.usm import usm_sharp
from training.task import Task
from training.trainer import Trainer
from utils import UserError, atomic_path


class GANTask(Task):
    """networks {"generator": G, "discriminator": D} (D None: pixel + perceptual only, Real-ESRNet).

    The weights' defaults are the option schema's (--pixel-weight 1, --perceptual-weight 0, --gan-weight 0.1,
    --usm-target off); the profiles set BasicSR's (tests/test_gan.py checks both)."""

    eager_first_steps = 2  # its first steps do not wait for the long trace of G + D + VGG19 (training/backend.py)

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer=None, perceptual=None,
                 pixel_weight=1.0, perceptual_weight=0.0, gan_weight=0.1, usm_target=False, ema_decay=None):
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

    def target(self, batch):
        """The L1 / perceptual target: the sharpened GT with usm_target (the batch's, else made here), else hr."""
        if not self.usm_target:
            return batch["hr"]
        return batch["hr_usm"] if "hr_usm" in batch else usm_sharp(batch["hr"])

    def compute_losses(self, phase, batch, training=True):
        """One phase on its own (outside a training step the D phase runs G itself, in inference mode)."""
        total, terms, _ = self.phase_losses(phase, batch, {})
        return total, terms

    def phase_losses(self, phase, batch, carry):
        g = self.networks["generator"]
        d = self.networks.get("discriminator")
        if phase == "generator":
            sr = g(batch["lr"], training=True)[..., :3]
            target = ops.cast(self.target(batch), sr.dtype)
            terms = {"l1": ops.mean(ops.abs(sr - target)) / 255.0}
            total = self.pixel_weight * terms["l1"]
            if self.perceptual is not None and self.perceptual_weight > 0:
                terms["perceptual"] = self.perceptual(target, sr)
                total = total + self.perceptual_weight * terms["perceptual"]
            if d is None:
                return total, terms, {}
            fake = d(sr, training=True)
            terms["gan"] = gan_loss(fake, True)
            terms["p_fake_g"] = ops.stop_gradient(mean_probability(fake))
            return total + self.gan_weight * terms["gan"], terms, {"sr": sr}
        if phase == "discriminator":
            sr = carry.get("sr")
            if sr is None:
                sr = ops.stop_gradient(g(batch["lr"], training=False)[..., :3])
            real = d(ops.cast(batch["hr"], sr.dtype), training=True)
            fake = d(sr, training=True)
            terms = {"d_loss_real": gan_loss(real, True), "d_loss_fake": gan_loss(fake, False)}
            terms["d_real"] = ops.stop_gradient(mean_probability(real))
            terms["d_fake"] = ops.stop_gradient(mean_probability(fake))
            return terms["d_loss_real"] + terms["d_loss_fake"], terms, {}
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
    from model import load_discriminator

    load_discriminator(path, into=d, label="--pretrained-discriminator")


def build_perceptual(config):
    if not config.get("perceptual_weight"):
        return None
    from losses.perceptual import LAYER_WEIGHTS, PerceptualLoss
    from model.convert.vgg19 import build_vgg19

    vgg = build_vgg19(list(LAYER_WEIGHTS), config.get("vgg_weights"), random_weights=bool(config.get("random_vgg")))
    return PerceptualLoss(vgg, LAYER_WEIGHTS)


def make_gan_task(config, generator):
    """The GANTask of a resolved train.py config (its options: group "gan" of training/options.py)."""
    from optimizer import make_optimizer

    perceptual = build_perceptual(config)
    d = build_discriminator(config)
    g_opt = make_optimizer(config, "generator")
    d_opt = make_optimizer(config, "discriminator") if d is not None else None
    task = GANTask(generator, d, g_opt, d_opt, perceptual=perceptual, pixel_weight=config["pixel_weight"],
                   perceptual_weight=config["perceptual_weight"], gan_weight=config["gan_weight"],
                   usm_target=bool(config["usm_target"]), ema_decay=config["ema_decay"] if config["ema"] else None)
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
