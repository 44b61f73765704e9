"""A plain per-block NIQE (loops over blocks, an argmin over the alpha grid per fit, the 2-D window convolution,
as BasicSR's code is organised): the reference tests/test_niqe.py and benchmarks/niqe_speed.py hold metrics.niqe to."""
import numpy as np
from scipy import ndimage, special


def _aggd_plain(block):
    """(alpha, beta_l, beta_r) of one block: the r(alpha) grid recomputed and searched by argmin on each call."""
    block = block.ravel().astype(np.float64)
    gam = np.arange(0.2, 10.001, 0.001)
    r_gam = np.square(special.gamma(2 / gam)) / (special.gamma(1 / gam) * special.gamma(3 / gam))
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(np.mean(block[block < 0] ** 2)) if (block < 0).any() else np.nan
        right = np.sqrt(np.mean(block[block > 0] ** 2)) if (block > 0).any() else np.nan
        g = left / right
        rhat = np.mean(np.abs(block)) ** 2 / np.mean(block**2)
        rnorm = rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
        alpha = gam[np.argmin((r_gam - rnorm) ** 2)]
    f = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    return alpha, left * f, right * f


def _block_features_plain(block):
    alpha, bl, br = _aggd_plain(block)
    feat = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, bl, br = _aggd_plain(block * np.roll(block, shift, axis=(0, 1)))
        feat += [alpha, (br - bl) * special.gamma(2 / alpha) / special.gamma(1 / alpha), bl, br]
    return feat


def reference_niqe(plane):
    """Plain per-block NIQE of a rounded grey plane: BasicSR's algorithm and float32 MSCN, float64 statistics."""
    import imaging
    from metrics import niqe

    mu_p, cov_p, window = niqe.pristine_params()
    n_h, n_w = plane.shape[0] // 96, plane.shape[1] // 96
    img = np.asarray(plane, dtype=np.float32)[: n_h * 96, : n_w * 96]
    per_scale = []
    for scale in (1, 2):
        mu = ndimage.convolve(img, window, mode="nearest")  # float32 in, float32 out (float64 inside)
        sigma = np.sqrt(np.abs(ndimage.convolve(img * img, window, mode="nearest") - mu * mu))
        coeffs = (img - mu) / (sigma + 1)
        size = 96 // scale
        per_scale.append(np.array([_block_features_plain(coeffs[i * size:(i + 1) * size, j * size:(j + 1) * size])
                                   for j in range(n_w) for i in range(n_h)]))
        if scale == 1:
            img = (imaging.imresize(img.astype(np.float64) / 255.0, scale=0.5) * 255.0).astype(np.float32)
    feats = np.concatenate(per_scale, axis=1)
    mu_d = np.nanmean(feats, axis=0)
    cov_d = np.cov(feats[~np.isnan(feats).any(axis=1)], rowvar=False)
    d = mu_p - mu_d
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov_d) / 2) @ d))
