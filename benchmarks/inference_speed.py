"""Full-image inference on images of different sizes: which way of calling the model is fastest?

Options timed (first pass includes any compilation, second pass is warm):
  eager      model(x, training=False), op by op, no compilation
  graph      inference.super_resolve default: TF shape-generic tf.function graph (traced once, no XLA)
  predict    model.predict_on_batch (Keras' predict function; XLA per new shape when jit_compile)
  jit-shape  XLA-compiled function, compiled once per distinct image shape
  bucket     pad each image up to a multiple of --bucket, XLA-compiled once per bucket
  tiles-jit  fixed --tile x --tile tiles (batch 4, overlap 16), XLA compiled once
  tiles-eager the same tiles without compilation

    python benchmarks/inference_speed.py --arch edsr --scale 2 --filters 64 --blocks 16 --images 8
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build(arch, scale, filters, blocks):
    try:
        from model import build_model

        return build_model(arch, scale, num_filters=filters, num_res_blocks=blocks)
    except ImportError:
        from model.edsr import edsr

        return edsr(scale, num_filters=filters, num_res_blocks=blocks)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="edsr", help="architecture for model.build_model")
    p.add_argument("--scale", type=int, default=2, help="upscaling factor")
    p.add_argument("--filters", type=int, default=64, help="num_filters")
    p.add_argument("--blocks", type=int, default=16, help="num_res_blocks")
    p.add_argument("--images", type=int, default=8, help="number of test images (all of different sizes)")
    p.add_argument("--min-size", type=int, default=110, help="smallest LR side")
    p.add_argument("--max-size", type=int, default=190, help="largest LR side")
    p.add_argument("--tile", type=int, default=96, help="tile size for the tiled options")
    p.add_argument("--bucket", type=int, default=64, help="bucket granularity for the bucket option")
    p.add_argument("--options", default="eager,graph,predict,jit-shape,bucket,tiles-jit,tiles-eager",
                   help="comma-separated options to time")
    args = p.parse_args(argv)

    import keras

    import inference

    model = build(args.arch, args.scale, args.filters, args.blocks)
    rng = np.random.default_rng(0)
    sizes = [tuple(rng.integers(args.min_size, args.max_size + 1, 2)) for _ in range(args.images)]
    from conftest import smooth_image

    images = [smooth_image(rng, h, w) for h, w in sizes]
    jit_fn = inference._jit_call(model)
    eager_fn = inference._eager_call(model)

    def bucket_call(lr):
        h, w = lr.shape[:2]
        bh, bw = -(-h // args.bucket) * args.bucket, -(-w // args.bucket) * args.bucket
        x = np.pad(lr.astype(np.float32), ((0, bh - h), (0, bw - w), (0, 0)), mode="reflect")
        return jit_fn(x[None])[0, : h * args.scale, : w * args.scale]

    runs = {
        "eager": lambda lr: eager_fn(lr[None].astype(np.float32))[0],
        "graph": lambda lr: inference.super_resolve(model, lr, jit=False),
        "predict": lambda lr: model.predict_on_batch(lr[None].astype(np.float32))[0],
        "jit-shape": lambda lr: jit_fn(lr[None].astype(np.float32))[0],
        "bucket": bucket_call,
        "tiles-jit": lambda lr: inference.super_resolve(model, lr, tile=args.tile, jit=True),
        "tiles-eager": lambda lr: inference.super_resolve(model, lr, tile=args.tile, jit=False),  # TF: graph
    }
    print(f"backend {keras.backend.backend()}, {args.arch} x{args.scale} {args.filters}f/{args.blocks}b, "
          f"{args.images} images, LR sides {args.min_size}-{args.max_size}, {os.cpu_count()} CPUs")
    ref = None
    print(f"{'option':12s} {'first pass s':>13s} {'warm pass s':>12s} {'first cpu':>10s} {'warm cpu':>10s} "
          f"{'warm s/Mpx':>11s} {'inner diff':>10s}")
    mpx = sum(h * w for h, w in sizes) / 1e6
    for name in args.options.split(","):
        fn = runs[name]
        times, cpu = [], []
        for _ in range(2):
            t0, c0 = time.perf_counter(), time.process_time()
            outs = [np.asarray(fn(lr)) for lr in images]
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # CPU seconds of all threads: less sensitive to other load
        ref = outs if ref is None else ref
        m = 16 * args.scale  # padding (bucket) changes only pixels within the receptive field of the border
        diff = max(float(np.abs(a - b)[m:-m, m:-m].max()) for a, b in zip(outs, ref))
        print(f"{name:12s} {times[0]:13.2f} {times[1]:12.2f} {cpu[0]:10.2f} {cpu[1]:10.2f} {times[1] / mpx:11.2f} "
              f"{diff:10.3f}", flush=True)


if __name__ == "__main__":
    main()
