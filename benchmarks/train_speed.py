"""Training speed of edsr-16 x2: Keras (fit and train.py's trainer step, XLA on/off, ...) against PyTorch's best.

Median seconds per training step (batch 16, LR 48 px -> HR 96 px, L1 loss, Adam) on synthetic data.
Every setting runs in its own worker process (so environment variables such as KERAS_BACKEND or
TF_ENABLE_ONEDNN_OPTS take effect, and frameworks do not share thread pools); the workers are built and
warmed up first, then timed in interleaved rounds so that load from other jobs on a shared machine hits
all settings alike. Ratios are only meaningful between figures of the same run.

    python benchmarks/train_speed.py                     # the default settings (~6 min on 2 idle cores)
    python benchmarks/train_speed.py --backends all --steps 10
    python benchmarks/train_speed.py --backends tf,torch --steps-per-execution 4 --threads 2

PyTorch (CPU build) is in requirements.txt; where it is missing the torch rows are skipped with a message.
The reference is PyTorch's best variant, `torch-fused` (channels_last + Adam(fused=True)).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name -> (framework, environment, description). Keras settings also take --steps-per-execution.
SETTINGS = {
    "tf-xla": ("keras", {"KERAS_BACKEND": "tensorflow"}, "Keras/TensorFlow, jit_compile=True (XLA)"),
    "tf": ("keras", {"KERAS_BACKEND": "tensorflow"}, "Keras/TensorFlow, jit_compile=False"),
    # TF turns oneDNN on by default only on CPUs with AVX-512 VNNI/BF16 or AMX; elsewhere (e.g. AVX2-only
    # AMD EPYC) "tf" runs Eigen kernels, and this setting forces oneDNN on.
    "tf-onednn": ("keras", {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
                  "Keras/TensorFlow, jit_compile=False, TF_ENABLE_ONEDNN_OPTS=1"),
    "tf-xla-onednn": ("keras", {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
                      "Keras/TensorFlow, jit_compile=True (XLA), TF_ENABLE_ONEDNN_OPTS=1"),
    "jax": ("keras", {"KERAS_BACKEND": "jax"}, "Keras/JAX (always XLA-compiled)"),
    "keras-torch": ("keras", {"KERAS_BACKEND": "torch"}, "Keras/PyTorch backend, jit_compile=False"),
    # train.py's own path: training.backend.make_train_step on a PixelTask (the trainer's step, not fit)
    "trainer-tf": ("trainer", {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
                   "train.py's trainer step, TensorFlow + oneDNN, no XLA"),
    "trainer-tf-xla": ("trainer", {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
                       "train.py's trainer step, TensorFlow + oneDNN, XLA"),
    "trainer-jax": ("trainer", {"KERAS_BACKEND": "jax"}, "train.py's trainer step, JAX (jitted)"),
    "torch": ("torch", {}, "plain PyTorch, NCHW"),
    "torch-cl": ("torch", {}, "plain PyTorch, channels_last memory format"),
    "torch-fused": ("torch", {}, "plain PyTorch, channels_last, Adam(fused=True) (reference)"),
}
DEFAULT_BACKENDS = "tf-onednn,tf-xla-onednn,trainer-tf,trainer-tf-xla,trainer-jax,torch,torch-fused"
REFERENCE = "torch-fused"  # PyTorch's best variant (issue 9)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5,
                   help="timed training steps per setting (median reported; default 5)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed steps per setting before timing, including compilation (default 1)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--patch", type=int, default=48, help="LR patch size in pixels; HR is 2x (default 48)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="intra-op threads for every framework (TF intra-op pool, torch.set_num_threads, "
                        f"JAX: all cores unless 1); default: all cores ({os.cpu_count()})")
    p.add_argument("--inter-threads", type=int, default=1,
                   help="TF inter-op threads / torch interop threads (default 1: EDSR is a chain of "
                        "convolutions, so more inter-op threads only compete for the cores)")
    p.add_argument("--steps-per-execution", type=int, default=1,
                   help="Keras steps_per_execution for the Keras settings (default 1)")
    p.add_argument("--backends", default=DEFAULT_BACKENDS,
                   help=f"comma-separated settings, or 'all'; choices: {', '.join(SETTINGS)}; a Keras "
                        "setting may end in @N to use steps_per_execution=N for it only, e.g. tf@4 "
                        f"(default {DEFAULT_BACKENDS})")
    p.add_argument("--sequential", action="store_true",
                   help="time each setting alone instead of in interleaved rounds (uses less memory)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one setting, talk over stdin/stdout
    args = p.parse_args(argv)
    names = list(SETTINGS) if args.backends == "all" else [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in names if not _valid(b)]
    if bad:
        p.error(f"unknown setting(s) {', '.join(bad)}; choose from {', '.join(SETTINGS)}")
    if min(args.steps, args.batch_size, args.patch, args.threads, args.inter_threads,
           args.steps_per_execution) < 1 or args.warmup < 0:
        p.error("--steps, --batch-size, --patch, --threads, --inter-threads and --steps-per-execution "
                "must be positive, --warmup non-negative")
    args.names = names
    return args


def split_name(name):
    """'tf@4' -> ('tf', 4); 'tf' -> ('tf', None)."""
    base, _, spe = name.partition("@")
    return base, int(spe) if spe else None


def _valid(name):
    base, _, spe = name.partition("@")
    return base in SETTINGS and (not spe or (spe.isdigit() and int(spe) >= 1 and SETTINGS[base][0] == "keras"))


# ----------------------------------------------------------------------------------------------- workers

def _keras_worker(name, args, chunk):
    """Build the project's edsr-16 x2 and return (run(n) -> seconds for n steps, info)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    elif backend == "torch":
        import torch
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(args.inter_threads)
    import numpy as np
    import keras

    from model import build_model, count_params

    keras.utils.set_random_seed(0)
    model = build_model("edsr", 2, num_filters=64, num_res_blocks=16)
    jit = {"tf-xla": True, "tf": False, "tf-onednn": False, "tf-xla-onednn": True, "jax": True,
           "keras-torch": False}[name]
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mae", jit_compile=jit,
                  steps_per_execution=args.steps_per_execution)
    rng = np.random.default_rng(0)
    b, p = args.batch_size, args.patch
    # `chunk` batches per fit call: steps_per_execution steps run inside one compiled call.
    lr = rng.uniform(0, 255, (b * chunk, p, p, 3)).astype("float32")
    hr = rng.uniform(0, 255, (b * chunk, 2 * p, 2 * p, 3)).astype("float32")

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    clock = StepClock()

    def run(n_chunks):
        # One fit call over 1 + n_chunks executions, as train.py runs many steps per fit; the first execution
        # (fit's own set-up: data adapter, iterator, callbacks) is not timed, only the steps after it.
        if n_chunks == 0:
            return 0.0
        reps = 1 + n_chunks
        clock.ends = []
        model.fit(np.concatenate([lr] * reps), np.concatenate([hr] * reps), batch_size=b, epochs=1,
                  shuffle=False, verbose=0, callbacks=[clock])
        return clock.ends[-1] - clock.ends[0]

    info = {"params": int(count_params(model)), "jit_compile": jit,
            "steps_per_execution": args.steps_per_execution, "keras": keras.__version__,
            "backend": backend}
    if backend == "tensorflow":
        import tensorflow as tf
        info["tensorflow"] = tf.__version__
        from tensorflow.python.util import _pywrap_util_port
        info["onednn"] = bool(_pywrap_util_port.IsMklEnabled())  # what TF actually decided
    return run, info


def _trainer_worker(name, args, chunk):
    """train.py's step: training.backend.make_train_step on a PixelTask (L1, Adam), as the trainer runs it."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    import numpy as np
    import keras

    from model import build_model, count_params
    from training import PixelTask, backend as train_backend
    from training.speed import default_jit_compile

    keras.utils.set_random_seed(0)
    model = build_model("edsr", 2, num_filters=64, num_res_blocks=16)
    opt = keras.optimizers.Adam(1e-4)
    opt.build(model.trainable_variables)
    task = PixelTask(model, opt, loss=lambda hr, sr: keras.ops.mean(keras.ops.abs(hr - sr), axis=(1, 2, 3)),
                     name="l1")
    jit = {"trainer-tf": False, "trainer-tf-xla": True, "trainer-jax": True}[name]
    step = train_backend.make_train_step(task, jit_compile=jit)
    rng = np.random.default_rng(0)
    b, p = args.batch_size, args.patch
    batch = {"lr": keras.ops.convert_to_tensor(rng.uniform(0, 255, (b, p, p, 3)).astype("float32")),
             "hr": keras.ops.convert_to_tensor(rng.uniform(0, 255, (b, 2 * p, 2 * p, 3)).astype("float32"))}

    def run(n_chunks):
        t = time.perf_counter()
        for _ in range(n_chunks * chunk):
            float(keras.ops.convert_to_numpy(step(batch)["loss"]))  # the step has finished when this returns
        return time.perf_counter() - t

    info = {"params": int(count_params(model)), "jit_compile": jit, "keras": keras.__version__, "backend": backend,
            "train_py_default": jit == default_jit_compile(backend)}
    if backend == "tensorflow":
        import tensorflow as tf
        info["tensorflow"] = tf.__version__
        from tensorflow.python.util import _pywrap_util_port
        info["onednn"] = bool(_pywrap_util_port.IsMklEnabled())
    return run, info


def _torch_worker(name, args, chunk):
    import torch
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.inter_threads)
    from testing.torch_edsr import EDSR, count_params

    torch.manual_seed(0)
    model = EDSR(scale=2, num_filters=64, num_res_blocks=16)
    fmt = torch.contiguous_format if name == "torch" else torch.channels_last
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=name == "torch-fused" or None)
    loss_fn = torch.nn.L1Loss()
    b, p = args.batch_size, args.patch
    g = torch.Generator().manual_seed(0)
    lr = (torch.rand(b, 3, p, p, generator=g) * 255).contiguous(memory_format=fmt)
    hr = (torch.rand(b, 3, 2 * p, 2 * p, generator=g) * 255).contiguous(memory_format=fmt)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(lr), hr)
        loss.backward()
        opt.step()
        return loss.item()  # like Keras' logs: the step has finished when it returns

    def run(n_chunks):
        t = time.perf_counter()
        for _ in range(n_chunks * chunk):
            step()
        return time.perf_counter() - t

    info = {"params": count_params(model), "torch": torch.__version__,
            "memory_format": "NCHW" if name == "torch" else "channels_last",
            "mkldnn": torch.backends.mkldnn.is_available()}
    return run, info


def worker_main(args):
    """One setting in this process: build, warm up, then time chunks on request from the parent."""
    name, _ = split_name(args.worker)
    framework = SETTINGS[name][0]
    chunk = args.steps_per_execution if framework == "keras" else 1
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library chatter off the protocol channel
    t0 = time.perf_counter()
    try:
        run, info = {"keras": _keras_worker, "trainer": _trainer_worker, "torch": _torch_worker}[framework](
            name, args, chunk)
        build_s = time.perf_counter() - t0
        warm_chunks = -(-args.warmup // chunk)
        t1 = time.perf_counter()
        run(max(warm_chunks, 1) if args.warmup else 0)
        info.update(build_s=round(build_s, 2), warmup_s=round(time.perf_counter() - t1, 2),
                    chunk=chunk, threads=args.threads, inter_threads=args.inter_threads)
    except Exception as e:  # reported as a skipped row, not a traceback
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), file=out, flush=True)
        return 1
    print(json.dumps({"ready": info}), file=out, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        n = int(cmd[1])
        print(json.dumps({"seconds": run(n) / (n * chunk)}), file=out, flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ parent

def _start(name, args):
    base, spe = split_name(name)
    framework, env_extra, _ = SETTINGS[base]
    if framework == "torch" or env_extra.get("KERAS_BACKEND") == "torch":
        try:
            import importlib.util
            if importlib.util.find_spec("torch") is None:
                raise ImportError
        except ImportError:
            return None, "PyTorch is not installed (pip install -r requirements.txt)"
    env = dict(os.environ, **env_extra)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Same thread budget for XLA's CPU runtime (JAX) and OpenMP-based kernels as for the rest.
    env["OMP_NUM_THREADS"] = str(args.threads)
    if env_extra.get("KERAS_BACKEND") == "jax" and args.threads == 1:
        # XLA:CPU has no thread-count flag; it uses every core unless told to stay single-threaded.
        env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name,
           "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--patch", str(args.patch),
           "--threads", str(args.threads), "--inter-threads", str(args.inter_threads),
           "--steps-per-execution", str(spe or args.steps_per_execution), "--backends", name]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    return proc, None


def _reply(proc):
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read().strip().splitlines()
        return {"error": err[-1] if err else f"worker exited with status {proc.wait()}"}
    return json.loads(line)


def _stop(proc):
    try:
        proc.stdin.write("quit\n")
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    proc.wait()


def measure(args):
    """Return {name: {"times": [...], "info": {...}} or {"skipped": reason}}."""
    results = {}
    workers = {}

    def launch(name):
        proc, why = _start(name, args)
        if proc is None:
            results[name] = {"skipped": why}
            return None
        print(f"building and warming up {name} ...", file=sys.stderr, flush=True)
        reply = _reply(proc)
        if "error" in reply:
            _stop(proc)
            results[name] = {"skipped": reply["error"]}
            return None
        results[name] = {"info": reply["ready"], "times": []}
        return proc

    def time_chunk(name, proc):
        reply = _reply_after(proc, "run 1\n")
        if "error" in reply:
            results[name] = {"skipped": reply["error"], "times": results[name]["times"]}
            return False
        results[name]["times"].append(reply["seconds"])
        return True

    def _reply_after(proc, msg):
        proc.stdin.write(msg)
        proc.stdin.flush()
        return _reply(proc)

    def rounds(name):
        return -(-args.steps // results[name]["info"]["chunk"])

    if args.sequential:
        for name in args.names:
            proc = launch(name)
            if proc:
                for _ in range(rounds(name)):
                    if not time_chunk(name, proc):
                        break
                _stop(proc)
    else:
        for name in args.names:
            proc = launch(name)
            if proc:
                workers[name] = proc
        try:
            for r in range(max([rounds(n) for n in workers] or [0])):
                print(f"round {r + 1}", file=sys.stderr, flush=True)
                for name, proc in list(workers.items()):
                    if r < rounds(name) and not time_chunk(name, proc):
                        _stop(workers.pop(name))
        finally:
            for proc in workers.values():
                _stop(proc)
    return results


def describe(name, info):
    text = SETTINGS[split_name(name)[0]][2]
    if "steps_per_execution" in info:
        text += f", steps_per_execution={info['steps_per_execution']}"
    return text


def report(args, results):
    rows = []
    for name in args.names:
        res = results[name]
        if "skipped" in res:
            print(f"skipped {name}: {res['skipped']}")
            continue
        rows.append((name, statistics.median(res["times"]), res))
    if not rows:
        return
    ref = next((m for n, m, _ in rows if n == REFERENCE), None)
    ref_min = next((min(r["times"]) for n, _, r in rows if n == REFERENCE), None)
    load = getattr(args, "load", None)
    if load:
        print(f"\nload average (1 min) at the start / end of the run: {load[0]:.1f} / {load[1]:.1f} on "
              f"{os.cpu_count()} cores{' (a shared machine: medians are inflated; the min column is the least disturbed step)' if max(load) > os.cpu_count() else ''}")
    print(f"\nedsr-16 x2 training step: batch {args.batch_size}, LR {args.patch} px -> HR {2 * args.patch} px, "
          f"L1, Adam; {args.threads} intra-op / {args.inter_threads} inter-op threads, "
          f"{os.cpu_count()} cores")
    print(f"{'setting':<12} {'median s/step':>13} {'min':>7} {'max':>7} {'n':>3} {'warmup s':>9} "
          f"{'vs ref':>8}  description")
    for name, med, res in rows:
        t = res["times"]
        ratio = f"{med / ref:.3f}" if ref else "-"
        print(f"{name:<12} {med:>13.3f} {min(t):>7.3f} {max(t):>7.3f} {len(t):>3} "
              f"{res['info']['warmup_s']:>9.1f} {ratio:>8}  {describe(name, res['info'])}")
    keras_rows = [(n, m) for n, m, _ in rows if SETTINGS[split_name(n)[0]][0] in ("keras", "trainer")]
    default = [(n, m) for n, m, r in rows if r["info"].get("train_py_default")
               and r["info"].get("backend") == os.environ.get("KERAS_BACKEND", "tensorflow")]
    params = {n: r["info"]["params"] for n, _, r in rows}
    if len(set(params.values())) > 1:
        print(f"WARNING: parameter counts differ: {params}")
    if keras_rows:
        best, best_med = min(keras_rows, key=lambda r: r[1])
        if ref:
            print(f"\nKeras best ({best}) / PyTorch best ({REFERENCE}): {best_med:.3f} / {ref:.3f} s/step = {best_med / ref:.3f}")
            for n, m in default:
                fastest = min(r["times"] for name, _, r in rows if name == n)
                print(f"train.py's default ({n}) / PyTorch best ({REFERENCE}): {m:.3f} / {ref:.3f} s/step = "
                      f"{m / ref:.3f} by median, {min(fastest):.3f} / {ref_min:.3f} = {min(fastest) / ref_min:.3f} "
                      f"by fastest step (goal: at most 1.0)")
        else:
            print(f"\nKeras best: {best} at {best_med:.3f} s/step (no PyTorch reference in this run)")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = measure(args)
    args.load = (load0, os.getloadavg()[0]) if load0 is not None else None
    report(args, results)
    if args.json:
        from utils import atomic_path
        summary = {"args": {k: v for k, v in vars(args).items() if k not in ("worker", "json", "load")},
                   "load_average": args.load,
                   "results": results}
        with atomic_path(args.json) as tmp:
            with open(tmp, "w") as f:
                json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
