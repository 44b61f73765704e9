"""Super-resolve every image of a folder with a saved model: photographs included.

    python demo.py -i ./photos -o ./output --model RealESRGAN_x4plus.pth --tile 256
    python demo.py -i ./demo -o ./output --model model.keras --self-ensemble --figure --hr ./demo_hr

Writes `<out>/<stem>.png` per input image (scale read from the model). Any model file `model.load_model`
opens: .keras, Real-ESRGAN/ESRGAN .pth/.safetensors (RRDBNet), krasserm .h5 weights (profile and scale from
--profile/--scale or the file name, e.g. wdsr-a-32-x4-psnr-29.1736.h5). An alpha channel is kept (the RGB goes
through the model, the alpha is upsampled with bicubic; RGBA PNG out); 16-bit PNG/TIFF input gives a
16-bit PNG. With a log-variance (GRAM) model it also writes `<stem>_uncertainty.png` (per-pixel standard
deviation in grey levels, colour-mapped) and `<stem>_logvar.npy` (the raw log-variance s, float32 HxWx3).
`--figure` adds `<stem>_figure.png`: the whole SR image beside zoomed crops of its most detailed region.

Unreadable images are reported one line each and skipped; the run then ends with exit status 2.
"""
import argparse
import os
import re
import sys

import numpy as np

from evaluation import inference
import utils
from imaging import IMAGE_EXTS, READABLE_EXTS, read_image  # THE extension list and THE reader
from utils import UserError

DEPTH_UNIT = {8: 1.0, 16: 257.0}  # 16-bit values / 257 = the model's [0, 255] domain (65535 -> 255)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True, help=f"folder of low-resolution images ({'/'.join(e[1:] for e in IMAGE_EXTS)})")
    p.add_argument("-o", "--output", default="./output", help="folder for the results (created; default ./output)")
    p.add_argument("-m", "--model", required=True,
                   help="model file: .keras, Real-ESRGAN/ESRGAN .pth/.safetensors, or a krasserm .h5 (see --profile)")
    p.add_argument("--profile", default=None,
                   help="profile of a krasserm .h5 weights file (e.g. wdsr-a-32); default: read from its name")
    p.add_argument("--scale", type=int, default=None,
                   help="scale of a krasserm .h5 weights file; default: read from its name (-x4-). "
                        ".keras models carry their own scale")
    p.add_argument("--tile", type=int, default=None,
                   help="process in N x N LR tiles (large photographs; e.g. 256)")
    p.add_argument("--tile-overlap", type=int, default=None,
                   help="LR pixels of context cropped from each tile side (default: the model's receptive field, "
                        f"capped at {inference.TILE_OVERLAP_CAP} for very deep nets; see docs/demo.md)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="x8 geometric self-ensemble (rotations and flips, averaged): better, 8x slower")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="XLA compilation: auto = JAX always (bucketed full images, fixed tiles), TensorFlow for "
                        "--tile on a GPU only; on; off (default auto)")
    p.add_argument("--figure", action="store_true",
                   help="also write <stem>_figure.png: the whole SR image beside zoomed crops (LR | bicubic | SR "
                        "(| HR), or SR | uncertainty (| error) for a log-variance model)")
    p.add_argument("--hr", default=None,
                   help="folder of high-resolution images with the same stems, shown in figures with PSNR")
    p.add_argument("--loss-mode", choices=("l2", "l1"), default=None,
                   help="log-variance convention of a GRAM model (default: the checkpoint's own training "
                        "--loss-mode, from its compiled loss or its run's args.json; l2 when unknown)")
    return p


def list_images(folder):
    """Sorted image paths of `folder`; UserError when it is missing or has none."""
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "not found"
        raise UserError(f"input folder {folder} {what}; pass a folder of images with -i")
    names = sorted(n for n in os.listdir(folder)
                   if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTS
                   and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise UserError(f"no images ({'/'.join(e[1:] for e in IMAGE_EXTS)}) in {folder}")
    return [os.path.join(folder, n) for n in names]


def load_sr_model(path, profile=None, scale=None):
    """THE model loader (`model.load_model`, every format) with demo's --profile / --scale; UserError otherwise."""
    import model as model_lib

    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "not found"
        raise UserError(f"model file {path} {what}; pass a model file with --model")
    return model_lib.load_model(path, compile=False, profile=profile, scale=scale)


def checkpoint_loss_mode(model, path):
    """THE place that knows a checkpoint's loss mode (losses.checkpoint_loss_mode); l2 where unknown."""
    from losses import checkpoint_loss_mode as mode_of

    return mode_of(model, path=path)


def _predicts_logvar(model, sr):
    try:
        from model import predicts_logvar

        return bool(predicts_logvar(model))
    except (ImportError, AttributeError, IndexError, TypeError):
        return sr.shape[-1] == 6


# ------------------------------------------------------------------------------------------- image I/O
def to_depth(values, depth):
    """Float values in the model's [0, 255] domain -> uint8 (THE rounding, metrics.quantize) or uint16."""
    if depth == 8:
        import metrics

        return metrics.quantize(values)
    return np.clip(np.round(np.asarray(values, np.float64) * DEPTH_UNIT[16]), 0, 65535).astype(np.uint16)


def upscale_alpha(alpha, scale, shape):
    """Alpha (uint8/uint16 HxW) upsampled with MATLAB bicubic to `shape`, same dtype (rounded, clipped)."""
    import imaging

    top = 255 if alpha.dtype == np.uint8 else 65535
    up = imaging.imresize(alpha.astype(np.float64), scale=scale)[: shape[0], : shape[1]]
    return np.clip(np.round(up), 0, top).astype(alpha.dtype)


def write_photo(path, img):
    """uint8 (THE writer, imaging.write_image) or uint16 HxWx3/4 RGB(A) PNG (OpenCV), atomically."""
    import imaging

    if img.dtype == np.uint8:
        return imaging.write_image(path, img)
    import cv2

    bgr = img[..., [2, 1, 0, 3]] if img.shape[2] == 4 else img[..., ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise UserError(f"cannot encode {path} as a 16-bit PNG")
    with utils.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())
    return path


# ---------------------------------------------------------------------------------------------- figures
def _read_hr(hr_dir, stem, sr_shape):
    """HR image (uint8) for `stem` cropped to the SR size, or None (with a warning when it does not fit)."""
    path = None
    # benchmark layouts name LR files <stem>x<s> (LR_bicubic/X4/babyx4.png vs HR/baby.png)
    for name in (stem, re.sub(r"x\d$", "", stem)):
        for ext in READABLE_EXTS:
            if path is None and os.path.isfile(os.path.join(hr_dir, name + ext)):
                path = os.path.join(hr_dir, name + ext)
    if path is None:
        utils.warn(f"no HR image for {stem} in {hr_dir}; figure without HR")
        return None
    hr = read_image(path)
    h, w = sr_shape[:2]
    if hr.shape[0] < h or hr.shape[1] < w:
        utils.warn(f"{path}: HR {hr.shape[1]}x{hr.shape[0]} is smaller than the SR output {w}x{h}; ignored")
        return None
    return hr[:h, :w]


def _psnr(hr, sr, scale):
    import metrics

    return metrics.psnr(hr, sr, shave=scale, channel="y")


def zoom_size(shape, scale):
    """Side of the zoomed crop in SR pixels: a quarter of the shorter side, at least 8 LR pixels."""
    return int(min(min(shape[:2]), max(8 * scale, min(shape[:2]) // 4)))


def make_figure(path, lr, sr, scale, hr=None, std=None, title=None):
    """The whole SR image beside zoomed crops of its most detailed region: LR | bicubic | SR (| HR), or for
    a log-variance model SR | predicted std (| |HR - SR|). uint8 lr/sr/hr; PSNR-Y (whole image) in titles."""
    import imaging
    from visualization import figures

    tag = lambda img: f" {_psnr(hr, img, scale):.2f} dB" if hr is not None else ""  # noqa: E731
    size = zoom_size(sr.shape, scale)
    y, x = figures.detail_box(hr if hr is not None else sr, size)
    y, x = y // scale * scale, x // scale * scale  # align with LR pixels so the LR crop shows the same region
    crop = lambda img: img[y : y + size, x : x + size]  # noqa: E731
    lr_crop = lr[y // scale : (y + size) // scale, x // scale : (x + size) // scale]
    if std is None:
        bicubic = imaging.imresize(lr, scale=scale)[: sr.shape[0], : sr.shape[1]]
        crops = [{"title": "LR", "image": lr_crop}, {"title": "bicubic" + tag(bicubic), "image": crop(bicubic)},
                 {"title": "SR" + tag(sr), "image": crop(sr)}]
        if hr is not None:
            crops.append({"title": "HR", "image": crop(hr)})
    else:
        err = np.abs(hr.astype(np.float64) - sr) if hr is not None else None
        vmax = figures._robust_max(figures.to_map(std if err is None else np.concatenate([std, err], 1)))
        crops = [{"title": "SR" + tag(sr), "image": crop(sr)},
                 {"title": "predicted std", "image": crop(std), "cmap": "magma", "vmax": vmax, "label": "grey levels"}]
        if err is not None:
            crops.append({"title": "|HR - SR|", "image": crop(err), "cmap": "magma", "vmax": vmax,
                          "label": "grey levels"})
    whole = {"title": f"SR {sr.shape[1]}x{sr.shape[0]} (box: zoomed {size}x{size})", "image": sr}
    return figures.zoom_figure(path, whole, (y, x, size, size), crops, suptitle=title)


def _out_of_memory(e):
    """MemoryError, or a backend's out-of-memory error (TF ResourceExhaustedError, XLA RESOURCE_EXHAUSTED...)."""
    text = f"{type(e).__name__} {e}".lower()
    return isinstance(e, MemoryError) or "resourceexhausted" in text or "resource_exhausted" in text \
        or "out of memory" in text


def _save_npy(path, array):
    with utils.atomic_path(path) as tmp:
        np.save(tmp, np.asarray(array, np.float32))


def main(argv=None):
    args = build_parser().parse_args(argv)
    paths = list_images(args.input)
    if args.hr is not None and not os.path.isdir(args.hr):
        raise UserError(f"HR folder {args.hr} not found; pass a folder of HR images with --hr")
    if args.tile is not None and args.tile < 1:
        raise UserError(f"--tile must be a positive number of LR pixels (got {args.tile}); e.g. --tile 256")
    if args.tile_overlap is not None and args.tile_overlap < 0:
        raise UserError(f"--tile-overlap must be 0 or more LR pixels (got {args.tile_overlap})")
    if args.tile is not None and args.tile_overlap is not None and args.tile <= 2 * args.tile_overlap:
        raise UserError(f"--tile ({args.tile}) must be larger than twice --tile-overlap ({args.tile_overlap})")
    utils.ensure_writable_dir(args.output)

    from tqdm import tqdm

    model = load_sr_model(args.model, args.profile, args.scale)
    scale = inference.resolve_scale(model)
    overlap = args.tile_overlap
    if args.tile is not None and overlap is None:
        overlap = inference.default_tile_overlap(model)
        if args.tile <= 2 * overlap:
            raise UserError(f"--tile ({args.tile}) must be larger than twice the tile overlap this model needs "
                            f"({overlap} LR pixels, its receptive field): use --tile {4 * overlap} or more, or a "
                            f"smaller --tile-overlap (the output then differs slightly near tile edges)")
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    loss_mode = None
    failed, seen = [], {}
    for path in tqdm(paths, desc="super-resolving", unit="image"):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in seen:
            utils.warn(f"{path}: same name as {seen[stem]}; skipped (outputs are named by stem)")
            continue
        seen[stem] = path
        out_path = os.path.join(args.output, stem + ".png")
        if os.path.exists(out_path) and os.path.samefile(out_path, path):
            raise UserError(f"{out_path} would overwrite the input image; choose another output folder (-o)")
        try:
            img = read_image(path, keep_alpha=True, keep_depth=True)  # RGBA and 16-bit samples kept
        except UserError as e:
            tqdm.write(f"error: {e}", file=sys.stderr)
            failed.append(os.path.basename(path))
            continue
        depth = 16 if img.dtype == np.uint16 else 8
        rgb, alpha = (img[..., :3], img[..., 3]) if img.shape[2] == 4 else (img, None)
        lr = rgb.astype(np.float32) / DEPTH_UNIT[depth]  # the model's [0, 255] domain
        if loss_mode is None:
            loss_mode = args.loss_mode or checkpoint_loss_mode(model, args.model)
        try:
            out = inference.super_resolve(model, lr, tile=args.tile, tile_overlap=overlap or 0,
                                          self_ensemble=args.self_ensemble, jit=jit, scale=scale,
                                          loss_mode=loss_mode)
        except Exception as e:
            if _out_of_memory(e):
                raise UserError(f"out of memory on {path} ({lr.shape[1]}x{lr.shape[0]}); "
                                f"retry with --tile 256 (or smaller)") from None
            raise
        sr = to_depth(out[..., :3], 8)  # uint8: the written image of an 8-bit input, and what figures show
        img = sr if depth == 8 else to_depth(out[..., :3], depth)
        if alpha is not None:
            img = np.concatenate([img, upscale_alpha(alpha, scale, img.shape)[..., None]], axis=-1)
        write_photo(out_path, img)
        std = None
        if _predicts_logvar(model, out):
            logvar = out[..., 3:6]
            std = inference.logvar_to_std(logvar, loss_mode)
            _save_npy(os.path.join(args.output, stem + "_logvar.npy"), logvar)
            from visualization import figures

            figures.uncertainty_figure(os.path.join(args.output, stem + "_uncertainty.png"), std,
                                       title=f"{stem}: predicted std (mean over RGB, {loss_mode})")
        if args.figure:
            hr = _read_hr(args.hr, stem, sr.shape) if args.hr else None
            make_figure(os.path.join(args.output, stem + "_figure.png"), to_depth(lr, 8), sr, scale, hr=hr,
                        std=std, title=f"{stem} x{scale}")
    done = len(seen) - len(failed)
    print(f"{done} image(s) super-resolved x{scale} into {args.output}")
    if failed:
        print(f"error: {len(failed)} unreadable image(s) skipped: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    utils.run_cli(main)
