"""NIQE speed: metrics.niqe (vectorised AGGD fit) against a plain per-block implementation, on one core.

    python benchmarks/niqe_speed.py [--size 1024] [--repeats 5] [--image PATH]

Prints the median seconds of each over --repeats runs on a --size x --size image (a crop of a Set5/B100
image tiled to size when ../shared is there, else a synthetic photo-like image), and both scores.
`testing.niqe_reference.reference_niqe` is the plain implementation (loops over blocks, an argmin over the
alpha grid per fit, the 2-D window convolution, as BasicSR's code is organised); tests/test_niqe.py compares the two.
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

from testing.niqe_reference import reference_niqe  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
