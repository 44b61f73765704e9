"""An independent plain-PyTorch RRDBNet (ESRGAN / Real-ESRGAN generator) with Real-ESRGAN's state-dict key names.

Written from the architecture description (not from BasicSR's code) as the reference the Keras model is
tested against and the PyTorch side of benchmarks/inference_speed.py. NCHW, input RGB in [0, 1], output in
[0, 1] units (not clamped). Keys: conv_first, body.N.rdbM.convK, conv_body, conv_up1, conv_up2, conv_hr, conv_last.

    net = RRDBNet(num_feat=64, num_block=23, num_grow_ch=32, scale=4)
    net.load_state_dict(torch.load("RealESRGAN_x4plus.pth", weights_only=True)["params_ema"])
"""
import torch
from torch import nn
from torch.nn import functional as F


def pixel_unshuffle(x, factor):
    """N,C,H,W -> N,C*f*f,H/f,W/f with PyTorch's channel order c*f*f + i*f + j."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // factor, factor, w // factor, factor)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(n, c * factor * factor, h // factor, w // factor)


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat, num_grow_ch):
        super().__init__()
        for k in range(1, 5):
            setattr(self, f"conv{k}", nn.Conv2d(num_feat + (k - 1) * num_grow_ch, num_grow_ch, 3, 1, 1))
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x):
        features = [x]
        for k in range(1, 5):
            conv = getattr(self, f"conv{k}")
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return x + 0.2 * self.conv5(torch.cat(features, 1))


class RRDB(nn.Module):
    def __init__(self, num_feat, num_grow_ch):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x):
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4):
        super().__init__()
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x):
        if self.unshuffle > 1:
            x = pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


def random_state_dict(num_feat=8, num_block=1, num_grow_ch=4, scale=4, seed=0, std=0.1):
    """A state dict of random weights (numpy float32), keyed as Real-ESRGAN's, for tests."""
    torch.manual_seed(seed)
    net = RRDBNet(num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch, scale=scale)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, std)
    return {k: v.numpy().copy() for k, v in net.state_dict().items()}


def run(state_dict, lr_uint8, scale, num_feat=None, num_block=None, num_grow_ch=None):
    """SR of an HxWx3 uint8 image (or NxHxWx3 float in [0, 255]) by the PyTorch net; float32 output in pixel units,
    not rounded. Sizes are inferred from the state dict unless given."""
    import numpy as np

    num_feat = num_feat or state_dict["conv_first.weight"].shape[0]
    num_block = num_block or len({k.split(".")[1] for k in state_dict if k.startswith("body.")})
    num_grow_ch = num_grow_ch or state_dict["body.0.rdb1.conv1.weight"].shape[0]
    net = RRDBNet(num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch, scale=scale).eval()
    net.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in state_dict.items()})
    x = np.asarray(lr_uint8, np.float32)
    batched = x.ndim == 4
    x = torch.from_numpy((x if batched else x[None]) / 255.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        y = net(x).permute(0, 2, 3, 1).numpy() * 255.0
    return y if batched else y[0]
