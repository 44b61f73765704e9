"""Perceptual loss as BasicSR's PerceptualLoss (Real-ESRGAN / A-ESRGAN configs): L1 between VGG19 features
BEFORE ReLU of SR and GT at conv1_2, conv2_2, conv3_4, conv4_4, conv5_4, weighted 0.1, 0.1, 1, 1, 1, with the
input normalisation that goes with the weights (ImageNet mean / std for torchvision's; model/vgg19.py).

keras.ops only. `hr`, `sr`: N x H x W x 3 in [0, 255]. The GT branch is constant (stop_gradient), as BasicSR's
`gt.detach()`; the gradient reaches SR through the frozen VGG.
"""
from keras import ops

LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


class PerceptualLoss:
    """callable(hr, sr) -> scalar sum_k w_k * mean|phi_k(sr) - phi_k(hr)| (criterion "l1", or "l2": mean square).

    vgg: a model from model.convert.vgg19.build_vgg19(list(layer_weights), ...) returning {layer: features}.
    """

    def __init__(self, vgg, layer_weights=None, criterion="l1"):
        self.vgg = vgg
        self.layer_weights = dict(layer_weights or LAYER_WEIGHTS)
        if criterion not in ("l1", "l2"):
            raise ValueError(f"perceptual criterion must be l1 or l2, got {criterion!r}")
        self.criterion = criterion

    def features(self, x):
        return self.vgg(x, training=False)

    def __call__(self, hr, sr):
        n = ops.shape(sr)[0]
        # one VGG pass over [SR; GT]
        both = self.features(ops.concatenate([sr, ops.stop_gradient(ops.cast(hr, sr.dtype))], axis=0))
        total = 0.0
        for layer, weight in self.layer_weights.items():
            f = both[layer]
            diff = f[:n] - ops.stop_gradient(f[n:])
            value = ops.mean(ops.abs(diff)) if self.criterion == "l1" else ops.mean(ops.square(diff))
            total = total + weight * value
        return total
