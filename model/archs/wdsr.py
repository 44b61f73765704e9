"""WDSR-A / WDSR-B (Yu et al. 2018), layer for layer as krasserm/super-resolution's TF2 `wdsr.py`.

The weight-norm convs are created in krasserm's order (head, blocks, `conv2d_main_scale_{s}`,
`conv2d_skip_scale_{s}`) so that model/convert/krasserm.py can map converted weights layer by layer.
"""
import keras

from model.layers import Normalize, PixelShuffle, Scale, conv2d, lr_input, sr_output, zero_init
from model.registry import register_generator

# WN directions start glorot-uniform, like krasserm's tfa WeightNormalization(Conv2D) with data_init=False
# (g = ||v||, so without data-dependent init the model starts exactly as krasserm's did; with it, v's scale
# is irrelevant). Plain convs use Keras's glorot-uniform default too, so weightnorm on/off start alike.
WN_KERNEL_INIT = {"kernel_initializer": "glorot_uniform"}


@register_generator("wdsr-a", scales=(2, 3, 4))
def wdsr_a(scale, num_filters=32, num_res_blocks=8, res_expansion=4, res_scaling=None, weightnorm=True,
           pred_logvar=False):
    """WDSR-A: wide-activation block conv3x3(F*r) -> ReLU -> conv3x3(F). See `wdsr`."""
    return wdsr(scale, num_filters, num_res_blocks, res_expansion, res_scaling, weightnorm, pred_logvar, "a")


@register_generator("wdsr-b", scales=(2, 3, 4))
def wdsr_b(scale, num_filters=32, num_res_blocks=8, res_expansion=6, res_scaling=None, weightnorm=True,
           pred_logvar=False):
    """WDSR-B: conv1x1(F*r) -> ReLU -> conv1x1(int(0.8F)) -> conv3x3(F). See `wdsr`."""
    return wdsr(scale, num_filters, num_res_blocks, res_expansion, res_scaling, weightnorm, pred_logvar, "b")


def wdsr(scale, num_filters, num_res_blocks, res_expansion, res_scaling, weightnorm, pred_logvar, block):
    """Main branch (conv3x3(F), residual blocks, conv3x3(3s^2) `conv2d_main_scale_{s}`, pixel shuffle) plus
    skip branch (conv5x5(3s^2) `conv2d_skip_scale_{s}` on the normalised input, pixel shuffle), added.

    `pred_logvar=True` adds `conv2d_logvar_scale_{s}`, a conv3x3(3s^2) on the same body features as the main
    head, pixel-shuffled to 3 log-variance channels (raw, not denormalised; no skip branch). It is created after
    all of krasserm's layers, so the converter's layer order is unchanged, and starts at zero output.
    """
    wn = bool(weightnorm)
    kw = WN_KERNEL_INIT if wn else {}
    out = 3 * scale * scale
    x_in = lr_input()
    x = Normalize(name="normalize")(x_in)

    m = conv2d(num_filters, 3, "head", wn, **kw)(x)
    for i in range(1, num_res_blocks + 1):
        m = _block(m, i, block, num_filters, res_expansion, res_scaling, wn, kw)
    features = m
    m = conv2d(out, 3, f"conv2d_main_scale_{scale}", wn, **kw)(m)
    m = PixelShuffle(scale, name=f"shuffle_main_scale_{scale}")(m)

    s = conv2d(out, 5, f"conv2d_skip_scale_{scale}", wn, **kw)(x)
    s = PixelShuffle(scale, name=f"shuffle_skip_scale_{scale}")(s)
    mean = keras.layers.Add(name="add_main_skip")([m, s])

    logvar = None
    if pred_logvar:
        logvar = conv2d(out, 3, f"conv2d_logvar_scale_{scale}", wn, **{**kw, **zero_init(wn)})(features)
        logvar = PixelShuffle(scale, name=f"shuffle_logvar_scale_{scale}")(logvar)
    return keras.Model(x_in, sr_output(mean, logvar), name=f"wdsr_{block}")


def _block(x_in, i, block, num_filters, expansion, scaling, wn, kw):
    if block == "a":
        x = conv2d(int(num_filters * expansion), 3, f"block_{i}_conv1", wn, activation="relu", **kw)(x_in)
        x = conv2d(num_filters, 3, f"block_{i}_conv2", wn, **kw)(x)
    else:
        x = conv2d(int(num_filters * expansion), 1, f"block_{i}_conv1", wn, activation="relu", **kw)(x_in)
        x = conv2d(int(num_filters * 0.8), 1, f"block_{i}_conv2", wn, **kw)(x)
        x = conv2d(num_filters, 3, f"block_{i}_conv3", wn, **kw)(x)
    if scaling:
        x = Scale(scaling, name=f"block_{i}_scaling")(x)
    return keras.layers.Add(name=f"block_{i}_add")([x_in, x])
