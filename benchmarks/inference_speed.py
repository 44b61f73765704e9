"""Inference speed: images/s per Keras backend, and RRDBNet x4 against the same network in plain PyTorch.

Two parts, each setting in its own worker process (one Keras backend per process; same thread count):

- `backends`: `inference.super_resolve` with its defaults (TensorFlow: shape-generic graph; JAX: jitted on
  bucket shapes; PyTorch: eager under inference_mode) over a benchmark set (Set5 LR x4 from ../shared when
  present, else synthetic images of Set5's sizes), one model file shared by all backends. First pass
  (every shape new: compilation included) and warm pass, images/s, number of compilations, and the max
  difference of each backend's output to TensorFlow's.
- `rrdbnet`: RRDBNet x4 in its full configuration (64 filters, 23 blocks, growth 32; 16.7 M parameters) on
  one `--size` x `--size` input: kilopixels of input per second (median of `--repeats` after one warm-up),
  Keras (TF, and JAX with --rrdbnet-backends) beside testing/torch_rrdbnet.py in PyTorch (NCHW and
  channels_last; the faster one is the reference).

    python benchmarks/inference_speed.py                          # both parts (~5 min on 2 idle cores)
    python benchmarks/inference_speed.py --part backends --dataset ../shared/datasets/Set14 --scale 2
    python benchmarks/inference_speed.py --part rrdbnet --size 64 --repeats 5 --json speed.json
    python benchmarks/inference_speed.py --part options           # TF: eager/graph/predict/XLA/tiles compared

`--part options` is the earlier comparison of ways to call one model on TensorFlow (docs/demo.md).

`--part demo` (docs/inference.md): demo.py's image path (evaluation.upscale.Upscaler) against Real-ESRGAN's
RealESRGANer (PyTorch, the same x4plus weights, the same tile size, tile_pad 10, pre_pad 0 as its script) and
ONNX Runtime on this project's ONNX export of the same model (through THE tile routine), on a `--photo`
(default: a 640x480 crop of Set14 barbara, synthetic when ../shared is absent), full and `--tiles`; each in
its own worker process with the same threads, warmed up, then timed in interleaved rounds (medians).

    python benchmarks/inference_speed.py --part demo --rounds 3 --tiles 0,256 --json demo_speed.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SET5 = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "Set5")
SET5_LR_X4 = [(128, 128), (72, 72), (64, 64), (70, 70), (57, 86)]  # Set5 LR sizes at x4, for synthetic images
BACKENDS = ("tensorflow", "jax", "torch")
X4PLUS = os.path.join(os.path.dirname(ROOT), "shared", "weights", "realesrgan-x4plus", "RealESRGAN_x4plus.pth")
SET14_BARBARA = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "Set14", "HR", "barbara.png")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("all", "backends", "rrdbnet", "options", "demo"), default="all")
    p.add_argument("--dataset", default=SET5, help="benchmark folder (HR/ + LR_bicubic/X{s}/) for --part backends "
                                                   "(default ../shared/datasets/Set5; synthetic images if absent)")
    p.add_argument("--scale", type=int, default=4, help="scale for --part backends (default 4)")
    p.add_argument("--arch", default="edsr", help="architecture for --part backends/options (default edsr)")
    p.add_argument("--filters", type=int, default=64, help="num_filters (default 64)")
    p.add_argument("--blocks", type=int, default=16, help="num_res_blocks (default 16)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="Keras backends for --part backends")
    p.add_argument("--size", type=int, default=64, help="RRDBNet input side in pixels (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="timed RRDBNet passes, median reported (default 3)")
    p.add_argument("--rrdbnet-backends", default="tensorflow", help="Keras backends for --part rrdbnet")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads for every framework")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    # --part options (TensorFlow only, in this process)
    p.add_argument("--images", type=int, default=8, help="options: number of test images (all of different sizes)")
    p.add_argument("--min-size", type=int, default=110, help="options: smallest LR side")
    p.add_argument("--max-size", type=int, default=190, help="options: largest LR side")
    p.add_argument("--tile", type=int, default=96, help="options: tile size for the tiled options")
    p.add_argument("--options", default="eager,graph,predict,jit-shape,jit-bucket,tiles-jit,tiles-eager",
                   help="options: comma-separated ways of calling the model")
    # --part demo
    p.add_argument("--weights", default=X4PLUS, help="demo: RealESRGAN_x4plus.pth (default from ../shared)")
    p.add_argument("--photo", default=None, help="demo: the test photograph (default: Set14 barbara, cropped)")
    p.add_argument("--photo-size", default="640x480", help="demo: WxH the photograph is cropped to (default 640x480)")
    p.add_argument("--tiles", default="0,256", help="demo: tile sizes, 0 = full image (default 0,256)")
    p.add_argument("--rounds", type=int, default=3, help="demo: interleaved timed rounds (default 3)")
    p.add_argument("--frameworks", default="demo,realesrgan,onnxruntime", help="demo: settings to time")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model-file", help=argparse.SUPPRESS)
    p.add_argument("--out-file", help=argparse.SUPPRESS)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _threads(n):
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif backend == "torch":
        import torch

        torch.set_num_threads(n)


def load_images(dataset, scale):
    """(stem, uint8 LR) of a benchmark folder, or synthetic images of Set5's LR sizes when it is absent."""
    if dataset and os.path.isdir(dataset):
        import data
        import imaging

        return [(p.stem, imaging.read_image(p.lr)) for p in data.open_pairs(dataset, scale)], os.path.basename(dataset)
    from testing.images import smooth_image

    rng = np.random.default_rng(0)
    sizes = [(h * 4 // scale, w * 4 // scale) for h, w in SET5_LR_X4]
    return [(f"synthetic{i}", smooth_image(rng, h, w)) for i, (h, w) in enumerate(sizes)], "synthetic (Set5 sizes)"


# ------------------------------------------------------------------------------------------------ workers
def worker_make(args):
    """Save the benchmark model once (TF), so every backend runs the same weights."""
    import keras

    import model as model_lib

    keras.utils.set_random_seed(0)
    m = model_lib.build_model(args.arch, args.scale, num_filters=args.filters, num_res_blocks=args.blocks)
    m.save(args.model_file)


def worker_backends(args):
    import keras

    from evaluation import inference
    import model as model_lib

    _threads(args.threads)
    m = model_lib.load_model(args.model_file, compile=False)
    images, label = load_images(args.dataset, args.scale)
    passes, outs = [], {}
    for _ in range(2):
        t0 = time.perf_counter()
        for stem, lr in images:
            outs[stem] = inference.super_resolve(m, lr)
        passes.append(time.perf_counter() - t0)
    np.savez(args.out_file, **outs)
    return {"backend": keras.backend.backend(), "images": len(images), "dataset": label,
            "first_s": passes[0], "warm_s": passes[1], "compilations": inference.trace_count(m),
            "pixels": int(sum(lr.shape[0] * lr.shape[1] for _, lr in images))}


def worker_rrdbnet(args):
    size, reps = args.size, args.repeats
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    if args.worker.startswith("rrdbnet-torch"):
        import torch

        from testing.torch_rrdbnet import RRDBNet

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        fmt = torch.channels_last if args.worker.endswith("-cl") else torch.contiguous_format
        net = RRDBNet(num_feat=64, num_block=23, num_grow_ch=32, scale=4).eval().to(memory_format=fmt)
        xt = torch.from_numpy(x / 255.0).permute(0, 3, 1, 2).contiguous(memory_format=fmt)

        def run():
            with torch.inference_mode():
                return net(xt).numpy()

        params = sum(p.numel() for p in net.parameters())
        layout = "channels_last" if fmt is torch.channels_last else "NCHW"
        info = {"framework": f"PyTorch {torch.__version__} (testing/torch_rrdbnet.py, {layout}, inference_mode)"}
    else:
        import keras

        from evaluation import inference
        import model as model_lib

        _threads(args.threads)
        keras.utils.set_random_seed(0)
        net = model_lib.build_model("rrdbnet", 4, num_filters=64, num_res_blocks=23, growth_channels=32)

        def run():
            return inference.super_resolve(net, x[0])

        params = model_lib.count_params(net)
        info = {"framework": f"Keras {keras.__version__} / {keras.backend.backend()} (inference.super_resolve)"}
    t0 = time.perf_counter()
    run()
    warmup = time.perf_counter() - t0
    return run, {**info, "params": int(params), "warmup_s": warmup}


# ------------------------------------------------------------------------------------------- --part demo
def demo_photo(args):
    """uint8 RGB photograph of --photo-size: --photo or Set14 barbara cropped at the top left, else synthetic."""
    import imaging
    from testing.images import smooth_image

    w, h = (int(v) for v in args.photo_size.lower().split("x"))
    path = args.photo or (SET14_BARBARA if os.path.isfile(SET14_BARBARA) else None)
    if path is None:
        return smooth_image(np.random.default_rng(0), h, w), f"synthetic {w}x{h}"
    img = imaging.read_image(path)
    if img.shape[0] < h or img.shape[1] < w:
        img = imaging.imresize(img, output_shape=(max(h, img.shape[0]), max(w, img.shape[1])))
    return np.ascontiguousarray(img[:h, :w]), f"{os.path.basename(path)} cropped to {w}x{h}"


def worker_demo(args):
    """(run(tile) -> uint8 SR image, info) for one framework of --part demo; tile 0 = the full image."""
    photo, _ = demo_photo(args)
    name = args.worker.split("-", 1)[1]
    if name == "realesrgan":
        import torch

        from testing.reference import import_reference

        torch.set_num_threads(args.threads)
        utils_re, arch = import_reference("realesrgan.utils"), import_reference("basicsr.archs.rrdbnet_arch")
        if utils_re is None or arch is None:
            raise RuntimeError("realesrgan/basicsr not installed (requirements-reference.txt)")
        bgr = np.ascontiguousarray(photo[..., ::-1])
        ups = {}

        def run(tile):
            if tile not in ups:
                net = arch.RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
                ups[tile] = utils_re.RealESRGANer(scale=4, model_path=args.weights, model=net, tile=tile, tile_pad=10,
                                                  pre_pad=0, half=False)
            return ups[tile].enhance(bgr, outscale=4)[0][..., ::-1]

        return run, {"framework": f"RealESRGANer (PyTorch {torch.__version__}, tile_pad 10, pre_pad 0)"}
    import keras

    from evaluation import inference, upscale

    _threads(args.threads)
    model = upscale.load_sr_model(args.weights)
    if name == "demo":
        def run(tile):
            return upscale.Upscaler(model, 4, tile=tile or None)(photo)[0]

        return run, {"framework": f"demo.py path (Keras {keras.__version__} / {keras.backend.backend()})"}
    import onnxruntime

    from model.export import export_model

    path = os.path.join(tempfile.mkdtemp(prefix="inference_speed_"), "x4plus.onnx")
    export_model(model, path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    sess = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name

    def predict(x):
        return sess.run(None, {feed: np.ascontiguousarray(x, np.float32)})[0]

    def run(tile):  # THE tile routine, as demo; a callable gets the capped overlap, RRDBNet's default too
        out = inference.super_resolve(predict, photo, tile=tile or None, scale=4)
        return upscale.to_depth(out, 8)

    return run, {"framework": f"ONNX Runtime {onnxruntime.__version__} on convert.py's ONNX export"}


def serve_demo(args):
    """Worker side of --part demo: set up, warm up each tile size, then one timed pass per 'run TILE' line."""
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        run, info = worker_demo(args)
        outputs = {}
        for tile in (int(t) for t in args.tiles.split(",")):
            t0 = time.perf_counter()
            outputs[tile] = run(tile)
            info[f"warmup_s_{tile}"] = time.perf_counter() - t0
        np.savez(args.out_file, **{str(k): v for k, v in outputs.items()})
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), file=out, flush=True)
        return 1
    print(json.dumps({"ready": info}), file=out, flush=True)
    for line in sys.stdin:
        if not line.startswith("run "):
            break
        t0 = time.perf_counter()
        run(int(line.split()[1]))
        print(json.dumps({"seconds": time.perf_counter() - t0}), file=out, flush=True)
    return 0


def part_demo(args):
    """Every framework set up and warmed up first, then interleaved rounds (each framework and tile once per round)."""
    tiles = [int(t) for t in args.tiles.split(",")]
    names = [n.strip() for n in args.frameworks.split(",") if n.strip()]
    tmp = tempfile.mkdtemp(prefix="inference_speed_")
    rows, procs, outs = {}, {}, {}
    for name in names:
        print(f"setting up {name} ...", file=sys.stderr, flush=True)
        env = dict(os.environ, KERAS_BACKEND="tensorflow", OMP_NUM_THREADS=str(args.threads))
        out_file = os.path.join(tmp, f"{name}.npz")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"demo-{name}", "--serve", "--threads",
               str(args.threads), "--weights", args.weights, "--photo-size", args.photo_size, "--tiles", args.tiles,
               "--out-file", out_file] + (["--photo", args.photo] if args.photo else [])
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, bufsize=1)
        reply = json.loads(proc.stdout.readline() or '{"error": "worker exited"}')
        if "ready" in reply:
            rows[name], procs[name] = {**reply["ready"], "times": {t: [] for t in tiles}}, proc
            outs[name] = dict(np.load(out_file))
        else:
            rows[name] = reply
            proc.kill()
    try:
        for r in range(args.rounds):
            print(f"round {r + 1}", file=sys.stderr, flush=True)
            for tile in tiles:
                for name, proc in procs.items():
                    proc.stdin.write(f"run {tile}\n")
                    proc.stdin.flush()
                    rows[name]["times"][tile].append(json.loads(proc.stdout.readline())["seconds"])
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    _, label = demo_photo(args)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nRRDBNet x4plus on {label}, median of {args.rounds} interleaved rounds after a warm-up, "
          f"{args.threads} threads, {os.cpu_count()} cores, load average {load:.1f} at the end")
    print(f"{'setting':<22} {'median s':>9} {'min s':>7} {'vs fastest':>10} {'max |diff| to demo':>18}  framework")
    for tile in tiles:
        medians = {n: statistics.median(r["times"][tile]) for n, r in rows.items() if "times" in r}
        fastest = min(medians.values()) if medians else None
        for name, r in rows.items():
            if "error" in r:
                print(f"{name:<22} skipped: {r['error']}")
                continue
            diff = "-"
            if "demo" in outs and name in outs:
                diff = f"{int(np.abs(outs[name][str(tile)].astype(int) - outs['demo'][str(tile)].astype(int)).max())}"
            r.setdefault("median_s", {})[tile] = medians[name]
            setting = f"{name} {'full' if tile == 0 else f'tile {tile}'}"
            print(f"{setting:<22} {medians[name]:>9.2f} {min(r['times'][tile]):>7.2f} {medians[name] / fastest:>9.2f}x "
                  f"{diff:>18}  {r['framework']}")
    return rows


def serve_rrdbnet(args):
    """Worker side of the interleaved RRDBNet timing: build + warm up, then one timed pass per 'run' line."""
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter stays off the protocol channel
    try:
        run, info = worker_rrdbnet(args)
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), file=out, flush=True)
        return 1
    print(json.dumps({"ready": info}), file=out, flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        run()
        print(json.dumps({"seconds": time.perf_counter() - t0}), file=out, flush=True)
    return 0


def spawn(args, worker, env_extra, extra=()):
    """Run one worker in a fresh process; its result dict (or {"error": ...})."""
    env = dict(os.environ, **env_extra, OMP_NUM_THREADS=str(args.threads))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_path = f.name
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--json", result_path,
           "--dataset", args.dataset or "", "--scale", str(args.scale), "--arch", args.arch,
           "--filters", str(args.filters), "--blocks", str(args.blocks), "--size", str(args.size),
           "--repeats", str(args.repeats), "--threads", str(args.threads), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    try:
        with open(result_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"worker exited with status {proc.returncode}"}
    finally:
        os.unlink(result_path)


def part_backends(args):
    tmp = tempfile.mkdtemp(prefix="inference_speed_")
    model_file = os.path.join(tmp, "model.keras")
    made = spawn(args, "make", {"KERAS_BACKEND": "tensorflow"}, ["--model-file", model_file])
    if "error" in made:
        print(f"cannot build the model: {made['error']}")
        return {}
    rows, outputs = {}, {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        print(f"timing {backend} ...", file=sys.stderr, flush=True)
        out_file = os.path.join(tmp, f"{backend}.npz")
        rows[backend] = spawn(args, "backends", {"KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"},
                              ["--model-file", model_file, "--out-file", out_file])
        if "error" not in rows[backend]:
            outputs[backend] = dict(np.load(out_file))
    ref = outputs.get("tensorflow")
    print(f"\n{args.arch} x{args.scale} ({args.filters} filters, {args.blocks} blocks), full images with "
          f"inference.super_resolve defaults, {args.threads} threads, {os.cpu_count()} cores")
    print(f"{'backend':<11} {'images':>6} {'first pass s':>12} {'img/s':>7} {'warm pass s':>11} {'img/s':>7} "
          f"{'kpx/s':>7} {'compiles':>8} {'max |diff| to TF':>16}")
    for backend, r in rows.items():
        if "error" in r:
            print(f"{backend:<11} skipped: {r['error']}")
            continue
        diff = "-"
        if ref is not None and backend in outputs:
            diff = f"{max(float(np.abs(outputs[backend][k] - ref[k]).max()) for k in ref):.2e}"
        r["max_diff_to_tf"] = diff
        print(f"{backend:<11} {r['images']:>6} {r['first_s']:>12.2f} {r['images'] / r['first_s']:>7.2f} "
              f"{r['warm_s']:>11.2f} {r['images'] / r['warm_s']:>7.2f} {r['pixels'] / 1000 / r['warm_s']:>7.1f} "
              f"{r['compilations']:>8} {diff:>16}")
    if rows:
        print(f"images: {next(iter(rows.values())).get('dataset', '?')}")
    return rows


def part_rrdbnet(args):
    """All settings built and warmed up first, then timed in interleaved rounds (one pass of each per round),
    so that load from other jobs on a shared machine hits every setting alike."""
    settings = [(f"keras-{b.strip()}", "rrdbnet-keras", {"KERAS_BACKEND": b.strip(), "JAX_PLATFORMS": "cpu"})
                for b in args.rrdbnet_backends.split(",") if b.strip()]
    settings += [("pytorch", "rrdbnet-torch", {}), ("pytorch-cl", "rrdbnet-torch-cl", {})]
    rows, procs = {}, {}
    for name, worker, env_extra in settings:
        print(f"building and warming up RRDBNet on {name} ...", file=sys.stderr, flush=True)
        env = dict(os.environ, **env_extra, OMP_NUM_THREADS=str(args.threads))
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--serve", "--size", str(args.size),
               "--threads", str(args.threads)]
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, bufsize=1)
        reply = json.loads(proc.stdout.readline() or '{"error": "worker exited"}')
        if "ready" in reply:
            rows[name], procs[name] = {**reply["ready"], "times": []}, proc
        else:
            rows[name] = reply
            proc.kill()
    try:
        for r in range(args.repeats):
            print(f"round {r + 1}", file=sys.stderr, flush=True)
            for name, proc in procs.items():
                proc.stdin.write("run\n")
                proc.stdin.flush()
                rows[name]["times"].append(json.loads(proc.stdout.readline())["seconds"])
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
    for name in procs:
        med = statistics.median(rows[name]["times"])
        rows[name].update(median_s=med, kpx_per_s=args.size * args.size / 1000 / med)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nRRDBNet x4 (64 filters, 23 blocks, growth 32), one {args.size}x{args.size} input, median of "
          f"{args.repeats} interleaved rounds after a warm-up, {args.threads} threads, {os.cpu_count()} cores, "
          f"load average {load:.1f} at the end")
    print(f"{'setting':<18} {'params':>10} {'warm-up s':>9} {'median s':>9} {'min s':>7} {'kpx/s':>7} {'vs PyTorch':>10}"
          f"  framework")
    torch_rates = [r["kpx_per_s"] for n, r in rows.items() if n.startswith("pytorch") and "kpx_per_s" in r]
    ref = max(torch_rates) if torch_rates else None  # PyTorch's faster layout is the reference
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<18} skipped: {r['error']}")
            continue
        ratio = f"{r['kpx_per_s'] / ref:.3f}" if ref else "-"
        print(f"{name:<18} {r['params']:>10,} {r['warmup_s']:>9.2f} {r['median_s']:>9.2f} {min(r['times']):>7.2f} "
              f"{r['kpx_per_s']:>7.2f} "
              f"{ratio:>10}  {r['framework']}")
    return rows


# ------------------------------------------------------------------------------ --part options (TF only)
def part_options(args):
    """Ways of calling one model on images of different sizes (first pass includes compilation)."""
    import keras

    from evaluation import inference
    import model as model_lib
    from testing.images import smooth_image

    model = model_lib.build_model(args.arch, args.scale, num_filters=args.filters, num_res_blocks=args.blocks)
    rng = np.random.default_rng(0)
    sizes = [tuple(rng.integers(args.min_size, args.max_size + 1, 2)) for _ in range(args.images)]
    images = [smooth_image(rng, h, w) for h, w in sizes]
    jit_fn = inference._jit_call(model)
    eager_fn = inference._eager_call(model)
    runs = {
        "eager": lambda lr: eager_fn(lr[None].astype(np.float32))[0],
        "graph": lambda lr: inference.super_resolve(model, lr, jit=False),
        "predict": lambda lr: model.predict_on_batch(lr[None].astype(np.float32))[0],
        "jit-shape": lambda lr: jit_fn(lr[None].astype(np.float32))[0],
        "jit-bucket": lambda lr: inference.super_resolve(model, lr, jit=True),  # exact, compiled per bucket
        "tiles-jit": lambda lr: inference.super_resolve(model, lr, tile=args.tile, jit=True),
        "tiles-eager": lambda lr: inference.super_resolve(model, lr, tile=args.tile, jit=False),  # TF: graph
    }
    print(f"backend {keras.backend.backend()}, {args.arch} x{args.scale} {args.filters}f/{args.blocks}b, "
          f"{args.images} images, LR sides {args.min_size}-{args.max_size}, {os.cpu_count()} CPUs")
    print(f"{'option':12s} {'first pass s':>13s} {'warm pass s':>12s} {'first cpu':>10s} {'warm cpu':>10s} "
          f"{'warm s/Mpx':>11s} {'inner diff':>10s}")
    ref, rows = None, {}
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
        m = 16 * args.scale  # tiles with overlap 16 may differ within the receptive field of a tile edge
        diff = max(float(np.abs(a - b)[m:-m, m:-m].max()) for a, b in zip(outs, ref))
        rows[name] = {"first_s": times[0], "warm_s": times[1], "first_cpu": cpu[0], "warm_cpu": cpu[1]}
        print(f"{name:12s} {times[0]:13.2f} {times[1]:12.2f} {cpu[0]:10.2f} {cpu[1]:10.2f} {times[1] / mpx:11.2f} "
              f"{diff:10.3f}", flush=True)
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.worker and args.serve:
        return serve_demo(args) if args.worker.startswith("demo-") else serve_rrdbnet(args)
    if args.worker:
        result = {"make": worker_make, "backends": worker_backends}[args.worker](args)
        with open(args.json, "w") as f:
            json.dump(result or {}, f)
        return 0
    results = {}
    if args.part == "options":
        results["options"] = part_options(args)
    if args.part in ("all", "backends"):
        results["backends"] = part_backends(args)
    if args.part in ("all", "rrdbnet"):
        results["rrdbnet"] = part_rrdbnet(args)
    if args.part == "demo":
        results["demo"] = part_demo(args)
    if args.json:
        from utils import atomic_path

        with atomic_path(args.json) as tmp:
            with open(tmp, "w") as f:
                json.dump({"args": {k: v for k, v in vars(args).items() if not k.startswith(("worker", "model",
                                                                                               "out"))},
                           "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
