"""Speed of the Real-ESRGAN degradation transform: degraded (GT 256, LQ 64) pairs per second.

    python benchmarks/degradation_speed.py                 # 1 worker, then all cores as threads and processes
    python benchmarks/degradation_speed.py --image photo.png --pairs 200 --repeats 5
    python benchmarks/degradation_speed.py --ops           # also time each operation, OpenCV vs numpy/scipy/Pillow
    python benchmarks/degradation_speed.py --reference     # also the reference pipeline (realesrgan + basicsr, CPU)

Each pair is one call of `RealESRGANTransform(crop=True)(hr, rng)` (Real-ESRGAN's recipe: 400 crop, degrade,
paired crop GT 256 / LQ 64) on a 400+ px source image (default: scikit-image's
512x512 astronaut), with a per-sample generator keyed by (seed, epoch, index), the sharpened GT included, with
the preset's defaults (the sharpened GT degraded, DiffJPEG). --reference times the reference pipeline on the same
image: RealESRGANDataset.__getitem__ (kernels, flip, 400 crop) + RealESRGANModel.feed_data on the CPU
(torch.set_num_threads(1): CPU time per pair = per core), at batch 1 and 12 (without the pool, which only copies).
The machine may be shared: medians over repeats; CPU time per pair (one worker) is printed too, as it is
less disturbed by other jobs than wall time. OpenCV's own thread pool is set to 1 thread
(cv2.setNumThreads(1)) so that it does not fight the workers.
"""
import argparse
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


_STATE = {}


def sample_rng(seed, epoch, index):
    # the loader's keying: Philox with an explicit (seed, epoch << 32 | index) key
    return np.random.Generator(np.random.Philox(key=[seed & 0xFFFFFFFFFFFFFFFF, ((epoch & 0xFFFFFFFF) << 32) | (index & 0xFFFFFFFF)]))


def _init(hr, usm, loader_crops=False, config=None):
    import degradations

    _STATE["hr"] = hr
    _STATE["loader_crops"] = loader_crops
    _STATE["t"] = degradations.RealESRGANTransform(config=dict(config or {}, usm=usm), crop=not loader_crops,
                                                   cv2_threads=1)


def _one(index):
    rng = sample_rng(0, 0, index)
    hr = _STATE["hr"]
    if _STATE["loader_crops"]:  # as data.HRPatches: a random 256 crop, degraded whole
        y, x = rng.integers(hr.shape[0] - 255), rng.integers(hr.shape[1] - 255)
        hr = hr[y: y + 256, x: x + 256]
    return _STATE["t"](hr, rng)


def _chunk(indices):
    return [_one(i) for i in indices]


def run_serial(n, offset):
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(offset, offset + n):
        _one(i)
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n


def run_threads(pool, n, offset):
    t0 = time.perf_counter()
    for _ in pool.map(_one, range(offset, offset + n)):
        pass
    return n / (time.perf_counter() - t0)


def run_processes(pool, n, offset, workers):
    chunks = [list(range(offset + k, offset + n, workers)) for k in range(workers)]
    chunks = [c[j: j + 8] for c in chunks for j in range(0, len(c), 8)]
    t0 = time.perf_counter()
    for _ in pool.imap_unordered(_chunk, chunks):
        pass
    return n / (time.perf_counter() - t0)


def load_image(path):
    import imaging

    if path:
        hr = imaging.read_image(path)
    else:
        from skimage import data as skdata

        hr = np.ascontiguousarray(skdata.astronaut()[:, :, :3])
    return hr


def time_ops(hr, repeats):
    """Milliseconds (CPU, median) of each operation on a 400x400 float32 image: OpenCV vs the alternatives."""
    import io

    import cv2
    from PIL import Image
    from scipy import ndimage

    from degradations import kernels as K
    from degradations import pipeline as P

    img = (P.crop_gt(hr, {"scale": 4, "flip": False, "crop": [0, 0]}, P.REALESRGAN)).astype(np.float32) / 255
    u8 = P.to_uint8(img)
    rng = np.random.default_rng(0)
    aniso = K.build_kernel({"type": "aniso", "size": 21, "sigma_x": 2.0, "sigma_y": 1.0, "theta": 0.5})
    iso = K.build_kernel({"type": "iso", "size": 21, "sigma_x": 2.0, "sigma_y": 2.0, "theta": 0.0})
    k11 = K.build_kernel({"type": "aniso", "size": 11, "sigma_x": 2.0, "sigma_y": 1.0, "theta": 0.5}, None)
    g51 = cv2.getGaussianKernel(51, 8)

    def pil_jpeg():
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=60)
        buf.seek(0)
        return np.asarray(Image.open(buf))

    ops = [
        ("blur 21x21 aniso", lambda: P.filter2d(img, aniso), lambda: ndimage.correlate(img, aniso[:, :, None], mode="mirror")),
        ("blur 11x11 aniso", lambda: P.filter2d(img, k11), lambda: ndimage.correlate(img, k11[:, :, None], mode="mirror")),
        ("blur 21x21 iso (separable)", lambda: P.filter2d(img, iso),
         lambda: ndimage.correlate1d(ndimage.correlate1d(img, iso.sum(1), 0, mode="mirror"), iso.sum(0), 1, mode="mirror")),
        ("USM 51x51 sigma 8, 256 crop", lambda: P.usm_sharp(img, region=(72, 72, 256, 256)),
         lambda: ndimage.correlate1d(ndimage.correlate1d(img, g51[:, 0], 0, mode="mirror"), g51[:, 0], 1, mode="mirror")),
        ("resize bicubic 400 -> 230", lambda: P.resize(img, (230, 230), "bicubic"),
         lambda: Image.fromarray(u8).resize((230, 230), Image.BICUBIC)),
        ("resize area 400 -> 230", lambda: P.resize(img, (230, 230), "area"),
         lambda: Image.fromarray(u8).resize((230, 230), Image.BOX)),
        ("JPEG q60 encode+decode 400", lambda: P.jpeg(img, 60), pil_jpeg),
        ("Poisson noise 400x400x3", lambda: P.add_noise(img, {"kind": "poisson", "scale": 1.0, "gray": False}, rng),
         lambda: rng.poisson(u8 * (256 / 255.0))),
        ("Gaussian noise 400x400x3", lambda: P.add_noise(img, {"kind": "gaussian", "sigma": 10.0, "gray": False}, rng),
         lambda: np.clip(img + rng.normal(0, 10 / 255, img.shape), 0, 1)),
    ]

    def cpu_ms(fn):
        fn()
        out = []
        for _ in range(repeats):
            c0 = time.thread_time()
            fn()
            out.append((time.thread_time() - c0) * 1e3)
        return statistics.median(out)

    print(f"\nper operation, CPU ms (median of {repeats}); ours = OpenCV + numpy as used, alternative = scipy / Pillow / numpy")
    print(f"{'operation':32s} {'ours':>8s} {'alternative':>12s}")
    for name, ours, alt in ops:
        print(f"{name:32s} {cpu_ms(ours):8.2f} {cpu_ms(alt):12.2f}")


def time_reference(hr, repeats, batches=(1, 12)):
    """{batch size: (CPU ms per pair, wall ms per pair)} of the reference pipeline (medians), or None."""
    import tempfile

    import torch

    from testing import degradation_stats as S

    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref = S.reference_pipeline(tmp, S.write_crops(tmp, [hr]))
        if ref is None:
            return None
        S.reference_batch(*ref, [0])  # warm up
        for b in batches:
            cpu, wall = [], []
            for _ in range(repeats):
                c0, t0 = time.process_time(), time.perf_counter()
                S.reference_batch(*ref, [0] * b)
                cpu.append((time.process_time() - c0) / b * 1e3)
                wall.append((time.perf_counter() - t0) / b * 1e3)
            out[b] = (statistics.median(cpu), statistics.median(wall))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image", help="source HR image (default: scikit-image's astronaut, 512x512)")
    p.add_argument("--pairs", type=int, default=100, help="pairs per timed run (default 100)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per setting; the median is reported (default 5)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers for the parallel runs (default: all cores)")
    p.add_argument("--no-usm", action="store_true", help="skip the sharpened GT (what a plain L1 / NIQE setup needs)")
    p.add_argument("--loader-crops", action="store_true",
                   help="time the default transform on random 256 crops (what data.HRPatches --lr-patch 64 gives) "
                        "instead of Real-ESRGAN's 400 crop + paired crop")
    p.add_argument("--ops", action="store_true", help="also time each operation against numpy / scipy / Pillow")
    p.add_argument("--reference", action="store_true",
                   help="also time the reference pipeline (realesrgan + basicsr on the CPU, 1 thread) on the same image")
    p.add_argument("--no-parallel", action="store_true", help="skip the thread / process pool runs")
    p.add_argument("--config", default="{}", help="degradation options as JSON, e.g. '{\"jpeg_impl\": \"libjpeg\"}'")
    args = p.parse_args(argv)

    import cv2

    cv2.setNumThreads(1)
    import json

    hr = load_image(args.image)
    config = json.loads(args.config)
    _init(hr, not args.no_usm, args.loader_crops, config)
    for i in range(20):  # warm up: Poisson tables, OpenCV's code paths
        _one(10_000 + i)
    how = "256 loader crops degraded whole" if args.loader_crops else "400 crop -> paired crop"
    print(f"source {hr.shape[1]}x{hr.shape[0]}, pairs GT 256 / LQ 64 ({how}), usm {'off' if args.no_usm else 'on'}, "
          f"{args.pairs} pairs x {args.repeats} runs, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    serial = [run_serial(args.pairs, r * args.pairs) for r in range(args.repeats)]
    rate1 = statistics.median(s[0] for s in serial)
    cpu1 = statistics.median(s[1] for s in serial) * 1e3
    print(f"1 worker:                 {rate1:7.1f} pairs/s   ({cpu1:.1f} ms CPU per pair = {1000 / cpu1:.1f} pairs/s per core)")
    if args.reference:
        ref = time_reference(hr, max(1, min(args.repeats, 3)))
        if ref is None:
            print("reference: not installed (pip install -r requirements-reference.txt)")
        for b, (cpu, wall) in (ref or {}).items():
            print(f"reference, batch {b:2d}:     {1000 / wall:7.1f} pairs/s   ({cpu:.1f} ms CPU per pair = "
                  f"{1000 / cpu:.2f} pairs/s per core; ours is {cpu / cpu1:.0f}x faster per core)")
    w = max(1, args.workers)
    if args.no_parallel:
        return 0
    with ThreadPoolExecutor(w) as pool:
        list(pool.map(_one, range(20_000, 20_000 + 2 * w)))
        rates = [run_threads(pool, args.pairs, r * args.pairs) for r in range(args.repeats)]
    print(f"{w} workers, threads:      {statistics.median(rates):7.1f} pairs/s")
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(w, initializer=_init, initargs=(hr, not args.no_usm, args.loader_crops, config)) as pool:
        list(pool.imap_unordered(_chunk, [[30_000 + i] for i in range(2 * w)]))
        rates = [run_processes(pool, args.pairs, r * args.pairs, w) for r in range(args.repeats)]
    print(f"{w} workers, processes:    {statistics.median(rates):7.1f} pairs/s   (results pickled back, as a loader would)")
    print(f"target: >= 50 pairs/s on one core")
    if args.ops:
        time_ops(hr, max(5, args.repeats))
    return 0


if __name__ == "__main__":
    main()
