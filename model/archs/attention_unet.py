"""A-ESRGAN's attention U-Net discriminator (UNetDiscriminatorAesrgan) and its two-scale variant.

Layer for layer as aesrgan/archs/discriminator_arch.py and multiscale_arch.py (see docs/aesrgan.md):

* encoder conv0 3->64 (3x3, bias, no spectral norm), conv1-3 (3x3 stride 2, padding 1, SN, no bias), LReLU 0.2;
* gating: a 1x1 SN conv 512->256 **with padding 1**, so the gating signal is (H/8+2) x (W/8+2) with a ring of
  zeros before the LReLU (the conv has no bias). A quirk of the original, reproduced on purpose (ZeroPadding
  then 1x1 conv): the attention gates resize it bilinearly, so the border leaks into their edges;
* three attention gates on x2 (C=256, H/4), x1 (C=128, H/2), x0 (C=64, H): theta = 2x2 stride-2 conv (no bias)
  of x; phi = 1x1 conv (bias) of g resized to theta's size; alpha = sigmoid(1x1 conv(ReLU(theta + phi)))
  resized to x's size; out = BatchNorm(1x1 conv(alpha * x)) (eps 1e-5, PyTorch momentum 0.1 = Keras 0.9);
* decoder: bilinear x2, SN 3x3 conv, LReLU, concat [gated skip, upsampled], SN 3x3 conv, LReLU (three times);
* head: two SN 3x3 convs 64->64 with LReLU, a plain 3x3 conv 64->1: one real/fake logit per pixel.

Input: float32 N x H x W x 3 RGB in pixel units [0, 255] (the project's model-input convention), divided by
255 inside (the original sees [0, 1]). H, W multiples of 8 (16 for the multi-scale model), else UserError.
The sigmoid maps alpha are the outputs of the layers named `[prefix]attn_{k}_alpha`; `with_attention_maps(D)`
returns a model that outputs them next to the logits.
"""
import keras

from model.discriminator_layers import ResizeLike, image_input, lrelu, sn_conv, torch_conv
from model.registry import register_discriminator
from utils import UserError


def attention_gate(x, g, name):
    """Additive attention gate: (BatchNorm(conv1x1(alpha * x)), alpha); alpha is N x H x W x 1 at x's size."""
    c = x.shape[-1]
    theta = torch_conv(c, 2, f"{name}_theta", strides=2, padding="valid", use_bias=False)(x)
    phi = torch_conv(c, 1, f"{name}_phi")(g)
    phi = ResizeLike(name=f"{name}_phi_resize")(phi, theta)
    f = keras.layers.Add(name=f"{name}_add")([theta, phi])
    f = keras.layers.ReLU(name=f"{name}_relu")(f)
    psi = torch_conv(1, 1, f"{name}_psi")(f)
    psi = keras.layers.Activation("sigmoid", name=f"{name}_sigmoid")(psi)
    alpha = ResizeLike(name=f"{name}_alpha")(psi, x)
    y = keras.layers.Multiply(name=f"{name}_gate")([alpha, x])
    y = torch_conv(c, 1, f"{name}_W")(y)
    y = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(y)
    return y, alpha


def unet_cat(skip, deep, filters, name):
    """Decoder join: bilinear x2 of the deeper map, SN 3x3 conv, LReLU, concat [skip, upsampled]."""
    up = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(deep)
    up = lrelu(sn_conv(filters, 3, f"{name}_convU")(up), f"{name}_convU_lrelu")
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")([skip, up])


def attention_unet_graph(x, num_feat=64, prefix=""):
    """The discriminator's graph on a [0, 1] input tensor x; returns (logits, [alpha1, alpha2, alpha3])."""
    p, nf = prefix, int(num_feat)
    x0 = lrelu(torch_conv(nf, 3, f"{p}conv0")(x), f"{p}conv0_lrelu")
    x1 = lrelu(sn_conv(nf * 2, 3, f"{p}conv1", strides=2)(x0), f"{p}conv1_lrelu")
    x2 = lrelu(sn_conv(nf * 4, 3, f"{p}conv2", strides=2)(x1), f"{p}conv2_lrelu")
    x3 = lrelu(sn_conv(nf * 8, 3, f"{p}conv3", strides=2)(x2), f"{p}conv3_lrelu")
    # The original's nn.Conv2d(512, 256, 1, 1, 1): a 1x1 conv with padding 1 (H/8 + 2, zero border).
    g = lrelu(sn_conv(nf * 4, 1, f"{p}gating", padding=1)(x3), f"{p}gating_lrelu")

    a1, alpha1 = attention_gate(x2, g, f"{p}attn_1")
    a2, alpha2 = attention_gate(x1, g, f"{p}attn_2")
    a3, alpha3 = attention_gate(x0, g, f"{p}attn_3")

    y = unet_cat(a1, x3, nf * 4, f"{p}cat_1")
    x4 = lrelu(sn_conv(nf * 4, 3, f"{p}conv4")(y), f"{p}conv4_lrelu")
    y = unet_cat(a2, x4, nf * 2, f"{p}cat_2")
    x5 = lrelu(sn_conv(nf * 2, 3, f"{p}conv5")(y), f"{p}conv5_lrelu")
    y = unet_cat(a3, x5, nf, f"{p}cat_3")
    x6 = lrelu(sn_conv(nf, 3, f"{p}conv6")(y), f"{p}conv6_lrelu")

    out = lrelu(sn_conv(nf, 3, f"{p}conv7")(x6), f"{p}conv7_lrelu")
    out = lrelu(sn_conv(nf, 3, f"{p}conv8")(out), f"{p}conv8_lrelu")
    logits = torch_conv(1, 3, f"{p}conv9")(out)
    return logits, [alpha1, alpha2, alpha3]


@register_discriminator("attention-unet")
def attention_unet(num_feat=64):
    """Single attention U-Net discriminator (5,399,044 trainable parameters at num_feat=64): N x H x W x 1 logits."""
    x_in, x = image_input(8, "attention-unet discriminator")
    logits, _ = attention_unet_graph(x, num_feat)
    return keras.Model(x_in, logits, name="attention_unet")


def multiscale_downsample(x, name="downsample"):
    """nn.AvgPool2d(4, stride=2, padding=1, count_include_pad=True): zero-pad 1, then a 'valid' 4x4/2 mean."""
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return keras.layers.AveragePooling2D(4, strides=2, padding="valid", name=f"{name}_pool")(x)


@register_discriminator("attention-unet-multiscale")
def attention_unet_multiscale(num_feat=64, num_d=2):
    """Two attention U-Nets (10,798,088 trainable parameters): `full_*` on the image, `half_*` on its 2x average-
    pooled version. Outputs [full-resolution logits N x H x W x 1, half-resolution logits N x H/2 x W/2 x 1];
    the GAN losses are summed over the two (A-ESRGAN's aesrgan_model.py), not averaged."""
    if int(num_d) != 2:
        raise ValueError("the A-ESRGAN multi-scale discriminator has num_d=2")
    x_in, x = image_input(16, "attention-unet-multiscale discriminator")
    full, _ = attention_unet_graph(x, num_feat, prefix="full_")
    half, _ = attention_unet_graph(multiscale_downsample(x), num_feat, prefix="half_")
    return keras.Model(x_in, [full, half], name="attention_unet_multiscale")


def with_attention_maps(discriminator):
    """A model on the same weights returning a dict: `[prefix]logits` and `[prefix]attn_{1,2,3}` (the alpha maps,
    N x H/4 x W/4 x 1, N x H/2 x W/2 x 1, N x H x W x 1 for a full-resolution D)."""
    outputs = {}
    for layer in discriminator.layers:
        if layer.name.endswith("conv9"):
            outputs[layer.name[: -len("conv9")] + "logits"] = layer.output
    for layer in discriminator.layers:
        if layer.name.endswith("_alpha") and "attn_" in layer.name:
            outputs[layer.name[: -len("_alpha")]] = layer.output
    if not any(k.endswith("attn_1") for k in outputs):
        raise UserError(f"discriminator {discriminator.name!r} has no attention gates (an attention U-Net is needed)")
    return keras.Model(discriminator.input, outputs, name=f"{discriminator.name}_attention")
