"""Uncertainty metrics for log-variance models (numpy): NLL, AUSE, Spearman, calibration, and plots.

Units: errors and sigmas are in grey levels (the 0..255 pixel scale); sigma comes from
`losses.sigma_from_logvar` (THE conversion, same as demo and bench; s clipped to [-10, 10]).
Every pixel of every channel is one sample. Given lists of images, all samples are pooled into one set
(pixel-pooled, so big images weigh more); pass one image at a time for per-image values.
"""
import math

import numpy as np
from scipy import special, stats

from losses import sigma_from_logvar
from utils import atomic_path

SPARSIFICATION_STEPS = 50
CALIBRATION_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # nominal 0.05 .. 0.95
SPEARMAN_MAX_SAMPLES = 250_000  # rank correlation on a fixed random subset beyond this (speed)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def errors_and_sigmas(hr, mean, logvar=None, loss_mode="l2", shave=0):
    """Flattened (error = mean - hr, sigma) float64 arrays in grey levels over all pixels and channels.

    hr: HxWx3 (uint8 or float, a grey HxW is broadcast to 3 channels), mean: HxWx3, logvar: HxWx3, or
    mean HxWx6 with logvar None. Lists of images are pooled. shave crops that many border pixels.
    """
    hrs, means = _as_list(hr), _as_list(mean)
    logvars = _as_list(logvar) if logvar is not None else [None] * len(means)
    if not (len(hrs) == len(means) == len(logvars)) or not hrs:
        raise ValueError("hr, mean and logvar must be images or equally long, non-empty lists of images")
    errs, sigmas = [], []
    for h, m, s in zip(hrs, means, logvars):
        h = np.asarray(h, dtype=np.float64)
        m = np.asarray(m, dtype=np.float64)
        if s is None:
            if m.ndim != 3 or m.shape[-1] != 6:
                raise ValueError("logvar missing and mean is not a 6-channel (mean, logvar) output")
            m, s = m[..., :3], m[..., 3:]
        s = np.asarray(s, dtype=np.float64)
        if h.ndim == 2:
            h = np.repeat(h[..., None], m.shape[-1], axis=-1)
        if h.shape != m.shape or s.shape != m.shape:
            raise ValueError(f"shape mismatch: hr {h.shape}, mean {m.shape}, logvar {s.shape}")
        if shave:
            h, m, s = (a[shave:-shave, shave:-shave] for a in (h, m, s))
        errs.append((m - h).ravel())
        sigmas.append(sigma_from_logvar(s, loss_mode).ravel())
    err, sigma = np.concatenate(errs), np.concatenate(sigmas)
    if err.size == 0:
        raise ValueError("no pixels left to score (image smaller than twice the shave)")
    return err, sigma


def gaussian_nll(err, sigma):
    """Mean Gaussian negative log-likelihood in nats per value, density over grey levels."""
    return float(np.mean(0.5 * np.log(2 * np.pi * sigma**2) + 0.5 * (err / sigma) ** 2))


def _kept_sums(key, values, keep):
    """For each count in `keep`: the sum of `values` over the first `count` elements in stable ascending
    `key` order (ties in index order), as `np.cumsum(values[np.argsort(key, kind="stable")])[keep - 1]`.

    Without the indirect sort, which is slow for DIV2K-sized arrays: one np.sort finds the key at each cut,
    a binned sum adds everything below it, and only the elements tied with a cut key are ordered explicitly.
    """
    cut_keys = np.sort(key)[keep - 1]  # key of the last kept element, per count
    cuts = np.unique(cut_keys)
    right = np.searchsorted(cuts, key, side="right")  # key < cuts[j] iff right <= j
    below_sum = np.cumsum(np.bincount(right, weights=values, minlength=cuts.size + 1))
    below_count = np.cumsum(np.bincount(right, minlength=cuts.size + 1))
    left = np.searchsorted(cuts, key, side="left")
    tied = np.flatnonzero(right != left)  # elements equal to some cut key, in index order
    group = left[tied]  # which cut
    order = np.argsort(group, kind="stable")
    group = group[order]
    tied_csum = np.concatenate([[0.0], np.cumsum(values[tied][order])])
    starts = np.searchsorted(group, np.arange(cuts.size))
    j = np.searchsorted(cuts, cut_keys)
    need = keep - below_count[j]  # how many of the elements tied at the cut are kept (>= 1)
    return below_sum[j] + tied_csum[starts[j] + need] - tied_csum[starts[j]]


def sparsification(err, sigma, steps=SPARSIFICATION_STEPS):
    """RMSE sparsification curves (Ilg et al. 2018).

    For k = 0 .. steps-1, remove the fraction k/steps of values with the largest sigma (curve) or the
    largest |error| (oracle) and take the RMSE of the rest. Returns (fractions, curve, oracle), RMSE in
    grey levels. Ties are broken by position (a stable order), so sigma = |error| gives exactly the oracle.
    """
    n = err.size
    sq = err**2
    fractions = np.arange(steps) / steps
    keep = np.maximum(n - np.round(fractions * n).astype(np.int64), 1)

    def curve(key):
        return np.sqrt(_kept_sums(key, sq, keep) / keep)

    return fractions, curve(sigma), curve(np.abs(err))


def ause(fractions, curve, oracle):
    """Area between sparsification curve and oracle over the fraction axis [0, 1] (grey levels).

    Riemann sum with the step width 1/steps: the mean gap over the sampled fractions.
    """
    return float(np.mean(curve - oracle))


def spearman(err, sigma, max_samples=SPEARMAN_MAX_SAMPLES):
    """Spearman rank correlation between sigma and |error|; NaN when either is constant.

    Above max_samples values it uses a fixed random subset of about that size (seed 0), so the result
    is deterministic; its sampling error is about 1/sqrt(max_samples).
    """
    abs_err = np.abs(err)
    if err.size > max_samples:
        idx = np.flatnonzero(np.random.default_rng(0).random(err.size) < max_samples / err.size)
        abs_err, sigma = abs_err[idx], sigma[idx]
    if np.ptp(abs_err) == 0 or np.ptp(sigma) == 0:
        return float("nan")
    return float(stats.spearmanr(sigma, abs_err).statistic)


def calibration(err, sigma, levels=CALIBRATION_LEVELS):
    """Observed coverage of central Gaussian intervals mu +- z_p * sigma at nominal levels p.

    Returns (nominal, observed, calibration_error = mean |observed - nominal|).
    """
    nominal = np.asarray(levels, dtype=np.float64)
    z = math.sqrt(2.0) * special.erfinv(nominal)  # two-sided: P(|N(0,1)| <= z) = p
    # count |err| / sigma <= z_p for all levels in one binning pass (no sort of the n values)
    bins = np.searchsorted(z, np.abs(err) / sigma, side="left")  # t <= z[i] iff bins <= i
    observed = np.cumsum(np.bincount(bins, minlength=z.size + 1))[: z.size] / err.size
    return nominal, observed, float(np.mean(np.abs(observed - nominal)))


def curves(hr, mean, logvar=None, loss_mode="l2", shave=0):
    """Everything for plots and metrics: a dict of curves (numpy arrays) and the scalar metrics.

    Keys: fractions, sparsification, oracle, random (flat line at the full RMSE: the expected curve of
    a random ranking), nominal, observed, rmse, mean_sigma, and the `metrics` keys.
    """
    err, sigma = errors_and_sigmas(hr, mean, logvar, loss_mode, shave)
    fractions, curve, oracle = sparsification(err, sigma)
    nominal, observed, cal_err = calibration(err, sigma)
    rmse = float(np.sqrt(np.mean(err**2)))
    return {
        "fractions": fractions, "sparsification": curve, "oracle": oracle,
        "random": np.full_like(fractions, rmse), "nominal": nominal, "observed": observed,
        "rmse": rmse, "mean_sigma": float(np.mean(sigma)),
        "nll": gaussian_nll(err, sigma), "ause_rmse": ause(fractions, curve, oracle),
        "spearman": spearman(err, sigma), "calibration_error": cal_err,
    }


def metrics_from_curves(c):
    """The four scalar metrics out of a `curves` dict."""
    return {k: float(c[k]) for k in ("nll", "ause_rmse", "spearman", "calibration_error")}


def metrics(hr, mean, logvar=None, loss_mode="l2", shave=0):
    """{"nll", "ause_rmse", "spearman", "calibration_error"} over all pixels and channels.

    nll: mean Gaussian NLL in nats per value with values in grey levels (0..255), sigma from
      `losses.sigma_from_logvar` (for L1 models the Laplace std, i.e. a moment-matched Gaussian).
    ause_rmse: area between the RMSE sparsification curve (50 steps) and its |error| oracle, grey levels.
    spearman: rank correlation of sigma with |error| (NaN for constant sigma).
    calibration_error: mean |observed - nominal| coverage of Gaussian intervals, nominal 0.05 .. 0.95.
    hr and mean as for `errors_and_sigmas` (pass the unquantised mean); lists are pixel-pooled.
    """
    return metrics_from_curves(curves(hr, mean, logvar, loss_mode, shave))


def _labelled(c):
    return c.items() if "fractions" not in c else [(None, c)]


def _save(fig, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def plot_sparsification(c, path, title="Sparsification (RMSE)"):
    """PNG of sparsification curve vs oracle (and random) for one `curves` dict or {label: curves}."""
    from matplotlib.figure import Figure

    items = list(_labelled(c))
    fig = Figure(figsize=(6, 4 + 0.5 * len(items)), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, cv) in enumerate(items):
        color = f"C{i}"
        name = f"{label}: " if label else ""
        ax.plot(cv["fractions"], cv["sparsification"], color=color,
                label=f"{name}by sigma (AUSE {cv['ause_rmse']:.2f})")
        ax.plot(cv["fractions"], cv["oracle"], color=color, linestyle="--", label=f"{name}oracle")
        ax.plot(cv["fractions"], cv["random"], color=color, linestyle=":", label=f"{name}random")
    ax.set_xlabel("fraction of pixels removed (largest first)")
    ax.set_ylabel("RMSE of the rest (grey levels)")
    ax.set_title(title)
    fig.legend(loc="outside lower center", fontsize="small", ncols=1)
    return _save(fig, path)


def plot_calibration(c, path, title="Calibration (Gaussian intervals)"):
    """PNG of observed vs nominal coverage for one `curves` dict or {label: curves}."""
    from matplotlib.figure import Figure

    items = list(_labelled(c))
    fig = Figure(figsize=(5, 4.5 + 0.3 * len(items)), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="ideal")
    for i, (label, cv) in enumerate(items):
        name = f"{label}: " if label else ""
        ax.plot(cv["nominal"], cv["observed"], marker="o", markersize=3, color=f"C{i}",
                label=f"{name}error {cv['calibration_error']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.set_title(title)
    fig.legend(loc="outside lower center", fontsize="small", ncols=1)
    return _save(fig, path)
