"""Optimizer factory: Keras Adam with step-decay schedule, optional EMA of weights and gradient clipping.

Weight norm needs no special optimizer here (unlike krasserm's AdamWithWeightnorm): WeightNormConv2D's v and g
are ordinary variables. Everything is a stock Keras object, so it round-trips in a saved .keras model.
"""
import keras

from optimizer.schedules import make_schedule
from utils import UserError

OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}


def make_optimizer(name="adam", learning_rate=1e-3, boundaries=None, decay=0.5, ema=False, ema_momentum=0.999,
                   clipnorm=None, weight_decay=None):
    """A Keras optimizer (adam or adamw) with `make_schedule(learning_rate, boundaries, decay)`.

    weight_decay: decoupled weight decay (adamw; None or 0 = none for adam, Keras's 0.004 for adamw when None).
    `ema=True` is Keras's own use_ema (kept for callers of model.fit); train.py's trainer keeps its own EMA
    (training.EMA) and does not use it."""
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    kwargs = {}
    if weight_decay is not None and (weight_decay > 0 or name == "adamw"):
        kwargs["weight_decay"] = float(weight_decay)
    return OPTIMIZERS[name](learning_rate=make_schedule(learning_rate, boundaries, decay), use_ema=bool(ema),
                            ema_momentum=float(ema_momentum), clipnorm=clipnorm, **kwargs)


__all__ = ["make_optimizer", "make_schedule", "OPTIMIZERS"]
