"""Patch loader throughput: HR-96 / LR-48 (scale 2) pairs per second from a converted .npy dataset.

    python benchmarks/data_speed.py                      # builds the sample set + numpy conversion in a temp dir
    python benchmarks/data_speed.py --dataset ./DIV2K_BIN

Prints pairs/s with 1 worker (batches made in this process, one core) and with all workers (Keras' own
PyDataset enqueuer with worker processes, as `model.fit` uses it); medians over --repeats runs.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import data  # noqa: E402
from utils import run_cli  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="converted (.npy) DIV2K-layout dataset; default: sample set made in a temp dir")
    p.add_argument("--subset", default="train", help="train or valid (default train)")
    p.add_argument("--scale", type=int, default=2, help="scale (default 2, i.e. HR patch 96 for LR patch 48)")
    p.add_argument("--lr-patch", type=int, default=48, help="LR patch size (default 48)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per batch (default 16)")
    p.add_argument("--batches", type=int, default=200, help="batches per timed run (default 200)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported (default 5)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers for the parallel run (default: all cores)")
    p.add_argument("--no-augment", action="store_true", help="time without flips / rotations")
    return p


def _make_sample_npy(tmp):
    import convert

    convert.main(["-o", os.path.join(tmp, "sample"), "sample"])
    convert.main(["-i", os.path.join(tmp, "sample"), "-o", os.path.join(tmp, "sample_BIN"), "numpy"])
    return os.path.join(tmp, "sample_BIN")


def time_single(ds, batches, repeats):
    rates = []
    for r in range(repeats + 1):  # the first run warms the page cache and is not counted
        ds.epoch = r
        t = time.perf_counter()
        for i in range(batches):
            ds[i]
        if r:
            rates.append(batches * ds.batch_size / (time.perf_counter() - t))
    return statistics.median(rates)


def time_workers(ds, batches, repeats):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    rates = []
    adapter = PyDatasetAdapter(ds, shuffle=False)
    for r in range(repeats + 1):
        t = time.perf_counter()  # includes starting the worker pool, as each epoch of fit() does
        adapter.on_epoch_begin()
        n = sum(1 for _ in adapter.get_numpy_iterator())
        adapter.on_epoch_end()
        if r:
            rates.append(n * ds.batch_size / (time.perf_counter() - t))
    return statistics.median(rates)


def main(argv=None):
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dataset or _make_sample_npy(tmp)
        pairs = data.open_pairs(root, args.scale, subset=args.subset)
        if not all(isinstance(p.lr, str) and p.lr.endswith(".npy") and p.hr.endswith(".npy") for p in pairs):
            print(f"note: {root} is not (fully) converted to .npy; PNG images are decoded into memory",
                  file=sys.stderr)
        common = dict(batch_size=args.batch_size, lr_patch=args.lr_patch, augment=not args.no_augment, seed=0,
                      steps=args.batches)
        single = time_single(data.PatchDataset(pairs, args.scale, **common), args.batches, args.repeats)
        procs = time_workers(data.PatchDataset(pairs, args.scale, workers=args.workers, use_multiprocessing=True,
                                               **common), args.batches, args.repeats)
        threads = time_workers(data.PatchDataset(pairs, args.scale, workers=args.workers, use_multiprocessing=False,
                                                 **common), args.batches, args.repeats)
        hr = args.lr_patch * args.scale
        print(f"dataset {root}: {len(pairs)} images, LR {args.lr_patch} / HR {hr} patches, batch {args.batch_size}, "
              f"augment {not args.no_augment}")
        print(f"1 worker : {single:8.0f} pairs/s")
        print(f"{args.workers} workers: {procs:8.0f} pairs/s with processes (use_multiprocessing=True), "
              f"{threads:.0f} pairs/s with threads; cores: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    run_cli(main)
