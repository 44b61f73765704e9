"""Optimizer factory: Keras Adam with step-decay schedule, optional EMA of weights and gradient clipping.

Weight norm needs no special optimizer here (unlike krasserm's AdamWithWeightnorm): WeightNormConv2D's v and g
are ordinary variables. Everything is a stock Keras object, so it round-trips in a saved .keras model.
"""
import keras

from optimizer.schedules import make_schedule
from utils import UserError

OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}


def make_optimizer(name="adam", learning_rate=1e-3, boundaries=None, decay=0.5, ema=False, ema_momentum=0.999,
                   clipnorm=None):
    """A Keras optimizer with `make_schedule(learning_rate, boundaries, decay)`; `ema=True` keeps an exponential
    moving average of the weights (Keras use_ema; swapped in by `optimizer.finalize_variable_values`)."""
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate=make_schedule(learning_rate, boundaries, decay), use_ema=bool(ema),
                            ema_momentum=float(ema_momentum), clipnorm=clipnorm)


__all__ = ["make_optimizer", "make_schedule", "OPTIMIZERS"]
