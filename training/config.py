"""THE configuration of training: one schema (training/options.py declares every option), one resolver.

From `OPTIONS` come the argparse parser (`build_parser`, with the profile's real defaults in --help and the
list of profiles), the validation of profiles (`check_profiles`: profiles.py is plain data; an unknown key is
an error), the resolved run configuration (`resolve`: schema default < profile < command line, then every value
checked), args.json (`write_args` / `read_args`, paths absolute) and the builders' arguments (`model_params`,
`optimizer_params`). Adding an option is one `Option(...)` line in training/options.py.

No Keras import here: parsing and checking the command line must be fast and happen before TensorFlow starts.
"""
import argparse
import json
import os
import sys

import profiles
from training.options import (DEFAULT_PROFILE, GROUPS, MODEL_KEYS, OPTIONS, Option, fraction,  # noqa: F401
                              increasing, non_negative, one_of, positive)
from utils import UserError, atomic_path


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


def check_profiles():
    """ValueError naming the profile and key when any profile is not valid data for the schema."""
    for name, profile in profiles.PROFILES.items():
        check_profile(name, profile)


def flat_profile(name):
    """A profile as one flat dict {option: value} (plus "arch")."""
    p = profiles.PROFILES[name]
    return {"arch": p["arch"], **p["model"], **p["train"]}


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line `error: ...`, exit 2 (utils.run_cli), not usage + message
        raise UserError(f"{message} (see --help)")


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
    shown_profile = _profile_from_argv(argv) if argv is not None else DEFAULT_PROFILE
    if shown_profile not in profiles.PROFILES:
        shown_profile = DEFAULT_PROFILE
    flat = flat_profile(shown_profile) if shown_profile in profiles.PROFILES else {}
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
        elif option.name == "profile" or option.kind == "bool" and option.default is False:
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
        if option.kind == "bool":  # --x and --no-x: a profile's setting can be turned off
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
    return {k: v for k, v in items if v is not None}


def resolve(overrides):
    """The flat run configuration: schema defaults < the profile < `overrides` (None = not given); every value
    checked (UserError naming the option). Keys: every recorded option plus "arch" and "model_params"."""
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
    _check_needs(config, overrides, name, profile)
    crop = config.get("realesrgan_crop")
    if crop and config["lr_transform"] == "realesrgan" and (crop % config["scale"] or
                                                            crop < config["scale"] * config["lr_patch"]):
        raise UserError(f"--realesrgan-crop {crop}: must be a multiple of the scale {config['scale']} and at least "
                        f"scale x --lr-patch = {config['scale'] * config['lr_patch']}")
    for key, option in OPTIONS.items():
        if option.path and config.get(key):
            config[key] = os.path.abspath(os.path.expanduser(config[key]))
    return config


def _acts(config, needs):
    key, allowed, _ = needs
    value = config.get(key)
    return bool(value) and value > 0 if allowed == "positive" else value in allowed


def _check_needs(config, overrides, name, profile):
    """An option that cannot act in the resolved setting: an error when given on the command line (unless it
    only restates the schema default, e.g. --no-usm-target), a warning when the profile sets it."""
    for key, option in OPTIONS.items():
        if option.needs is None or _acts(config, option.needs):
            continue
        if key in overrides and config[key] != option.default:
            raise UserError(f"{option.flag} {_show(config[key])} has no effect here: it needs {option.needs[2]}")
        if key not in overrides and (key in profile["train"] or key in profile["model"]) \
                and config[key] != option.default:
            print(f"warning: profile {name} sets {option.flag} {_show(config[key])}, which is off without "
                  f"{option.needs[2]}", file=sys.stderr)


def model_params(config):
    """build_model keyword arguments of a resolved config (the profile's model keys + pred_logvar)."""
    keys = list(config.get("model_params") or model_keys())
    if "pred_logvar" not in keys:
        keys.append("pred_logvar")
    return {k: config[k] for k in keys if config.get(k) is not None}


def optimizer_params(config, network="generator"):
    """optimizer.make_optimizer keyword arguments of a resolved config for one network (the factory's own
    mapping: optimizer.optimizer_params; imported here only when called, so this module stays free of Keras)."""
    from optimizer import optimizer_params as params

    return params(config, network)


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
    if not isinstance(stored, dict) or "profile" not in stored:  # e.g. an empty file: not the run's options
        raise UserError(f"cannot resume {run_dir}: {path} is incomplete (no profile); start a new run")
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


def build_from_profile(profile, scale, **overrides):
    """(model, config) of a profile at `scale` with model/training overrides (None = not given): `resolve`
    then model.build_model. What --dry-run builds; tests use it."""
    from model import build_model

    config = resolve({**overrides, "profile": profile, "scale": int(scale)})
    return build_model(config["arch"], config["scale"], **model_params(config)), config
