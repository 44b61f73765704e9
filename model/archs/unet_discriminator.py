"""Real-ESRGAN's U-Net discriminator with spectral norm (BasicSR UNetDiscriminatorSN), the seed's baseline.

conv0 3->64 (3x3, bias, no SN); conv1-3 SN 4x4 stride 2 padding 1 (no bias) 64->128->256->512; decoder: bilinear
x2, SN 3x3 conv (512->256, 256->128, 128->64), LReLU, plus the encoder map of the same size (additive skip);
conv7, conv8 SN 3x3 64->64; conv9 3x3 64->1 (bias). LReLU 0.2. 4,376,897 trainable parameters at num_feat=64.
Input N x H x W x 3 RGB in [0, 255] (divided by 255 inside), H, W multiples of 8; output N x H x W x 1 logits.
"""
import keras

from model.discriminator_layers import image_input, lrelu, sn_conv, torch_conv
from model.registry import register_discriminator


@register_discriminator("unet-sn")
def unet_discriminator_sn(num_feat=64, skip_connection=True):
    """UNetDiscriminatorSN(num_in_ch=3, num_feat, skip_connection)."""
    nf = int(num_feat)
    x_in, x = image_input(8, "unet-sn discriminator")

    x0 = lrelu(torch_conv(nf, 3, "conv0")(x), "conv0_lrelu")
    x1 = lrelu(sn_conv(nf * 2, 4, "conv1", strides=2)(x0), "conv1_lrelu")
    x2 = lrelu(sn_conv(nf * 4, 4, "conv2", strides=2)(x1), "conv2_lrelu")
    x3 = lrelu(sn_conv(nf * 8, 4, "conv3", strides=2)(x2), "conv3_lrelu")

    y = x3
    for k, (filters, skip) in enumerate(((nf * 4, x2), (nf * 2, x1), (nf, x0)), start=4):
        y = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"up{k}")(y)
        y = lrelu(sn_conv(filters, 3, f"conv{k}")(y), f"conv{k}_lrelu")
        if skip_connection:
            y = keras.layers.Add(name=f"skip{k}")([y, skip])

    out = lrelu(sn_conv(nf, 3, "conv7")(y), "conv7_lrelu")
    out = lrelu(sn_conv(nf, 3, "conv8")(out), "conv8_lrelu")
    logits = torch_conv(1, 3, "conv9")(out)
    return keras.Model(x_in, logits, name="unet_discriminator_sn")
