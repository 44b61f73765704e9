"""Plain PyTorch EDSR, layer for layer the network `model.build_model("edsr", scale, ...)` builds.

Used only as a speed reference by `benchmarks/train_speed.py`. Same layers and parameter count as the
Keras model: normalize with the DIV2K RGB mean, head conv, `num_res_blocks` x (conv-ReLU-conv, optional
residual scaling, skip), body conv + global skip, sub-pixel upsampling (conv to 4x filters + pixel shuffle
per factor 2, or 9x + shuffle 3 for x3), tail conv to 3 channels, denormalize. Input and output are
NCHW float32 in pixel units [0, 255].
"""
import torch
from torch import nn

DIV2K_RGB_MEAN = (0.4488 * 255, 0.4371 * 255, 0.4040 * 255)


def conv3x3(c_in, c_out):
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class ResBlock(nn.Module):
    def __init__(self, num_filters, res_scaling=None):
        super().__init__()
        self.conv1 = conv3x3(num_filters, num_filters)
        self.conv2 = conv3x3(num_filters, num_filters)
        self.res_scaling = res_scaling

    def forward(self, x):
        b = self.conv2(torch.relu(self.conv1(x)))
        if self.res_scaling:
            b = b * self.res_scaling
        return x + b


class Upsample(nn.Sequential):
    def __init__(self, scale, num_filters):
        layers = []
        if scale in (2, 4):
            for _ in range(scale // 2):
                layers += [conv3x3(num_filters, num_filters * 4), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv3x3(num_filters, num_filters * 9), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(self, scale=2, num_filters=64, num_res_blocks=16, res_scaling=None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1))
        self.head = conv3x3(3, num_filters)
        self.body = nn.Sequential(*[ResBlock(num_filters, res_scaling) for _ in range(num_res_blocks)])
        self.body_conv = conv3x3(num_filters, num_filters)
        self.upsample = Upsample(scale, num_filters)
        self.tail = conv3x3(num_filters, 3)

    def forward(self, x):
        x = (x - self.mean) / 127.5
        x = self.head(x)
        x = x + self.body_conv(self.body(x))
        x = self.tail(self.upsample(x))
        return x * 127.5 + self.mean


def count_params(module):
    return sum(p.numel() for p in module.parameters())
