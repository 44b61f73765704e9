"""Data-parallel scaling of edsr-16 x2 training: steps/s and samples/s per device count, batch and precision.

Each setting runs in its own worker process (one Keras backend and one device setting per process; on a CPU,
JAX gets N virtual devices from XLA_FLAGS=--xla_force_host_platform_device_count=N). A worker builds edsr-16
x2 and its Adam optimizer under training/distribute.py's distribution, exactly as train.py does, and times
train.py's own step (training.backend via Distribution.make_train_step: batches placed sharded on the
devices) on L1 loss, LR 48 px -> HR 96 px. Step times are medians after warm-up, with the loss fetched each
step (as the trainer's logs do). The data loader (data.Patches on --dataset, one thread) is timed on the
same batches, so its pairs/s can be read against the samples/s the step consumes.

    python benchmarks/scaling.py                     # CPU: JAX at 1 and 2 virtual devices, batch 16, float32
    python benchmarks/scaling.py --gpu --torch       # GPU: batch 16 and 64, float32 and bf16, PyTorch AMP too
    python benchmarks/scaling.py --backend tensorflow --devices 1 2

On a 2-core CPU, N virtual devices share the same two cores: the CPU figures check that the multi-device path
runs and what it costs, they are no speed-up claim. The PyTorch reference (testing/torch_edsr.py, the same
network; autocast bf16/fp16 for AMP) runs in its own process in the same invocation, so ratios are read
between figures of one run.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def worker(spec):
    """Runs in the child process: time one setting; returns a JSON-able dict."""
    import statistics

    import numpy as np

    from training import distribute

    dist = distribute.from_options(devices=spec["devices"])
    import keras
    from keras import ops

    from model import build_model
    from training.task import PixelTask

    precision = spec["precision"]
    distribute.set_mixed_precision(None if precision == "float32" else precision)
    keras.utils.set_random_seed(0)
    batch_size, patch, scale = spec["batch_size"], spec["patch"], 2
    dist.per_device_batch(batch_size)
    with dist.scope():
        net = build_model("edsr", scale, num_filters=64, num_res_blocks=16)
        if precision != "float32":
            distribute.keep_outputs_float32(net)
        opt = distribute.loss_scaled(keras.optimizers.Adam(1e-4), precision)
        task = PixelTask(net, opt, loss=lambda hr, sr: ops.mean(ops.abs(hr - sr), axis=(1, 2, 3)), name="l1")

    n = spec["warmup"] + spec["steps"]
    loader = None
    if spec.get("dataset") and os.path.isdir(spec["dataset"]):
        import data

        pairs = data.open_pairs(spec["dataset"], scale, subset="train")
        loader = data.Patches(pairs, scale, batch_size=batch_size, lr_patch=patch, seed=0, steps=n)
    times_data, batches = [], []
    for i in range(n):
        t = time.perf_counter()
        if loader is not None:
            b = loader.batch(0, i)
        else:
            rng = np.random.default_rng(i)
            b = {"lr": rng.uniform(0, 255, (batch_size, patch, patch, 3)).astype("float32"),
                 "hr": rng.uniform(0, 255, (batch_size, scale * patch, scale * patch, 3)).astype("float32")}
        times_data.append(time.perf_counter() - t)
        batches.append(b)
    with dist.scope():
        task.build(batches[0])
    jit = keras.backend.backend() == "jax" or bool(spec.get("jit"))
    step = dist.make_train_step(task, jit)
    t0 = time.perf_counter()
    times = []
    for i, b in enumerate(batches):
        t = time.perf_counter()
        loss = float(ops.convert_to_numpy(step(b)["loss"]))
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - t)
        if i == 0:
            first = time.perf_counter() - t0
    med = statistics.median(times)
    data_med = statistics.median(times_data)
    return {"framework": f"keras {keras.__version__} / {keras.backend.backend()}", "devices": dist.replicas,
            "device": dist.describe(), "precision": precision, "batch_size": batch_size,
            "per_device_batch": batch_size // dist.replicas, "patch": patch, "steps": len(times),
            "s_per_step": med, "steps_per_s": 1 / med, "samples_per_s": batch_size / med,
            "first_step_s": first, "loss": loss,
            "loader": "data.Patches" if loader is not None else "synthetic",
            "loader_pairs_per_s": batch_size / data_med if data_med > 0 else None, "times": times}


def torch_worker(spec):
    from testing.torch_edsr import train_speed

    amp = None if spec["precision"] == "float32" else spec["precision"]
    r = train_speed(batch_size=spec["batch_size"], patch=spec["patch"], steps=spec["steps"], warmup=spec["warmup"],
                    amp=amp)
    r["devices"], r["precision"] = 1, r["amp"]
    return r


def run_child(kind, spec, env_extra, timeout):
    env = {**os.environ, **env_extra}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, json.dumps(spec)]
    t = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail), "spec": spec}
    r = json.loads(lines[-1][len("RESULT "):])
    r["wall_s"] = time.time() - t
    return r


def main(argv=None):
    p = argparse.ArgumentParser(description="Data-parallel scaling of edsr-16 x2 training (steps/s, samples/s).")
    p.add_argument("--backend", default="jax", choices=["jax", "tensorflow"], help="Keras backend")
    p.add_argument("--devices", nargs="+", default=None, help="device counts to run (default 1 2; --gpu: all)")
    p.add_argument("--batch-size", type=int, nargs="+", default=None, help="global batches (default 16; --gpu: 16 64)")
    p.add_argument("--precision", nargs="+", default=None, choices=["float32", "bf16", "fp16"],
                   help="default float32; --gpu: float32 bf16")
    p.add_argument("--gpu", action="store_true", help="the GPU preset: all GPUs, batch 16 and 64, float32 and bf16")
    p.add_argument("--torch", action="store_true", help="add the PyTorch reference (testing/torch_edsr.py, AMP for "
                                                         "bf16/fp16) at each batch and precision")
    p.add_argument("--patch", type=int, default=48, help="LR patch size")
    p.add_argument("--steps", type=int, default=5, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    p.add_argument("--dataset", default=os.path.join(ROOT, "sample_BIN"),
                   help="DIV2K-layout set the loader reads (synthetic batches when missing)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per setting")
    p.add_argument("--json", metavar="FILE", help="write all results here")
    args = p.parse_args(argv)
    devices = args.devices or (["all"] if args.gpu else ["1", "2"])
    batches = args.batch_size or ([16, 64] if args.gpu else [16])
    precisions = args.precision or (["float32", "bf16"] if args.gpu else ["float32"])

    results = []
    for batch in batches:
        for precision in precisions:
            for n in devices:
                spec = {"devices": n, "batch_size": batch, "precision": precision, "patch": args.patch,
                        "steps": args.steps, "warmup": args.warmup, "dataset": args.dataset}
                env = {"KERAS_BACKEND": args.backend}
                if not args.gpu and n != "all":
                    # N virtual CPU devices for JAX (TensorFlow makes N logical CPU devices itself)
                    env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                        f" --xla_force_host_platform_device_count={n}").strip()
                    env["JAX_PLATFORMS"] = "cpu"
                    env["CUDA_VISIBLE_DEVICES"] = ""
                r = run_child("keras", spec, env, args.timeout)
                results.append(r)
                _print(r)
            if args.torch and not (precision == "fp16" and not args.gpu):  # fp16 AMP needs CUDA
                spec = {"batch_size": batch, "precision": precision, "patch": args.patch, "steps": args.steps,
                        "warmup": args.warmup}
                r = run_child("torch", spec, {} if args.gpu else {"CUDA_VISIBLE_DEVICES": ""}, args.timeout)
                results.append(r)
                _print(r)
    _summary(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def _print(r):
    if "error" in r:
        print(f"FAILED {r['spec']}: {r['error']}", flush=True)
        return
    extra = ""
    if r.get("loader_pairs_per_s"):
        extra = f"  loader {r['loader_pairs_per_s']:7.1f} pairs/s ({r['loader']}, 1 thread)"
    print(f"{r['framework']:<28} {r['devices']} dev  batch {r['batch_size']:>3} {r['precision']:<8} "
          f"{r['s_per_step'] * 1000:9.1f} ms/step {r['steps_per_s']:7.3f} steps/s {r['samples_per_s']:8.1f} "
          f"samples/s{extra}", flush=True)


def _summary(results):
    ok = [r for r in results if "error" not in r]
    torch_rows = {(r["batch_size"], r["precision"]): r for r in ok if r["framework"].startswith("torch")}
    keras_rows = [r for r in ok if r["framework"].startswith("keras")]
    for r in keras_rows:
        base = [k for k in keras_rows if k["devices"] == 1 and k["batch_size"] == r["batch_size"]
                and k["precision"] == r["precision"]]
        line = f"{r['devices']} dev batch {r['batch_size']} {r['precision']}:"
        if base and r["devices"] != 1:
            line += f" {r['samples_per_s'] / base[0]['samples_per_s']:.2f}x the samples/s of 1 device;"
        t = torch_rows.get((r["batch_size"], r["precision"]))
        if t:
            line += f" {r['steps_per_s'] / t['steps_per_s']:.2f}x PyTorch {t['amp']} steps/s;"
        if r.get("loader_pairs_per_s"):
            line += f" loader/step demand {r['loader_pairs_per_s'] / r['samples_per_s']:.1f}x"
        print(line)


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        fn = worker if sys.argv[2] == "keras" else torch_worker
        print("RESULT " + json.dumps(fn(json.loads(sys.argv[3]))), flush=True)
    else:
        main()
