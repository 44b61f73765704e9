"""THE image reader and writer, and THE list of image extensions (numpy + Pillow; OpenCV only for 16-bit samples).

`read_image(path) -> uint8 HxWx3` converts every mode to 8-bit RGB with a one-line warning naming the file;
`keep_alpha=True` / `keep_depth=True` keep an alpha channel (HxWx4) / 16-bit samples (uint16), as demo.py
needs for photographs. `write_image(path, array)` writes a PNG atomically. Very large images (over Pillow's decompression-bomb limit
of about 89 megapixels) are read with one warning line of ours instead of Pillow's DecompressionBombWarning.
"""
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils import UserError, atomic_path, warn

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
ARRAY_EXTS = (".npy",)
READABLE_EXTS = IMAGE_EXTS + ARRAY_EXTS


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


def _is_16bit(im):
    """True for a Pillow image whose samples are 16-bit (grey I;16*, or RGB(A)/LA PNGs Pillow reduces to 8 bit)."""
    if im.mode.startswith("I;16") or (im.mode == "I" and im.format in ("PNG", "TIFF")):
        return True
    return any(";16" in str(t[3] if len(t) > 3 else "") for t in im.tile)  # e.g. rawmode RGB;16B, LA;16B


def _read_16bit(path, keep_grey, keep_alpha):
    """uint16 HxWx3 (HxWx4 with keep_alpha and an alpha channel; HxW grey with keep_grey) via OpenCV, which
    keeps 16-bit samples (Pillow does not for colour); None when OpenCV cannot read it at 16 bit."""
    import cv2

    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        return None
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]  # BGR(A) -> RGB(A)
    return _from_array(arr, path, keep_grey, keep_alpha, keep_depth=True)


def _from_array(arr, name, keep_grey, keep_alpha=False, keep_depth=False):
    """Validate / normalise an in-memory or .npy array to uint8 HxWx3 (or HxW with keep_grey, HxWx4 with
    keep_alpha when it has an alpha channel, uint16 with keep_depth when it is uint16)."""
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        shape = getattr(arr, "shape", None)
        raise UserError(f"{name}: expected an HxW or HxWx3 image array, got shape {shape}; re-create it with convert.py")
    if arr.dtype != np.uint8 and not (keep_depth and arr.dtype == np.uint16):
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
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey + alpha (OpenCV's 16-bit LA)
        if keep_alpha:
            warn(f"{name}: grey image converted to RGB")
            return np.ascontiguousarray(np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], 2))
        warn(f"{name}: alpha channel dropped")
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4 and not keep_alpha:
        warn(f"{name}: alpha channel dropped")
        arr = arr[:, :, :3]
    if arr.ndim == 2:
        if arr.dtype == np.uint16 and not keep_grey:  # as the 8-bit reader says it (degrade, train)
            warn(f"{name}: grey image converted to RGB (samples kept at 16 bit; --keep-grey keeps it grey)")
        return arr if keep_grey else np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr)


def read_image(path, keep_grey=False, keep_alpha=False, keep_depth=False):
    """Read any image (PNG/JPEG/BMP/TIFF/...) or `.npy` array as uint8 RGB HxWx3.

    Every mode becomes 8-bit RGB with a one-line warning naming the file: grey is replicated to 3 channels,
    alpha (RGBA, LA, PA) is dropped (the stored colours are kept; no compositing), palette images are
    expanded, 16-bit values are scaled by 255/65535 with rounding, float images are taken as [0, 1] when
    their maximum is <= 1 and as [0, 255] otherwise, CMYK/YCbCr/LAB/HSV go through Pillow's RGB conversion.
    `keep_grey=True` returns HxW uint8 for single-channel sources (no warning for plain 8-bit grey).
    A numpy array is accepted too (passed through the same checks), so `read_image(pair.lr)` works for LR
    images made in memory. Missing / unreadable / corrupt files raise `UserError` naming the file.

    `keep_alpha=True`: an image with alpha (RGBA, LA, PA, palette transparency) comes back as HxWx4 RGBA
    (grey + alpha as RGB + alpha); images without alpha as before. `keep_depth=True`: 16-bit PNG/TIFF samples
    are kept (uint16, read with OpenCV; one warning and 8 bit when OpenCV cannot); 8-bit images stay uint8.
    So `img.shape[2] == 4` tells that there is an alpha channel and `img.dtype == np.uint16` a 16-bit image.
    """
    if isinstance(path, np.ndarray):
        return _from_array(path, "in-memory image", keep_grey, keep_alpha, keep_depth)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}; check the path (and the dataset layout)")
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise UserError(f"cannot read {path}: {e}; delete it and re-run the conversion (python convert.py ... numpy)") from None
        return _from_array(arr, path, keep_grey, keep_alpha, keep_depth)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            im = Image.open(path)
        for w in caught:
            if issubclass(w.category, Image.DecompressionBombWarning):
                warn(f"{path}: very large image ({im.width}x{im.height}, {im.width * im.height / 1e6:.0f} megapixels); "
                     f"decoding it needs about {im.width * im.height * 3 / 2**30:.1f} GiB of memory")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        with im:
            deep = _is_16bit(im)
            if deep and keep_depth:
                arr = _read_16bit(path, keep_grey, keep_alpha)
                if arr is not None:
                    return arr
                warn(f"{path}: 16-bit samples could not be kept; read as 8 bit")
                deep = False  # that one warning is enough
            im.load()
            # Pillow reduces 16-bit colour PNGs to 8 bit while decoding (it keeps the high byte); grey I;16 is
            # decoded at 16 bit and scaled with rounding below
            if deep and not im.mode.startswith("I"):
                warn(f"{path}: 16-bit colour image reduced to 8 bit (high byte, by Pillow)")
            return _pil_to_array(im, path, keep_grey, keep_alpha)
    except UserError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        msg = str(e).replace(os.linesep, " ").strip() or type(e).__name__
        raise UserError(f"cannot read image {path} ({msg}); the file is corrupt or not an image: replace or remove it") from None


def _pil_to_array(im, name, keep_grey, keep_alpha=False):
    mode = im.mode
    if keep_alpha and (mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in im.info)):
        if mode != "RGBA":
            warn(f"{name}: {mode} image converted to RGBA")
        return np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
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
