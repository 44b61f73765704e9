"""Super-resolve images and videos with a saved model: photographs, folders, globs, clips with their sound.

    python demo.py -i ./photos -o ./output --model RealESRGAN_x4plus.pth --tile 256
    python demo.py -i photo.jpg -o ./output --model RealESRGAN_x4plus.pth --outscale 3.5     # -> output/photo.jpg
    python demo.py -i 'shots/**/*.png' -o ./output --model model.keras --suffix _x4 --skip-existing
    python demo.py -i clip.mp4 -o clip_x4.mp4 --model RealESRGAN_x4plus.pth --crf 18   # audio copied as is
    python demo.py -i ./demo -o ./output --model model.keras --self-ensemble --figure --hr ./demo_hr

-i takes an image, a video (.mp4 .mkv .mov .webm), a folder (--recursive: with its sub-folders, layout kept
under -o) or a glob. Each result is `<out>/<name><suffix>.<ext>` (--ext auto keeps the input's format). Any
model file `model.load_model` opens: .keras, Real-ESRGAN/ESRGAN .pth/.safetensors (RRDBNet), krasserm .h5
weights (--profile/--scale or the file name). Alpha is kept (bicubic, or --alpha-mode model), 16-bit input
gives 16-bit output, --keep-grey writes grey input as grey. A log-variance (GRAM) model also writes
`<name>_uncertainty.png` and `<name>_logvar.npy` (at the model's scale). `--figure` adds `<name>_figure.png`.
Every file is written under a temporary name and renamed when complete. Unreadable inputs are reported one
line each and skipped; the run then ends with exit status 2. See docs/inference.md.
"""
import argparse
import contextlib
import os
import sys

import utils
from evaluation import inference, upscale
from evaluation.upscale import INPUT_EXTS, PRECISIONS
from imaging.files import check_folder, check_output_file
from utils import UserError


def build_parser():
    p = utils.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True,
                   help=f"image, video, folder or glob ({'/'.join(e[1:] for e in INPUT_EXTS)})")
    p.add_argument("-o", "--output", default="./output",
                   help="folder for the results (created; default ./output), or the output file of one input")
    p.add_argument("-m", "--model", required=True,
                   help="model file: .keras, Real-ESRGAN/ESRGAN .pth/.safetensors, or a krasserm .h5 (see --profile)")
    p.add_argument("--profile", default=None, help="profile of a krasserm .h5 weights file (default: from its name)")
    p.add_argument("--scale", type=int, default=None, help="scale of a krasserm .h5 weights file (default: its name)")
    p.add_argument("--recursive", action="store_true", help="a folder's sub-folders too (layout kept under -o)")
    p.add_argument("--outscale", type=float, default=None,
                   help="final scale, any number > 0: the model's scale, then a resize to round(S*H) x round(S*W)")
    p.add_argument("--resize", choices=("lanczos", "bicubic"), default="lanczos",
                   help="resize for --outscale: OpenCV Lanczos-4 (as Real-ESRGAN) or MATLAB bicubic")
    p.add_argument("--suffix", default="", help="appended to each output name (default none), e.g. _x4")
    p.add_argument("--ext", choices=("auto", "png", "jpg", "webp"), default="auto",
                   help="output image format (auto: the input's format; PNG for formats we do not write)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default 95)")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume a run)")
    p.add_argument("--alpha-mode", choices=("bicubic", "model"), default="bicubic",
                   help="alpha channel: MATLAB bicubic, or through the model when it is not flat (Real-ESRGAN)")
    p.add_argument("--keep-grey", action="store_true", help="grey input gives grey output (default: RGB)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="compute precision (Keras dtype policy; weights stay float32); see docs/inference.md")
    p.add_argument("--tile", type=int, default=None, help="process in tiles of at most N x N LR pixels (e.g. 256)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="LR pixels of context each tile gets (default: the model's receptive field, capped at "
                        f"{inference.TILE_OVERLAP_CAP}; a small --tile gets what fits, with a warning)")
    p.add_argument("--tile-batch", type=int, default=4, help="tiles per model call (default 4)")
    p.add_argument("--self-ensemble", action="store_true", help="x8 geometric self-ensemble: better, 8x slower")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="XLA: auto = JAX always, TensorFlow for --tile on a GPU only; on; off (default auto)")
    p.add_argument("--codec", default=None, help="video encoder (default libx264; libvpx-vp9 for .webm)")
    p.add_argument("--crf", type=int, default=None, help="video constant rate factor (default 18; lower is better)")
    p.add_argument("--figure", action="store_true",
                   help="also write <name>_figure.png: the whole SR image beside zoomed crops")
    p.add_argument("--hr", default=None, help="folder of HR images with the same stems, shown in figures")
    p.add_argument("--loss-mode", choices=("l2", "l1"), default=None,
                   help="log-variance convention of a GRAM model (default: the checkpoint's own)")
    return p


def check_args(args):
    """Every option checked before the model loads."""
    if not args.output.strip():
        raise UserError("-o is empty; give an output folder (or the output file of one input)")
    if "/" in args.suffix or os.sep in args.suffix or args.suffix in (".", ".."):
        raise UserError(f"--suffix {args.suffix!r} is a path; give a name ending such as _x4 (outputs stay in -o)")
    if args.hr is not None:
        check_folder(args.hr, "HR", "pass a folder of HR images with --hr")
    inference.check_tile_options(args.tile, args.tile_overlap, args.tile_batch)
    if args.outscale is not None and not 0 < args.outscale <= 64:
        raise UserError(f"--outscale must be a number above 0 and at most 64 (got {args.outscale}), "
                        "e.g. --outscale 3.5")
    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality must be 1 to 100 (got {args.quality})")
    if args.codec is not None:
        import av

        try:
            av.codec.Codec(args.codec, "w")
        except Exception:  # PyAV raises its own UnknownCodecError (and ValueError for a decoder-only name)
            raise UserError(f"--codec {args.codec}: not a video encoder of this FFmpeg; e.g. libx264 or libvpx-vp9") \
                from None
    if args.crf is not None and not 0 <= args.crf <= 63:
        raise UserError(f"--crf must be 0 to 63 (got {args.crf}); 18 is visually lossless with libx264")


def process_image(args, up, path, out_path, rel, state):
    """One image: read, super-resolve, write (+ log-variance outputs and figure). False when unreadable."""
    from tqdm import tqdm

    try:
        img = state.pop("image", None)
        if img is None:
            img = upscale.read_input(path, keep_grey=args.keep_grey)
    except UserError as e:
        tqdm.write(f"error: {e}", file=sys.stderr)
        return False
    result, out = up(img)
    upscale.write_photo(out_path, result, args.quality)
    out_dir = os.path.dirname(out_path) if state["single_file"] else args.output
    std = upscale.uncertainty_outputs(out_dir, rel, out, up.loss_mode) if upscale.predicts_logvar(up.model, out) \
        else None
    if args.figure:
        sr = upscale.to_depth(out[..., :3], 8)
        hr = upscale.read_hr(args.hr, os.path.basename(rel), sr.shape) if args.hr else None
        upscale.make_figure(os.path.join(out_dir, rel + "_figure.png"), upscale.as_rgb8(img), sr, up.scale, hr=hr, std=std,
                            title=f"{os.path.basename(rel)} x{up.scale}")
    return True


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    items, skipped = upscale.collect_inputs(args.input, args.recursive)
    single = len(items) == 1 and os.path.isfile(os.path.expanduser(args.input))
    outputs = {}
    for path, rel in items:
        out_path = upscale.output_path(args.output, rel, path, args.suffix, args.ext, single=single)
        if out_path in set(outputs.values()):
            utils.warn(f"{path}: same output name {out_path} as another input; skipped")
            continue
        if os.path.exists(out_path) and os.path.samefile(out_path, path):
            raise UserError(f"{out_path} would overwrite the input; choose another output folder (-o) or --suffix")
        outputs[path] = out_path
    out_dir = (os.path.dirname(next(iter(outputs.values()))) or ".") if single else args.output
    check_output_file(next(iter(outputs.values())), "cannot write -o")  # creates nothing: -o made after the load
    for path in skipped:
        print(f"error: {path}: not an image or a video; skipped", file=sys.stderr)
    todo = {p: o for p, o in outputs.items() if not (args.skip_existing and os.path.exists(o))}
    if len(todo) < len(outputs):
        print(f"{len(outputs) - len(todo)} input(s) skipped: output exists (--skip-existing)")
    for path in [p for p in todo if not single and upscale.unreadable(p)]:
        print(f"error: {path}: not a readable image (empty, corrupt or another format); skipped", file=sys.stderr)
        skipped.append(path) or todo.pop(path)
    if not todo:
        return 2 if skipped else 0
    lone = None  # a lone image is read, every video probed, before the model loads: a bad one is one line, no -o
    if single and not upscale.is_video(next(iter(todo))):
        lone = upscale.read_input(next(iter(todo)), keep_grey=args.keep_grey)
    for path in (p for p in todo if upscale.is_video(p)):
        from evaluation import video

        video.probe(path)
    from tqdm import tqdm

    model = upscale.load_sr_model(args.model, args.profile, args.scale, args.precision)
    scale = inference.resolve_scale(model)
    created = not os.path.exists(out_dir)
    utils.ensure_writable_dir(out_dir)
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    loss_mode = args.loss_mode or upscale.checkpoint_loss_mode(model, args.model)
    up = upscale.Upscaler(model, scale, tile=args.tile, tile_overlap=args.tile_overlap, tile_batch=args.tile_batch,
                          self_ensemble=args.self_ensemble, jit=jit, loss_mode=loss_mode, outscale=args.outscale,
                          resize=args.resize, alpha_mode=args.alpha_mode)
    failed, rels, state = list(skipped), dict(items), {"single_file": single, "image": lone}
    images = [p for p in todo if not upscale.is_video(p)]
    for path in tqdm(images, desc="super-resolving", unit="image", disable=not images):
        if not process_image(args, up, path, todo[path], rels[path], state):
            failed.append(path)
    for path in (p for p in todo if upscale.is_video(p)):
        from evaluation import video

        frames = video.upscale_video(path, todo[path], lambda rgb: up(rgb)[0], codec=args.codec, crf=args.crf)
        print(f"{path}: {frames} frame(s) -> {todo[path]}")
    done = len(todo) - len(failed) + len(skipped)  # failed holds the skipped (never in todo) too
    where = next(iter(todo.values())) if single else args.output
    print(f"{done} input(s) super-resolved x{args.outscale or scale:g} into {where}")
    if failed and done == 0 and created:  # every input unreadable: leave no empty -o behind
        with contextlib.suppress(OSError):
            os.rmdir(out_dir)
    if failed:
        if done:  # else the one line per input said it all
            names = ", ".join(os.path.basename(p) for p in failed)
            print(f"error: {len(failed)} unreadable or unsupported input(s) skipped: {names}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    utils.run_cli(main)
