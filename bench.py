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
import os
import sys

from evaluation import benchmark, checkpoints, reports, scorer
from evaluation.inference import TILE_OVERLAP_CAP, check_tile_options
from imaging.files import check_folder, check_output_file
from utils import ArgumentParser, UserError, parse_id_range, run_cli


def build_parser():
    p = ArgumentParser(description="Benchmark SR checkpoints (PSNR/SSIM, NIQE) on DIV2K, standard test "
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
    p.add_argument("--input", choices=benchmark.INPUTS, default="lr",
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
    p.add_argument("--lpips-net", choices=["alex", "vgg"], default="alex",
                   help="LPIPS v0.1 backbone: alex (AlexNet) or vgg (VGG16) (default alex)")
    p.add_argument("--lpips-backbone", default=None, metavar="FILE",
                   help="torchvision's ImageNet alexnet-owt-7be5be79.pth / vgg16-397923af.pth for --metrics lpips "
                        "(never downloaded)")
    p.add_argument("--downgrade", default="bicubic", help="DIV2K downgrade operator (LR folder suffix)")
    p.add_argument("--images", default=None, help="DIV2K image ids to use, e.g. 801-900 (default: all valid)")
    p.add_argument("--bicubic", action="store_true",
                   help="add a bicubic-interpolation baseline row (no model needed): MATLAB bicubic of the uint8 "
                        "LR for PSNR (the literature's), in float rounded once for --input hr (A-ESRGAN's)")
    p.add_argument("--shave", type=int, default=None,
                   help="border pixels cut before PSNR/SSIM (default: scale on benchmark sets, 0 on DIV2K as the seed)")
    p.add_argument("--self-ensemble", action="store_true", help="EDSR's x8 geometric self-ensemble")
    p.add_argument("--tile", type=int, default=None,
                   help="process images in tiles of at most NxN LR pixels (the fewest tiles; equal to the untiled "
                        "result when the overlap covers the receptive field)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="LR pixels of context each tile core gets (default: the model's receptive field, capped at "
                        f"{TILE_OVERLAP_CAP}; cut to tile/4 with a warning for a small --tile)")
    p.add_argument("--plots", metavar="DIR",
                   help="for GRAM (log-variance) models: write sparsification and calibration plots (PNG) here")
    p.add_argument("--loss-mode", choices=["l2", "l1"],
                   help="log-variance convention of GRAM models (default: the checkpoint's own, else l2)")
    p.add_argument("--plot", default=None, help="PNG of PSNR versus training epoch (epoch parsed from epoch-XXX- names)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _validate(args):
    """Every option and output checked before any model is loaded or image scored."""
    for root in args.datasets:
        check_folder(root, "dataset directory", "pass --dataset DIR (a DIV2K tree, a folder with HR/, or a folder of "
                                                "images)")
    if args.input == "as-is":
        if args.indir or args.bicubic:
            raise UserError("--input as-is scores the images as they are; drop -i and --bicubic")
    elif not args.indir and not args.bicubic:
        raise UserError("nothing to benchmark: pass -i MODELS_DIR and/or --bicubic (or --input as-is)")
    if args.scale is not None:
        bad = [s for s in args.scale if s < 1]
        if bad:
            raise UserError(f"--scale {bad[0]} is not a scale; give integers >= 1, e.g. --scale 2 3 4")
    for option, value in (("--shave", args.shave), ("--niqe-crop", args.niqe_crop)):
        if value is not None and value < 0:
            raise UserError(f"{option} {value} is negative; give the border width in pixels (>= 0)")
    check_tile_options(args.tile, args.tile_overlap)
    scorer.check_metrics(args.metrics or [])  # unknown names: one line listing the registered ones
    if "lpips" in (args.metrics or []):  # the backbone file is read (and checked) once, here
        from metrics.lpips import get_lpips

        get_lpips(args.lpips_net, args.lpips_backbone)
    check_output_file(args.outfile, "-o")
    check_output_file(args.results_path, "--results")
    for option, path in (("-o", args.outfile), ("--results", args.results_path)):
        if not path.lower().endswith(".json"):  # never a model or an image by mistake (-o model.keras)
            raise UserError(f"{option} {path}: bench writes JSON there; give a file name ending in .json")
    if os.path.abspath(args.outfile) == os.path.abspath(args.results_path):
        raise UserError(f"-o and --results are both {args.outfile}; give --results another file")
    if args.plot:
        check_output_file(args.plot, "--plot")
    if args.plots:
        reports.check_output_dir(args.plots, "--plots")


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.datasets = args.dataset or ["./DIV2K_BIN"]
    args.results_path = args.results or os.path.join(
        os.path.dirname(args.outfile), os.path.splitext(os.path.basename(args.outfile))[0] + ".results.json")
    _validate(args)
    # reference metrics asked where there is no reference: said here, before any checkpoint is opened
    bench = benchmark.Benchmark(
        args.datasets, input=args.input, metrics=args.metrics,
        metric_options={"niqe": {"convert": args.niqe_convert, "crop": args.niqe_crop},
                        "lpips": {"net": args.lpips_net, "backbone": args.lpips_backbone}}, shave=args.shave,
        self_ensemble=args.self_ensemble, tile=args.tile, tile_overlap=args.tile_overlap, plots_dir=args.plots,
        loss_mode=args.loss_mode, downgrade=args.downgrade,
        images=parse_id_range(args.images) if args.images else None, progress=not args.no_progress)
    paths = checkpoints.find_checkpoints(args.indir) if args.indir else []
    for path in paths:  # a bad file among many fails now, not after the others were evaluated
        checkpoints.check_model_file(path)
    bench.open(args.scale or ())
    rows, seed = bench.run(paths, scales=args.scale, bicubic=args.bicubic)
    reports.write_json(args.outfile, seed)
    reports.write_results(args.results_path, ["bench.py"] + (list(argv) if argv is not None else sys.argv[1:]), rows)
    if args.plot:
        reports.plot_epochs(args.plot, rows)
    print(reports.markdown_table(rows))
    print()
    print(reports.best_line(rows, seed))
    return 0


if __name__ == "__main__":
    run_cli(main)
