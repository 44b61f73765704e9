"""SRResNet (Ledig et al. 2017, the SRGAN generator), as used by GRAM, with the shared mean normalisation."""
import keras

from model.layers import Normalize, PixelShuffle, conv2d, lr_input, sr_output, zero_init
from model.registry import register_generator

BN_MOMENTUM = 0.8  # as krasserm's / the SRGAN Keras generators


@register_generator("sr-resnet", scales=(2, 3, 4))
def sr_resnet(scale, num_filters=64, num_res_blocks=16, weightnorm=False, pred_logvar=False):
    """9x9 head conv + PReLU, `num_res_blocks` conv-BN-PReLU-conv-BN blocks, conv-BN + long skip, sub-pixel
    stages conv(4F) -> shuffle(2) -> PReLU (x3: one conv(9F) -> shuffle(3) stage), 9x9 linear tail to RGB.

    `pred_logvar=True` adds `tail_logvar`, a second linear 9x9 conv on the same features as the RGB tail (as in
    GRAM): 3 raw log-variance channels after the denormalised mean; it starts at zero output.
    """
    wn = bool(weightnorm)
    x_in = lr_input()
    x = Normalize(name="normalize")(x_in)
    x = conv2d(num_filters, 9, "head", wn)(x)
    x = skip = keras.layers.PReLU(shared_axes=[1, 2], name="head_prelu")(x)
    for i in range(1, num_res_blocks + 1):
        r = conv2d(num_filters, 3, f"block_{i}_conv1", wn)(x)
        r = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block_{i}_bn1")(r)
        r = keras.layers.PReLU(shared_axes=[1, 2], name=f"block_{i}_prelu")(r)
        r = conv2d(num_filters, 3, f"block_{i}_conv2", wn)(r)
        r = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block_{i}_bn2")(r)
        x = keras.layers.Add(name=f"block_{i}_add")([x, r])
    x = conv2d(num_filters, 3, "body_tail", wn)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="body_bn")(x)
    x = keras.layers.Add(name="body_add")([skip, x])

    factors = {2: [2], 3: [3], 4: [2, 2]}[scale]
    for k, f in enumerate(factors, start=1):
        x = conv2d(num_filters * f * f, 3, f"upsample_{k}_scale_{scale}", wn)(x)
        x = PixelShuffle(f, name=f"upsample_{k}_shuffle_scale_{scale}")(x)
        x = keras.layers.PReLU(shared_axes=[1, 2], name=f"upsample_{k}_prelu_scale_{scale}")(x)

    mean = conv2d(3, 9, "tail", wn)(x)
    logvar = conv2d(3, 9, "tail_logvar", wn, **zero_init(wn))(x) if pred_logvar else None
    return keras.Model(x_in, sr_output(mean, logvar), name="sr_resnet")
