"""Training losses: plain pixel losses and the heteroscedastic (log-variance) losses of GRAM.

Backend-agnostic (keras.ops only). `y_true` is `B x H x W x 3` in [0, 255]; `y_pred` is `B x H x W x 3`
or `B x H x W x 6` (mean RGB, then the log-variance s, one per channel).

Unit convention for s (the single definition every module uses; convert with `sigma_from_logvar`)
------------------------------------------------------------------------------------------------
The loss clips s to [-10, 10] and, with r = (y - mu) / 127.5,

* L2 mode: 127.5^2 * (exp(-s) * r^2 + s).
  Twice the Gaussian NLL of N(mu, sigma^2) is (y - mu)^2 / sigma^2 + log(sigma^2) + log(2 pi).
  With sigma^2 = 127.5^2 * exp(s) this is exp(-s) * r^2 + s + const, i.e. the L2 loss is
  127.5^2 * (2 * NLL - const): a positive multiple of the Gaussian NLL plus a constant. So
  **sigma = 127.5 * exp(s / 2) grey levels** (s is the log-variance in units of 127.5^2 grey levels^2).
  Check: d/ds = 0 at exp(s) = r^2, i.e. sigma^2 = (y - mu)^2.
* L1 mode: 127.5 * (exp(-s) * |r| + s).
  The Laplace NLL is |y - mu| / b + log(2 b); with b = 127.5 * exp(s) it is exp(-s) * |r| + s + const,
  so the L1 loss is 127.5 * (NLL - const) and **b = 127.5 * exp(s) grey levels**; the Laplace standard
  deviation is sqrt(2) * b.

With clipping, sigma spans 0.86 .. 18900 grey levels in L2 mode (s = -10 .. 10).

`--attention` multiplies the per-pixel loss by the mask sigmoid(s); `--block_attention_gradient` holds the
mask constant (stop_gradient), so d loss / d mu is the plain NLL gradient rescaled by sigmoid(s), i.e.
the L2 gradient 2 (mu - y) rescaled by sigmoid(s) * exp(-s) = 1 / (1 + exp(s)), a factor in (0, 1) (the
NLL's exp(-s) is unbounded on confident pixels), while s still fits the residual (its optimum is
unchanged). That is GRAM.
"""
import math

import keras
import numpy as np
from keras import ops

PIXEL_SCALE = 127.5  # half the pixel range: the residual (y - mu) / 127.5 is O(1)
LOGVAR_CLIP = 10.0

PLAIN_LOSSES = ("mae", "mse")
LOSS_MODES = ("l1", "l2")


def sigma_from_logvar(s, loss_mode="l2"):
    """Predicted standard deviation in grey levels (0..255 scale) from the log-variance output s.

    THE conversion used by demo (uncertainty PNG), bench and `uncertainty.metrics`. s is clipped to
    [-10, 10] as in the loss. L2 mode: Gaussian std 127.5 * exp(s / 2). L1 mode: the Laplace scale is
    b = 127.5 * exp(s), and the returned std is sqrt(2) * b. numpy in, float64 numpy out.
    """
    s = np.clip(np.asarray(s, dtype=np.float64), -LOGVAR_CLIP, LOGVAR_CLIP)
    if loss_mode == "l2":
        return PIXEL_SCALE * np.exp(0.5 * s)
    if loss_mode == "l1":
        return math.sqrt(2.0) * PIXEL_SCALE * np.exp(s)
    raise ValueError(f"loss_mode must be one of {LOSS_MODES}, got {loss_mode!r}")


def logvar_from_sigma(sigma, loss_mode="l2"):
    """Inverse of `sigma_from_logvar` (without clipping): the s that gives this std in grey levels."""
    sigma = np.asarray(sigma, dtype=np.float64)
    if loss_mode == "l2":
        return 2.0 * np.log(sigma / PIXEL_SCALE)
    if loss_mode == "l1":
        return np.log(sigma / (math.sqrt(2.0) * PIXEL_SCALE))
    raise ValueError(f"loss_mode must be one of {LOSS_MODES}, got {loss_mode!r}")


@keras.saving.register_keras_serializable(package="sisr")
class SRLoss(keras.losses.Loss):
    """Per-sample mean over pixels and channels of the plain or heteroscedastic loss (see module doc).

    A registered Loss class, so a model compiled with it saves and loads with `keras.models.load_model`.
    Plain losses use only the first 3 channels of `y_pred` (a 6-channel model's s then gets no gradient).
    """

    def __init__(self, loss="mae", pred_logvar=False, loss_mode="l2", attention=False,
                 block_attention_gradient=False, name=None, reduction="sum_over_batch_size", dtype=None):
        if loss not in PLAIN_LOSSES:
            raise ValueError(f"loss must be one of {PLAIN_LOSSES}, got {loss!r}")
        if loss_mode not in LOSS_MODES:
            raise ValueError(f"loss_mode must be one of {LOSS_MODES}, got {loss_mode!r}")
        if (attention or block_attention_gradient) and not pred_logvar:
            raise ValueError("attention / block_attention_gradient need pred_logvar=True")
        if block_attention_gradient and not attention:
            raise ValueError("block_attention_gradient needs attention=True")
        if name is None:
            name = _default_name(loss, pred_logvar, loss_mode, attention, block_attention_gradient)
        # Always float32: 127.5^2 * exp(10) overflows float16 under mixed precision.
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.loss = loss
        self.pred_logvar = bool(pred_logvar)
        self.loss_mode = loss_mode
        self.attention = bool(attention)
        self.block_attention_gradient = bool(block_attention_gradient)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        mu = y_pred[..., :3]
        y = y_true[..., :3]
        if not self.pred_logvar:
            diff = y - mu
            per_pixel = ops.abs(diff) if self.loss == "mae" else ops.square(diff)
            return ops.mean(per_pixel, axis=(1, 2, 3))
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != 6:
            raise ValueError(f"pred_logvar loss needs a 6-channel prediction, got {y_pred.shape[-1]} channels")
        s = ops.clip(y_pred[..., 3:6], -LOGVAR_CLIP, LOGVAR_CLIP)
        r = (y - mu) / PIXEL_SCALE
        if self.loss_mode == "l2":
            per_pixel = PIXEL_SCALE**2 * (ops.exp(-s) * ops.square(r) + s)
        else:
            per_pixel = PIXEL_SCALE * (ops.exp(-s) * ops.abs(r) + s)
        if self.attention:
            mask = ops.sigmoid(s)
            if self.block_attention_gradient:
                mask = ops.stop_gradient(mask)
            per_pixel = mask * per_pixel
        return ops.mean(per_pixel, axis=(1, 2, 3))

    def get_config(self):
        config = super().get_config()
        config.update(loss=self.loss, pred_logvar=self.pred_logvar, loss_mode=self.loss_mode,
                      attention=self.attention, block_attention_gradient=self.block_attention_gradient)
        return config


def _default_name(loss, pred_logvar, loss_mode, attention, block):
    if not pred_logvar:
        return loss
    name = f"nll_{loss_mode}"
    if attention:
        name += "_gram" if block else "_attention"
    return name


def make_loss(loss="mae", pred_logvar=False, loss_mode="l2", attention=False, block_attention_gradient=False):
    """The training loss for `model.compile(loss=...)`: an `SRLoss` (callable(y_true, y_pred) -> scalar).

    loss: 'mae' or 'mse' on pixel values, used when pred_logvar is False (EDSR/WDSR: mae, SRResNet: mse).
    pred_logvar: heteroscedastic loss on a 6-channel output, `loss_mode` 'l2' (Gaussian) or 'l1' (Laplace).
    attention: multiply by sigmoid(s); block_attention_gradient: hold that mask constant (GRAM).
    Invalid flag combinations raise ValueError (train.py turns them into a UserError).
    """
    return SRLoss(loss=loss, pred_logvar=pred_logvar, loss_mode=loss_mode, attention=attention,
                  block_attention_gradient=block_attention_gradient)

