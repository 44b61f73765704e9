"""Image I/O, MATLAB-exact bicubic resizing, dataset layouts (DIV2K, benchmark folders) and the patch loader.

Only numpy and Pillow here, so the module works with every Keras backend; Keras itself is imported lazily
(only when `PatchDataset` is first used) so that `convert.py` starts fast.
"""
import collections
import math
import os
import re
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils import UserError, atomic_path, parse_id_range, warn

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
ARRAY_EXTS = (".npy",)
READABLE_EXTS = IMAGE_EXTS + ARRAY_EXTS

# ----------------------------------------------------------------------------------------------------------
# Reading and writing images
# ----------------------------------------------------------------------------------------------------------


def _to_uint8_16bit(a):
    """16-bit (or wider integer) values 0..65535 -> 0..255, rounding to nearest (65535 -> 255, 32768 -> 128)."""
    a = np.clip(a.astype(np.int64), 0, 65535)
    return ((a * 255 + 32767) // 65535).astype(np.uint8)


def _grey_or_rgb(arr, keep_grey, name, what):
    """`arr` is HxW uint8 from a `what` (e.g. "16-bit") grey source: return it (keep_grey) or as HxWx3."""
    kind = f"{what} grey image" if what else "grey image"
    if keep_grey:
        if what:
            warn(f"{name}: {kind} converted to 8 bit")
        return arr
    warn(f"{name}: {kind} converted to RGB")
    return np.repeat(arr[:, :, None], 3, axis=2)


def _from_array(arr, name, keep_grey):
    """Validate / normalise an in-memory or .npy array to uint8 HxWx3 (or HxW with keep_grey)."""
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        shape = getattr(arr, "shape", None)
        raise UserError(f"{name}: expected an HxW or HxWx3 image array, got shape {shape}; re-create it with convert.py")
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            warn(f"{name}: 16-bit values scaled to 8 bit")
            arr = _to_uint8_16bit(arr)
        elif np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer):
            warn(f"{name}: {arr.dtype} values rounded and clipped to 8 bit")
            arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        else:
            raise UserError(f"{name}: unsupported array dtype {arr.dtype}; expected uint8")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        warn(f"{name}: alpha channel dropped")
        arr = arr[:, :, :3]
    if arr.ndim == 2:
        return arr if keep_grey else np.repeat(arr[:, :, None], 3, axis=2)
    return arr


def read_image(path, keep_grey=False):
    """Read any image (PNG/JPEG/BMP/TIFF/...) or `.npy` array as uint8 RGB HxWx3.

    Every mode becomes 8-bit RGB with a one-line warning naming the file: grey is replicated to 3 channels,
    alpha (RGBA, LA, PA) is dropped (the stored colours are kept; no compositing), palette images are
    expanded, 16-bit values are scaled by 255/65535 with rounding, float images are taken as [0, 1] when
    their maximum is <= 1 and as [0, 255] otherwise, CMYK/YCbCr/LAB/HSV go through Pillow's RGB conversion.
    `keep_grey=True` returns HxW uint8 for single-channel sources (no warning for plain 8-bit grey).
    A numpy array is accepted too (passed through the same checks), so `read_image(pair.lr)` works for LR
    images made in memory. Missing / unreadable / corrupt files raise `UserError` naming the file.
    """
    if isinstance(path, np.ndarray):
        return _from_array(path, "in-memory image", keep_grey)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}; check the path (and the dataset layout)")
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise UserError(f"cannot read {path}: {e}; delete it and re-run the conversion (python convert.py ... numpy)") from None
        return _from_array(arr, path, keep_grey)
    try:
        with Image.open(path) as im:
            # Pillow reduces 16-bit colour PNGs to 8 bit while decoding (it keeps the high byte)
            deep = im.mode in ("RGB", "RGBA") and any(";16" in str(t[3] if len(t) > 3 else "") for t in im.tile)
            im.load()
            if deep:
                warn(f"{path}: 16-bit colour image reduced to 8 bit (high byte, by Pillow)")
            return _pil_to_array(im, path, keep_grey)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        msg = str(e).replace(os.linesep, " ").strip() or type(e).__name__
        raise UserError(f"cannot read image {path} ({msg}); the file is corrupt or not an image: replace or remove it") from None


def _pil_to_array(im, name, keep_grey):
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if mode == "L":
        return _grey_or_rgb(np.asarray(im, dtype=np.uint8).copy(), keep_grey, name, "")
    if mode == "1":
        return _grey_or_rgb(np.asarray(im.convert("L"), dtype=np.uint8).copy(), keep_grey, name, "1-bit")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if arr.dtype.byteorder == ">" or arr.dtype.kind != "i" and arr.dtype.kind != "u":
            arr = arr.astype(np.int64)
        return _grey_or_rgb(_to_uint8_16bit(arr), keep_grey, name, "16-bit")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(np.round(arr)), 0, 255).astype(np.uint8)
        return _grey_or_rgb(arr, keep_grey, name, "floating-point")
    if mode in ("LA", "La"):
        warn(f"{name}: alpha channel dropped")
        arr = np.asarray(im.getchannel(0), dtype=np.uint8).copy()
        return arr if keep_grey else np.repeat(arr[:, :, None], 3, axis=2)
    if mode in ("RGBA", "RGBa", "RGBX"):
        if mode != "RGBX":
            warn(f"{name}: alpha channel dropped")
        return np.asarray(im, dtype=np.uint8)[:, :, :3].copy()
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        if has_alpha:
            warn(f"{name}: palette image expanded to RGB, transparency dropped")
        else:
            warn(f"{name}: palette image expanded to RGB")
        rgb = im.convert("RGBA" if has_alpha else "RGB")
        return np.asarray(rgb, dtype=np.uint8)[:, :, :3].copy()
    # CMYK, YCbCr, LAB, HSV, I;16 variants Pillow can convert, ...
    warn(f"{name}: {mode} image converted to RGB")
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except ValueError as e:
        raise UserError(f"cannot convert image {name} (mode {mode}) to RGB: {e}; save it as 8-bit RGB PNG") from None


def write_image(path, array, compress_level=6):
    """Write uint8 HxWx3 (or HxW grey) as PNG atomically, creating the folder.

    Float arrays are rounded and clipped to [0, 255] first (model outputs are in pixel units).
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float64)), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"write_image: expected HxW or HxWx3 array, got shape {arr.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG", compress_level=compress_level)
    return path


# ----------------------------------------------------------------------------------------------------------
# MATLAB-compatible bicubic imresize
# ----------------------------------------------------------------------------------------------------------


def _cubic(x):
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


_CONTRIB_CACHE = {}


def _contributions(in_len, out_len, scale):
    """Per-output weights (out_len x P) and 0-based source indices, as MATLAB's imresize `contributions`."""
    key = (in_len, out_len, scale)
    if key in _CONTRIB_CACHE:
        return _CONTRIB_CACHE[key]
    width = 4.0
    antialias = scale < 1
    if antialias:
        width /= scale  # the kernel is stretched by 1/scale when shrinking
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric padding: index sequence 1..n, n..1 repeated
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(w != 0, axis=0)  # MATLAB drops all-zero tap columns
    result = (np.ascontiguousarray(w[:, keep]), np.ascontiguousarray(idx[:, keep]))
    if len(_CONTRIB_CACHE) > 256:
        _CONTRIB_CACHE.clear()
    _CONTRIB_CACHE[key] = result
    return result


def _round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def imresize(img, scale=None, output_shape=None):
    """MATLAB `imresize(img, scale, 'bicubic')` (antialiased when shrinking), bit-exact for uint8.

    `img`: HxW or HxWxC, uint8 or float. Give `scale` (a number; output size ceil(scale * size)) or
    `output_shape` (H, W). uint8 in -> uint8 out, rounded half away from zero and clipped after EACH axis
    pass, as MATLAB's uint8 code path does (this is what makes it bit-exact); float in -> float64 out.
    Axes are processed in order of increasing scale factor (height first on ties), like MATLAB.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: expected HxW or HxWxC image, got shape {img.shape}")
    h, w = img.shape[:2]
    if output_shape is not None:
        out_h, out_w = int(output_shape[0]), int(output_shape[1])
        scales = (out_h / h, out_w / w)
    elif scale is not None:
        scales = (float(scale), float(scale))
        out_h, out_w = int(math.ceil(scale * h)), int(math.ceil(scale * w))
    else:
        raise ValueError("imresize: give scale or output_shape")
    if out_h < 1 or out_w < 1:
        raise ValueError(f"imresize: output size {out_h}x{out_w} is empty")
    is_uint8 = img.dtype == np.uint8
    out = img.astype(np.float64)
    order = sorted(range(2), key=lambda a: scales[a])  # stable: height first on ties
    for axis in order:
        n_in, n_out = (h, out_h) if axis == 0 else (w, out_w)
        weights, idx = _contributions(n_in, n_out, scales[axis])
        # resize along axis 0 only: gathering whole rows is a fast contiguous copy (the width pass transposes)
        src = np.ascontiguousarray(np.swapaxes(out, 0, 1)) if axis == 1 else out
        acc = np.zeros((n_out,) + src.shape[1:])
        tap = np.empty_like(acc)
        shape = (-1,) + (1,) * (src.ndim - 1)
        for p in range(weights.shape[1]):  # summing tap by tap keeps MATLAB's order of additions
            np.take(src, idx[:, p], axis=0, out=tap)
            tap *= weights[:, p].reshape(shape)
            acc += tap
        out = np.swapaxes(acc, 0, 1) if axis == 1 else acc
        if is_uint8:
            out = np.clip(_round_half_away(out), 0, 255)
    if is_uint8:
        return out.astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------------------
# Dataset layouts
# ----------------------------------------------------------------------------------------------------------


class Pair(NamedTuple):
    """One LR/HR example. `lr` is a file path, or a uint8 array when the LR image was made in memory."""

    stem: str
    lr: Union[str, np.ndarray]
    hr: str


# NTIRE 2018 tracks whose file names differ from the X{s}/<id>x{s} pattern: downgrade -> (scale, suffix)
NTIRE_TRACKS = {"x8": (8, "x8"), "mild": (4, "x4m"), "difficult": (4, "x4d"), "wild": (4, "x4w")}
_LR_CACHE = {}  # (hr_path, mtime, scale) -> uint8 LR made by imresize; in memory only


def _list_images(directory):
    """{stem: path} of readable image/array files in `directory` (hidden and temporary files ignored)."""
    out = {}
    for name in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(name)
        if name.startswith(".") or ext.lower() not in READABLE_EXTS:
            continue
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            # prefer .npy over PNG when both are present (converted in place)
            if stem not in out or ext.lower() == ".npy":
                out[stem] = path
    return out


def _find_file(directory, stem, prefer_ext=None):
    """Path of `directory/stem.<ext>` for any readable extension, or None."""
    exts = ([prefer_ext] if prefer_ext else []) + [e for e in READABLE_EXTS if e != prefer_ext]
    for ext in exts:
        p = os.path.join(directory, stem + ext)
        if os.path.isfile(p):
            return p
    return None


def _select(items, images, what):
    """Filter (id, ...) items by an id range string / list; error when the selection is empty."""
    if images is None:
        selected = items
    else:
        ids = set(parse_id_range(images) if isinstance(images, str) else (int(i) for i in images))
        selected = [it for it in items if it[0] in ids]
    if not selected:
        raise UserError(f"no images selected in {what}" + (f" for id range {images}" if images is not None else "")
                        + "; check the --*-images range and the folder contents")
    return selected


def _convert_hint(root):
    return (f"convert the DIV2K PNG tree with `python convert.py -i ./DIV2K -o {root} numpy`, "
            f"or build the small sample set with `python convert.py -o ./sample sample`")


def open_pairs(root, scale, subset="valid", downgrade="bicubic", images=None):
    """List the LR/HR pairs of a dataset folder as `Pair(stem, lr, hr)` tuples (sorted by stem).

    Layouts (detected automatically; PNG and converted `.npy` trees read identically):
    - DIV2K: `root/DIV2K_{subset}_HR/0001.png` and `root/DIV2K_{subset}_LR_{downgrade}/X{scale}/0001x{scale}.png`
      (`downgrade`: bicubic, unknown, or a derived set such as bicubic_jpeg_90); NTIRE 2018 tracks
      `DIV2K_{subset}_LR_x8/0001x8.png` (bicubic x8, used when `LR_bicubic/X8` is absent), `_LR_mild/0001x4m.png`,
      `_LR_difficult/0001x4d.png`, `_LR_wild/0001x4w{1..4}.png` (one pair per LR file). `images`: id range
      such as "1-800" or a list of ints, selecting among the ids present.
    - Benchmark folder: `root/HR/<stem>.png` and optional `root/LR_{downgrade}/X{scale}/<stem>x{scale}.png`.
      When that X{scale} folder is absent (bicubic only), LR images are made with `imresize` from HR cropped
      to a multiple of the scale and kept in memory. `images` selects 1-based positions in sorted stem order.
    """
    root = os.fspath(root)
    scale = int(scale)
    if not os.path.isdir(root):
        raise UserError(f"dataset folder not found: {root}; {_convert_hint(root)}")
    if os.path.isdir(os.path.join(root, "HR")):
        return _open_benchmark(root, scale, downgrade, images)
    if any(re.fullmatch(r"DIV2K_(train|valid)_(HR|LR_.+)", n) for n in os.listdir(root)):
        return _open_div2k(root, scale, subset, downgrade, images)
    raise UserError(
        f"unrecognised dataset layout in {root}: expected DIV2K_{{train,valid}}_HR/0001.png + "
        f"DIV2K_{{train,valid}}_LR_bicubic/X{{2,3,4}}/0001x{{s}}.png (DIV2K), or HR/<name>.png + optional "
        f"LR_bicubic/X{{s}}/<name>x{{s}}.png (benchmark folder such as Set5)")


def _open_div2k(root, scale, subset, downgrade, images):
    if subset not in ("train", "valid"):
        raise ValueError(f"subset must be 'train' or 'valid', got {subset!r}")
    hr_dir = os.path.join(root, f"DIV2K_{subset}_HR")
    if not os.path.isdir(hr_dir):
        raise UserError(f"HR folder not found: {hr_dir}; download DIV2K_{subset}_HR into {root}, or "
                        f"build the sample set with `python convert.py -o ./sample sample`")
    hr_files = {int(s): p for s, p in _list_images(hr_dir).items() if s.isdigit()}
    if not hr_files:
        raise UserError(f"no images named like 0001.png in {hr_dir}; expected the DIV2K layout")
    selected = _select(sorted(hr_files.items()), images, hr_dir)

    lr_root = os.path.join(root, f"DIV2K_{subset}_LR_{downgrade}")
    track = NTIRE_TRACKS.get(downgrade)
    if downgrade == "bicubic" and scale == 8 and not os.path.isdir(os.path.join(lr_root, "X8")):
        track = NTIRE_TRACKS["x8"]
        lr_root = os.path.join(root, f"DIV2K_{subset}_LR_x8")
    if track is not None:
        track_scale, suffix = track
        if scale != track_scale:
            raise UserError(f"downgrade {downgrade} is an x{track_scale} track; use --scale {track_scale}")
        lr_dir = lr_root
    else:
        lr_dir = os.path.join(lr_root, f"X{scale}")
        suffix = f"x{scale}"
    if not os.path.isdir(lr_dir):
        raise UserError(f"LR folder not found: {lr_dir}; {_lr_hint(root, subset, downgrade, scale)}")

    pairs = []
    for i, hr_path in selected:
        stem = f"{i:04d}"
        ext = os.path.splitext(hr_path)[1].lower()
        if downgrade == "wild":
            lrs = sorted(p for s, p in _list_images(lr_dir).items() if re.fullmatch(rf"{stem}x4w\d*", s))
            if not lrs:
                raise UserError(f"missing LR image for {hr_path}: expected {os.path.join(lr_dir, stem + 'x4w1' + ext)}")
            pairs.extend(Pair(os.path.splitext(os.path.basename(p))[0], p, hr_path) for p in lrs)
            continue
        lr_path = _find_file(lr_dir, stem + suffix, ext)
        if lr_path is None:
            raise UserError(f"missing LR image {os.path.join(lr_dir, stem + suffix + ext)} for {hr_path}; "
                            f"restrict the id range or re-create the LR set")
        pairs.append(Pair(stem, lr_path, hr_path))
    return pairs


def _lr_hint(root, subset, downgrade, scale):
    m = re.fullmatch(r"(.+)_jpeg_(\d+)", downgrade)
    if m:
        src = os.path.join(root, f"DIV2K_{subset}_LR_{m.group(1)}")
        dst = os.path.join(root, f"DIV2K_{subset}_LR_{downgrade}")
        return f"make it with `python convert.py -i {src} -o {dst} --jpeg-quality {m.group(2)} jpeg`"
    if downgrade == "bicubic":
        hr = os.path.join(root, f"DIV2K_{subset}_HR")
        out = os.path.join(root, f"DIV2K_{subset}_LR_bicubic")
        return f"download it or make it with `python convert.py -i {hr} -o {out} --scale {scale} bicubic`"
    return f"download DIV2K_{subset}_LR_{downgrade} (x{scale}) into {root}"


def _open_benchmark(root, scale, downgrade, images):
    hr_dir = os.path.join(root, "HR")
    hr_files = _list_images(hr_dir)
    if not hr_files:
        raise UserError(f"no images in {hr_dir}; expected HR/<name>.png")
    items = [(k + 1, stem, path) for k, (stem, path) in enumerate(sorted(hr_files.items()))]
    selected = _select(items, images, hr_dir)
    lr_dir = os.path.join(root, f"LR_{downgrade}", f"X{scale}")
    pairs = []
    if not os.path.isdir(lr_dir):
        if downgrade != "bicubic":
            raise UserError(f"LR folder not found: {lr_dir}; only bicubic LR images can be made on the fly")
        for _, stem, hr_path in selected:
            pairs.append(Pair(stem, _bicubic_lr(hr_path, scale), hr_path))
        return pairs
    for _, stem, hr_path in selected:
        ext = os.path.splitext(hr_path)[1].lower()
        lr_path = _find_file(lr_dir, f"{stem}x{scale}", ext)
        if lr_path is None:
            raise UserError(f"missing LR image {os.path.join(lr_dir, f'{stem}x{scale}{ext}')} for {hr_path}; "
                            f"remove {lr_dir} to have all LR images made by bicubic downscaling, or add the file")
        pairs.append(Pair(stem, lr_path, hr_path))
    return pairs


def modcrop(img, scale):
    """Top-left crop to a multiple of `scale` in both dimensions (how LR sets are made)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_downscale(hr, scale):
    """LR image as the SR literature makes it: modcrop then MATLAB-exact bicubic by 1/scale."""
    return imresize(modcrop(hr, scale), scale=1.0 / scale)


def _bicubic_lr(hr_path, scale):
    key = (os.path.abspath(hr_path), os.path.getmtime(hr_path), scale)
    if key not in _LR_CACHE:
        hr = read_image(hr_path, keep_grey=True)
        lr = bicubic_downscale(hr, scale)
        lr.setflags(write=False)
        _LR_CACHE[key] = lr
    return _LR_CACHE[key]


def load_pair(pair, scale=None, keep_grey=False):
    """Full images of a pair: (lr uint8, hr uint8). With `scale`, HR is cropped to exactly scale x LR size
    (top-left, as LR sets are made) and a too-small HR raises UserError."""
    lr = read_image(pair.lr, keep_grey=keep_grey)
    hr = read_image(pair.hr, keep_grey=keep_grey)
    if keep_grey and lr.ndim != hr.ndim:  # grey HR with a colour LR (or vice versa): compare in RGB
        lr, hr = (np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in (lr, hr))
    if scale is not None:
        h, w = lr.shape[0] * scale, lr.shape[1] * scale
        if hr.shape[0] < h or hr.shape[1] < w:
            raise UserError(f"{pair.hr} ({hr.shape[1]}x{hr.shape[0]}) is smaller than x{scale} its LR image "
                            f"({lr.shape[1]}x{lr.shape[0]}); wrong --scale or mismatched files")
        hr = hr[:h, :w]
    return lr, hr


def iter_images(pairs, scale, keep_grey=False):
    """Yield (stem, lr, hr) full images for validation / benchmarking (HR cropped to scale x LR)."""
    for pair in pairs:
        lr, hr = load_pair(pair, scale, keep_grey=keep_grey)
        yield pair.stem, lr, hr


# ----------------------------------------------------------------------------------------------------------
# Patch loader
# ----------------------------------------------------------------------------------------------------------


class _Source:
    """Access to one image for cropping: a memory map for `.npy`, a decoded array otherwise."""

    __slots__ = ("path", "array", "shape")

    def __init__(self, path_or_array):
        if isinstance(path_or_array, np.ndarray):
            self.path, self.array = None, _from_array(path_or_array, "in-memory image", keep_grey=False)
        elif str(path_or_array).lower().endswith(".npy"):
            self.path, self.array = os.fspath(path_or_array), None
            try:
                m = np.load(self.path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise UserError(f"cannot read {self.path}: {e}; delete it and re-run the numpy conversion") from None
            if m.dtype == np.uint8 and m.ndim == 3 and m.shape[2] == 3:
                self.shape = m.shape
                return
            # grey (HxW) or unusual arrays: load and convert once, keep in memory
            self.path, self.array = None, read_image(path_or_array)
            self.shape = self.array.shape
            return
        else:
            self.path, self.array = None, read_image(path_or_array)
        self.shape = self.array.shape


_MMAP_CACHE = []


def _mmap_cache_size():
    """How many memory maps to keep open: each holds a file descriptor, so stay well under the limit."""
    if not _MMAP_CACHE:
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if soft != resource.RLIM_INFINITY and soft < 4096 and (hard == resource.RLIM_INFINITY or hard > soft):
                # all 1600 DIV2K files stay mapped when allowed; reopening a map costs ~1 ms per patch
                want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
            soft = 4096 if soft == resource.RLIM_INFINITY else soft
        except (ImportError, OSError, ValueError):
            soft = 512
        _MMAP_CACHE.append(int(min(2048, max(32, soft // 2 - 64))))
    return _MMAP_CACHE[0]


class _PatchSampler:
    """Numpy-only batch logic shared by `PatchDataset` (kept free of Keras so it pickles and tests fast)."""

    def _setup(self, pairs, scale, batch_size, lr_patch, hr_patch, augment, seed, steps, fixed):
        pairs = list(pairs)
        if not pairs:
            raise UserError("no image pairs to sample patches from")
        self.scale = int(scale)
        if hr_patch is not None:
            if hr_patch % self.scale:
                raise UserError(f"HR patch size {hr_patch} is not a multiple of the scale {self.scale}")
            lr_patch = hr_patch // self.scale
        self.lr_patch = int(lr_patch)
        self.hr_patch = self.lr_patch * self.scale
        self.batch_size = int(batch_size)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.fixed = bool(fixed)
        self.steps = int(steps) if steps else max(1, math.ceil(len(pairs) / self.batch_size))
        self.epoch = 0
        self.stems = [p[0] for p in pairs]
        n_png = sum(not (isinstance(p[1], str) and p[1].lower().endswith(".npy")) for p in pairs)
        if n_png > 100:
            warn(f"decoding {n_png} non-.npy images into memory; convert the dataset with "
                 f"`python convert.py -i IN -o OUT numpy` for a faster start and less memory")
        self.lr_src = [_Source(p[1]) for p in pairs]
        self.hr_src = [_Source(p[2]) for p in pairs]
        lr_shapes = np.array([s.shape[:2] for s in self.lr_src])
        hr_shapes = np.array([s.shape[:2] for s in self.hr_src])
        for k, p in enumerate(pairs):
            if (hr_shapes[k] < lr_shapes[k] * self.scale).any():
                raise UserError(f"{p[2]} is smaller than x{self.scale} its LR image {p[1] if isinstance(p[1], str) else ''}; "
                                f"wrong --scale or mismatched files")
            if (lr_shapes[k] < self.lr_patch).any():
                raise UserError(f"LR image {p[1] if isinstance(p[1], str) else p[0]} ({lr_shapes[k][1]}x{lr_shapes[k][0]}) "
                                f"is smaller than the {self.lr_patch}px patch; use a smaller --lr-patch")
        self._max_yx = lr_shapes - self.lr_patch  # inclusive upper bound of the crop corner
        self._mmaps = collections.OrderedDict()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mmaps"] = collections.OrderedDict()  # memory maps are reopened in each worker process
        return state

    def _view(self, src):
        if src.array is not None:
            return src.array
        cache = self._mmaps
        m = cache.get(src.path)
        if m is None:
            # a plain ndarray over the mapped file: slicing it skips np.memmap's per-slice overhead
            m = np.load(src.path, mmap_mode="r").view(np.ndarray)
            cache[src.path] = m
            while len(cache) > _mmap_cache_size():
                try:  # threads share the cache: another one may have evicted the same entry
                    cache.popitem(last=False)
                except KeyError:
                    break
        else:
            try:
                cache.move_to_end(src.path)
            except KeyError:
                pass
        return m

    def _rng(self, index):
        # keyed by (seed, epoch, index): the same batch whichever worker makes it, and `fixed` repeats it
        # every epoch. Philox with an explicit key avoids SeedSequence, which costs ~1 ms per batch.
        epoch = 0 if self.fixed else self.epoch
        key = [self.seed & 0xFFFFFFFFFFFFFFFF, ((epoch & 0xFFFFFFFF) << 32) | (index & 0xFFFFFFFF)]
        return np.random.Generator(np.random.Philox(key=key))

    @staticmethod
    def _transform(view, flip, rot):
        """Horizontal flip then np.rot90(view, rot) on an HxWxC view, without copying (views only)."""
        if flip:
            view = view[:, ::-1]
        if rot == 1:
            return view[:, ::-1].transpose(1, 0, 2)
        if rot == 2:
            return view[::-1, ::-1]
        if rot == 3:
            return view.transpose(1, 0, 2)[:, ::-1]
        return view

    def batch(self, index):
        """(lr float32 BxPxPx3, hr float32 Bx(sP)x(sP)x3) in [0, 255] for batch `index` of the current epoch."""
        rng = self._rng(index)
        b, p, s, hp = self.batch_size, self.lr_patch, self.scale, self.hr_patch
        which = rng.integers(0, len(self.lr_src), size=b)
        frac = rng.random((b, 2))
        corner = np.floor(frac * (self._max_yx[which] + 1)).astype(np.int64).tolist()
        if self.augment:
            flips = (rng.random(b) < 0.5).tolist()
            rots = rng.integers(0, 4, size=b).tolist()
        else:
            flips, rots = [False] * b, [0] * b
        which = which.tolist()
        lr = np.empty((b, p, p, 3), np.float32)
        hr = np.empty((b, hp, hp, 3), np.float32)
        for k in range(b):
            i, (y, x) = which[k], corner[k]
            # one pass per patch: read the crop (only these rows of a memory-mapped file), augment as a view,
            # and convert to float32 while copying into the batch
            lr[k] = self._transform(self._view(self.lr_src[i])[y: y + p, x: x + p], flips[k], rots[k])
            hr[k] = self._transform(self._view(self.hr_src[i])[y * s: y * s + hp, x * s: x * s + hp], flips[k], rots[k])
        return lr, hr


def validation_crops(pairs, scale, count=None, lr_patch=48, hr_patch=None, seed=0):
    """Fixed random aligned crops for per-epoch validation: a list of `Pair(stem, lr, hr)` with uint8 arrays.

    `count` crops (default: one per image), taken from the images in turn; the same crops for the same
    arguments (no augmentation). Stems are `<image stem>_c<k>`. `.npy` sources are read crop-only.
    """
    pairs = list(pairs)
    count = len(pairs) if count is None else int(count)
    sampler = _PatchSampler()
    sampler._setup(pairs, scale, 1, lr_patch, hr_patch, False, seed, 1, True)
    rng = np.random.Generator(np.random.Philox(key=[seed & 0xFFFFFFFFFFFFFFFF, 0x76616C]))  # "val"
    p, s, hp = sampler.lr_patch, sampler.scale, sampler.hr_patch
    out = []
    for k in range(count):
        i = k % len(pairs)
        y, x = np.floor(rng.random(2) * (sampler._max_yx[i] + 1)).astype(np.int64).tolist()
        lr = np.array(sampler._view(sampler.lr_src[i])[y: y + p, x: x + p])
        hr = np.array(sampler._view(sampler.hr_src[i])[y * s: y * s + hp, x * s: x * s + hp])
        out.append(Pair(f"{sampler.stems[i]}_c{k}", lr, hr))
    return out


def _make_patch_dataset_class():
    import keras

    class PatchDataset(_PatchSampler, keras.utils.PyDataset):
        """Random aligned LR/HR patches as a `keras.utils.PyDataset` (numpy batches; any backend).

        pairs: from `open_pairs`. lr_patch (default 48) or hr_patch (= lr_patch * scale) sets the size.
        augment: random horizontal flip + rot90, applied identically to LR and HR. Batches are a function of
        (seed, epoch, index) only, so any number of workers / processes gives the same data; `fixed=True`
        (validation on random crops) gives the same crops every epoch. `steps`: batches per epoch
        (default: one pass worth, ceil(len(pairs) / batch_size)). `.npy` sources are memory-mapped and only
        the crop is read; other formats are decoded once and kept in memory.
        """

        def __init__(self, pairs, scale, batch_size=16, lr_patch=48, hr_patch=None, augment=True, seed=0,
                     steps=None, fixed=False, workers=1, use_multiprocessing=False, max_queue_size=10):
            super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
            self._setup(pairs, scale, batch_size, lr_patch, hr_patch, augment, seed, steps, fixed)

        def __len__(self):
            return self.steps

        def __getitem__(self, index):
            if index < 0 or index >= self.steps:
                raise IndexError(index)
            return self.batch(index)

        def on_epoch_end(self):
            self.epoch += 1

    PatchDataset.__module__ = __name__
    PatchDataset.__qualname__ = "PatchDataset"
    return PatchDataset


def __getattr__(name):
    # PatchDataset subclasses keras.utils.PyDataset; build it on first use so importing data.py stays fast
    if name == "PatchDataset":
        cls = _make_patch_dataset_class()
        globals()["PatchDataset"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
