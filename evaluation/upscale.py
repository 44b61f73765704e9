"""demo.py's library: its inputs (file, folder, glob), output names, precision, the image path (model, alpha,
grey, --outscale resize) and writing; figures of a demo run. Tiles and compilation: evaluation.inference."""
import glob
import os
import re
from dataclasses import dataclass

import numpy as np

import utils
from evaluation import inference
from imaging import IMAGE_EXTS, READABLE_EXTS, read_image
from utils import UserError

DEPTH_UNIT = {8: 1.0, 16: 257.0}  # 16-bit values / 257 = the model's [0, 255] domain (65535 -> 255)
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".webm")
INPUT_EXTS = IMAGE_EXTS + VIDEO_EXTS
# formats written as they came (--ext auto); every other readable format is written as PNG
KEPT_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
NO_ALPHA_EXTS = (".jpg", ".jpeg")
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def is_video(path):
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTS


# ---------------------------------------------------------------------------------------------- inputs
def collect_inputs(spec, recursive=False):
    """([(path, rel)], [skipped path]) for -i: a file, a folder (`recursive`: its sub-folders too) or a glob.

    `rel` is the output name without extension, relative to -o (sub-folders of a folder or of a glob's fixed
    prefix kept). Files a glob matched that are neither images nor videos are returned as skipped.
    """
    spec = os.path.expanduser(os.fspath(spec))
    if os.path.isfile(spec):
        if os.path.splitext(spec)[1].lower() not in INPUT_EXTS:
            raise UserError(f"input {spec} is not an image or a video ({'/'.join(e[1:] for e in INPUT_EXTS)}); "
                            f"pass an image, a video, a folder or a glob with -i")
        return [(spec, os.path.splitext(os.path.basename(spec))[0])], []
    if os.path.isdir(spec):
        if recursive:
            from imaging.files import walk_images

            rels = walk_images(spec, INPUT_EXTS)
        else:
            rels = sorted(n for n in os.listdir(spec) if not n.startswith(".")
                          and os.path.splitext(n)[1].lower() in INPUT_EXTS and os.path.isfile(os.path.join(spec, n)))
        if not rels:
            raise UserError(f"no images or videos ({'/'.join(e[1:] for e in INPUT_EXTS)}) in {spec}")
        return [(os.path.join(spec, r), os.path.splitext(r)[0]) for r in rels], []
    if not glob.has_magic(spec):
        raise UserError(f"input {spec} not found; pass an image, a video, a folder or a glob with -i")
    root = spec[: re.search(r"[*?\[]", spec).start()]
    root = root if root.endswith(os.sep) else os.path.dirname(root)  # the fixed folder part of the pattern
    items, skipped = [], []
    for path in sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)):
        if os.path.splitext(path)[1].lower() in INPUT_EXTS:
            items.append((path, os.path.splitext(os.path.relpath(path, root or "."))[0]))
        elif not os.path.basename(path).startswith("."):
            skipped.append(path)
    if not items:
        raise UserError(f"no images or videos match {spec}")
    return items, skipped


def output_path(out, rel, src, suffix="", ext="auto", single=False):
    """Where the result of `src` goes: <out>/<rel><suffix>.<ext> (ext auto: the input's format where it can be
    written, else .png; a video keeps its container). `single`: -o may name the output file itself."""
    src_ext = os.path.splitext(src)[1].lower()
    out_ext = os.path.splitext(out)[1].lower()
    if single and out_ext in (VIDEO_EXTS if is_video(src) else KEPT_EXTS) and not os.path.isdir(out):
        return out
    if single and out_ext in INPUT_EXTS + KEPT_EXTS and not os.path.isdir(out):  # -o clip.png: not a folder meant
        want = "a video file (" + " ".join(VIDEO_EXTS) + ")" if is_video(src) else "an image file (" + " ".join(
            KEPT_EXTS) + ")"
        raise UserError(f"-o {out}: the output of {os.path.basename(src)} is {want} or a folder")
    if is_video(src):
        new = src_ext
    elif ext == "auto":
        new = src_ext if src_ext in KEPT_EXTS else ".png"
    else:
        new = "." + ext
    return os.path.join(out, rel + suffix + new)


# ------------------------------------------------------------------------------------------------ model
def load_sr_model(path, profile=None, scale=None, precision="fp32"):
    """THE model loader (`model.load_model`, every format) with demo's --profile / --scale, at `precision`."""
    import model as model_lib

    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "not found"
        raise UserError(f"model file {path} {what}; pass a model file with --model")
    from profiles import PROFILES

    model = model_lib.load_model(path, scale=scale, profile=profile, profiles=PROFILES)
    if scale is not None and inference.resolve_scale(model) != scale:  # a file that carries its own scale
        raise UserError(f"--scale {scale}: {path} is a x{inference.resolve_scale(model)} model; drop --scale "
                        f"(it picks the scale of krasserm .h5 weights), or use --outscale {scale} to resize its output")
    return with_precision(model, precision)


def with_precision(model, precision):
    """`model` rebuilt under a Keras dtype policy (fp32: itself): bf16/fp16 compute, float32 weights, and the
    output layers in float32 (a bf16 image would keep 8 significant bits: steps of 1 grey level above 128)."""
    if precision == "fp32":
        return model
    import keras

    policy = PRECISIONS[precision]
    config = keras.saving.serialize_keras_object(model)
    inner = config.get("config", {})
    if "arch" in inner and "dtype" in inner:  # SRModel: its config carries the policy
        config = {**config, "config": {**inner, "dtype": policy, "float32_layers": []}}
    else:  # a plain functional model (files written before SRModel): every layer's policy
        config = _swap_policy(config, policy)
    try:
        rebuilt = keras.saving.deserialize_keras_object(config)
        rebuilt.set_weights(model.get_weights())
    except Exception as e:
        raise UserError(f"--precision {precision}: cannot rebuild this model under {policy} ({e}); use fp32") from None
    for tensor in rebuilt.outputs:
        tensor._keras_history[0].dtype_policy = "float32"
    return rebuilt


def _swap_policy(node, policy):
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy":
            return {**node, "config": {**node["config"], "name": policy}}
        return {k: _swap_policy(v, policy) for k, v in node.items()}
    return [_swap_policy(v, policy) for v in node] if isinstance(node, list) else node


def checkpoint_loss_mode(model, path):
    """THE place that knows a checkpoint's loss mode (losses.checkpoint_loss_mode); l2 where unknown."""
    from losses import checkpoint_loss_mode as mode_of

    return mode_of(model, path=path)


def predicts_logvar(model, out):
    try:
        from model import predicts_logvar as has_logvar

        return bool(has_logvar(model))
    except (ImportError, AttributeError, IndexError, TypeError):
        return out.shape[-1] == 6


def out_of_memory(e):
    """MemoryError, or a backend's out-of-memory error (TF ResourceExhaustedError, XLA RESOURCE_EXHAUSTED...)."""
    text = f"{type(e).__name__} {e}".lower()
    return isinstance(e, MemoryError) or "resourceexhausted" in text or "resource_exhausted" in text \
        or "out of memory" in text


# ------------------------------------------------------------------------------------------- image path
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


def _grey(rgb):
    """RGB -> one channel with OpenCV's weights (what Real-ESRGAN does to grey input and to a model-run alpha)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def resize_to(img, height, width, method="lanczos"):
    """uint8/uint16 image resized to height x width: OpenCV Lanczos-4 (Real-ESRGAN's --outscale) or MATLAB bicubic."""
    if img.shape[:2] == (height, width):
        return img
    if method == "lanczos":
        import cv2

        return cv2.resize(img, (width, height), interpolation=cv2.INTER_LANCZOS4)
    import imaging

    top = np.iinfo(img.dtype).max
    return np.clip(np.round(imaging.imresize(img.astype(np.float64), output_shape=(height, width))), 0, top).astype(img.dtype)


@dataclass
class Upscaler:
    """One image (as read: uint8/uint16, HxW grey, HxWx3 or HxWx4) -> (image to write, raw model output)."""

    model: object
    scale: int
    tile: int = None
    tile_overlap: int = None
    tile_batch: int = 4
    self_ensemble: bool = False
    jit: object = "auto"
    loss_mode: str = "l2"
    outscale: float = None
    resize: str = "lanczos"
    alpha_mode: str = "bicubic"

    def run(self, lr):
        """Float [0, 255] HxWx3 -> float32 model output at the model's scale (one-line hint when out of memory)."""
        try:
            return inference.super_resolve(self.model, lr, tile=self.tile, tile_overlap=self.tile_overlap,
                                           tile_batch=self.tile_batch, self_ensemble=self.self_ensemble,
                                           jit=self.jit, scale=self.scale, loss_mode=self.loss_mode)
        except Exception as e:
            if out_of_memory(e):
                raise UserError(f"out of memory on a {lr.shape[1]}x{lr.shape[0]} image; retry with --tile 256 "
                                f"(or smaller)") from None
            raise

    def __call__(self, img):
        depth = 16 if img.dtype == np.uint16 else 8
        grey = img.ndim == 2
        rgb = np.repeat(img[..., None], 3, axis=2) if grey else img[..., :3]
        out = self.run(rgb.astype(np.float32) / DEPTH_UNIT[depth])
        result = to_depth(out[..., :3], depth)
        if grey:
            result = _grey(result)
        if img.ndim == 3 and img.shape[2] == 4:
            alpha = img[..., 3]
            if self.alpha_mode == "model" and alpha.min() != alpha.max():  # a flat alpha stays exactly flat
                a = self.run(np.repeat(alpha[..., None], 3, axis=2).astype(np.float32) / DEPTH_UNIT[depth])
                alpha = _grey(to_depth(a[..., :3], depth))
            else:
                alpha = upscale_alpha(alpha, self.scale, result.shape)
            result = np.concatenate([result, alpha[..., None]], axis=-1)
        if self.outscale is not None:
            h, w = img.shape[:2]
            result = resize_to(result, round(self.outscale * h), round(self.outscale * w), self.resize)
        return result, out


def as_rgb8(img):
    """An input image as uint8 RGB (figures show it beside the 8-bit SR image)."""
    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
    return to_depth(rgb.astype(np.float32) / DEPTH_UNIT[16 if rgb.dtype == np.uint16 else 8], 8)


def write_photo(path, img, quality=95):
    """uint8 PNG through THE writer (imaging.write_image); every other format and 16-bit through OpenCV
    (JPEG/WebP at `quality`), atomically. JPEG keeps 8 bits and no alpha (one warning each)."""
    import imaging

    ext = os.path.splitext(path)[1].lower()
    if img.dtype == np.uint8 and ext == ".png":
        return imaging.write_image(path, img)
    import cv2

    if ext in NO_ALPHA_EXTS + (".webp",) and img.dtype == np.uint16:
        utils.warn(f"{path}: {ext[1:]} holds 8 bits; 16-bit result reduced to 8 bit")
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if ext in NO_ALPHA_EXTS and img.ndim == 3 and img.shape[2] == 4:
        utils.warn(f"{path}: {ext[1:]} has no alpha channel; alpha dropped (use --ext png to keep it)")
        img = img[..., :3]
    if img.ndim == 3:
        img = img[..., [2, 1, 0, 3][: img.shape[2]]]  # RGB(A) -> OpenCV's BGR(A)
    params = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, quality], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality],
              ".webp": [cv2.IMWRITE_WEBP_QUALITY, quality]}.get(ext, [])
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
    if not ok:
        raise UserError(f"cannot encode {path} as {ext[1:]}; choose another --ext")
    with utils.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())
    return path


def save_npy(path, array):
    with utils.atomic_path(path) as tmp:
        np.save(tmp, np.asarray(array, np.float32))


def unreadable(path):
    """True for an image file whose header Pillow cannot read (empty, text, another format), found before the
    model loads; videos and arrays are checked where they are read."""
    if is_video(path) or path.lower().endswith(".npy"):
        return False
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path):
                return False
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return True
    except Image.DecompressionBombError:  # readable; read_image says what it costs
        return False


def read_input(path, keep_grey=False):
    """THE reader with what demo keeps: alpha, 16-bit samples, and (keep_grey) one channel for grey input."""
    return read_image(path, keep_grey=keep_grey, keep_alpha=True, keep_depth=True)


# ---------------------------------------------------------------------------------------------- figures
def read_hr(hr_dir, stem, sr_shape):
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


def uncertainty_outputs(out_dir, rel, out, loss_mode):
    """A log-variance model's extra outputs: <rel>_logvar.npy (raw s) and <rel>_uncertainty.png; returns std."""
    from visualization import figures

    logvar = out[..., 3:6]
    std = inference.logvar_to_std(logvar, loss_mode)
    save_npy(os.path.join(out_dir, rel + "_logvar.npy"), logvar)
    figures.uncertainty_figure(os.path.join(out_dir, rel + "_uncertainty.png"), std,
                               title=f"{os.path.basename(rel)}: predicted std (mean over RGB, {loss_mode})")
    return std
