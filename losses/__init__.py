"""Training losses: pixel and GRAM heteroscedastic losses (`losses.pixel`), the VGG19 perceptual loss
(`losses.perceptual`) and the GAN losses (`losses.adversarial`) of Real-ESRGAN / A-ESRGAN training.

`import losses; losses.make_loss(...)` keeps working: the pixel-loss API is re-exported here.
"""
from losses.pixel import (LOGVAR_CLIP, LOSS_MODES, PIXEL_SCALE, PLAIN_LOSSES, SRLoss, logvar_from_sigma,  # noqa: F401
                          make_loss, sigma_from_logvar)
from losses.mode import DEFAULT_LOSS_MODE, checkpoint_loss_mode  # noqa: F401,E402  (THE loss-mode lookup; losses/mode.py)
