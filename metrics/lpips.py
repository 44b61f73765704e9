"""LPIPS (Zhang et al. 2018, v0.1): the learned perceptual distance on AlexNet / VGG16 features, as the lpips package.

distance = sum over 5 ReLU taps of mean_{x,y} sum_c w_c (f0 / |f0| - f1 / |f1|)^2, with f the backbone features of
each image scaled to [-1, 1] then by lpips's ScalingLayer, |.| the channel norm (+1e-10) and w the learned linear
layers (shipped in metrics/lpips_weights/, BSD-2, see its NOTICE). The backbone is torchvision's ImageNet `alexnet` /
`vgg16` state dict, read through the safe .pth reader (never unpickling code) into a Keras model; nothing is
downloaded. Lower is more similar.
"""
import functools
import os
from pathlib import Path

import keras
import numpy as np
from keras import ops

from utils import UserError

WEIGHTS_DIR = Path(__file__).with_name("lpips_weights")
SHIFT = (-0.030, -0.088, -0.188)  # lpips.ScalingLayer: (x - shift) / scale on images in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor

# torchvision `features`: ("conv", index, filters, kernel, stride, padding) or ("pool", kernel, stride). The five
# taps are the ReLU outputs of the convs named in `taps` (lpips.pretrained_networks' slice ends).
NETS = {
    "alex": {
        "layers": (("conv", 0, 64, 11, 4, 2), ("pool", 3, 2), ("conv", 3, 192, 5, 1, 2), ("pool", 3, 2),
                   ("conv", 6, 384, 3, 1, 1), ("conv", 8, 256, 3, 1, 1), ("conv", 10, 256, 3, 1, 1)),
        "taps": (0, 3, 6, 8, 10),
        "min_size": 31,  # smallest side whose last tap is not empty
        "file": "alexnet-owt-7be5be79.pth",
        "what": "AlexNet",
    },
    "vgg": {
        "layers": (("conv", 0, 64, 3, 1, 1), ("conv", 2, 64, 3, 1, 1), ("pool", 2, 2),
                   ("conv", 5, 128, 3, 1, 1), ("conv", 7, 128, 3, 1, 1), ("pool", 2, 2),
                   ("conv", 10, 256, 3, 1, 1), ("conv", 12, 256, 3, 1, 1), ("conv", 14, 256, 3, 1, 1), ("pool", 2, 2),
                   ("conv", 17, 512, 3, 1, 1), ("conv", 19, 512, 3, 1, 1), ("conv", 21, 512, 3, 1, 1), ("pool", 2, 2),
                   ("conv", 24, 512, 3, 1, 1), ("conv", 26, 512, 3, 1, 1), ("conv", 28, 512, 3, 1, 1)),
        "taps": (2, 7, 14, 21, 28),
        "min_size": 16,
        "file": "vgg16-397923af.pth",
        "what": "VGG16",
    },
}


def backbone_help(net):
    spec = NETS[net]
    return (f"pass --lpips-backbone with torchvision's ImageNet {spec['what']} {spec['file']} "
            f"(https://download.pytorch.org/models/{spec['file']})")


def _check_net(net):
    if net not in NETS:
        raise UserError(f"--lpips-net {net!r}: choose one of {', '.join(NETS)}")


def build_backbone(net, width=1.0):
    """Functional Keras model: N x H x W x 3 (already ScalingLayer-scaled) -> list of the 5 tap features (after ReLU).
    Convs are named features_{index} after torchvision's modules. `width` scales filter counts (tests only)."""
    _check_net(net)
    spec = NETS[net]
    x_in = keras.Input((None, None, 3), name="image")
    x, outputs, last = x_in, [], spec["taps"][-1]
    for layer in spec["layers"]:
        if layer[0] == "pool":
            x = keras.layers.MaxPooling2D(layer[1], strides=layer[2], padding="valid")(x)
            continue
        _, index, filters, kernel, stride, pad = layer
        if stride == 1 and kernel == 2 * pad + 1:
            padding = "same"
        else:  # PyTorch's symmetric zero padding, then a valid strided conv
            x, padding = keras.layers.ZeroPadding2D(pad)(x), "valid"
        x = keras.layers.Conv2D(max(1, int(round(filters * width))), kernel, strides=stride, padding=padding,
                                name=f"features_{index}")(x)
        x = keras.layers.ReLU()(x)
        if index in spec["taps"]:
            outputs.append(x)
        if index == last:
            break
    m = keras.Model(x_in, outputs, name=f"lpips_{net}_backbone")
    m.trainable = False
    return m


def load_backbone(net, path):
    """The backbone with torchvision's weights from `path` (keys features.N.weight / features.N.bias)."""
    from model.convert.torch_layout import torch_to_keras_kernel
    from model.convert.torch_pickle import read_state_dict

    _check_net(net)
    if path is None:
        raise UserError(f"LPIPS ({net}) needs ImageNet {NETS[net]['what']} weights (nothing is downloaded): "
                        f"{backbone_help(net)}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"--lpips-backbone {path}: file not found; {backbone_help(net)}")
    state = read_state_dict(path)
    m = build_backbone(net)
    for layer in m.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        index = layer.name.split("_")[1]
        w, b = state.get(f"features.{index}.weight"), state.get(f"features.{index}.bias")
        if w is None or b is None:
            raise UserError(f"--lpips-backbone {path}: features.{index} is missing; it is not a torchvision "
                            f"{NETS[net]['what']} state dict ({backbone_help(net)})")
        values = [torch_to_keras_kernel(w), np.asarray(b, np.float32)]
        wanted = [tuple(v.shape) for v in layer.weights]
        if [v.shape for v in values] != wanted:
            raise UserError(f"--lpips-backbone {path}: features.{index} has shape {tuple(np.shape(w))}, "
                            f"{NETS[net]['what']} needs {wanted[0][::-1]}; is it the other --lpips-net?")
        layer.set_weights(values)
    return m


def linear_weights(net):
    """The 5 learned per-channel weights of LPIPS v0.1 for `net` (shipped .npz)."""
    _check_net(net)
    with np.load(WEIGHTS_DIR / f"{net}.npz") as f:
        return [np.asarray(f[f"lin{k}"], np.float32) for k in range(5)]


class LPIPS:
    """LPIPS v0.1 distance: `LPIPS(net, backbone_model)(img0, img1)` on uint8 (or [0, 255] float) HxWx3 images."""

    def __init__(self, net, backbone):
        _check_net(net)
        self.net, self.backbone = net, backbone
        self.lins = [ops.convert_to_tensor(w) for w in linear_weights(net)]

    def distance(self, x0, x1):
        """Batched: float N x H x W x 3 in [0, 255] (keras.ops tensors or numpy) -> N distances."""
        def features(x):
            x = ops.cast(x, "float32") / 127.5 - 1.0  # lpips.im2tensor: [0, 255] -> [-1, 1]
            x = (x - ops.convert_to_tensor(np.array(SHIFT, np.float32))) / ops.convert_to_tensor(
                np.array(SCALE, np.float32))
            return self.backbone(x, training=False)

        total = 0.0
        for f0, f1, w in zip(features(x0), features(x1), self.lins):
            f0 = f0 / (ops.sqrt(ops.sum(f0 * f0, axis=-1, keepdims=True)) + EPS)
            f1 = f1 / (ops.sqrt(ops.sum(f1 * f1, axis=-1, keepdims=True)) + EPS)
            total = total + ops.mean(ops.sum(ops.square(f0 - f1) * w, axis=-1), axis=(1, 2))
        return total

    def __call__(self, img0, img1):
        img0, img1 = _rgb(img0), _rgb(img1)
        if img0.shape != img1.shape:
            raise UserError(f"LPIPS needs images of one size, got {img0.shape[1]}x{img0.shape[0]} and "
                            f"{img1.shape[1]}x{img1.shape[0]}")
        if min(img0.shape[:2]) < NETS[self.net]["min_size"]:
            raise UserError(f"LPIPS ({self.net}) needs images of at least {NETS[self.net]['min_size']} pixels a "
                            f"side, got {img0.shape[1]}x{img0.shape[0]}")
        batch = np.stack([img0, img1]).astype(np.float32)
        return float(np.asarray(ops.convert_to_numpy(self.distance(batch[:1], batch[1:])))[0])


def _rgb(img):
    """Grey (HxW or HxWx1) images are scored as RGB with three equal planes, as lpips's loaders do."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img[..., :3]


@functools.lru_cache(maxsize=2)
def _cached(net, path, mtime):
    return LPIPS(net, load_backbone(net, path))


def get_lpips(net="alex", backbone=None):
    """The LPIPS scorer for `net` with the backbone file `backbone`, built once per process (UserError naming the
    file and where to get it when it is missing)."""
    _check_net(net)
    if backbone is None or not os.path.isfile(backbone):
        load_backbone(net, backbone)  # raises the one-line message
    path = os.path.abspath(os.fspath(backbone))
    return _cached(net, path, os.path.getmtime(path))


def lpips(sr, hr, net="alex", backbone=None):
    """LPIPS v0.1 between the SR image and the ground truth (whole RGB images, no border shave)."""
    return get_lpips(net, backbone)(sr, hr)
