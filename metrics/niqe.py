"""NIQE, the no-reference "Natural Image Quality Evaluator" (Mittal, Soundararajan and Bovik, 2013).

Lower is better. Conventions are BasicSR's (``basicsr/metrics/niqe.py``, itself a port of the official MATLAB
release), so numbers compare with the Real-ESRGAN / A-ESRGAN tables:

- The image becomes one grey plane: ``convert="y"`` MATLAB BT.601 luma (`metrics.rgb_to_y`, BasicSR's
  default) or ``convert="gray"`` Pillow's ``convert("L")`` (what A-ESRGAN's NIQE script uses); ``crop``
  border pixels are cut; the plane is rounded to integers; then cropped to a multiple of 96 pixels.
- MSCN coefficients ``(I - mu) / (sigma + 1)``, with ``mu`` and ``sigma = sqrt(|w*I^2 - mu^2|)`` from the
  7x7 Gaussian window (sigma 7/6) shipped with the pristine model, scipy convolution with 'nearest' borders.
- 96x96 blocks (column-major order: w outer, h inner), at two scales; the second scale is the MATLAB bicubic
  x0.5 with antialiasing (`imaging.imresize` of ``I / 255``, times 255), where blocks are 48x48.
- Per block 18 features: the AGGD fit of the MSCN (alpha, (beta_l + beta_r) / 2) and of its products with
  the block circularly shifted by [0, 1], [1, 0], [1, 1], [1, -1] (alpha, mean, beta_l, beta_r each). alpha
  is the grid value 0.2:0.001:10 whose r(alpha) is closest to the moment-matched estimate.
- Score ``sqrt((mu_p - mu_d) pinv((S_p + S_d) / 2) (mu_p - mu_d)^T)`` with the pristine Gaussian (mu_p, S_p)
  of ``niqe_pris_params.npz`` (from BasicSR, Apache-2.0; see metrics/NOTICE) and the image's (mu_d, S_d):
  the nan-mean of the block features and their covariance over blocks without NaN.

Arithmetic: the MSCN planes are BasicSR's float32 values bit for bit (computed with the separable form of the
window, see `mscn`); the AGGD statistics are summed in float64 (BasicSR: float32), and the alpha grid search
is one vectorised nearest-neighbour look-up on the strictly increasing r(alpha) table (the same index as an
argmin per block). BasicSR's test value for baboon (convert "y", no crop) 5.7295763 is reproduced to 1e-6.
The x0.5 resize runs in float64 and is rounded to float32 (BasicSR resizes in float32 torch).

Where BasicSR's score is NaN this one is finite (see docs/evaluation.md): a single block gives S_d = 0 (one
sample has no covariance), and when no block has a complete feature vector (flat or smooth images, whose
MSCN has no negative or no positive values) the estimator's limits are used (an empty side has deviation 0;
an all-zero block is a point mass, r = 1).
"""
import functools
import os

import numpy as np
from scipy import ndimage, special

from utils import UserError

BLOCK = 96
PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "niqe_pris_params.npz")
CONVERSIONS = ("y", "gray")
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))

# The AGGD shape grid and its tables: r(alpha) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) is strictly increasing on
# the grid (checked in the tests), so the argmin of (r - r_hat)^2 is one of the two neighbours of r_hat.
ALPHA_GRID = np.arange(0.2, 10.001, 0.001)
_R_GRID = np.square(special.gamma(2.0 / ALPHA_GRID)) / (special.gamma(1.0 / ALPHA_GRID)
                                                        * special.gamma(3.0 / ALPHA_GRID))
_BETA_FACTOR = np.sqrt(special.gamma(1.0 / ALPHA_GRID) / special.gamma(3.0 / ALPHA_GRID))  # std -> beta
_MEAN_FACTOR = special.gamma(2.0 / ALPHA_GRID) / special.gamma(1.0 / ALPHA_GRID)  # (beta_r - beta_l) -> mean


@functools.lru_cache(maxsize=None)
def pristine_params():
    """(mu 36, cov 36x36, window 7x7) float64 of the pristine multivariate Gaussian (read-only arrays)."""
    with np.load(PARAMS_FILE) as z:
        params = (z["mu_pris_param"].reshape(-1).astype(np.float64), z["cov_pris_param"].astype(np.float64),
                  z["gaussian_window"].astype(np.float64))
    for a in params:
        a.setflags(write=False)
    return params


def grey_plane(img, convert="y"):
    """The float64 HxW plane NIQE scores: Y (MATLAB BT.601) or Pillow 'L' of an RGB image; grey as it is.

    An RGB image is rounded to uint8 first (`metrics.quantize`), as every metric scores a saved image.
    """
    from metrics.fidelity import quantize, rgb_to_y

    if convert not in CONVERSIONS:
        raise UserError(f"NIQE conversion {convert!r} unknown; use one of {', '.join(CONVERSIONS)}")
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return img.astype(np.float64)
    if img.ndim != 3 or img.shape[-1] < 3:
        raise ValueError(f"NIQE expects an HxW or HxWx3 image, got shape {img.shape}")
    rgb = quantize(img[..., :3])
    if convert == "gray":
        from PIL import Image

        return np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64)
    return rgb_to_y(rgb)


def mscn(plane, window):
    """float32 mean-subtracted contrast-normalised coefficients (I - mu) / (sigma + 1) of a float32 plane.

    BasicSR's values exactly: scipy filters a float32 image in float64 and rounds the result to float32, and the
    rest is float32 arithmetic. That rounding also makes flat regions exactly 0 whichever way the float64 sum is
    ordered, so the separable filter used here gives the same bits as the 7x7 one (their float64 sums differ in
    the last digit, and the sign of such noise would decide which side of the AGGD a flat pixel falls on).
    """
    g = window.sum(axis=0)  # the window is the outer product of this 1-D Gaussian (to 3e-17)
    plane = np.asarray(plane, dtype=np.float32)

    def blur(x):  # x float32
        x = x.astype(np.float64)
        out = ndimage.correlate1d(ndimage.correlate1d(x, g, axis=0, mode="nearest"), g, axis=1, mode="nearest")
        return out.astype(np.float32)

    mu = blur(plane)
    sigma = np.sqrt(np.abs(blur(plane * plane) - mu * mu))
    return (plane - mu) / (sigma + np.float32(1.0))


def _nearest_alpha_index(r_hat):
    """Index into ALPHA_GRID of argmin (R - r_hat)^2 for each r_hat (first index on ties, 0 for NaN/inf, as argmin)."""
    hi = np.searchsorted(_R_GRID, r_hat)  # R[hi-1] < r_hat <= R[hi]
    hi = np.clip(hi, 1, len(_R_GRID) - 1)
    lo = hi - 1
    d_lo = np.square(_R_GRID[lo] - r_hat)
    d_hi = np.square(_R_GRID[hi] - r_hat)
    idx = np.where(d_hi < d_lo, hi, lo)
    return np.where(np.isfinite(r_hat), idx, 0)


def aggd_fit(x, limits=False):
    """AGGD (alpha, beta_l, beta_r) of each row of x (n x N), moment matching on the alpha grid.

    limits=False gives NaN where BasicSR does (a row without negative or without positive values);
    limits=True uses the estimator's limits there instead (empty side: deviation 0; all-zero row: r = 1).
    """
    # Negative and positive parts (exact in the input dtype), their sums of squares in float64: one pass each.
    x = np.asarray(x)
    neg = np.minimum(x, 0).astype(np.float64)
    pos = np.maximum(x, 0).astype(np.float64)
    n_neg = np.count_nonzero(neg, axis=1)
    n_pos = np.count_nonzero(pos, axis=1)
    sum_neg = np.einsum("ij,ij->i", neg, neg)
    sum_pos = np.einsum("ij,ij->i", pos, pos)
    mean_abs = (pos.sum(axis=1) - neg.sum(axis=1)) / x.shape[1]
    mean_sq = (sum_neg + sum_pos) / x.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(sum_neg / n_neg)  # NaN for an empty side (BasicSR: mean of an empty array)
        right = np.sqrt(sum_pos / n_pos)
        if limits:
            left = np.where(n_neg > 0, left, 0.0)
            right = np.where(n_pos > 0, right, 0.0)
        gammahat = left / right
        rhat = np.square(mean_abs) / mean_sq
        rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / np.square(gammahat**2 + 1)
        if limits:
            # gammahat -> 0 or inf: rhatnorm -> rhat; an all-zero row is a point mass (r = 1).
            rhat = np.where(mean_sq > 0, rhat, 1.0)
            rhatnorm = np.where(np.isfinite(gammahat) & (mean_sq > 0), rhatnorm, rhat)
    idx = _nearest_alpha_index(rhatnorm)
    factor = _BETA_FACTOR[idx]
    return ALPHA_GRID[idx], left * factor, right * factor, idx


def _block_stack(plane, size, n_h, n_w):
    """(n_w * n_h, size, size) blocks of a (n_h * size, n_w * size) plane, w outer and h inner as BasicSR."""
    return plane.reshape(n_h, size, n_w, size).transpose(2, 0, 1, 3).reshape(n_w * n_h, size, size)


def block_features(coeffs, size, n_h, n_w, limits=False):
    """(blocks x 18) NIQE features of one scale's float32 MSCN plane (products in float32 as BasicSR)."""
    blocks = _block_stack(coeffs, size, n_h, n_w)
    n = blocks.shape[0]
    feats = np.empty((n, 18))
    alpha, bl, br, _ = aggd_fit(blocks.reshape(n, -1), limits)
    feats[:, 0], feats[:, 1] = alpha, (bl + br) / 2
    for k, shift in enumerate(SHIFTS):
        prod = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, bl, br, idx = aggd_fit(prod.reshape(n, -1), limits)
        col = 2 + 4 * k
        feats[:, col] = alpha
        feats[:, col + 1] = (br - bl) * _MEAN_FACTOR[idx]
        feats[:, col + 2] = bl
        feats[:, col + 3] = br
    return feats


def features(plane, limits=False):
    """(blocks x 36) features of a rounded float64 plane at least 96x96 (cropped to a multiple of 96)."""
    import imaging

    _, _, window = pristine_params()
    n_h, n_w = plane.shape[0] // BLOCK, plane.shape[1] // BLOCK
    plane = plane[: n_h * BLOCK, : n_w * BLOCK]
    scale1 = block_features(mscn(plane, window), BLOCK, n_h, n_w, limits)
    half = (imaging.imresize(np.asarray(plane, np.float64) / 255.0, scale=0.5) * 255.0).astype(np.float32)
    scale2 = block_features(mscn(half, window), BLOCK // 2, n_h, n_w, limits)
    return np.concatenate([scale1, scale2], axis=1)


def score_features(feats):
    """The NIQE distance of (blocks x 36) features to the pristine model."""
    mu_p, cov_p, _ = pristine_params()
    with np.errstate(invalid="ignore"):
        mu_d = np.nanmean(feats, axis=0)
    complete = feats[np.isfinite(feats).all(axis=1)]
    # One block has no covariance (np.cov would divide by zero): take S_d = 0 rather than BasicSR's NaN.
    cov_d = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros_like(cov_p)
    diff = mu_p - mu_d
    quality = diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff
    return float(np.sqrt(quality))


def niqe(img, convert="y", crop=0):
    """NIQE of one image (uint8 or float in [0, 255], HxW or HxWx3 RGB); lower is better.

    convert: "y" (MATLAB BT.601 luma, BasicSR's default) or "gray" (Pillow convert("L"), A-ESRGAN's script).
    crop: border pixels cut from every side before scoring (BasicSR's crop_border).
    """
    plane = grey_plane(img, convert)
    crop = int(crop)
    if crop < 0:
        raise UserError(f"NIQE crop must be >= 0, not {crop}")
    if crop:
        plane = plane[crop:-crop, crop:-crop]
    if plane.shape[0] < BLOCK or plane.shape[1] < BLOCK:
        h, w = np.asarray(img).shape[:2]
        raise UserError(f"NIQE needs an image of at least {BLOCK}x{BLOCK} pixels; this one is {w}x{h}"
                        + (f", {plane.shape[1]}x{plane.shape[0]} after a crop of {crop}" if crop else ""))
    plane = np.round(plane).astype(np.float32)  # integer grey levels, as BasicSR and the MATLAB release
    feats = features(plane)
    if not np.isfinite(feats).all(axis=1).any():  # BasicSR's score would be NaN: use the estimator's limits
        feats = features(plane, limits=True)
    return score_features(feats)
