"""THE declaration of every training option, all groups in one place (model, data, loss, optimizer, training,
devices, gan): plain data plus the per-value checks. training/config.py builds the parser, the resolver and
args.json from `OPTIONS`; no other module declares or changes an option. No Keras import here."""
import json
from dataclasses import dataclass
from typing import Any, Callable, Optional

from utils import UserError

DEFAULT_PROFILE = "wdsr-a-8"
DISCRIMINATOR_CHOICES = ("none", "attention-unet", "attention-unet-multiscale", "unet-sn")
TASKS = ("pixel", "realesrgan")
OPTIMIZERS = ("adam", "adamw")
# Where each option lives in a profile (plain data: {"arch", "model": {...}, "train": {...}}).
MODEL_KEYS = ("num_filters", "num_res_blocks", "res_expansion", "res_scaling", "weightnorm", "pred_logvar",
              "growth_channels")


# ---------------------------------------------------------------------------------------------------------
# Validators: value -> None, or a message completing "--option VALUE: ..."
# ---------------------------------------------------------------------------------------------------------
def positive(value):
    return None if value > 0 else "must be positive"


def non_negative(value):
    return None if value >= 0 else "must be >= 0"


def fraction(value):
    return None if 0 <= value < 1 else "must be in [0, 1)"


def increasing(values):
    values = list(values)
    if any(v < 0 for v in values):
        return "steps must be >= 0"
    if any(b <= a for a, b in zip(values, values[1:])):
        return "steps must increase"
    return None


def one_of(*allowed):
    def check(value):
        return None if value in allowed else f"choose one of {', '.join(map(str, allowed))}"

    return check


def degradation_options(value):
    """The Real-ESRGAN pipeline's overrides: known keys and valid values (degradations.make_config's checks)."""
    if value:
        from degradations import make_config  # numpy + OpenCV only; imported only when there are overrides

        try:
            make_config(value)
        except UserError as e:
            return str(e)
        except (TypeError, ValueError) as e:  # e.g. final_sinc_prob=abc: a string where a number belongs
            return f"a value is not of the expected type ({e})"
    return None


def _parse_value(text):
    """KEY=VALUE's value: JSON (numbers, lists, true/false/null) or else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _where(source):
    return "" if source in (None, "command line") else f" (from {source})"


@dataclass
class Option:
    """One training option.

    name: the key (args.json, profiles, builders); the flag is --name with dashes unless `flags` says otherwise.
    type: int, float, str, bool (kind "bool": --x / --no-x, so a profile's setting can be turned off), the
      element type of a list (kind "list", nargs="+") or dict (kind "dict": KEY=VALUE ... on the command line,
      merged over the profile's dict). default: the schema default (profiles override it when `profile`).
    group: help section (model, data, loss, optimizer, training, devices, gan).
    validator: value -> None or the reason it is wrong. path: made absolute in args.json.
    resume_ok: may be given together with --resume. record: stored in args.json. cli: on the command line.
    needs: (option, allowed values, what to give) when the option acts only in that setting: given on the command
      line outside it is an error, set by a profile outside it a warning.
    """

    name: str
    type: Any
    default: Any
    help: str
    group: str
    flags: tuple = ()
    kind: str = "value"
    choices: Optional[tuple] = None
    validator: Optional[Callable] = None
    profile: bool = False
    path: bool = False
    resume_ok: bool = False
    record: bool = True
    cli: bool = True
    metavar: Optional[str] = None
    needs: Optional[tuple] = None

    def __post_init__(self):
        if self.type is bool and self.kind == "value":
            self.kind = "bool"

    @property
    def flag(self):
        long = [f for f in self.flags if f.startswith("--")]
        return long[0] if long else "--" + self.name.replace("_", "-")

    def check(self, value, source):
        """UserError naming the option when `value` is invalid; returns the value (converted)."""
        if value is None:
            return None
        if self.kind == "dict":
            value = self._convert_dict(value, source)
        elif self.kind == "list":
            if not isinstance(value, (list, tuple)):
                value = [value]
            value = [self._convert(v, source) for v in value]
        else:
            value = self._convert(value, source)
        if self.choices is not None and value not in self.choices:  # (never a dict: no choices)
            raise UserError(f"{self.flag} {value}{_where(source)}: choose one of {', '.join(map(str, self.choices))}")
        if self.validator is not None:
            reason = self.validator(value)
            if reason:
                shown = " ".join(map(str, value)) if isinstance(value, list) else \
                    " ".join(f"{k}={json.dumps(v)}" for k, v in value.items()) if isinstance(value, dict) else value
                raise UserError(f"{self.flag} {shown}{_where(source)}: {reason}")
        return value

    def _convert_dict(self, value, source):
        if isinstance(value, (list, tuple)):  # the command line's KEY=VALUE words
            pairs = {}
            for word in value:
                key, sep, text = str(word).partition("=")
                if not sep or not key:
                    raise UserError(f"{self.flag} {word}{_where(source)}: expected KEY=VALUE (e.g. "
                                    f"{self.flag} final_sinc_prob=0.5 jpeg_range=[60,95])")
                pairs[key] = _parse_value(text)
            value = pairs
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UserError(f"{self.flag}{_where(source)}: expected a dict of options, got {value!r}")
        return dict(value)

    def _convert(self, value, source):
        if self.type is bool:
            if not isinstance(value, bool):
                raise UserError(f"{self.flag}{_where(source)}: expected true or false, got {value!r}")
            return value
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    self.type is int and isinstance(value, float) and not value.is_integer()):
                kind = "an integer" if self.type is int else "a number"
                raise UserError(f"{self.flag}{_where(source)}: expected {kind}, got {value!r}")
            if value != value:  # NaN passes every comparison a validator makes
                raise UserError(f"{self.flag} nan{_where(source)}: expected a number")
            if value in (float("inf"), float("-inf")):  # inf passes "positive" and trains into NaN
                raise UserError(f"{self.flag} {value}{_where(source)}: expected a finite number")
            return self.type(value)
        if self.type is str and not isinstance(value, str):
            raise UserError(f"{self.flag}{_where(source)}: expected a string, got {value!r}")
        return value


O = Option
_GAN = ("trainer_task", ("realesrgan",), "--trainer-task realesrgan (a realesrgan / aesrgan profile)")
_WITH_D = ("discriminator", DISCRIMINATOR_CHOICES[1:], "--discriminator (a realesrgan / aesrgan profile)")
_PERCEPTUAL = ("perceptual_weight", "positive", "--perceptual-weight above 0")
_DEGRADED = ("lr_transform", ("realesrgan",), "--lr-transform realesrgan")

MODEL = (
    O("profile", str, DEFAULT_PROFILE, "named profile from profiles.py: model + training hyper-parameters; "
      "every option below marked 'profile' defaults to its value", "model", flags=("-p", "--profile")),
    O("scale", int, 2, "super-resolution factor", "model", flags=("-s", "--scale"), validator=one_of(1, 2, 3, 4),
      profile=True),
    O("num_filters", int, None, "feature channels of the residual body", "model", validator=positive, profile=True),
    O("num_res_blocks", int, None, "number of residual blocks", "model", validator=positive, profile=True),
    O("res_expansion", int, None, "WDSR width expansion ratio r", "model", validator=positive, profile=True),
    O("res_scaling", float, None, "residual scaling inside each block (EDSR full uses 0.1; none = 1)", "model",
      validator=positive, profile=True),
    O("growth_channels", int, None, "RRDBNet dense-block growth channels", "model", validator=positive,
      profile=True),
    O("weightnorm", bool, None, "weight-normalised convolutions", "model", profile=True),
    O("num_init_batches", int, 0, "batches for weight norm's data-dependent initialisation (0 = off)", "model",
      validator=non_negative, profile=True),
    O("bicubic_init", bool, False, "WDSR only: start as bicubic interpolation (skip branch = bicubic kernel, "
      "main branch output zero) so short runs improve on interpolation from the first steps", "model"),
    O("pretrained_model", str, None, "initialise layers of the same name and shape from this .keras checkpoint "
      "(e.g. a x2 model for a x4 run: scale layers are left fresh)", "model", path=True, metavar="FILE"),
    O("pred_logvar", bool, False, "GRAM: also predict a per-pixel log-variance (6-channel output) and train "
      "with the heteroscedastic loss", "model", flags=("--pred-logvar", "--pred_logvar", "-plv"), profile=True),
    O("print_model_summary", bool, False, "print the Keras model summary and parameter count", "model",
      record=False),
    O("dry_run", bool, False, "build the model (and print it with --print-model-summary), then exit without "
      "touching any dataset", "model", record=False),
)

DATA = (
    O("dataset", str, "./DIV2K_BIN", "DIV2K-layout dataset (PNG or converted .npy), a benchmark folder "
      "(HR/ + LR_bicubic/), or with --lr-transform a folder of HR images", "data", flags=("-d", "--dataset"),
      path=True, metavar="DIR"),
    O("downgrade", str, "bicubic", "LR degradation of paired LR files: bicubic, unknown, bicubic_jpeg_90, ... "
      "(folder DIV2K_*_LR_<downgrade>)", "data"),
    O("lr_transform", str, "none", "make each LR crop from its HR crop on the fly instead of reading LR files: "
      "none (paired LR files), bicubic (MATLAB bicubic), realesrgan (the Real-ESRGAN degradation pipeline, "
      "--degradation); HR images only are needed", "data", choices=("none", "bicubic", "realesrgan"),
      profile=True),
    O("degradation", dict, {}, "Real-ESRGAN degradation options over its preset (--lr-transform realesrgan; "
      "names and defaults: docs/degradations.md), e.g. final_sinc_prob=0.5 jpeg_range=[60,95]; values are "
      "JSON, merged over the profile's", "data", kind="dict", validator=degradation_options, profile=True,
      metavar="KEY=VALUE", needs=_DEGRADED),
    O("realesrgan_crop", int, 0, "--lr-transform realesrgan: Real-ESRGAN's exact recipe with HR patches of "
      "this size (400): each is degraded whole, then a paired crop of scale x --lr-patch (GT) and --lr-patch "
      "(LR) is cut (256 / 64), flipped only (smaller images are reflect-padded); 0: the scale x --lr-patch "
      "patch itself is degraded (faster, approximate)", "data", validator=non_negative, profile=True,
      needs=_DEGRADED),
    O("training_images", str, "1-800", "image ids used for training", "data"),
    O("validation_images", str, "801-900", "image ids used for validation", "data"),
    O("lr_patch", int, 48, "LR patch size of training crops (HR patch = scale x this)", "data",
      validator=positive, profile=True),
    O("workers", int, 1, "threads preparing training batches ahead of the train step (0 = in the loop)",
      "data", validator=non_negative, resume_ok=True),
)

LOSS = (
    O("loss", str, "mae", "pixel loss of plain models", "loss", choices=("mae", "mse"), profile=True),
    O("pixel_weight", float, 1.0, "weight of the pixel (L1 / L2 or GRAM) term in the total loss: total = "
      "pixel-weight x pixel loss + the other terms' weights x theirs (BasicSR's pixel_opt loss_weight)", "loss",
      validator=positive, profile=True),
    O("loss_mode", str, "l2", "heteroscedastic loss: Laplace-like (l1) or Gaussian (l2) likelihood", "loss",
      flags=("--loss-mode", "--loss_mode"), choices=("l1", "l2")),
    O("attention", bool, False, "GRAM: multiply the heteroscedastic loss by the mask sigmoid(logvar)", "loss",
      flags=("--attention", "-att")),
    O("block_attention_gradient", bool, False, "GRAM: stop the gradient through the attention mask "
      "(gradient rescaling)", "loss", flags=("--block-attention-gradient", "--block_attention_gradient", "-bag")),
)

OPTIMIZER = (
    O("optimizer", str, "adam", "optimizer of every network", "optimizer", choices=OPTIMIZERS, profile=True),
    O("learning_rate", float, 1e-3, "initial learning rate (of the generator)", "optimizer", validator=positive,
      profile=True),
    O("beta_1", float, 0.9, "Adam's beta_1 (every network)", "optimizer", validator=fraction, profile=True),
    O("beta_2", float, 0.999, "Adam's beta_2 (every network; BasicSR's GAN recipes: 0.99)", "optimizer",
      validator=fraction, profile=True),
    O("epsilon", float, 1e-7, "Adam's epsilon (every network; Keras's default 1e-7, PyTorch's 1e-8)",
      "optimizer", validator=positive, profile=True),
    O("lr_boundaries", int, [200000], "optimizer steps at which the learning rate is multiplied by "
      "--learning-rate-decay", "optimizer", flags=("--learning-rate-step-size",), kind="list",
      validator=increasing, profile=True, metavar="STEP"),
    O("lr_decay", float, 0.5, "step decay factor of the learning rate", "optimizer",
      flags=("--learning-rate-decay",), validator=positive, profile=True),
    O("weight_decay", float, 0.0, "decoupled weight decay (adamw)", "optimizer", validator=non_negative,
      profile=True),
    O("clipnorm", float, None, "clip each gradient to this norm (none = no clipping)", "optimizer",
      validator=positive, profile=True),
    O("ema", bool, False, "keep an exponential moving average of the weights (validated and saved in the "
      "checkpoints)", "optimizer", profile=True),
    O("ema_decay", float, 0.999, "decay of the weight moving average (--ema)", "optimizer", validator=fraction,
      profile=True),
)

TRAINING = (
    O("outdir", str, "./output", "a timestamped run directory is created in here", "training",
      flags=("-o", "--outdir"), path=True, metavar="DIR"),
    O("epochs", int, 300, "number of epochs", "training", validator=positive, profile=True, resume_ok=True),
    O("steps_per_epoch", int, 1000, "training steps per epoch", "training", validator=positive, profile=True),
    O("batch_size", int, 16, "training batch size", "training", validator=positive, profile=True),
    O("validation_steps", int, 100, "number of fixed random validation crops scored after each epoch",
      "training", validator=positive),
    O("benchmark", bool, False, "validate on the full validation images after each epoch (slow for big "
      "models)", "training"),
    O("monitor", str, "psnr", "validation metric that names and selects checkpoints: psnr (RGB PSNR, the "
      "seed's) or any metric of metrics.registry (psnr_y, ssim_y, psnr_rgb, ssim_rgb, ...)", "training"),
    O("save_best_models_only", bool, False, "only save a checkpoint when the monitored metric improves",
      "training"),
    O("seed", int, 0, "random seed for weights, crops and augmentation", "training", validator=non_negative),
    O("jit_compile", bool, None, "XLA-compile the train step (the default is the fastest setting measured, "
      "training/speed.py, docs/speed.md)", "training"),
    O("resume", str, None, "continue an interrupted run; every option comes from RUN_DIR/args.json "
      "(only --epochs, to extend the run, and --workers may be given)", "training", metavar="RUN_DIR",
      record=False, resume_ok=True),
)

# The four launch options describe this process, not the run: not recorded in args.json, allowed with --resume
# (a run resumes on any device count). training/distribute.py reads them.
_LAUNCH = dict(group="devices", record=False, resume_ok=True)
DEVICES = (
    O("devices", str, None, "data-parallel devices of this process: a number or 'all' (GPUs, else CPU devices; "
      "JAX on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N); --batch-size is the global batch, "
      "split evenly over all devices of all processes (env SISR_DEVICES; default 1, with several processes all)",
      metavar="N|all", **_LAUNCH),
    O("coordinator", str, None, "several processes or hosts: HOST:PORT of process 0 (JAX); TensorFlow takes "
      "every worker's HOST:PORT comma-separated in process order, or TF_CONFIG (env SISR_COORDINATOR; "
      "torchrun's MASTER_ADDR:MASTER_PORT)", metavar="HOST:PORT", **_LAUNCH),
    O("num_processes", int, None, "number of processes of the job, one per host or per GPU "
      "(env SISR_NUM_PROCESSES, WORLD_SIZE, SLURM_NTASKS)", validator=positive, **_LAUNCH),
    O("process_id", int, None, "index of this process, 0 = chief: it alone validates, saves checkpoints and "
      "logs (env SISR_PROCESS_ID, RANK, SLURM_PROCID)", validator=non_negative, **_LAUNCH),
    O("mixed_precision", str, "none", "compute in bfloat16 (bf16) or float16 (fp16, with dynamic loss scaling "
      "of every network's optimizer) with float32 weights; output layers, losses and metrics stay float32",
      "devices", choices=("none", "bf16", "fp16")),
)

# Real-ESRNet / Real-ESRGAN / A-ESRGAN training (training/gan.py). `--trainer-task realesrgan` selects it (the
# realesrnet-x4 / realesrgan-x4 / aesrgan-x4 / aesrgan-multi-x4 profiles set it); `--discriminator none` is
# Real-ESRNet's pixel-only stage with the same optimizer and EMA.
GAN = (
    O("trainer_task", str, "pixel", "what is trained: pixel (a pixel / GRAM loss) or realesrgan (BasicSR's "
      "Real-ESRNet / Real-ESRGAN / A-ESRGAN recipe: L1 + perceptual + GAN, EMA generator)", "gan", choices=TASKS,
      profile=True),
    O("discriminator", str, "none", "discriminator of --trainer-task realesrgan (none = L1/perceptual only)",
      "gan", choices=DISCRIMINATOR_CHOICES, profile=True, needs=_GAN),
    O("discriminator_filters", int, 64, "discriminator width num_feat", "gan", validator=positive, profile=True,
      needs=_WITH_D),
    O("pretrained_discriminator", str, None, "initialise the discriminator from a .keras discriminator or an "
      "A-ESRGAN / Real-ESRGAN PyTorch .pth (read without unpickling code)", "gan", path=True, metavar="FILE",
      needs=_WITH_D),
    O("d_learning_rate", float, None, "discriminator learning rate (default: --learning-rate)", "gan",
      validator=positive, profile=True, needs=_WITH_D),
    O("gan_weight", float, 0.1, "weight of the generator's GAN loss (summed over discriminator scales)", "gan",
      validator=non_negative, profile=True, needs=_WITH_D),
    O("perceptual_weight", float, 0.0, "weight of the VGG19 perceptual loss (0 = off)", "gan",
      validator=non_negative, profile=True, needs=_GAN),
    O("vgg_weights", str, None, "ImageNet VGG19 weights for the perceptual loss: torchvision's "
      "vgg19-dcbb9e9d.pth or Keras's vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (never downloaded)",
      "gan", path=True, metavar="FILE", needs=_PERCEPTUAL),
    O("random_vgg", bool, False, "untrained VGG19 for the perceptual loss (tests and timing only)", "gan",
      needs=_PERCEPTUAL),
    O("usm_target", bool, False, "L1 and perceptual losses against the unsharp-masked GT (Real-ESRGAN's "
      "l1_gt_usm / percep_gt_usm; needs --lr-transform realesrgan, which makes hr_usm)", "gan", profile=True,
      needs=_GAN),
    O("save_discriminator", bool, True, "also save the discriminator after every epoch "
      "(models/discriminator/epoch-NNN.keras: for fine-tuning and the attention-map grid)", "gan",
      needs=_WITH_D),
)

GROUPS = {"model": "model", "data": "data", "loss": "loss terms", "optimizer": "optimizer, schedule and EMA",
          "training": "training", "devices": "devices and precision", "gan": "gan"}

OPTIONS = {o.name: o for group in (MODEL, DATA, LOSS, OPTIMIZER, TRAINING, DEVICES, GAN) for o in group}
