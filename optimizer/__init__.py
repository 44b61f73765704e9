"""THE optimizer factory of every network: Keras Adam / AdamW with a step-decay schedule, betas / eps, weight
decay, clipping and fp16 loss scaling, from a resolved training config (`make_optimizer(config, network)`).

Weight norm needs no special optimizer here (unlike krasserm's AdamWithWeightnorm): WeightNormConv2D's v and g
are ordinary variables. Everything is a stock Keras object, so it round-trips in a saved .keras model.
"""
from collections.abc import Mapping

import keras

from optimizer.schedules import make_schedule
from utils import UserError

OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
NETWORKS = ("generator", "discriminator")
# Keras's Adam defaults; a config without these keys (an args.json of an older run) gets them.
ADAM_DEFAULTS = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


def optimizer_params(config, network="generator"):
    """make_optimizer keyword arguments of a resolved config for one network: the discriminator's learning rate
    is --d-learning-rate when set, else --learning-rate; every other setting is shared by all networks."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
    lr = config.get("d_learning_rate") if network == "discriminator" else None
    return {"name": config["optimizer"], "learning_rate": lr or config["learning_rate"],
            "boundaries": config["lr_boundaries"], "decay": config["lr_decay"],
            "weight_decay": config["weight_decay"], "clipnorm": config["clipnorm"],
            **{k: config.get(k, v) if config.get(k) is not None else v for k, v in ADAM_DEFAULTS.items()}}


def loss_scaled(optimizer, mode):
    """fp16: the optimizer wrapped in Keras's dynamic loss scaling (bf16 has float32's range and needs none)."""
    if mode == "fp16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_optimizer(config="adam", network="generator", *, name=None, learning_rate=1e-3, boundaries=None,
                   decay=0.5, ema=False, ema_momentum=0.999, clipnorm=None, weight_decay=None, beta_1=0.9,
                   beta_2=0.999, epsilon=1e-7):
    """The optimizer of `network` ("generator" or "discriminator") for a resolved training config (a dict):
    its optimizer, per-network learning rate and schedule, betas / eps, weight decay and clipnorm, wrapped in
    loss scaling under --mixed-precision fp16. Every network of every task gets its optimizer here.

    Given an optimizer name (adam or adamw) instead of a config, the keyword arguments build it directly:
    learning rate `make_schedule(learning_rate, boundaries, decay)`; weight_decay: decoupled weight decay (None
    or 0 = none for adam, Keras's 0.004 for adamw when None). `ema=True` is Keras's own use_ema (kept for callers
    of model.fit); train.py's trainer keeps its own EMA (training.EMA) and does not use it."""
    if isinstance(config, Mapping):
        opt = make_optimizer(**optimizer_params(config, network))
        return loss_scaled(opt, config.get("mixed_precision"))
    name = name or config
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    kwargs = {}
    if weight_decay is not None and (weight_decay > 0 or name == "adamw"):
        kwargs["weight_decay"] = float(weight_decay)
    return OPTIMIZERS[name](learning_rate=make_schedule(learning_rate, boundaries, decay), beta_1=float(beta_1),
                            beta_2=float(beta_2), epsilon=float(epsilon), use_ema=bool(ema),
                            ema_momentum=float(ema_momentum), clipnorm=clipnorm, **kwargs)


__all__ = ["make_optimizer", "make_schedule", "optimizer_params", "loss_scaled", "OPTIMIZERS"]
