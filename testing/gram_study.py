"""GRAM study: plain L2 vs NLL vs GRAM trained with the same seed and budget, scored on one validation set.
(The study's code, here so tests/test_uncertainty.py can check its plumbing; run it as benchmarks/gram_study.py.)

Trains the three variants with `train.main(argv)` (same profile, scale, seed, epochs, steps, batch size):

    plain  --loss mse                                           (3-channel SRResNet-style baseline)
    nll    --loss mse --pred_logvar                             (heteroscedastic loss alone)
    gram   --loss mse --pred_logvar --attention --block_attention_gradient

then loads each run's best checkpoint (by validation PSNR of the mean, as train.py saves them; or the
last with --checkpoint last) and prints one Markdown table: PSNR-Y / SSIM-Y (evaluation.evaluate, shave =
scale) and, for log-variance models, uncertainty.metrics (NLL in nats per value with values in grey levels,
AUSE of the RMSE sparsification curve in grey levels, Spearman(sigma, |error|), calibration error).

    python convert.py -o ./sample sample
    python benchmarks/gram_study.py --dataset ./sample -p sr-resnet -s 4 --epochs 3 --steps-per-epoch 50 \\
        --batch-size 8 --num-filters 32 --num-res-blocks 4 -o ./output/gram_study --plots ./output/gram_study
    python benchmarks/gram_study.py --runs plain=RUN_DIR nll=RUN_DIR gram=RUN_DIR   # score existing runs

Options this script does not know are passed to train.py unchanged (e.g. --lr-patch 24 --loss-mode l1).
"""
import argparse
import glob
import json
import os
import platform
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from utils import UserError, atomic_path, run_cli  # noqa: E402

VARIANTS = {
    "bicubic": ("bicubic (reference)", None),
    "plain": ("plain L2 (MSE)", ["--loss", "mse"]),
    "nll": ("NLL", ["--loss", "mse", "--pred_logvar"]),
    "gram": ("GRAM (NLL + attention + gradient block)",
             ["--loss", "mse", "--pred_logvar", "--attention", "--block_attention_gradient"]),
}
TRAINED = ("plain", "nll", "gram")
# Options forwarded to train.py when given (dest, flag).
TRAIN_OPTIONS = [("profile", "--profile"), ("scale", "--scale"), ("dataset", "--dataset"),
                 ("epochs", "--epochs"), ("steps_per_epoch", "--steps-per-epoch"), ("batch_size", "--batch-size"),
                 ("num_filters", "--num-filters"), ("num_res_blocks", "--num-res-blocks"), ("seed", "--seed"),
                 ("loss_mode", "--loss-mode"), ("training_images", "--training-images"),
                 ("validation_images", "--validation-images")]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-p", "--profile", default="sr-resnet", help="train.py profile shared by all variants")
    p.add_argument("-s", "--scale", type=int, default=4, help="super-resolution factor")
    p.add_argument("-d", "--dataset", default="./sample", help="DIV2K-layout dataset for training and validation")
    p.add_argument("-o", "--outdir", default="./output/gram_study", help="runs go to OUTDIR/<variant>/<timestamp>")
    p.add_argument("--epochs", type=int, default=2, help="training epochs per variant")
    p.add_argument("--steps-per-epoch", type=int, default=50, help="training steps per epoch")
    p.add_argument("--batch-size", type=int, default=8, help="training batch size")
    p.add_argument("--num-filters", type=int, help="model width (profile default when omitted)")
    p.add_argument("--num-res-blocks", type=int, help="model depth (profile default when omitted)")
    p.add_argument("--seed", type=int, default=0, help="the one seed all variants use")
    p.add_argument("--loss-mode", choices=["l1", "l2"], default="l2", help="heteroscedastic loss mode of nll/gram")
    p.add_argument("--training-images", help="training image ids (train.py default when omitted)")
    p.add_argument("--validation-images", help="validation image ids for training and the table "
                                               "(train.py default when omitted)")
    p.add_argument("--variants", default="plain,nll,gram", help="comma-separated subset of plain,nll,gram")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="score the best checkpoint by validation PSNR (as the seed) or the last one")
    p.add_argument("--runs", nargs="+", metavar="VARIANT=RUN_DIR",
                   help="skip training: score these existing train.py run directories")
    p.add_argument("--tile", type=int, help="tile size for inference on large validation images")
    p.add_argument("--no-bicubic", dest="bicubic", action="store_false",
                   help="leave out the bicubic-upscaling reference row")
    p.add_argument("--plots", metavar="DIR", help="write sparsification and calibration PNGs of nll/gram here")
    p.add_argument("--markdown", metavar="PATH", help="also write the table (with its budget) to this file")
    p.add_argument("--json", metavar="PATH", help="also write all numbers as JSON")
    return p


def train_argv(args, variant, extra):
    argv = []
    for dest, flag in TRAIN_OPTIONS:
        value = getattr(args, dest)
        if value is not None:
            argv += [flag, str(value)]
    return argv + VARIANTS[variant][1] + ["--outdir", os.path.join(args.outdir, variant)] + list(extra)


def pick_checkpoint(run_dir, which="best"):
    """The epoch checkpoint with the highest validation PSNR in its name (or the last.keras state)."""
    if which == "last" and os.path.isfile(os.path.join(run_dir, "last.keras")):
        return os.path.join(run_dir, "last.keras")
    best = None
    for path in glob.glob(os.path.join(run_dir, "models", "*.keras")):
        m = re.search(r"epoch-(\d+)-psnr-([-\d.]+)\.keras$", os.path.basename(path))
        if m:
            key = (float(m.group(2)), int(m.group(1))) if which == "best" else (int(m.group(1)), 0.0)
            if best is None or key > best[0]:
                best = (key, path)
    if best is not None:
        return best[1]
    if os.path.isfile(os.path.join(run_dir, "last.keras")):
        return os.path.join(run_dir, "last.keras")
    raise UserError(f"no checkpoint in {run_dir}/models; did the training run finish an epoch?")


def load_run(run_dir, which):
    try:
        with open(os.path.join(run_dir, "args.json")) as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{run_dir}: cannot read args.json ({e}); pass a train.py run directory") from None
    path = pick_checkpoint(run_dir, which)
    try:
        from model import load_model
    except ImportError:
        from keras.models import load_model
    return config, path, load_model(path, compile=False)


def check_variant(variant, config, run_dir):
    """Refuse to tabulate a run whose recorded flags are not the variant's (a silently plain 'GRAM' run)."""
    want = {"pred_logvar": variant != "plain", "attention": variant == "gram",
            "block_attention_gradient": variant == "gram"}
    got = {k: bool(config.get(k)) for k in want}
    if got != want:
        raise UserError(f"{run_dir}: args.json records {got}, not the {variant} variant {want}")


def validation_pairs(config, args):
    import data

    return data.open_pairs(config["dataset"], int(config["scale"]), subset="valid",
                           downgrade=config.get("downgrade", "bicubic"),
                           images=args.validation_images or config.get("validation_images"))


def score(model, config, args):
    """PSNR/SSIM row of evaluation.evaluate plus uncertainty curves (own loss_mode) for 6-channel models."""
    import numpy as np

    import data
    from evaluation import scorer
    from evaluation import inference
    from metrics import uncertainty

    scale = int(config["scale"])
    pairs = validation_pairs(config, args)
    row = scorer.evaluate(model, pairs, scale, shave=scale, tile=args.tile, progress=False)
    curves = None
    if config.get("pred_logvar"):
        loss_mode = config.get("loss_mode", "l2")
        hrs, means, logvars = [], [], []
        for pair in pairs:
            lr, hr = data.load_pair(pair, scale)  # HR cropped to scale x LR, in-memory LR handled
            sr = inference.super_resolve(model, lr, tile=args.tile, scale=scale)
            hrs.append(hr)
            means.append(sr[..., :3])
            logvars.append(sr[..., 3:])
        curves = uncertainty.curves(hrs, means, logvars, loss_mode=loss_mode, shave=scale)
        row["uncertainty"] = uncertainty.metrics_from_curves(curves)
        row["mean_sigma"] = curves["mean_sigma"]
        row["rmse"] = curves["rmse"]
        row["num_pixels"] = int(sum(np.prod(h.shape) for h in hrs))
    return row, curves


def hardware():
    import keras

    backend = keras.backend.backend()
    device = "CPU"
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                device = ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus)
        elif backend == "jax":
            import jax

            device = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    except Exception:  # device names are cosmetic
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{device} ({cores} cores available, {platform.machine()}), Keras {keras.__version__} / {backend}"


def fmt(value, digits):
    if value is None:
        return "–"
    if value != value:  # NaN
        return "nan"
    return f"{value:.{digits}f}"


def table(results):
    lines = ["| variant | PSNR-Y (dB) | SSIM-Y | NLL (nats) | AUSE-RMSE (grey lv.) | Spearman | calib. error "
             "| mean sigma | train time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        u = r["row"].get("uncertainty") or {}
        lines.append(f"| {VARIANTS[name][0]} | {fmt(r['row']['psnr_y'], 2)} | {fmt(r['row']['ssim_y'], 4)} | "
                     f"{fmt(u.get('nll'), 3)} | {fmt(u.get('ause_rmse'), 2)} | {fmt(u.get('spearman'), 3)} | "
                     f"{fmt(u.get('calibration_error'), 3)} | {fmt(r['row'].get('mean_sigma'), 2)} | "
                     f"{fmt(r.get('train_seconds'), 0)} |")
    return "\n".join(lines)


def budget_line(config, num_images, hw):
    keys = ("profile", "arch", "scale", "num_filters", "num_res_blocks", "epochs", "steps_per_epoch", "batch_size",
            "lr_patch", "learning_rate", "seed", "loss_mode", "dataset")
    parts = [f"{k}={config.get(k)}" for k in keys if config.get(k) is not None]
    return (f"Budget per variant: {', '.join(parts)}; scored on {num_images} validation image(s), "
            f"shave = scale. Hardware: {hw}.")


def main(argv=None):
    args, extra = build_parser().parse_known_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in TRAINED:
            raise UserError(f"unknown variant {v!r}; choose from {', '.join(TRAINED)}")
    runs = {}
    if args.runs:
        for item in args.runs:
            name, sep, run_dir = item.partition("=")
            if not sep or name not in TRAINED:
                raise UserError(f"--runs expects VARIANT=RUN_DIR with VARIANT in {', '.join(TRAINED)}, got {item!r}")
            runs[name] = (run_dir, None)
        variants = [v for v in TRAINED if v in runs]
    else:
        import keras

        import train

        for v in variants:
            keras.backend.clear_session()
            argv_v = train_argv(args, v, extra)
            print(f"== {v}: python train.py {' '.join(argv_v)}", flush=True)
            start = time.perf_counter()
            run_dir = train.main(argv_v)
            runs[v] = (run_dir, time.perf_counter() - start)

    results, config = {}, None
    for v in variants:
        run_dir, seconds = runs[v]
        config, path, model = load_run(run_dir, args.checkpoint)
        check_variant(v, config, run_dir)
        row, curves = score(model, config, args)
        results[v] = {"run_dir": run_dir, "checkpoint": path, "train_seconds": seconds, "row": row, "curves": curves}
        print(f"== {v}: scored {path}", flush=True)

    if args.bicubic:
        from evaluation import scorer

        scale = int(config["scale"])
        row = scorer.evaluate("bicubic", validation_pairs(config, args), scale, shave=scale, progress=False)
        results = {"bicubic": {"run_dir": None, "checkpoint": None, "train_seconds": None, "row": row,
                               "curves": None}, **results}
    hw = hardware()
    num_images = next(iter(results.values()))["row"]["num_images"]
    text = budget_line(config, num_images, hw) + "\n\n" + table(results) + "\n"
    print("\n" + text)
    if args.markdown:
        with atomic_path(args.markdown) as tmp, open(tmp, "w") as f:
            f.write(text)
    if args.plots:
        from metrics import uncertainty

        with_curves = {VARIANTS[v][0]: r["curves"] for v, r in results.items() if r["curves"] is not None}
        if with_curves:
            uncertainty.plot_sparsification(with_curves, os.path.join(args.plots, "gram_study_sparsification.png"))
            uncertainty.plot_calibration(with_curves, os.path.join(args.plots, "gram_study_calibration.png"))
    if args.json:
        out = {v: {k: r[k] for k in ("run_dir", "checkpoint", "train_seconds")} for v, r in results.items()}
        for v, r in results.items():
            out[v]["row"] = {k: val for k, val in r["row"].items() if k != "per_image"}
        out["hardware"] = hw
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    run_cli(main)
