"""Benchmark saved models (and bicubic interpolation) with any registered metric: PSNR/SSIM against ground
truth, and no-reference NIQE, on DIV2K validation images, standard SR test sets or any folder of images.

    python bench.py --dataset ./DIV2K_BIN -i ./output/<run>/models -o bench.json
    python bench.py --bicubic --dataset ../shared/datasets/Set5 --scale 2 3 4
    python bench.py -i model.keras --dataset Set5 --dataset Set14 --dataset B100 --self-ensemble
    python bench.py -i model.keras --dataset Set5 --metrics psnr_y ssim_y niqe
    # A-ESRGAN protocol: x4 applied to the HR images themselves, NIQE only (Pillow grey, no crop)
    python bench.py -i model.keras --bicubic --scale 4 --dataset Set5 --input hr --metrics niqe --niqe-convert gray
    # real photographs (no ground truth): super-resolve every image of a folder, NIQE
    python bench.py -i model.keras --dataset ./photos --scale 4

Inputs (per --dataset): a benchmark folder (`HR/` + optional `LR_bicubic/X{s}`) or a DIV2K tree, scored LR -> SR
against HR (default metrics PSNR/SSIM on Y and RGB); with `--input hr` their HR images are the inputs and only
no-reference metrics apply; a plain folder of images is always no-reference; `--input as-is` scores the images
as they are (no super-resolution).

`-o` keeps the seed's format, `{model path: PSNR}`: RGB PSNR without border crop on a DIV2K tree (the seed's
meaning), Y-channel PSNR with shave = scale on a benchmark folder, for the first --dataset (the first metric
when no PSNR is computed). Every number of every (model, dataset, scale) goes to `--results` (rows). Stdout
ends with a paper-style Markdown table, then `Best PSNR = X for model Y` (or the first metric's best).
"""
import argparse
import gc
import glob
import json
import os
import re
import sys
import zipfile

from utils import UserError, atomic_path, parse_id_range, run_cli

CHECKPOINT_EXTENSIONS = (".keras", ".h5")  # what a directory search picks up
MODEL_FILE_EXTENSIONS = (".keras", ".h5", ".hdf5", ".pth", ".pt", ".safetensors")  # what -i FILE may name
INPUTS = ("lr", "hr", "as-is")
DEFAULT_METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


def build_parser():
    p = argparse.ArgumentParser(description="Benchmark SR checkpoints (PSNR/SSIM, NIQE) on DIV2K, standard test "
                                            "sets or folders of images.")
    p.add_argument("-d", "--dataset", action="append", default=None,
                   help="DIV2K tree (PNG or converted numpy), benchmark folder with HR/ and optional "
                        "LR_bicubic/X{s}/, or a folder of images (no reference); repeat for several "
                        "(default ./DIV2K_BIN)")
    p.add_argument("-i", "--indir", action="append", default=None,
                   help="checkpoint directory (searched recursively for .keras/.h5; resume-* and discriminator/ "
                        "skipped), glob or model file (.keras, .h5, .pth, .safetensors); repeatable")
    p.add_argument("-o", "--outfile", default="./bench.json", help="seed-format JSON {model path: PSNR}")
    p.add_argument("--results", default=None,
                   help="full results JSON with one row per (model, dataset, scale) "
                        "(default: <outfile stem>.results.json beside --outfile)")
    p.add_argument("-s", "--scale", type=int, nargs="+", default=None,
                   help="scale(s); default each model's own scale. A checkpoint of another scale is an error")
    p.add_argument("--input", choices=INPUTS, default="lr",
                   help="lr: LR images -> SR scored against HR (a plain folder: its images, no reference); "
                        "hr: the HR images themselves are super-resolved (A-ESRGAN protocol; no-reference metrics "
                        "only); as-is: score the images without super-resolution (default lr)")
    p.add_argument("--metrics", nargs="+", default=None, metavar="NAME",
                   help="registered metrics to report: psnr_y ssim_y psnr_rgb ssim_rgb niqe (default: the four "
                        "PSNR/SSIM with a reference, niqe without)")
    p.add_argument("--niqe-convert", choices=["y", "gray"], default="y",
                   help="NIQE's grey plane: y = MATLAB BT.601 luma (BasicSR), gray = Pillow convert('L') "
                        "(A-ESRGAN's script) (default y)")
    p.add_argument("--niqe-crop", type=int, default=0, help="border pixels cut before NIQE (default 0)")
    p.add_argument("--downgrade", default="bicubic", help="DIV2K downgrade operator (LR folder suffix)")
    p.add_argument("--images", default=None, help="DIV2K image ids to use, e.g. 801-900 (default: all valid)")
    p.add_argument("--bicubic", action="store_true",
                   help="add a bicubic-interpolation baseline row (no model needed): MATLAB bicubic of the uint8 "
                        "LR for PSNR (the literature's), in float rounded once for --input hr (A-ESRGAN's)")
    p.add_argument("--shave", type=int, default=None,
                   help="border pixels cut before PSNR/SSIM (default: scale on benchmark sets, 0 on DIV2K as the seed)")
    p.add_argument("--self-ensemble", action="store_true", help="EDSR's x8 geometric self-ensemble")
    p.add_argument("--tile", type=int, default=None, help="process images in NxN LR tiles (fixed shape: XLA compiles once)")
    p.add_argument("--tile-overlap", type=int, default=16, help="LR pixels of context cut from each tile side")
    p.add_argument("--plots", metavar="DIR",
                   help="for GRAM (log-variance) models: write sparsification and calibration plots (PNG) here")
    p.add_argument("--loss-mode", choices=["l2", "l1"],
                   help="log-variance convention of GRAM models (default: the checkpoint's own, else l2)")
    p.add_argument("--plot", default=None, help="PNG of PSNR versus training epoch (epoch parsed from epoch-XXX- names)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


# --------------------------------------------------------------------------------------------- inputs
def is_model_file(name):
    """An SR model checkpoint by its path: not a train.py resume state, a hidden or temporary file, nor a GAN
    run's discriminator (models/discriminator/epoch-NNN.keras)."""
    base = os.path.basename(name)
    parts = os.path.normpath(os.path.dirname(name)).split(os.sep)
    return (base.lower().endswith(CHECKPOINT_EXTENSIONS) and not base.startswith((".", "resume"))
            and "discriminator" not in parts)


def find_checkpoints(specs):
    """Checkpoint files from directories (recursive), globs and files, sorted, without duplicates.

    Directories and globs yield .keras/.h5 checkpoints, never train.py's `resume-*` state files nor a GAN run's
    discriminators; a file named explicitly may be any format model.load_model reads.
    """
    found = []
    for spec in specs:
        if os.path.isdir(spec):
            paths = [os.path.join(d, f) for d, _, files in os.walk(spec) for f in files]
            paths = [p for p in paths if is_model_file(p)]
        elif os.path.isfile(spec):
            if not spec.lower().endswith(MODEL_FILE_EXTENSIONS):
                raise UserError(f"-i {spec} is not a model file (expected one of {', '.join(MODEL_FILE_EXTENSIONS)})")
            paths = [spec]
        elif glob.has_magic(spec):
            paths = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p) and is_model_file(p)]
        else:
            raise UserError(f"models directory or file {spec} does not exist; pass -i <run>/models")
        if not paths:
            raise UserError(f"no checkpoints (.keras or .h5) found in {spec}")
        found.extend(sorted(paths))
    return list(dict.fromkeys(found))


def dataset_kind(root):
    """benchmark (HR/ + LR_*), div2k (DIV2K_* folders) or images (any folder of images)."""
    if os.path.isdir(os.path.join(root, "HR")):
        return "benchmark"
    if any(re.fullmatch(r"DIV2K_(train|valid)_(HR|LR_.+)", n) for n in os.listdir(root)):
        return "div2k"
    return "images"


def dataset_label(root):
    return os.path.basename(os.path.normpath(root)) or root


def check_model_file(path):
    """Say what is wrong with a model file before handing it to the loader (whose messages can mislead)."""
    lower = path.lower()
    if lower.endswith(".keras") and not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a Keras model: a .keras file is a zip archive, this one is not "
                        f"(corrupt, truncated, or another format renamed)")
    if lower.endswith((".h5", ".hdf5")):
        with open(path, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                raise UserError(f"{path} is not an HDF5 file (no HDF5 signature); a .h5 model or weights file "
                                f"must be HDF5")


def load_checkpoint(path):
    """A model from any file model.load_model reads, or a one-line UserError naming the file."""
    check_model_file(path)
    import model as model_lib

    return model_lib.load_model(path, compile=False)


def loss_mode_for(model, path, override=None):
    """The GRAM log-variance convention: --loss-mode, else the checkpoint's own (losses.checkpoint_loss_mode)."""
    if override:
        return override
    import losses

    return losses.checkpoint_loss_mode(model, path)


def checkpoint_scale(model, path):
    import model as model_lib

    try:
        return int(model_lib.model_scale(model))
    except Exception as e:
        raise UserError(f"cannot tell the scale of checkpoint {path}: {e}") from None


def epoch_of(path):
    m = re.search(r"epoch-(\d+)", os.path.basename(path))
    return int(m.group(1)) if m else None


def image_size(item):
    """(height, width) of an image file (header only) or array."""
    import numpy as np

    if isinstance(item, np.ndarray):
        return item.shape[:2]
    if str(item).lower().endswith(".npy"):
        return np.load(item, mmap_mode="r", allow_pickle=False).shape[:2]
    from PIL import Image

    try:
        with Image.open(item) as im:
            return im.height, im.width
    except Exception:  # the reader gives the one-line error later
        return None


def check_pairs(pairs, scale, shave, root):
    """Fail before any model runs: LR sizes that are not HR // scale, a shave that leaves nothing."""
    smallest = None
    for stem, lr, hr in pairs:
        hr_size = image_size(hr)
        if hr_size is None:
            continue
        lr_size = image_size(lr) if lr is not None else (hr_size[0] // scale, hr_size[1] // scale)
        if lr_size is not None and tuple(lr_size) != (hr_size[0] // scale, hr_size[1] // scale):
            name = lr if isinstance(lr, str) else stem
            raise UserError(f"{name}: LR {lr_size[1]}x{lr_size[0]} does not match HR {hr} {hr_size[1]}x{hr_size[0]} "
                            f"at x{scale} (expected {hr_size[1] // scale}x{hr_size[0] // scale}); wrong --scale, "
                            f"or a resized or mismatched LR file")
        side = min(hr_size[0] // scale, hr_size[1] // scale) * scale
        smallest = side if smallest is None else min(smallest, side)
    if smallest is not None and 2 * shave >= smallest:
        raise UserError(f"--shave {shave} leaves nothing of the smallest image of {root} x{scale} ({smallest} px "
                        f"on its short side); use a smaller --shave")


def check_output_file(path, option):
    """UserError unless `path` can be written as a file (checked before any work; nothing is created)."""
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a directory; give a file name, e.g. {os.path.join(path, 'bench.json')}")
    _check_writable_parent(os.path.dirname(os.path.abspath(path)), option, path)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} is not writable; choose another file")


def check_output_dir(path, option):
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option} {path} is a file, not a directory; give a directory for the plots")
    _check_writable_parent(os.path.abspath(path), option, path)


def _check_writable_parent(directory, option, path):
    """The nearest existing ancestor of `directory` must be a writable directory (atomic_path creates the rest)."""
    d = directory
    while not os.path.exists(d):
        d = os.path.dirname(d)
    if not os.path.isdir(d):
        raise UserError(f"{option} {path}: {d} is a file, not a directory")
    if not os.access(d, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write to {d} (permission denied); choose a writable location")


# --------------------------------------------------------------------------------------------- output
def _default_metrics(row):
    """True for a row of the default PSNR/SSIM set (or an older row without a metrics list)."""
    return row.get("metrics") is None or list(row["metrics"]) == list(DEFAULT_METRICS)


def primary_metric(row):
    """The number the -o file and the table lead with: RGB PSNR on DIV2K (seed), Y PSNR on test sets; else the
    row's first metric (NIQE for no-reference rows)."""
    if _default_metrics(row):
        return ("psnr_y", "ssim_y") if row["kind"] == "benchmark" else ("psnr_rgb", "ssim_rgb")
    return tuple(row["metrics"])


def _metric(name):
    from metrics import registry

    return registry.get_metric(name)


def _fmt(name, value):
    return f"{value:.2f}" if name.startswith("psnr") else f"{value:.4f}"


def _column_head(row):
    names = primary_metric(row)
    where = {"hr": f" HR x{row['scale']}", "as-is": ""}.get(row.get("input"), f" x{row['scale']}")
    if _default_metrics(row):
        return f"{row['dataset']}{where} ({'Y' if row['kind'] == 'benchmark' else 'RGB'})"
    labels = [(_metric(n).label or n) + ("" if _metric(n).higher_is_better else " ↓") for n in names]
    return f"{row['dataset']}{where} ({' / '.join(labels)})"


def markdown_table(rows):
    """Rows = models, columns = dataset x scale (x input), cells 'PSNR / SSIM' (Y on test sets, RGB on DIV2K) or
    the requested metrics joined by ' / ' (↓: lower is better)."""
    columns = list(dict.fromkeys(_column_head(r) for r in rows))
    models = list(dict.fromkeys(r["label"] for r in rows))
    cells = {}
    for r in rows:
        cells[(r["label"], _column_head(r))] = " / ".join(_fmt(n, r[n]) for n in primary_metric(r))
    lines = ["| " + " | ".join(["Model"] + columns) + " |", "|" + "|".join(["---"] + [":---:"] * len(columns)) + "|"]
    for m in models:
        lines.append("| " + " | ".join([m] + [cells.get((m, c), "-") for c in columns]) + " |")
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
        p = primary_metric(r)[0]
        series.setdefault(f"{r['dataset']} x{r['scale']} ({p})", []).append((r["epoch"], r[p]))
    if not series:
        raise UserError("--plot needs checkpoints named epoch-XXX-...; none of the benchmarked files is")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in series.items():
        pts.sort()
        ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", label=label)
    for r in rows:  # bicubic baselines as horizontal references
        if r["model"] == "bicubic":
            ax.axhline(r[primary_metric(r)[0]], linestyle="--", linewidth=0.8, color="grey")
    names = {primary_metric(r)[0] for r in rows}
    ax.set_xlabel("epoch")
    ax.set_ylabel("PSNR (dB)" if all(n.startswith("psnr") for n in names) else " / ".join(sorted(names)))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main
def _validate(args):
    """Every option and output checked before any model is loaded or image scored."""
    for root in args.datasets:
        if not os.path.exists(root):
            raise UserError(f"dataset directory {root} does not exist; pass --dataset DIR "
                            f"(a DIV2K tree, a folder with HR/, or a folder of images)")
        if not os.path.isdir(root):
            raise UserError(f"dataset {root} is a file, not a folder; pass --dataset DIR "
                            f"(a DIV2K tree, a folder with HR/, or a folder of images)")
    if args.input == "as-is":
        if args.indir or args.bicubic:
            raise UserError("--input as-is scores the images as they are; drop -i and --bicubic")
    elif not args.indir and not args.bicubic:
        raise UserError("nothing to benchmark: pass -i MODELS_DIR and/or --bicubic (or --input as-is)")
    if args.scale is not None:
        bad = [s for s in args.scale if s < 1]
        if bad:
            raise UserError(f"--scale {bad[0]} is not a scale; give integers >= 1, e.g. --scale 2 3 4")
    if args.shave is not None and args.shave < 0:
        raise UserError(f"--shave {args.shave} is negative; give the border width in pixels (>= 0)")
    if args.niqe_crop < 0:
        raise UserError(f"--niqe-crop {args.niqe_crop} is negative; give the border width in pixels (>= 0)")
    if args.tile is not None and args.tile < 1:
        raise UserError(f"--tile {args.tile} must be a positive tile size in LR pixels")
    if args.tile_overlap < 0:
        raise UserError(f"--tile-overlap {args.tile_overlap} is negative; give LR pixels of context (>= 0)")
    if args.tile is not None and args.tile <= 2 * args.tile_overlap:
        raise UserError(f"--tile ({args.tile}) must be larger than twice --tile-overlap ({args.tile_overlap})")
    from evaluation import scorer as evaluation

    evaluation.check_metrics(args.metrics or [])  # unknown names: one line listing the registered ones
    check_output_file(args.outfile, "-o")
    check_output_file(args.results_path, "--results")
    if args.plot:
        check_output_file(args.plot, "--plot")
    if args.plots:
        check_output_dir(args.plots, "--plots")


def _reference_input(args, kind):
    """True when a dataset of this kind is scored against ground truth under --input."""
    return args.input == "lr" and kind in ("benchmark", "div2k")


def _metrics_for(args, reference):
    from evaluation import scorer as evaluation

    if args.metrics:
        evaluation.check_metrics(args.metrics, reference=reference)
        return list(args.metrics)
    return list(DEFAULT_METRICS) if reference else evaluation.no_reference_metrics()


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.datasets = args.dataset or ["./DIV2K_BIN"]
    args.results_path = args.results or os.path.join(
        os.path.dirname(args.outfile), os.path.splitext(os.path.basename(args.outfile))[0] + ".results.json")
    _validate(args)
    images = parse_id_range(args.images) if args.images else None
    kinds = {root: dataset_kind(root) for root in args.datasets}
    # reference metrics asked where there is no reference: say so now
    metric_names = {root: _metrics_for(args, _reference_input(args, kind)) for root, kind in kinds.items()}
    paths = find_checkpoints(args.indir) if args.indir else []
    for path in paths:  # a bad file among many fails now, not after the others were evaluated
        check_model_file(path)
    metric_options = {"niqe": {"convert": args.niqe_convert, "crop": args.niqe_crop}}

    import data
    from evaluation import scorer as evaluation

    pairs_cache, images_cache = {}, {}

    def pairs_for(root, scale):
        if (root, scale) not in pairs_cache:
            pairs = data.open_pairs(root, scale, subset="valid", downgrade=args.downgrade,
                                    images=None if kinds[root] == "benchmark" else images)
            shave = args.shave if args.shave is not None else (scale if kinds[root] == "benchmark" else 0)
            check_pairs(pairs, scale, shave, root)
            pairs_cache[(root, scale)] = pairs
        return pairs_cache[(root, scale)]

    def images_for(root):
        if root not in images_cache:
            files = data.open_hr_images(root, subset="valid",
                                        images=images if kinds[root] != "benchmark" else None)
            images_cache[root] = [(os.path.splitext(os.path.basename(p))[0], p) for p in files]
        return images_cache[root]

    # Open every dataset (and check LR sizes / --shave) for the scales already known, before any model runs.
    for root in args.datasets:
        if _reference_input(args, kinds[root]):
            for scale in (args.scale or []):
                pairs_for(root, scale)
        else:
            images_for(root)

    def run(model, scale, name, label, loss_mode=None):
        out = []
        for root in args.datasets:
            kind = kinds[root]
            reference = _reference_input(args, kind)
            names = metric_names[root]
            if reference:
                shave = args.shave if args.shave is not None else (scale if kind == "benchmark" else 0)
                row = evaluation.evaluate(model, pairs_for(root, scale), scale, shave=shave,
                                          self_ensemble=args.self_ensemble and not isinstance(model, str),
                                          tile=args.tile, tile_overlap=args.tile_overlap,
                                          progress=not args.no_progress, dataset=dataset_label(root), name=name,
                                          plots_dir=args.plots, loss_mode=loss_mode, metrics=names,
                                          metric_options=metric_options)
                row["input"] = "lr"
            else:
                row = evaluation.evaluate_images(model, images_for(root), scale, metrics=names,
                                                 metric_options=metric_options,
                                                 self_ensemble=args.self_ensemble and not isinstance(model, str),
                                                 tile=args.tile, tile_overlap=args.tile_overlap,
                                                 progress=not args.no_progress, dataset=dataset_label(root),
                                                 name=name, input_kind="hr" if kind != "images" else "images")
                if args.input == "as-is":
                    row["input"] = "as-is"
            row.update(dataset_path=os.path.abspath(root), kind=kind, label=label,
                       epoch=epoch_of(name) if name not in ("bicubic", "as-is") else None)
            p = primary_metric(row)[0]
            print(f"{_metric(p).label or p} = {row[p]:.4f} ({row['dataset']} x{row['scale']}) for model {name}",
                  file=sys.stderr)
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
        model_rows = run(model, scale, path, label, loss_mode_for(model, path, args.loss_mode))
        rows.extend(model_rows)
        seed_json[path] = model_rows[0][primary_metric(model_rows[0])[0]]
        # ONE model at a time: drop every reference (inference's cache holds models weakly), then Keras' state.
        del model
        keras.backend.clear_session()
        gc.collect()

    if args.input == "as-is":
        rows = run("as-is", 1, "as-is", "Images (as is)")
        seed_json["as-is"] = rows[0][primary_metric(rows[0])[0]]
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
        "metric_note": "psnr/ssim from metrics/fidelity.py: SR rounded to uint8; Y = MATLAB rgb2ycbcr luma (not "
                       "rounded); SSIM = Wang et al. (11x11 Gaussian 1.5, valid); niqe from metrics/niqe.py "
                       "(BasicSR conventions, lower is better; options in each row's metric_options); -o value = "
                       "psnr_rgb on DIV2K, psnr_y on benchmark folders (else the first metric), first --dataset",
        "rows": rows,
    }
    write_json(args.results_path, results)
    if args.plot:
        plot_epochs(args.plot, rows)

    print(markdown_table(rows))
    print()
    lead = primary_metric(rows[0])[0] if rows else "psnr_y"
    metric = _metric(lead)
    pick = max if metric.higher_is_better else min
    best_model = pick(seed_json, key=seed_json.get)
    title = "PSNR" if lead.startswith("psnr") else (metric.label or lead)
    print(f"Best {title} = {seed_json[best_model]:.4f} for model {best_model}")
    return 0


if __name__ == "__main__":
    run_cli(main)
