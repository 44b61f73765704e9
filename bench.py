"""Benchmark saved models (and bicubic interpolation) on DIV2K validation images or standard SR test sets.

    python bench.py --dataset ./DIV2K_BIN -i ./output/<run>/models -o bench.json
    python bench.py --bicubic --dataset ../shared/datasets/Set5 --scale 2 3 4
    python bench.py -i model.keras --dataset Set5 --dataset Set14 --dataset B100 --self-ensemble

`-o` keeps the seed's format, `{model path: PSNR}`: RGB PSNR without border crop on a DIV2K tree (the seed's
meaning), Y-channel PSNR with shave = scale on a benchmark folder (`HR/` + optional `LR_bicubic/X{s}`), for
the first --dataset. Every number of every (model, dataset, scale) goes to `--results` (rows). Stdout ends
with a paper-style Markdown table, then `Best PSNR = X for model Y`.
"""
import argparse
import glob
import json
import os
import re
import sys

from utils import UserError, atomic_path, parse_id_range, run_cli, warn

CHECKPOINT_EXTENSIONS = (".keras", ".h5")


def build_parser():
    p = argparse.ArgumentParser(description="Benchmark SR checkpoints (PSNR/SSIM) on DIV2K or standard test sets.")
    p.add_argument("-d", "--dataset", action="append", default=None,
                   help="DIV2K tree (PNG or converted numpy) or benchmark folder with HR/ and optional "
                        "LR_bicubic/X{s}/; repeat for several (default ./DIV2K_BIN)")
    p.add_argument("-i", "--indir", action="append", default=None,
                   help="checkpoint directory (searched recursively for .keras/.h5), glob or file; repeatable")
    p.add_argument("-o", "--outfile", default="./bench.json", help="seed-format JSON {model path: PSNR}")
    p.add_argument("--results", default=None,
                   help="full results JSON with one row per (model, dataset, scale) "
                        "(default: <outfile stem>.results.json beside --outfile)")
    p.add_argument("-s", "--scale", type=int, nargs="+", default=None,
                   help="scale(s); default each model's own scale. A checkpoint of another scale is an error")
    p.add_argument("--downgrade", default="bicubic", help="DIV2K downgrade operator (LR folder suffix)")
    p.add_argument("--images", default=None, help="DIV2K image ids to use, e.g. 801-900 (default: all valid)")
    p.add_argument("--bicubic", action="store_true", help="add a bicubic-interpolation baseline row (no model needed)")
    p.add_argument("--shave", type=int, default=None,
                   help="border pixels cut before scoring (default: scale on benchmark sets, 0 on DIV2K as the seed)")
    p.add_argument("--self-ensemble", action="store_true", help="EDSR's x8 geometric self-ensemble")
    p.add_argument("--tile", type=int, default=None, help="process images in NxN LR tiles (fixed shape: XLA compiles once)")
    p.add_argument("--tile-overlap", type=int, default=16, help="LR pixels of context cut from each tile side")
    p.add_argument("--plots", metavar="DIR",
                   help="for GRAM (log-variance) models: write sparsification and calibration plots (PNG) here")
    p.add_argument("--loss-mode", choices=["l2", "l1"],
                   help="log-variance convention of GRAM models (default: the training run's args.json, else l2)")
    p.add_argument("--plot", default=None, help="PNG of PSNR versus training epoch (epoch parsed from epoch-XXX- names)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


# --------------------------------------------------------------------------------------------- inputs
def find_checkpoints(specs):
    """Checkpoint files from directories (recursive), globs and files, sorted, without duplicates."""
    found = []
    for spec in specs:
        if os.path.isdir(spec):
            paths = [os.path.join(d, f) for d, _, files in os.walk(spec) for f in files]
        elif os.path.isfile(spec):
            paths = [spec]
        elif glob.has_magic(spec):
            paths = glob.glob(spec, recursive=True)
        else:
            raise UserError(f"models directory or file {spec} does not exist; pass -i <run>/models")
        paths = [p for p in paths if p.endswith(CHECKPOINT_EXTENSIONS) and not os.path.basename(p).startswith(".")]
        if not paths:
            raise UserError(f"no checkpoints (.keras or .h5) found in {spec}")
        found.extend(sorted(paths))
    return list(dict.fromkeys(found))


def is_benchmark_folder(root):
    """A standard test set laid out as HR/ (+ LR_bicubic/X{s}/), rather than a DIV2K tree."""
    return os.path.isdir(os.path.join(root, "HR"))


def dataset_label(root):
    return os.path.basename(os.path.normpath(root)) or root


def load_checkpoint(path):
    """A saved model (.keras, or a full-model legacy .h5 that Keras 3 can read), or a one-line UserError."""
    import model as model_lib

    if path.endswith(".keras"):
        return model_lib.load_model(path, compile=False)  # UserError naming the file when unreadable
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # weights-only files, Lambda layers of Keras 2 models, corrupt files
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load checkpoint {path} as a Keras model ({msg}); for krasserm weight files run "
                        f"`python convert.py weights -i {path} -o model.keras` first") from None


def run_loss_mode(path):
    """The --loss-mode a train.py run used, from <run>/args.json beside <run>/models/<checkpoint>; else None."""
    args_json = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "args.json")
    try:
        with open(args_json) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config.get("loss_mode") if config.get("pred_logvar") else None


def checkpoint_scale(model, path):
    import model as model_lib

    try:
        return int(model_lib.model_scale(model))
    except Exception as e:
        raise UserError(f"cannot tell the scale of checkpoint {path}: {e}") from None


def epoch_of(path):
    m = re.search(r"epoch-(\d+)", os.path.basename(path))
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------- output
def primary_metric(row):
    """The number the -o file and the table lead with: RGB PSNR on DIV2K (seed), Y PSNR on test sets."""
    return ("psnr_y", "ssim_y") if row["kind"] == "benchmark" else ("psnr_rgb", "ssim_rgb")


def markdown_table(rows):
    """Rows = models, columns = dataset x scale, cells 'PSNR / SSIM' (Y on test sets, RGB on DIV2K)."""
    columns = list(dict.fromkeys((r["dataset"], r["scale"], r["kind"]) for r in rows))
    models = list(dict.fromkeys(r["label"] for r in rows))
    cells = {}
    for r in rows:
        p, s = primary_metric(r)
        cells[(r["label"], r["dataset"], r["scale"])] = f"{r[p]:.2f} / {r[s]:.4f}"
    head = ["Model"] + [f"{d} x{s} ({'Y' if k == 'benchmark' else 'RGB'})" for d, s, k in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + [":---:"] * len(columns)) + "|"]
    for m in models:
        lines.append("| " + " | ".join([m] + [cells.get((m, d, s), "-") for d, s, _ in columns]) + " |")
    return "\n".join(lines)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def plot_epochs(path, rows):
    """PSNR versus epoch, one line per (dataset, scale), over checkpoints whose names carry the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {}
    for r in rows:
        if r["model"] == "bicubic" or r.get("epoch") is None:
            continue
        p, _ = primary_metric(r)
        series.setdefault(f"{r['dataset']} x{r['scale']} ({'Y' if p == 'psnr_y' else 'RGB'})", []).append((r["epoch"], r[p]))
    if not series:
        raise UserError("--plot needs checkpoints named epoch-XXX-...; none of the benchmarked files is")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in series.items():
        pts.sort()
        ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", label=label)
    for r in rows:  # bicubic baselines as horizontal references
        if r["model"] == "bicubic":
            p, _ = primary_metric(r)
            ax.axhline(r[p], linestyle="--", linewidth=0.8, color="grey")
    ax.set_xlabel("epoch")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main
def main(argv=None):
    args = build_parser().parse_args(argv)
    datasets = args.dataset or ["./DIV2K_BIN"]
    for root in datasets:
        if not os.path.isdir(root):
            raise UserError(f"dataset directory {root} does not exist; pass --dataset DIR "
                            f"(a DIV2K tree or a folder with HR/)")
    if not args.indir and not args.bicubic:
        raise UserError("nothing to benchmark: pass -i MODELS_DIR and/or --bicubic")
    if args.tile is not None and args.tile <= 2 * args.tile_overlap:
        raise UserError(f"--tile ({args.tile}) must be larger than twice --tile-overlap ({args.tile_overlap})")
    images = parse_id_range(args.images) if args.images else None
    paths = find_checkpoints(args.indir) if args.indir else []
    results_path = args.results or os.path.join(
        os.path.dirname(args.outfile), os.path.splitext(os.path.basename(args.outfile))[0] + ".results.json")

    import data
    import evaluation

    pairs_cache = {}

    def pairs_for(root, scale):
        if (root, scale) not in pairs_cache:
            pairs_cache[(root, scale)] = data.open_pairs(
                root, scale, subset="valid", downgrade=args.downgrade,
                images=None if is_benchmark_folder(root) else images)
        return pairs_cache[(root, scale)]

    def run(model, scale, name, label):
        out = []
        for root in datasets:
            bench = is_benchmark_folder(root)
            shave = args.shave if args.shave is not None else (scale if bench else 0)
            row = evaluation.evaluate(model, pairs_for(root, scale), scale, shave=shave,
                                      self_ensemble=args.self_ensemble and not isinstance(model, str),
                                      tile=args.tile, tile_overlap=args.tile_overlap,
                                      progress=not args.no_progress, dataset=dataset_label(root), name=name,
                                      plots_dir=args.plots, loss_mode=args.loss_mode or (None if isinstance(model, str)
                                                                   else run_loss_mode(name)))
            row.update(dataset_path=os.path.abspath(root), kind="benchmark" if bench else "div2k",
                       label=label, epoch=epoch_of(name) if name != "bicubic" else None)
            p, _ = primary_metric(row)
            print(f"PSNR = {row[p]:.4f} ({'Y' if p == 'psnr_y' else 'RGB'}, {row['dataset']} x{scale}) "
                  f"for model {name}", file=sys.stderr)
            out.append(row)
        return out

    rows, seed_json = [], {}
    model_scales = []
    names = [os.path.basename(p) for p in paths]
    unique = len(set(names)) == len(names)  # table rows by file name, or by path when names repeat
    for path in paths:
        import keras

        model = load_checkpoint(path)
        scale = checkpoint_scale(model, path)
        if args.scale and scale not in args.scale:
            raise UserError(f"checkpoint {path} is a x{scale} model but --scale {' '.join(map(str, args.scale))} "
                            f"was asked; drop --scale or pick checkpoints of that scale")
        model_scales.append(scale)
        label = (os.path.basename(path) if unique else path) + (" +SE" if args.self_ensemble else "")
        model_rows = run(model, scale, path, label)
        rows.extend(model_rows)
        seed_json[path] = model_rows[0][primary_metric(model_rows[0])[0]]
        del model
        keras.backend.clear_session()  # free the graph/weights before the next checkpoint

    if args.bicubic:
        scales = args.scale or sorted(set(model_scales))
        if not scales:
            raise UserError("--bicubic without models needs --scale, e.g. --scale 2 3 4")
        bicubic_rows = []
        for scale in scales:
            bicubic_rows.extend(run("bicubic", scale, "bicubic", "Bicubic"))
        rows = bicubic_rows + rows
        if not paths:
            seed_json["bicubic"] = bicubic_rows[0][primary_metric(bicubic_rows[0])[0]]

    write_json(args.outfile, seed_json)
    results = {
        "command": ["bench.py"] + (list(argv) if argv is not None else sys.argv[1:]),
        "metric_note": "psnr/ssim from metrics.py: SR rounded to uint8; Y = MATLAB rgb2ycbcr luma (not rounded); "
                       "SSIM = Wang et al. (11x11 Gaussian 1.5, valid); -o value = psnr_rgb on DIV2K, psnr_y on "
                       "benchmark folders, first --dataset",
        "rows": rows,
    }
    write_json(results_path, results)
    if args.plot:
        plot_epochs(args.plot, rows)

    print(markdown_table(rows))
    print()
    best_model = max(seed_json, key=seed_json.get)
    print(f"Best PSNR = {seed_json[best_model]:.4f} for model {best_model}")
    return 0


if __name__ == "__main__":
    run_cli(main)
