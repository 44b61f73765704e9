"""What the draw granularity changes: per-sample draws vs Real-ESRGAN's per-batch draws, with and without its pool.

    python benchmarks/degradation_draws.py                  # B100 HR, batch 12, 40 batches per setting

The training batches come from data.HRPatches + RealESRGANTransform (Real-ESRGAN's recipe: 400 patches, GT 256 /
LQ 64) through degradations.ReferenceBatches. For each setting: the median over pairs of the LQ statistics
(testing/degradation_stats.py: Laplacian-variance ratio, chroma share; the marginal distribution, the same for
all settings by construction) and the within-batch spread: the median over batches of the standard deviation of
log(Laplacian-variance ratio) inside a batch, and the share of batches whose 12 pairs all had the same stage-1
resize direction (what batch-level draws do to a batch; the pool mixes 15 batches' draws).
"""
import argparse
import os
import time

import numpy as np


SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "datasets")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hr", default=os.path.join(SHARED, "B100", "HR"), help="folder of HR images (default ../shared B100)")
    p.add_argument("--batches", type=int, default=40, help="batches per setting (default 40)")
    p.add_argument("--batch-size", type=int, default=12, help="batch size (default 12, Real-ESRGAN's per GPU)")
    p.add_argument("--skip", type=int, default=20, help="batches skipped first (the pool fills in 15; default 20)")
    args = p.parse_args(argv)
    import data
    import degradations as D
    from imaging.files import list_images
    from testing import degradation_stats as S

    paths = [path for _, path in sorted(list_images(args.hr).items())]
    print(f"{len(paths)} HR images from {args.hr}, batch {args.batch_size}, batches {args.skip}.."
          f"{args.skip + args.batches - 1} of epoch 0")
    print(f"{'setting':36s} {'lap ratio':>9s} {'chroma':>8s} {'sd log lap in batch':>20s} {'one resize1 kind':>17s} {'s':>5s}")
    for name, over in (("per sample (draws sample)", {}), ("per batch, no pool", {"draws": "batch"}),
                       ("per batch + pool 180 (Real-ESRGAN)", {"draws": "batch", "pool_size": 180})):
        t = D.RealESRGANTransform(over, crop=True, gt_size=256)
        sampler = data.HRPatches(paths, 4, t, batch_size=args.batch_size, lr_patch=64, hr_patch=400, augment=False,
                                 seed=0, steps=args.skip + args.batches, smaller_ok=True)
        source = D.reference_batches(sampler)
        t0 = time.perf_counter()
        laps, chromas, spread, uniform = [], [], [], 0
        for b in range(args.skip, args.skip + args.batches):
            batch = source.batch(0, b)
            pairs = list(zip(batch["lr"], batch["hr"]))
            st = S.stats(pairs)
            laps += st["laplacian_ratio"].tolist()
            chromas += st["chroma_share"].tolist()
            spread.append(float(np.std(np.log(st["laplacian_ratio"]))))
            # stage-1 resize direction of each pair, from its params (re-drawn: the draws are cheap and keyed)
            kinds = set()
            for e, i in (source.source(0, b) if hasattr(source, "source") else [(0, b * args.batch_size + k)
                                                                                  for k in range(args.batch_size)]):
                rng, img, *_ = sampler._params(e, i)
                shared = None
                if over.get("draws") == "batch":
                    shared = t.batch_params(source._key(D.batches._BATCH_SALT, (e << 32) | (i // args.batch_size)))
                hr_shape = sampler._crops(img, *_)[1].shape[:2]
                kinds.add(D.sample_params(rng, t.config, hr_shape, 4, shared)["resize1"]["kind"])
            uniform += len(kinds) == 1
        print(f"{name:36s} {np.median(laps):9.4f} {np.median(chromas):8.4f} {np.median(spread):20.3f} "
              f"{uniform / args.batches:17.2f} {time.perf_counter() - t0:5.0f}", flush=True)
    return 0


if __name__ == "__main__":
    main()
