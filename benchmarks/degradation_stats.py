"""LQ statistics of the degradation pipeline vs the reference pipeline (realesrgan 0.3.0 + basicsr 1.4.2) on the same GT.

    python benchmarks/degradation_stats.py                      # Set14 + B100 400x400 crops, 2 draws each
    python benchmarks/degradation_stats.py --draws 1 --limit 40 --variants
    python benchmarks/degradation_stats.py --paired --limit 40     # the reference driven by the same draws
    python benchmarks/degradation_stats.py --kernels               # kernel draws vs RealESRGANDataset's

For each source of (LQ, GT) pairs: the median Laplacian-variance ratio (LQ / GT bicubic-downscaled to the LQ
size) and the median chroma share of the LQ's high-frequency residual (definitions: testing/degradation_stats.py),
each as a ratio to the reference's, with the two-sample KS statistic and p-value. Sources: the reference
(RealESRGANDataset + RealESRGANModel.feed_data on the CPU), the training transform (Real-ESRGAN's recipe,
crop=True) and `convert.py degrade` (whole crops). --variants adds the training transform with each reference
choice undone (plain GT, libjpeg, both) to measure what each one changes. --paired runs the reference code
with the project's drawn choices instead of its own draws (testing.degradation_stats.paired_pairs): the same
degradations on both sides, so few pairs measure the implementation difference precisely.
"""
import argparse
import os
import sys
import time

import numpy as np


SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "datasets")


def kernels(n, seed):
    """Second moment sum(k r^2) of the stage-1, stage-2 and final kernels: ours vs the reference dataset's draws."""
    import random
    import tempfile

    from scipy import stats as sps

    from degradations import kernels as K
    from degradations import pipeline as P
    from testing import degradation_stats as S

    def moment(k):
        k = np.asarray(k, np.float64)
        ax = np.arange(k.shape[0]) - k.shape[0] // 2
        return float((k * (ax[:, None] ** 2 + ax[None, :] ** 2)).sum())

    random.seed(seed)
    np.random.seed(seed)
    names = ("kernel1", "kernel2", "sinc_kernel")
    ref, ours = {k: [] for k in names}, {k: [] for k in names}
    with tempfile.TemporaryDirectory() as tmp:
        made = S.reference_pipeline(tmp, S.write_crops(tmp, [np.full((400, 400, 3), 128, np.uint8)]))
        if made is None:
            sys.exit("error: the reference packages are not installed (pip install -r requirements-reference.txt)")
        for _ in range(n):
            item = made[0][0]
            for k in names:
                ref[k].append(moment(item[k].numpy()))
    c = P.REALESRGAN
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        p = P.sample_params(rng, c, (400, 400), 4)
        k2 = p["kernel2"] or K.draw_kernel_params(  # the dataset always draws kernel2; feed_data may skip it
            rng, kernel_list=c["kernel_list2"], kernel_prob=c["kernel_prob2"], sigma=c["blur_sigma2"],
            betag_range=c["betag_range2"], betap_range=c["betap_range2"], sinc_prob=c["sinc_prob2"])
        for k, params in zip(names, (p["kernel1"], k2, p["final_sinc"])):
            ours[k].append(moment(K.build_kernel(params)))
    print(f"kernel second moment sum(k r^2), {n} draws each: ours vs RealESRGANDataset.__getitem__")
    for k in names:
        a, b = np.array(ours[k]), np.array(ref[k])
        print(f"{k:12s} median {np.median(a):7.3f} vs {np.median(b):7.3f}   mean {a.mean():7.3f} vs {b.mean():7.3f}   "
              f"KS p {sps.ks_2samp(a, b).pvalue:.3g}")
    return 0


def paired(crops, args):
    from degradations.dataset import image_rng
    from degradations.pipeline import WHOLE_IMAGE
    from testing import degradation_stats as S

    square = [c for c in crops if c.shape[0] == c.shape[1]]
    runs = [("training transform", crops, {}, None),
            ("  plain GT + libjpeg (before)", crops, {"degrade_usm": False, "jpeg_impl": "libjpeg"}, None),
            ("  plain GT (degrade_usm false)", crops, {"degrade_usm": False}, None),
            ("  libjpeg (jpeg_impl libjpeg)", crops, {"jpeg_impl": "libjpeg"}, None),
            (f"convert.py degrade ({len(square)} square crops)", square, WHOLE_IMAGE,
             lambda d, k: image_rng(args.seed + d, f"{k:04d}", 4))]
    print(f"\npaired (same draws on both sides): median of ours / median of the reference's, per statistic")
    print(f"{'source':40s} {'lap ratio':>10s} {'ref':>8s} {'/ ref':>7s}   {'chroma':>8s} {'ref':>8s} {'/ ref':>7s}")
    for name, cs, over, rng_fn in runs:
        ours, ref = S.paired_pairs(cs, args.draws, args.seed, over, rng_fn)
        a, b = S.stats(ours), S.stats(ref)
        row = f"{name:40s}"
        for key in ("laplacian_ratio", "chroma_share"):
            ma, mb = np.median(a[key]), np.median(b[key])
            row += f" {ma:10.4f} {mb:8.4f} {ma / mb:7.3f}  "
        print(row, flush=True)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["Set14", "B100"], help="folders under ../shared/datasets (HR/)")
    p.add_argument("--draws", type=int, default=2, help="degradations per crop (default 2)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N crops")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops and of both pipelines (default 0)")
    p.add_argument("--variants", action="store_true", help="also the training transform without USM / with libjpeg")
    p.add_argument("--paired", action="store_true", help="the reference driven by the project's draws (see above)")
    p.add_argument("--kernels", type=int, nargs="?", const=1500, default=0,
                   help="compare N kernel draws (default 1500) with RealESRGANDataset.__getitem__'s, then stop")
    p.add_argument("--save", help="write every per-pair figure to this .npz (for bootstrap intervals)")
    args = p.parse_args(argv)
    from scipy import stats as sps

    from testing import degradation_stats as S

    if args.kernels:
        return kernels(args.kernels, args.seed)
    folders = [os.path.join(SHARED, d, "HR") for d in args.datasets]
    missing = [f for f in folders if not os.path.isdir(f)]
    if missing:
        sys.exit(f"error: missing {', '.join(missing)} (the ../shared datasets)")
    crops = S.gt_crops(folders, seed=args.seed, limit=args.limit)
    print(f"{len(crops)} GT crops (400x400 or the whole side) from {', '.join(args.datasets)}, {args.draws} draws each")
    if args.paired:
        return paired(crops, args)
    sources = {}
    t0 = time.perf_counter()
    ref = S.reference_pairs(crops, args.draws, args.seed)
    if ref is None:
        sys.exit("error: the reference packages are not installed (pip install -r requirements-reference.txt)")
    sources["reference (feed_data)"] = ref
    print(f"reference: {time.perf_counter() - t0:.0f} s")
    sources["training transform"] = S.training_pairs(crops, args.draws, args.seed)
    sources["convert.py degrade"] = S.convert_pairs(crops, args.draws, args.seed)
    if args.variants:
        for name, over in (("  plain GT (degrade_usm false)", {"degrade_usm": False}),
                           ("  libjpeg (jpeg_impl libjpeg)", {"jpeg_impl": "libjpeg"}),
                           ("  plain GT + libjpeg (before)", {"degrade_usm": False, "jpeg_impl": "libjpeg"})):
            sources[name] = S.training_pairs(crops, args.draws, args.seed, over)
    results = {name: S.stats(pairs) for name, pairs in sources.items()}
    if args.save:
        np.savez(args.save, **{f"{name.strip()}|{key}": v for name, r in results.items() for key, v in r.items()})
    base = results["reference (feed_data)"]
    print(f"\n{'source':34s} {'lap ratio':>10s} {'/ ref':>7s} {'KS p':>8s}   {'chroma':>8s} {'/ ref':>7s} {'KS p':>8s}")
    for name, r in results.items():
        row = f"{name:34s}"
        for key in ("laplacian_ratio", "chroma_share"):
            med, ref_med = np.median(r[key]), np.median(base[key])
            ks = sps.ks_2samp(r[key], base[key])
            row += f" {med:10.4f} {med / ref_med:7.3f} {ks.pvalue:8.3g}  "
        print(row)
    return 0


if __name__ == "__main__":
    main()
