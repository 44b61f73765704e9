"""NIQE speed: metrics.niqe (vectorised AGGD fit) against a plain per-block implementation, on one core.

    python benchmarks/niqe_speed.py [--size 1024] [--repeats 5] [--image PATH]

Prints the median seconds of each over --repeats runs on a --size x --size image (a crop of a Set5/B100
image tiled to size when ../shared is there, else a synthetic photo-like image), and both scores.
`reference_niqe` is the plain implementation (loops over blocks, an argmin over the alpha grid per fit, the
2-D window convolution, as BasicSR's code is organised); tests/test_niqe.py compares the two.
"""
import argparse
import math
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the issue asks
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import ndimage, special  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


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


def test_image(size):
    """A size x size uint8 RGB image: a shared test image tiled/cropped to size, else a synthetic one."""
    shared = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "B100", "HR")
    if os.path.isdir(shared):
        import imaging

        img = imaging.read_image(os.path.join(shared, sorted(os.listdir(shared))[0]))
        reps = (math.ceil(size / img.shape[0]), math.ceil(size / img.shape[1]), 1)
        return np.tile(img, reps)[:size, :size]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    base = 128 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + 25 * rng.standard_normal((size, size))
    return np.clip(np.stack([base, base * 0.9, base * 1.1], -1), 0, 255).astype(np.uint8)


def _median_seconds(fn, repeats):
    """(median wall seconds, median CPU seconds of this process, value): CPU time stays honest on a busy machine."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        value = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu), value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--image", default=None, help="score this image (cropped to --size) instead")
    args = p.parse_args(argv)
    from metrics import niqe

    if args.image:
        import imaging

        img = imaging.read_image(args.image)[: args.size, : args.size]
    else:
        img = test_image(args.size)
    plane = np.round(niqe.grey_plane(img, "y"))
    niqe.niqe(img)  # warm up (imports, tables)
    t_fast, c_fast, fast = _median_seconds(lambda: niqe.niqe(img), args.repeats)
    t_plain, c_plain, plain = _median_seconds(lambda: reference_niqe(plane), max(1, min(args.repeats, 3)))
    print(f"image {img.shape[1]}x{img.shape[0]}, one thread (OMP/OPENBLAS/MKL_NUM_THREADS=1), median of runs")
    print(f"metrics.niqe (vectorised)    wall {t_fast:.3f} s  cpu {c_fast:.3f} s  NIQE {fast:.9f}")
    print(f"plain per-block reference    wall {t_plain:.3f} s  cpu {c_plain:.3f} s  NIQE {plain:.9f}")
    print(f"speed-up {c_plain / c_fast:.1f}x (cpu), |difference| {abs(fast - plain):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
