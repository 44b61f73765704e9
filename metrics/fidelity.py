"""THE image-quality metrics of the project: PSNR and SSIM as the SR literature computes them.

train.py's validation, bench.py and demo.py all score through this module, so a number printed by one
means the same as a number printed by another.

Conventions (those of the MATLAB scripts behind published tables, as BasicSR and EDSR-PyTorch follow them):
- SR output is rounded and clipped to 8 bits (`quantize`) before scoring, as a saved PNG would be.
- Y channel: MATLAB ``rgb2ycbcr`` luma, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B
  in [0, 255] and Y in [16, 235]; Y is *not* rounded back to integers.
- ``shave`` pixels are cut from every border of both images before scoring (the literature uses
  shave = scale on benchmark sets).
- SSIM is Wang et al.'s ``ssim_index.m``: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255,
  'valid' filtering (no padding), no down-sampling; RGB SSIM is the mean of the three channels' SSIM.
- A grey HR image (a 2-D array, e.g. ``imaging.read_image(path, keep_grey=True)`` of Set14's ``bridge``) is
  scored on its grey values for both "y" and "rgb"; an RGB SR image is turned into grey with `rgb_to_grey`
  (the Y weights rescaled to sum to one, so three equal channels v give back v exactly).
All arithmetic is float64 numpy.
"""
import numpy as np
from scipy import ndimage

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 255.0


def quantize(sr):
    """Round and clip an SR image to uint8, as papers do before scoring (uint8 input is returned as is)."""
    sr = np.asarray(sr)
    if sr.dtype == np.uint8:
        return sr
    return np.clip(np.round(sr), 0, 255).astype(np.uint8)


def rgb_to_y(img):
    """MATLAB rgb2ycbcr luma of an RGB image in [0, 255]: float64 HxW in [16, 235], not rounded."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[-1] < 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 image, got shape {img.shape}")
    return 16.0 + img[..., :3] @ (_Y_WEIGHTS / 255.0)


def rgb_to_grey(img):
    """Grey value of an RGB image in [0, 255]: luma weights normalised to sum 1 (equal channels v -> v)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        return img
    return img[..., :3] @ (_Y_WEIGHTS / _Y_WEIGHTS.sum())


def _prepare(hr, sr, shave, channel):
    """Both images as float64 arrays (HxW for y/grey, HxWx3 for rgb), borders shaved."""
    if channel not in ("y", "rgb"):
        raise ValueError(f"channel must be 'y' or 'rgb', not {channel!r}")
    hr = np.asarray(hr)
    sr = quantize(sr)
    if hr.ndim == 3 and hr.shape[-1] == 1:
        hr = hr[..., 0]
    if sr.ndim == 3 and sr.shape[-1] == 1:
        sr = sr[..., 0]
    if sr.ndim == 3 and sr.shape[-1] > 3:
        sr = sr[..., :3]  # a logvar model's mean; callers should pass the mean only
    if hr.shape[:2] != sr.shape[:2]:
        raise ValueError(f"HR {hr.shape[:2]} and SR {sr.shape[:2]} sizes differ; crop HR to the SR size first")
    if hr.ndim == 2:
        # Grey ground truth: score grey values; an RGB SR image is reduced to grey.
        hr, sr = hr.astype(np.float64), rgb_to_grey(sr)
    elif sr.ndim == 2:
        hr = hr.astype(np.float64)[..., :3]
        sr = np.repeat(sr.astype(np.float64)[..., None], 3, axis=-1)
        if channel == "y":
            hr, sr = rgb_to_y(hr), rgb_to_y(sr)
    elif channel == "y":
        hr, sr = rgb_to_y(hr), rgb_to_y(sr)
    else:
        hr, sr = hr.astype(np.float64)[..., :3], sr.astype(np.float64)[..., :3]
    if shave:
        if 2 * shave >= min(hr.shape[:2]):
            raise ValueError(f"shave {shave} leaves nothing of a {hr.shape[0]}x{hr.shape[1]} image")
        hr = hr[shave:-shave, shave:-shave]
        sr = sr[shave:-shave, shave:-shave]
    return hr, sr


def _psnr(a, b):
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(DATA_RANGE**2 / mse))


def psnr(hr, sr, shave=0, channel="y"):
    """PSNR in dB between HR and (quantized) SR, on the Y channel or on RGB, after cutting `shave` border pixels."""
    a, b = _prepare(hr, sr, shave, channel)
    return _psnr(a, b)


def _gaussian_1d(size=SSIM_WINDOW, sigma=SSIM_SIGMA):
    # fspecial('gaussian', 11, 1.5) is the outer product of this normalised 1-D kernel with itself.
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(planes, g):
    """filter2(window, plane, 'valid') of the separable Gaussian window for each plane of a PxHxW stack."""
    # Planes first and contiguous: correlate1d along the two fast axes is ~3x quicker than on HxWxP.
    out = ndimage.correlate1d(planes, g, axis=1, mode="constant")
    out = ndimage.correlate1d(out, g, axis=2, mode="constant")
    r = len(g) // 2
    return out[:, r:-r, r:-r]


def _ssim_planes(a, b):
    """Mean SSIM of each channel pair of two float64 CxHxW stacks (Wang et al.'s ssim_index.m) -> C values."""
    if min(a.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[1:]}")
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    n = a.shape[0]
    # One filtering pass over the five statistics of every channel.
    stats = _filter_valid(np.concatenate([a, b, a * a, b * b, a * b]), _gaussian_1d())
    mu1, mu2 = stats[:n], stats[n : 2 * n]
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = stats[2 * n : 3 * n] - mu1_sq
    s2 = stats[3 * n : 4 * n] - mu2_sq
    s12 = stats[4 * n :] - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return ssim_map.reshape(n, -1).mean(axis=1)


def _channels_first(img):
    return img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)


def ssim(hr, sr, shave=0, channel="y"):
    """SSIM between HR and (quantized) SR on Y or RGB (mean over channels), after cutting `shave` border pixels."""
    a, b = _prepare(hr, sr, shave, channel)
    return float(_ssim_planes(_channels_first(a), _channels_first(b)).mean())


def score(hr, sr, shave=0):
    """All four numbers for one image: {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}."""
    sr = quantize(sr)
    ya, yb = _prepare(hr, sr, shave, "y")
    ra, rb = _prepare(hr, sr, shave, "rgb")
    # Y and the RGB channels (one channel for grey HR) through one SSIM pass.
    values = _ssim_planes(np.concatenate([ya[None], _channels_first(ra)]), np.concatenate([yb[None], _channels_first(rb)]))
    return {"psnr_y": _psnr(ya, yb), "ssim_y": float(values[0]), "psnr_rgb": _psnr(ra, rb),
            "ssim_rgb": float(values[1:].mean())}


def psnr_metric(hr, sr):
    """keras.ops batch PSNR (dB) on the first 3 channels in [0, 255], averaged over the batch.

    For training progress bars only: it is a batch estimate on unrounded RGB output with no border crop.
    Checkpoint selection and every reported number use the numpy functions above.
    """
    from keras import ops

    hr = ops.cast(hr[..., :3], "float32")
    sr = ops.clip(ops.cast(sr[..., :3], "float32"), 0.0, 255.0)
    mse = ops.mean(ops.square(hr - sr), axis=(1, 2, 3))
    mse = ops.maximum(mse, 1e-10)
    return ops.mean(10.0 * ops.log10(255.0**2 / mse))


psnr_metric.__name__ = "psnr"
