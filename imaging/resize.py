"""MATLAB-exact bicubic `imresize` (numpy only): uint8 bit-exact with MATLAB, antialiased when shrinking; the
LR image of the literature (`bicubic_downscale`: modcrop then bicubic 1/scale)."""
import math

import numpy as np


def _cubic(x):
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


_CONTRIB_CACHE = {}


def _contributions(in_len, out_len, scale):
    """Per-output weights (out_len x P) and 0-based source indices, as MATLAB's imresize `contributions`."""
    key = (in_len, out_len, scale)
    if key in _CONTRIB_CACHE:
        return _CONTRIB_CACHE[key]
    width = 4.0
    antialias = scale < 1
    if antialias:
        width /= scale  # the kernel is stretched by 1/scale when shrinking
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric padding: index sequence 1..n, n..1 repeated
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(w != 0, axis=0)  # MATLAB drops all-zero tap columns
    result = (np.ascontiguousarray(w[:, keep]), np.ascontiguousarray(idx[:, keep]))
    if len(_CONTRIB_CACHE) > 256:
        _CONTRIB_CACHE.clear()
    _CONTRIB_CACHE[key] = result
    return result


def _round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def imresize(img, scale=None, output_shape=None):
    """MATLAB `imresize(img, scale, 'bicubic')` (antialiased when shrinking), bit-exact for uint8.

    `img`: HxW or HxWxC, uint8 or float. Give `scale` (a number; output size ceil(scale * size)) or
    `output_shape` (H, W). uint8 in -> uint8 out, rounded half away from zero and clipped after EACH axis
    pass, as MATLAB's uint8 code path does (this is what makes it bit-exact); float in -> float64 out.
    Axes are processed in order of increasing scale factor (height first on ties), like MATLAB.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: expected HxW or HxWxC image, got shape {img.shape}")
    h, w = img.shape[:2]
    if output_shape is not None:
        out_h, out_w = int(output_shape[0]), int(output_shape[1])
        scales = (out_h / h, out_w / w)
    elif scale is not None:
        scales = (float(scale), float(scale))
        out_h, out_w = int(math.ceil(scale * h)), int(math.ceil(scale * w))
    else:
        raise ValueError("imresize: give scale or output_shape")
    if out_h < 1 or out_w < 1:
        raise ValueError(f"imresize: output size {out_h}x{out_w} is empty")
    is_uint8 = img.dtype == np.uint8
    out = img.astype(np.float64)
    order = sorted(range(2), key=lambda a: scales[a])  # stable: height first on ties
    for axis in order:
        n_in, n_out = (h, out_h) if axis == 0 else (w, out_w)
        weights, idx = _contributions(n_in, n_out, scales[axis])
        # resize along axis 0 only: gathering whole rows is a fast contiguous copy (the width pass transposes)
        src = np.ascontiguousarray(np.swapaxes(out, 0, 1)) if axis == 1 else out
        acc = np.zeros((n_out,) + src.shape[1:])
        tap = np.empty_like(acc)
        shape = (-1,) + (1,) * (src.ndim - 1)
        for p in range(weights.shape[1]):  # summing tap by tap keeps MATLAB's order of additions
            np.take(src, idx[:, p], axis=0, out=tap)
            tap *= weights[:, p].reshape(shape)
            acc += tap
        out = np.swapaxes(acc, 0, 1) if axis == 1 else acc
        if is_uint8:
            out = np.clip(_round_half_away(out), 0, 255)
    if is_uint8:
        return out.astype(np.uint8)
    return out


def modcrop(img, scale):
    """Top-left crop to a multiple of `scale` in both dimensions (how LR sets are made)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_downscale(hr, scale):
    """LR image as the SR literature makes it: modcrop then MATLAB-exact bicubic by 1/scale."""
    return imresize(modcrop(hr, scale), scale=1.0 / scale)
