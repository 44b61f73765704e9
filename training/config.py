"""THE configuration schema of training: every option declared once.

From `OPTIONS` come the argparse parser (`build_parser`, with the profile's real defaults in --help and the
list of profiles), the validation of profiles (profiles.py is plain data; an unknown key is an error), the
resolved run configuration (`resolve`: schema default < profile < command line, then every value checked),
args.json (`write_args` / `read_args`, paths absolute) and the builders' arguments (`model_params`,
`optimizer_params`). Adding an option is one `add_option(Option(...))` (training/distribute.py adds the device
options this way).

No Keras import here: parsing and checking the command line must be fast and happen before TensorFlow starts.
"""
import argparse
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from utils import UserError, atomic_path

DEFAULT_PROFILE = "wdsr-a-8"


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


def degradation_options(value):
    """The Real-ESRGAN pipeline's overrides: known keys and valid values (degradations.make_config's checks)."""
    if value:
        from degradations import make_config  # numpy + OpenCV only; imported only when there are overrides

        try:
            make_config(value)
        except UserError as e:
            return str(e)
    return None


def _parse_value(text):
    """KEY=VALUE's value: JSON (numbers, lists, true/false/null) or else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def one_of(*allowed):
    def check(value):
        return None if value in allowed else f"choose one of {', '.join(map(str, allowed))}"

    return check


@dataclass
class Option:
    """One training option.

    name: the key (args.json, profiles, builders); the flag is --name with dashes unless `flags` says otherwise.
    type: int, float, str, bool (kind "flag": store_true; kind "bool": --x/--no-x), the element type of a
      list (kind "list", nargs="+") or dict (kind "dict": KEY=VALUE ... on the command line, merged over the
      profile's dict). default: the schema default (profiles override it when `profile`).
    group: help section (model, data, loss, optimizer, training, run, devices).
    validator: value -> None or the reason it is wrong. path: made absolute in args.json.
    resume_ok: may be given together with --resume. record: stored in args.json. cli: on the command line.
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
                    _show(value) if isinstance(value, dict) else value
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
                raise UserError(f"{self.flag}{_where(source)}: expected {'an integer' if self.type is int else 'a number'},"
                                f" got {value!r}")
            return self.type(value)
        if self.type is str and not isinstance(value, str):
            raise UserError(f"{self.flag}{_where(source)}: expected a string, got {value!r}")
        return value


def _where(source):
    return "" if source in (None, "command line") else f" (from {source})"


OPTIONS = {}


def add_option(option):
    """Declare an option (replacing one of the same name); returns it."""
    OPTIONS[option.name] = option
    return option


def _declare():
    O, add = Option, add_option
    # model
    add(O("profile", str, DEFAULT_PROFILE, "named profile from profiles.py: model + training hyper-parameters; "
          "every option below marked 'profile' defaults to its value", "model", flags=("-p", "--profile")))
    add(O("scale", int, 2, "super-resolution factor", "model", flags=("-s", "--scale"), validator=one_of(1, 2, 3, 4)))
    add(O("num_filters", int, None, "feature channels of the residual body", "model", validator=positive, profile=True))
    add(O("num_res_blocks", int, None, "number of residual blocks", "model", validator=positive, profile=True))
    add(O("res_expansion", int, None, "WDSR width expansion ratio r", "model", validator=positive, profile=True))
    add(O("res_scaling", float, None, "residual scaling inside each block (EDSR full uses 0.1; none = 1)", "model",
          validator=positive, profile=True))
    add(O("growth_channels", int, None, "RRDBNet dense-block growth channels", "model", validator=positive,
          profile=True))
    add(O("weightnorm", bool, None, "weight-normalised convolutions", "model", kind="bool", profile=True))
    add(O("num_init_batches", int, 0, "batches for weight norm's data-dependent initialisation (0 = off)", "model",
          validator=non_negative, profile=True))
    add(O("bicubic_init", bool, False, "WDSR only: start as bicubic interpolation (skip branch = bicubic kernel, "
          "main branch output zero) so short runs improve on interpolation from the first steps", "model",
          kind="flag"))
    add(O("pretrained_model", str, None, "initialise layers of the same name and shape from this .keras checkpoint "
          "(e.g. a x2 model for a x4 run: scale layers are left fresh)", "model", path=True, metavar="FILE"))
    add(O("pred_logvar", bool, False, "GRAM: also predict a per-pixel log-variance (6-channel output) and train "
          "with the heteroscedastic loss", "model", flags=("--pred-logvar", "--pred_logvar", "-plv"), kind="flag",
          profile=True))
    add(O("print_model_summary", bool, False, "print the Keras model summary and parameter count", "model",
          kind="flag", record=False))
    add(O("dry_run", bool, False, "build the model (and print it with --print-model-summary), then exit without "
          "touching any dataset", "model", kind="flag", record=False))
    # data
    add(O("dataset", str, "./DIV2K_BIN", "DIV2K-layout dataset (PNG or converted .npy), a benchmark folder "
          "(HR/ + LR_bicubic/), or with --lr-transform a folder of HR images", "data", flags=("-d", "--dataset"),
          path=True, metavar="DIR"))
    add(O("downgrade", str, "bicubic", "LR degradation of paired LR files: bicubic, unknown, bicubic_jpeg_90, ... "
          "(folder DIV2K_*_LR_<downgrade>)", "data"))
    add(O("lr_transform", str, "none", "make each LR crop from its HR crop on the fly instead of reading LR files: "
          "none (paired LR files), bicubic (MATLAB bicubic), realesrgan (the Real-ESRGAN degradation pipeline, "
          "--degradation); HR images only are needed", "data",
          choices=("none", "bicubic", "realesrgan")))
    add(O("degradation", dict, {}, "Real-ESRGAN degradation options over its preset (--lr-transform realesrgan; "
          "names and defaults: docs/degradations.md), e.g. final_sinc_prob=0.5 jpeg_range=[60,95]; values are "
          "JSON, merged over the profile's", "data", kind="dict", validator=degradation_options, profile=True,
          metavar="KEY=VALUE"))
    add(O("realesrgan_crop", int, 0, "--lr-transform realesrgan: Real-ESRGAN's exact recipe with HR patches of "
          "this size (400): each is degraded whole, then a paired crop of scale x --lr-patch (GT) and --lr-patch "
          "(LR) is cut (256 / 64), flipped only (smaller images are reflect-padded); 0: the scale x --lr-patch "
          "patch itself is degraded (faster, approximate)", "data", validator=non_negative, profile=True))
    add(O("training_images", str, "1-800", "image ids used for training", "data"))
    add(O("validation_images", str, "801-900", "image ids used for validation", "data"))
    add(O("lr_patch", int, 48, "LR patch size of training crops (HR patch = scale x this)", "data",
          validator=positive, profile=True))
    add(O("workers", int, 1, "threads preparing training batches ahead of the train step (0 = in the loop)",
          "data", validator=non_negative, resume_ok=True))
    # loss
    add(O("loss", str, "mae", "pixel loss of plain models", "loss", choices=("mae", "mse"), profile=True))
    add(O("pixel_weight", float, 1.0, "weight of the pixel (or GRAM) loss term", "loss", validator=positive,
          profile=True))
    add(O("loss_mode", str, "l2", "heteroscedastic loss: Laplace-like (l1) or Gaussian (l2) likelihood", "loss",
          flags=("--loss-mode", "--loss_mode"), choices=("l1", "l2")))
    add(O("attention", bool, False, "GRAM: multiply the heteroscedastic loss by the mask sigmoid(logvar)", "loss",
          flags=("--attention", "-att"), kind="flag"))
    add(O("block_attention_gradient", bool, False, "GRAM: stop the gradient through the attention mask "
          "(gradient rescaling)", "loss", flags=("--block-attention-gradient", "--block_attention_gradient", "-bag"),
          kind="flag"))
    # optimizer
    add(O("optimizer", str, "adam", "optimizer", "optimizer", choices=("adam", "adamw"), profile=True))
    add(O("learning_rate", float, 1e-3, "initial learning rate", "optimizer", validator=positive, profile=True))
    add(O("lr_boundaries", int, [200000], "optimizer steps at which the learning rate is multiplied by "
          "--learning-rate-decay", "optimizer", flags=("--learning-rate-step-size",), kind="list",
          validator=increasing, profile=True, metavar="STEP"))
    add(O("lr_decay", float, 0.5, "step decay factor of the learning rate", "optimizer",
          flags=("--learning-rate-decay",), validator=positive, profile=True))
    add(O("weight_decay", float, 0.0, "decoupled weight decay (adamw)", "optimizer", validator=non_negative,
          profile=True))
    add(O("clipnorm", float, None, "clip each gradient to this norm (none = no clipping)", "optimizer",
          validator=positive, profile=True))
    add(O("ema", bool, False, "keep an exponential moving average of the weights (validated and saved in the "
          "checkpoints)", "optimizer", kind="flag", profile=True))
    add(O("ema_decay", float, 0.999, "decay of the weight moving average (--ema)", "optimizer", validator=fraction,
          profile=True))
    # training
    add(O("outdir", str, "./output", "a timestamped run directory is created in here", "training",
          flags=("-o", "--outdir"), path=True, metavar="DIR"))
    add(O("epochs", int, 300, "number of epochs", "training", validator=positive, profile=True, resume_ok=True))
    add(O("steps_per_epoch", int, 1000, "training steps per epoch", "training", validator=positive, profile=True))
    add(O("batch_size", int, 16, "training batch size", "training", validator=positive, profile=True))
    add(O("validation_steps", int, 100, "number of fixed random validation crops scored after each epoch",
          "training", validator=positive))
    add(O("benchmark", bool, False, "validate on the full validation images after each epoch (slow for big "
          "models)", "training", kind="flag"))
    add(O("monitor", str, "psnr", "validation metric that names and selects checkpoints: psnr (RGB PSNR, the "
          "seed's) or any metric of metrics.registry (psnr_y, ssim_y, psnr_rgb, ssim_rgb, ...)", "training"))
    add(O("save_best_models_only", bool, False, "only save a checkpoint when the monitored metric improves",
          "training", kind="flag"))
    add(O("seed", int, 0, "random seed for weights, crops and augmentation", "training"))
    add(O("jit_compile", bool, None, "XLA-compile the train step (the default is the fastest setting measured, "
          "training/speed.py, docs/speed.md)", "training", kind="bool"))
    add(O("resume", str, None, "continue an interrupted run; every option comes from RUN_DIR/args.json "
          "(only --epochs, to extend the run, and --workers may be given)", "training", metavar="RUN_DIR",
          record=False, resume_ok=True))


_declare()
from training import distribute as _distribute  # noqa: E402,F401  declares the "devices" group (no Keras import)
from training import gan_options as _gan_options  # noqa: E402,F401  declares the "gan" group (H5; no Keras)

# Where each option lives in a profile (plain data: {"arch", "model": {...}, "train": {...}}).
MODEL_KEYS = ("num_filters", "num_res_blocks", "res_expansion", "res_scaling", "weightnorm", "pred_logvar",
              "growth_channels")


def model_keys():
    return tuple(k for k in MODEL_KEYS if k in OPTIONS)


def check_profile(name, profile):
    """ValueError for a profile that is not valid data for the schema (unknown key, wrong type, bad value)."""
    if set(profile) != {"arch", "model", "train"}:
        raise ValueError(f"profile {name}: expected keys arch, model, train; got {', '.join(sorted(profile))}")
    for section in ("model", "train"):
        for key, value in profile[section].items():
            option = OPTIONS.get(key)
            if option is None or not option.profile or (section == "model") != (key in MODEL_KEYS):
                raise ValueError(f"profile {name}: unknown {section} key {key!r}")
            try:
                option.check(value, f"profile {name}")
            except UserError as e:
                raise ValueError(str(e)) from None


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line `error: ...`, exit 2 (utils.run_cli), not usage + message
        raise UserError(f"{message} (see --help)")


GROUPS = {"model": "model", "data": "data", "loss": "loss terms", "optimizer": "optimizer, schedule and EMA",
          "training": "training", "devices": "devices and precision"}


def _profile_from_argv(argv):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-p", "--profile", default=DEFAULT_PROFILE)
    known, _ = pre.parse_known_args(argv)
    return known.profile


def _show(value):
    if isinstance(value, dict):
        return " ".join(f"{k}={json.dumps(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return " ".join(map(str, value))
    if value is None:
        return "none"
    return str(value)


def build_parser(argv=None):
    """The train.py parser. Every value defaults to None (= not given), so `given(args)` sees what the user
    typed; the help text shows the real default: the profile's value (of -p in argv, else the default profile)
    or the schema's."""
    import profiles

    shown_profile = _profile_from_argv(argv) if argv is not None else DEFAULT_PROFILE
    if shown_profile not in profiles.PROFILES:
        shown_profile = DEFAULT_PROFILE
    flat = profiles.flat(shown_profile) if shown_profile in profiles.PROFILES else {}
    lines = [f"  {name:<14} {p['arch']:<10} " + ", ".join(f"{k}={_show(v)}" for k, v in p["model"].items()
                                                          if v is not None)
             for name, p in profiles.PROFILES.items()]
    p = _Parser(
        description="Train a super-resolution model. A profile sets the model and training hyper-parameters; "
                    "every option given here overrides it. Defaults below marked 'profile' are those of "
                    f"{shown_profile} (use -p NAME --help for another). Profiles:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {}
    for option in OPTIONS.values():
        if not option.cli:
            continue
        g = groups.get(option.group) or groups.setdefault(option.group,
                                                         p.add_argument_group(GROUPS.get(option.group, option.group)))
        if option.profile and option.name in flat:
            default = f"profile {shown_profile}: {_show(flat[option.name])}"
        elif option.name == "profile" or option.kind == "flag" and option.default is False:
            default = None
        else:
            default = f"default: {_show(option.default)}" if option.default is not None else None
        if option.name == "jit_compile":
            from training.speed import DEFAULT_JIT

            default = "default: " + ", ".join(f"{'on' if on else 'off'} for {b}" for b, on in DEFAULT_JIT.items())
        help_text = option.help + (f" ({default})" if default else "")
        if option.name == "profile":
            help_text += f" (default: {DEFAULT_PROFILE})"
        help_text = help_text.replace("%", "%%")
        flags = list(option.flags) if option.flags else [option.flag]
        kw = dict(dest=option.name, default=None, help=help_text)
        metavar = option.metavar or {int: "N", float: "X"}.get(option.type)
        if option.kind == "flag":
            g.add_argument(*flags, action="store_true", **kw)
        elif option.kind == "bool":
            g.add_argument(*flags, action=argparse.BooleanOptionalAction, **kw)
        elif option.kind == "list":
            g.add_argument(*flags, type=option.type, nargs="+", metavar=metavar, **kw)
        elif option.kind == "dict":
            g.add_argument(*flags, nargs="+", metavar=metavar, **kw)
        else:
            g.add_argument(*flags, type=option.type, choices=option.choices,
                           metavar=None if option.choices else metavar, **kw)
    return p


def given(args):
    """{name: value} of the options given on the command line (argparse Namespace or dict)."""
    items = vars(args).items() if isinstance(args, argparse.Namespace) else dict(args).items()
    return {k: v for k, v in items if v is not None and not (OPTIONS.get(k) and OPTIONS[k].kind == "flag"
                                                              and v is False)}


def resolve(overrides):
    """The flat run configuration: schema defaults < the profile < `overrides` (None = not given); every value
    checked (UserError naming the option). Keys: every recorded option plus "arch" and "model_params"."""
    import profiles

    overrides = given(overrides)
    unknown = sorted(set(overrides) - set(OPTIONS))
    if unknown:
        raise UserError(f"unknown option {unknown[0]!r}; see train.py --help")
    name = overrides.get("profile", DEFAULT_PROFILE)
    if name not in profiles.PROFILES:
        raise UserError(f"unknown profile {name!r}; choose one of {', '.join(profiles.PROFILES)}")
    profile = profiles.PROFILES[name]
    check_profile(name, profile)
    config = {k: o.default for k, o in OPTIONS.items()}
    config.update(profile["model"])
    config.update(profile["train"])
    for key, value in overrides.items():
        if key in MODEL_KEYS and key not in profile["model"] and key != "pred_logvar":
            raise UserError(f"profile {name} ({profile['arch']}) has no {OPTIONS[key].flag} option")
        value = OPTIONS[key].check(value, "command line")
        if OPTIONS[key].kind == "dict":  # KEY=VALUE words add to (or change) the profile's entries
            value = OPTIONS[key].check({**(config[key] or {}), **value}, "command line")
        config[key] = value
    for key, option in OPTIONS.items():
        if key not in overrides:
            config[key] = option.check(config[key], f"profile {name}" if key in profile["train"] or
                                       key in profile["model"] else "default")
    config["arch"] = profile["arch"]
    config["model_params"] = sorted(profile["model"])
    if not config["pred_logvar"] and (config["attention"] or config["block_attention_gradient"]):
        raise UserError("--attention and --block_attention_gradient need --pred_logvar")
    if config["block_attention_gradient"] and not config["attention"]:
        raise UserError("--block_attention_gradient needs --attention")
    crop = config.get("realesrgan_crop")
    if crop and config["lr_transform"] == "realesrgan" and (crop % config["scale"] or
                                                            crop < config["scale"] * config["lr_patch"]):
        raise UserError(f"--realesrgan-crop {crop}: must be a multiple of the scale {config['scale']} and at least "
                        f"scale x --lr-patch = {config['scale'] * config['lr_patch']}")
    for key, option in OPTIONS.items():
        if option.path and config.get(key):
            config[key] = os.path.abspath(os.path.expanduser(config[key]))
    return config


def model_params(config):
    """build_model keyword arguments of a resolved config (the profile's model keys + pred_logvar)."""
    keys = list(config.get("model_params") or model_keys())
    if "pred_logvar" not in keys:
        keys.append("pred_logvar")
    return {k: config[k] for k in keys if config.get(k) is not None}


def optimizer_params(config):
    """optimizer.make_optimizer keyword arguments of a resolved config."""
    return {"name": config["optimizer"], "learning_rate": config["learning_rate"],
            "boundaries": config["lr_boundaries"], "decay": config["lr_decay"],
            "weight_decay": config["weight_decay"], "clipnorm": config["clipnorm"]}


def record(config):
    """What args.json holds: the recorded options plus arch/model_params/loss mode."""
    return {k: v for k, v in config.items() if k not in OPTIONS or OPTIONS[k].record}


def write_args(run_dir, config):
    data = record(config)
    with atomic_path(os.path.join(run_dir, "args.txt")) as tmp, open(tmp, "w") as f:
        for k in sorted(data):
            f.write(f"{k}={data[k]}\n")
    with atomic_path(os.path.join(run_dir, "args.json")) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)


def read_args(run_dir):
    """args.json of a run directory, with options added to the schema since filled in by their defaults."""
    path = os.path.join(run_dir, "args.json")
    try:
        with open(path) as f:
            stored = json.load(f)
    except FileNotFoundError:
        raise UserError(f"cannot resume {run_dir}: {path} is missing (not a train.py run directory)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot resume {run_dir}: corrupt {path} ({e}); start a new run") from None
    config = {k: o.default for k, o in OPTIONS.items() if o.record}
    config.update(stored)
    return config


def check_resume(args):
    """UserError when --resume is combined with an option other than --epochs / --workers, or is not a dir."""
    run_dir = args["resume"] if isinstance(args, dict) else args.resume
    extra = [k for k in given(args) if not OPTIONS[k].resume_ok]
    if extra:
        raise UserError(f"{OPTIONS[extra[0]].flag} cannot be given with --resume: the run's options come from "
                        f"{os.path.join(run_dir, 'args.json')} (only --epochs and --workers may be given)")
    if os.path.isfile(run_dir):
        raise UserError(f"--resume {run_dir} is a file; give the run directory (the folder holding args.json "
                        f"and state.json)")
    if not os.path.isdir(run_dir):
        raise UserError(f"--resume {run_dir}: run directory not found")
