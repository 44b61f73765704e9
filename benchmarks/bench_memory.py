"""Memory of benchmarking many checkpoints: peak RSS after 1, 3, 10 and 30 edsr-16 checkpoints.

Each checkpoint is loaded, evaluated with `evaluation.evaluate` and dropped exactly as bench.py's loop does
(`checkpoints.load_checkpoint`, `evaluate`, `del model`, `keras.backend.clear_session()`). The checkpoints are
random-weight edsr-16 x2 models saved as .keras files in a temporary folder by a child process, so that
making them does not count towards this process's peak. Goal (issue 9): the peak after 30 checkpoints is
at most 10% above the peak after 3, i.e. bench holds one model at a time.

    python benchmarks/bench_memory.py                       # TensorFlow, 30 checkpoints, 2 images of 64x64 LR
    KERAS_BACKEND=jax python benchmarks/bench_memory.py --checkpoints 10
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPORT_AT = (1, 3, 10, 30)


def rss_mb():
    """Current resident set size (MB) from /proc, or the peak where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_mb()


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def make_checkpoints(folder, n, arch, scale, filters, blocks):
    """n .keras files of one architecture, each with its own random weights (child-process entry)."""
    import keras
    import numpy as np

    import model as model_lib

    keras.utils.set_random_seed(0)
    m = model_lib.build_model(arch, scale, num_filters=filters, num_res_blocks=blocks)
    base = m.get_weights()
    rng = np.random.default_rng(0)
    for i in range(n):
        m.set_weights([w + 0.01 * rng.standard_normal(w.shape).astype(w.dtype) for w in base])
        m.save(os.path.join(folder, f"epoch-{i + 1:03d}-psnr-0.0000.keras"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", type=int, default=30, help="number of checkpoints (default 30)")
    p.add_argument("--images", type=int, default=2, help="evaluation images per checkpoint (default 2)")
    p.add_argument("--size", type=int, default=64, help="LR side of the evaluation images (default 64)")
    p.add_argument("--arch", default="edsr")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--blocks", type=int, default=16)
    p.add_argument("--make", metavar="DIR", help=argparse.SUPPRESS)  # internal: write the checkpoints
    args = p.parse_args(argv)
    if args.make:
        make_checkpoints(args.make, args.checkpoints, args.arch, args.scale, args.filters, args.blocks)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_memory_") as folder:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, os.path.abspath(__file__), "--make", folder,
                        *[f"--{k}={getattr(args, k)}" for k in ("checkpoints", "arch", "scale", "filters", "blocks")]],
                       check=True)
        print(f"wrote {args.checkpoints} {args.arch} x{args.scale} ({args.filters} filters, {args.blocks} blocks) "
              f"checkpoints in {time.perf_counter() - t0:.0f} s", flush=True)

        import keras
        import numpy as np

        from evaluation import checkpoints
        from evaluation import scorer
        from testing.images import smooth_image

        rng = np.random.default_rng(0)
        s = args.scale
        pairs = [(f"img{i}", None, smooth_image(rng, args.size * s, args.size * s)) for i in range(args.images)]
        paths = checkpoints.find_checkpoints([folder])
        print(f"backend {keras.backend.backend()}; RSS before the first checkpoint {rss_mb():.0f} MB")
        print(f"{'checkpoints':>11} {'peak RSS MB':>12} {'RSS MB':>8} {'s/checkpoint':>13}")
        peaks = {}
        t0 = time.perf_counter()
        for i, path in enumerate(paths, 1):
            model = checkpoints.load_checkpoint(path)
            scorer.evaluate(model, pairs, s, progress=False, name=path)
            del model
            keras.backend.clear_session()  # as bench.py does after each checkpoint
            if i in REPORT_AT or i == len(paths):
                peaks[i] = peak_mb()
                print(f"{i:>11} {peaks[i]:>12.0f} {rss_mb():>8.0f} {(time.perf_counter() - t0) / i:>13.2f}",
                      flush=True)
    if 3 in peaks and len(paths) > 3:
        last = max(peaks)
        ratio = peaks[last] / peaks[3]
        verdict = "ok" if ratio <= 1.10 else "FAILS the 10% goal"
        print(f"peak after {last} / peak after 3 = {peaks[last]:.0f} / {peaks[3]:.0f} MB = {ratio:.3f} ({verdict})")
        return 0 if ratio <= 1.10 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
