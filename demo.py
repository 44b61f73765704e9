"""Super-resolve every image of a folder with a saved model.

    python demo.py -i ./demo -o ./output --model model.keras
    python demo.py -i ./demo -o ./output --model model.keras --tile 256 --self-ensemble --figure --hr ./demo_hr

Writes `<out>/<stem>.png` per input image (scale read from the model). With a log-variance (GRAM) model
it also writes `<stem>_uncertainty.png` (per-pixel standard deviation in grey levels, colour-mapped) and
`<stem>_logvar.npy` (the raw log-variance s, float32 HxWx3). `--figure` adds `<stem>_figure.png`.
A krasserm/super-resolution `.h5` weights file (as in the original README) is converted on the fly
when its profile and scale are given or can be read from its name (e.g. wdsr-a-32-x4-psnr-29.1736.h5).

Unreadable images are reported one line each and skipped; the run then ends with exit status 2.
"""
import argparse
import os
import re
import sys

import numpy as np

import utils
from utils import UserError

INPUT_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True, help="folder of low-resolution images (png/jpg/jpeg/bmp/tif/webp)")
    p.add_argument("-o", "--output", default="./output", help="folder for the results (created; default ./output)")
    p.add_argument("-m", "--model", required=True,
                   help="saved model (.keras), or a krasserm .h5 weights file (see --profile)")
    p.add_argument("--profile", default=None,
                   help="profile of a krasserm .h5 weights file (e.g. wdsr-a-32); default: read from its name")
    p.add_argument("--scale", type=int, default=None,
                   help="scale of a krasserm .h5 weights file; default: read from its name (-x4-). "
                        ".keras models carry their own scale")
    p.add_argument("--tile", type=int, default=None,
                   help="process in N x N LR tiles with a fixed shape (images too large for memory; "
                        "e.g. 256)")
    p.add_argument("--tile-overlap", type=int, default=16,
                   help="LR pixels of context cropped from each tile side; results equal the untiled "
                        "output when it covers the model's receptive field (default 16)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="x8 geometric self-ensemble (rotations and flips, averaged): better, 8x slower")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="XLA compilation: auto = for --tile on a GPU only (fixed tile shape, compiled once; on CPU "
                        "eager TF was faster), on, off (default auto)")
    p.add_argument("--figure", action="store_true",
                   help="also write <stem>_figure.png: LR | bicubic | SR (| HR), or LR | SR | uncertainty "
                        "(| error) for a log-variance model")
    p.add_argument("--hr", default=None,
                   help="folder of high-resolution images with the same stems, shown in figures with PSNR")
    p.add_argument("--loss-mode", choices=("l2", "l1"), default="l2",
                   help="log-variance convention of a GRAM model (its training --loss-mode; default l2): "
                        "converts s to a standard deviation in grey levels")
    return p


def list_images(folder):
    """Sorted image paths of `folder`; UserError when it is missing or has none."""
    if not os.path.isdir(folder):
        raise UserError(f"input folder {folder} not found; pass a folder of images with -i")
    names = sorted(n for n in os.listdir(folder)
                   if not n.startswith(".") and os.path.splitext(n)[1].lower() in INPUT_EXTS
                   and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise UserError(f"no images ({'/'.join(e[1:] for e in INPUT_EXTS)}) in {folder}")
    return [os.path.join(folder, n) for n in names]


def _from_name(path, profile, scale):
    """Profile and scale of a krasserm weights file, from the arguments or its name (wdsr-a-32-x4-...h5)."""
    # the file name first (wdsr-a-32-x4-psnr-29.1736.h5), then its folder (krasserm-wdsr-b-32-x4/weights.h5)
    names = [os.path.basename(path).lower(), os.path.basename(os.path.dirname(os.path.abspath(path))).lower()]
    for name in names:
        if profile is None:
            m = re.search(r"((?:wdsr-[ab]|edsr)-\d+|sr-resnet)", name)
            profile = m.group(1) if m else None
        if scale is None:
            m = re.search(r"(?:^|[^a-z0-9])x([2-4])(?:\D|$)", name)
            scale = int(m.group(1)) if m else None
    if profile is None or scale is None:
        raise UserError(f"{path} is a Keras 2 weights file: give its --profile (e.g. wdsr-a-32) and --scale")
    return profile, scale


def load_sr_model(path, profile=None, scale=None):
    """A keras model from a .keras file, or from a krasserm .h5 weights file (converted); UserError otherwise."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise UserError(f"model file {path} not found; pass a saved .keras model with --model")
    if path.lower().endswith((".h5", ".hdf5")):
        from model.krasserm import convert_krasserm_weights

        profile, scale = _from_name(path, profile, scale)
        try:
            return convert_krasserm_weights(path, profile, scale)
        except UserError:
            raise
        except Exception as e:  # h5py/keras errors on foreign files
            raise UserError(f"cannot load weights {path} as {profile} x{scale}: {_first_line(e)}") from None
    try:
        import model as model_lib
    except ImportError:  # models package unavailable: plain keras loading
        model_lib = None
    if model_lib is not None:
        return model_lib.load_model(path, compile=False)
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:
        raise UserError(f"cannot load model {path}: {_first_line(e)}") from None


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _predicts_logvar(model, sr):
    try:
        from model import predicts_logvar

        return bool(predicts_logvar(model))
    except (ImportError, AttributeError, IndexError, TypeError):
        return sr.shape[-1] == 6


def _read_hr(hr_dir, stem, sr_shape):
    """HR image for `stem` cropped to the SR size, or None (with a warning when it does not fit)."""
    import data

    path = None
    # benchmark layouts name LR files <stem>x<s> (LR_bicubic/X4/babyx4.png vs HR/baby.png)
    for name in (stem, re.sub(r"x\d$", "", stem)):
        for ext in INPUT_EXTS + (".npy",):
            if path is None and os.path.isfile(os.path.join(hr_dir, name + ext)):
                path = os.path.join(hr_dir, name + ext)
    if path is None:
        utils.warn(f"no HR image for {stem} in {hr_dir}; figure without HR")
        return None
    hr = data.read_image(path)
    h, w = sr_shape[:2]
    if hr.shape[0] < h or hr.shape[1] < w:
        utils.warn(f"{path}: HR {hr.shape[1]}x{hr.shape[0]} is smaller than the SR output {w}x{h}; ignored")
        return None
    return hr[:h, :w]


def _psnr(hr, sr, scale):
    import metrics

    return metrics.psnr(hr, sr, shave=scale, channel="y")


def make_figure(path, lr, sr, scale, hr=None, std=None, title=None):
    """LR | bicubic | SR (| HR), or for a log-variance model LR | SR | uncertainty (| error)."""
    import data
    import figures

    tag = lambda img: f" ({_psnr(hr, img, scale):.2f} dB)" if hr is not None else ""  # noqa: E731
    if std is None:
        bicubic = data.imresize(lr, scale=scale)[: sr.shape[0], : sr.shape[1]]
        panels = [{"title": "LR", "image": lr}, {"title": "bicubic" + tag(bicubic), "image": bicubic},
                  {"title": "SR" + tag(sr), "image": sr}]
        if hr is not None:
            panels.append({"title": "HR", "image": hr})
    else:
        err = np.abs(hr.astype(np.float64) - sr) if hr is not None else None
        vmax = figures._robust_max(figures.to_map(std if err is None else np.concatenate([std, err], 1)))
        panels = [{"title": "LR", "image": lr}, {"title": "SR" + tag(sr), "image": sr},
                  {"title": "predicted std", "image": std, "cmap": "magma", "vmax": vmax, "label": "grey levels"}]
        if err is not None:
            panels.append({"title": "|HR - SR|", "image": err, "cmap": "magma", "vmax": vmax, "label": "grey levels"})
    return figures.comparison_figure(path, panels, suptitle=title)


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
        raise UserError(f"HR folder {args.hr} not found")
    if args.tile is not None and (args.tile < 1 or args.tile_overlap < 0 or args.tile <= 2 * args.tile_overlap):
        raise UserError(f"--tile ({args.tile}) must be larger than twice --tile-overlap ({args.tile_overlap})")
    utils.ensure_writable_dir(args.output)

    from tqdm import tqdm

    import data
    import figures
    import inference

    model = load_sr_model(args.model, args.profile, args.scale)
    scale = inference.resolve_scale(model)
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    failed, seen = [], {}
    for path in tqdm(paths, desc="super-resolving", unit="image"):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in seen:
            utils.warn(f"{path}: same name as {seen[stem]}; skipped (outputs are named by stem)")
            continue
        seen[stem] = path
        try:
            lr = data.read_image(path)
        except UserError as e:
            tqdm.write(f"error: {e}", file=sys.stderr)
            failed.append(os.path.basename(path))
            continue
        try:
            out = inference.super_resolve(model, lr, tile=args.tile, tile_overlap=args.tile_overlap,
                                          self_ensemble=args.self_ensemble, jit=jit, scale=scale,
                                          loss_mode=args.loss_mode)
        except Exception as e:
            if _out_of_memory(e):
                raise UserError(f"out of memory on {path} ({lr.shape[1]}x{lr.shape[0]}); "
                                f"retry with --tile 256 (or smaller)") from None
            raise
        sr = np.clip(np.round(out[..., :3]), 0, 255).astype(np.uint8)
        out_path = os.path.join(args.output, stem + ".png")
        if os.path.exists(out_path) and os.path.samefile(out_path, path):
            raise UserError(f"{out_path} would overwrite the input image; choose another output folder (-o)")
        data.write_image(out_path, sr)
        std = None
        if _predicts_logvar(model, out):
            logvar = out[..., 3:6]
            std = inference.logvar_to_std(logvar, args.loss_mode)
            _save_npy(os.path.join(args.output, stem + "_logvar.npy"), logvar)
            figures.uncertainty_figure(os.path.join(args.output, stem + "_uncertainty.png"), std,
                                       title=f"{stem}: predicted std (mean over RGB)")
        if args.figure:
            hr = _read_hr(args.hr, stem, sr.shape) if args.hr else None
            make_figure(os.path.join(args.output, stem + "_figure.png"), lr, sr, scale, hr=hr, std=std,
                        title=f"{stem} x{scale}")
    done = len(seen) - len(failed)
    print(f"{done} image(s) super-resolved x{scale} into {args.output}")
    if failed:
        print(f"error: {len(failed)} unreadable image(s) skipped: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    utils.run_cli(main)
