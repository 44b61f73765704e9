"""The reference JPEG of Real-ESRGAN's degradations (BasicSR's DiffJPEG, non-differentiable), vectorised (numpy;
OpenCV for the 2x2 mean and the 2x2 repetition, ~4x numpy's strided versions).

    out = diffjpeg(img, quality)       # float32 HxWx3 RGB in [0, 1] -> float32 HxWx3 in [0, 1]; quality a float

Written from the algorithm that DiffJPEG implements, step by step:
1. zero-pad (bottom / right) to a multiple of 16; x 255; RGB -> YCbCr (JFIF matrix, chroma + 128);
2. 4:2:0: Cb and Cr averaged over 2x2 blocks;
3. 8x8 blocks, level shift -128, orthonormal-scaled DCT-II (1/4 alpha_u alpha_v, alpha_0 = 1/sqrt 2);
4. divide by the quantisation table times the quality factor (q < 50: 50 / q, else 2 - q / 50; float, no
   clamping, no integer tables) and round half to even; the luma table is the JPEG Annex K table transposed
   (DiffJPEG stores it so, and the block's first axis is the row), the chroma table is symmetric;
5. multiply back, inverse DCT, +128, chroma upsampled by repeating each value 2x2, YCbCr -> RGB, clamped to
   [0, 255], / 255, cropped to H x W. No 8-bit rounding anywhere (the pipeline rounds the final LQ).
"""
import math

import cv2
import numpy as np

# JPEG Annex K tables (rows: vertical frequency)
_Y_TABLE = np.array([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                     [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                     [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                     [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], np.float32)
_C_TABLE = np.full((8, 8), 99, np.float32)
_C_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
# DiffJPEG divides coefficient (u, v) (u along the block's rows) by table[v, u]
Y_TABLE, C_TABLE = np.ascontiguousarray(_Y_TABLE.T), np.ascontiguousarray(_C_TABLE.T)

_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_YCC_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], np.float32)

_k = np.arange(8)
_ALPHA = np.array([1 / math.sqrt(2)] + [1.0] * 7)
# DCT-II basis with the alpha / 2 scale per axis: coef = D @ block @ D.T, block = D.T @ coef @ D
_D = (0.5 * _ALPHA[:, None] * np.cos((2 * _k[None, :] + 1) * _k[:, None] * math.pi / 16)).astype(np.float32)


def quality_factor(quality):
    """DiffJPEG's table multiplier of a (float) quality: 50 / q below 50, else 2 - q / 50."""
    q = float(quality)
    if q <= 0:
        raise ValueError(f"JPEG quality must be positive, got {quality}")
    return (5000.0 / q if q < 50 else 200.0 - 2.0 * q) / 100.0


def _code(plane, table):
    """Quantise and dequantise the 8x8 DCT of each block of `plane` (..., H, W); returns the pixels.

    Block (r, c) of the plane is rows 8r..8r+7, columns 8c..8c+7; the DCT runs down the rows of each block
    (one batched product over the block rows) then along the columns (one matrix product), with no copy
    into a block layout. table: 8 x 8 (u along the rows)."""
    *lead, h, w = plane.shape
    x = (plane - np.float32(128)).reshape(*lead, h // 8, 8, w)
    coef = (_D @ x).reshape(*lead, h, w // 8, 8) @ _D.T  # (..., H, W/8, 8): [row 8r + u, c, v]
    t = table.reshape(1, 8, 1, 8)  # broadcast over (block row, u, block column, v)
    coef = coef.reshape(*lead, h // 8, 8, w // 8, 8)
    coef = np.round(coef / t) * t
    x = (coef.reshape(*lead, h, w // 8, 8) @ _D).reshape(*lead, h // 8, 8, w)
    return (_D.T @ x).reshape(*lead, h, w) + np.float32(128)


def diffjpeg(img, quality):
    """JPEG as DiffJPEG does it (see the module docstring): float32 HxWx3 RGB in [0, 1] -> the same shape.

    The colour transforms are linear, so the chroma planes are computed from the 2x2-averaged RGB and the
    upsampled chroma's share of RGB at half resolution (the same values to float32 rounding, fewer full-size
    temporaries)."""
    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape[:2]
    factor = np.float32(quality_factor(quality))
    hh, ww = h + (-h % 16), w + (-w % 16)
    x = np.zeros((hh, ww, 3), np.float32) if (hh, ww) != (h, w) else np.empty((h, w, 3), np.float32)
    np.multiply(img, np.float32(255), out=x[:h, :w])
    y = _code(x @ _RGB_TO_YCC[0], Y_TABLE * factor)
    avg = cv2.resize(x, (ww // 2, hh // 2), interpolation=cv2.INTER_AREA)  # 4:2:0: the mean of each 2x2 block
    chroma = (avg @ _RGB_TO_YCC[1:].T).transpose(2, 0, 1)  # Cb, Cr - 128: 2 x H/2 x W/2
    chroma = _code(chroma + np.float32(128), C_TABLE * factor) - np.float32(128)
    share = chroma.transpose(1, 2, 0) @ _YCC_TO_RGB[:, 1:].T  # each chroma pixel's RGB share, H/2 x W/2 x 3
    share = cv2.resize(share, (ww, hh), interpolation=cv2.INTER_NEAREST)  # exactly 2x: each value repeated 2 x 2
    out = cv2.add(share, cv2.merge((y, y, y)))
    np.clip(out, 0, 255, out=out)
    out *= np.float32(1 / 255)
    return out if (hh, ww) == (h, w) else np.ascontiguousarray(out[:h, :w])
