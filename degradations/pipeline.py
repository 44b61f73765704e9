"""Real-ESRGAN's second-order degradation model as a host-side, per-sample transform (OpenCV + numpy).

    rng = np.random.Generator(np.random.Philox(key=[seed, (epoch << 32) | index]))
    out = degrade(hr_uint8, rng)                  # {"hr", "hr_usm", "lr", "params"}: 400 crop -> GT 256 / LQ 64
    transform = RealESRGANTransform()             # what the loader calls on each HR crop
    batch_item = transform(hr_crop_uint8, rng)    # {"lr": crop / 4, "hr": crop, "hr_usm": crop sharpened} float32 [0, 255]
    RealESRGANTransform(crop=True)(hr, rng)       # Real-ESRGAN's own 400 crop + paired crop: 64 / 256 / 256

Two steps, so the random draws can be checked (and captioned) apart from the pixel work:
`sample_params(rng, config, hr_shape, scale)` draws every choice as plain numbers (one seed among them for the
per-pixel noise), and `apply_params(hr, params, config, scale)` does the image work, deterministically.
Images are float32 RGB in [0, 1] between the steps, as Real-ESRGAN's are (it uses BGR; see docs/degradations.md).
As RealESRGANModel, the sharpened GT is degraded (degrade_usm) and JPEG is DiffJPEG's algorithm (jpeg_impl);
`batch_params` draws the choices it shares across a batch (draws="batch", with degradations.ReferenceBatches).
"""
import copy
import functools
import math

import numpy as np

import degradations.kernels as K
from degradations.diffjpeg import diffjpeg
from utils import UserError

MODES = ("area", "bilinear", "bicubic")
JPEG_IMPLS = ("diffjpeg", "libjpeg")

# Real-ESRGAN x4plus (options/train_realesrgan_x4plus.yml and realesrgan_dataset.py); the names are Real-ESRGAN's.
# The *_prob switches for blur / noise / JPEG in stage 1 (always on there) are ours: they let a profile turn a step off.
REALESRGAN = {
    # GT crop (realesrgan_dataset.py)
    "use_hflip": True,
    "crop_pad_size": 400,        # reflect-101 pad (bottom/right) to at least this, then a random crop of it; None: whole image
    "gt_size": 256,              # paired random crop GT gt_size / LQ gt_size // scale; None: no crop
    # unsharp mask of the GT (USMSharp: Gaussian 51x51, sigma 8)
    "usm": True,                 # return the sharpened GT crop "hr_usm" (the L1 / perceptual target)
    "degrade_usm": True,         # degrade the sharpened GT (RealESRGANModel.feed_data); False: the plain GT
    "usm_crop": True,            # hr_usm = the GT crop sharpened alone (RealESRGANModel re-sharpens after its pool);
                                 # False: cut from the sharpened 400 crop (RealESRNetModel with gt_usm)
    "usm_radius": 51,
    "usm_sigma": 8.0,
    "usm_weight": 0.5,
    "usm_threshold": 10,         # grey levels
    # kernels
    "kernel_range": list(K.KERNEL_SIZES),
    "blur_kernel_size": 21,      # every kernel is zero-padded to this size
    "kernel_list": list(K.KERNEL_TYPES),
    "kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    "sinc_prob": 0.1,
    "blur_sigma": [0.2, 3.0],
    "betag_range": [0.5, 4.0],
    "betap_range": [1.0, 2.0],
    "kernel_list2": list(K.KERNEL_TYPES),
    "kernel_prob2": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    "sinc_prob2": 0.1,
    "blur_sigma2": [0.2, 1.5],
    "betag_range2": [0.5, 4.0],
    "betap_range2": [1.0, 2.0],
    "final_sinc_prob": 0.8,
    "final_sinc_omega": [math.pi / 3, math.pi],
    # stage 1 (realesrgan_model.py)
    "blur_prob": 1.0,
    "resize_prob": [0.2, 0.7, 0.1],   # up, down, keep
    "resize_range": [0.15, 1.5],      # down U(lo, 1), up U(1, hi)
    "resize_modes": list(MODES),
    "noise_prob": 1.0,
    "gaussian_noise_prob": 0.5,       # else Poisson
    "noise_range": [1.0, 30.0],       # Gaussian sigma, grey levels
    "poisson_scale_range": [0.05, 3.0],
    "gray_noise_prob": 0.4,
    "jpeg_prob": 1.0,
    "jpeg_range": [30.0, 95.0],
    "jpeg_impl": "diffjpeg",          # the reference's DiffJPEG (float quality, degradations/diffjpeg.py); libjpeg: real JPEG
    # draw granularity: "sample" (every choice per sample) or "batch" (RealESRGANModel: noise type, resize
    # direction / factor / mode, second blur, last-step order and mode once per batch), and the pair pool
    # (RealESRGANModel's queue_size; 0: none). Both need the loader wrapper degradations.ReferenceBatches.
    "draws": "sample",
    "pool_size": 0,
    # stage 2
    "second_blur_prob": 0.8,
    "resize_prob2": [0.3, 0.4, 0.3],
    "resize_range2": [0.3, 1.2],      # relative to ori / scale
    "resize_modes2": list(MODES),
    "noise_prob2": 1.0,
    "gaussian_noise_prob2": 0.5,
    "noise_range2": [1.0, 25.0],
    "poisson_scale_range2": [0.05, 2.5],
    "gray_noise_prob2": 0.4,
    "jpeg_prob2": 1.0,
    "jpeg_range2": [30.0, 95.0],
    # the last step: [resize to ori / scale + final sinc] then JPEG with this probability, else JPEG first
    "resize_first_prob": 0.5,
    "final_resize_modes": list(MODES),
}

PRESETS = {"realesrgan": REALESRGAN}
_PROB_KEYS = ("sinc_prob", "sinc_prob2", "final_sinc_prob", "blur_prob", "noise_prob", "gaussian_noise_prob",
              "gray_noise_prob", "jpeg_prob", "second_blur_prob", "noise_prob2", "gaussian_noise_prob2",
              "gray_noise_prob2", "jpeg_prob2", "resize_first_prob")


def make_config(overrides=None, preset="realesrgan"):
    """A validated copy of a preset (name or dict) with `overrides` (a dict, e.g. from a profile) applied.

    Unknown keys and out-of-range values raise UserError naming the key."""
    base = PRESETS.get(preset) if isinstance(preset, str) else preset
    if base is None:
        raise UserError(f"unknown degradation preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if key not in config:
            raise UserError(f"unknown degradation option {key!r}; valid options: {', '.join(sorted(config))}")
        config[key] = copy.deepcopy(value)
    for key in _PROB_KEYS:
        if not 0.0 <= float(config[key]) <= 1.0:
            raise UserError(f"degradation option {key} = {config[key]} is not a probability in [0, 1]")
    for key in ("resize_prob", "resize_prob2", "kernel_prob", "kernel_prob2"):
        p = np.asarray(config[key], dtype=np.float64)
        if p.ndim != 1 or (p < 0).any() or p.sum() <= 0:
            raise UserError(f"degradation option {key} = {config[key]} must be non-negative weights")
        if key.startswith("resize") and len(p) != 3:
            raise UserError(f"degradation option {key} needs 3 weights (up, down, keep), got {config[key]}")
    for key in ("kernel_list", "kernel_list2"):
        bad = [k for k in config[key] if k not in K.KERNEL_TYPES]
        if bad or len(config[key]) != len(config[key.replace("list", "prob")]):
            raise UserError(f"degradation option {key} = {config[key]}: kernel types are {K.KERNEL_TYPES}, "
                            f"one weight each in {key.replace('list', 'prob')}")
    choices = {"jpeg_impl": JPEG_IMPLS, "draws": ("sample", "batch")}
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise UserError(f"degradation option {key} = {config[key]!r}: choose one of {', '.join(allowed)}")
    if isinstance(config["pool_size"], bool) or not isinstance(config["pool_size"], int) or config["pool_size"] < 0:
        raise UserError(f"degradation option pool_size = {config['pool_size']!r}: a whole number >= 0 (0: no pool)")
    for key in ("resize_modes", "resize_modes2", "final_resize_modes"):
        if not config[key] or any(m not in MODES for m in config[key]):
            raise UserError(f"degradation option {key} = {config[key]}: choose from {MODES}")
    sizes = config["kernel_range"]
    if not sizes or any(int(s) % 2 == 0 or int(s) < 1 or int(s) > config["blur_kernel_size"] for s in sizes):
        raise UserError(f"degradation option kernel_range = {sizes}: odd sizes up to blur_kernel_size "
                        f"({config['blur_kernel_size']})")
    if config["gt_size"] is not None and config["crop_pad_size"] is not None \
            and config["gt_size"] > config["crop_pad_size"]:
        raise UserError(f"degradation option gt_size {config['gt_size']} exceeds crop_pad_size {config['crop_pad_size']}")
    return config


# ----------------------------------------------------------------------------------------------------------
# Random draws (no pixels)
# ----------------------------------------------------------------------------------------------------------


def _choice(rng, weights):
    p = np.asarray(weights, dtype=np.float64)
    return int(rng.choice(len(p), p=p / p.sum()))


def _draw_resize(rng, probs, rng_range, modes):
    kind = ("up", "down", "keep")[_choice(rng, probs)]
    if kind == "up":
        factor = float(rng.uniform(1.0, rng_range[1]))
    elif kind == "down":
        factor = float(rng.uniform(rng_range[0], 1.0))
    else:
        factor = 1.0
    return {"kind": kind, "factor": factor, "mode": modes[int(rng.integers(len(modes)))]}


def _noise_kind(rng, gaussian_prob):
    return "gaussian" if rng.random() < gaussian_prob else "poisson"


def _draw_noise(rng, prob, gaussian_prob, sigma_range, poisson_range, gray_prob, kind=None):
    if rng.random() >= prob:
        return {"kind": "none"}
    if (kind or _noise_kind(rng, gaussian_prob)) == "gaussian":
        out = {"kind": "gaussian", "sigma": float(rng.uniform(*sigma_range))}
    else:
        out = {"kind": "poisson", "scale": float(rng.uniform(*poisson_range))}
    out["gray"] = bool(rng.random() < gray_prob)
    return out


def _draw_jpeg(rng, prob, q_range):
    return float(rng.uniform(*q_range)) if rng.random() < prob else None


def output_shapes(hr_shape, config, scale):
    """(ori_h, ori_w) of the image the stages work on and (lq_h, lq_w) of its LQ, for an HR of hr_shape."""
    h, w = int(hr_shape[0]), int(hr_shape[1])
    pad = config["crop_pad_size"]
    if pad is not None:
        h = w = int(pad)
    h, w = h - h % scale, w - w % scale
    if h < scale or w < scale:
        raise UserError(f"image {hr_shape[1]}x{hr_shape[0]} is smaller than the scale {scale}")
    return (h, w), (h // scale, w // scale)


def batch_params(rng, config=REALESRGAN):
    """The choices RealESRGANModel.feed_data draws once per batch (draws="batch"), from `rng` only: resize
    direction / factor / mode of both stages, the noise type of both stages, whether the second blur happens,
    the last step's order and resize mode."""
    c = config
    return {"resize1": _draw_resize(rng, c["resize_prob"], c["resize_range"], c["resize_modes"]),
            "noise1": _noise_kind(rng, c["gaussian_noise_prob"]),
            "second_blur": bool(rng.random() < c["second_blur_prob"]),
            "resize2": _draw_resize(rng, c["resize_prob2"], c["resize_range2"], c["resize_modes2"]),
            "noise2": _noise_kind(rng, c["gaussian_noise_prob2"]),
            "resize_first": bool(rng.random() < c["resize_first_prob"]),
            "final_mode": c["final_resize_modes"][int(rng.integers(len(c["final_resize_modes"])))]}


def sample_params(rng, config=REALESRGAN, hr_shape=(400, 400), scale=4, shared=None):
    """Every random choice of one sample, as a dict of plain numbers (JSON-able), drawn from `rng` only.

    hr_shape: (H, W) of the HR image `apply_params` will get (needed for the crop positions).
    shared: the batch's `batch_params` (draws="batch"); those choices are taken from it, the rest drawn here."""
    c = config
    b = copy.deepcopy(shared) if shared is not None else {}
    h, w = int(hr_shape[0]), int(hr_shape[1])
    p = {"scale": int(scale), "hr_shape": [h, w]}
    p["flip"] = bool(c["use_hflip"] and rng.random() < 0.5)
    if c["crop_pad_size"] is not None:
        size = int(c["crop_pad_size"])
        ph, pw = max(h, size), max(w, size)
        p["crop"] = [int(rng.integers(ph - size + 1)), int(rng.integers(pw - size + 1))]
    else:
        p["crop"] = None
    kernel_args = lambda sfx: dict(kernel_list=c["kernel_list" + sfx], kernel_prob=c["kernel_prob" + sfx],
                                   sigma=c["blur_sigma" + sfx], betag_range=c["betag_range" + sfx],
                                   betap_range=c["betap_range" + sfx], sinc_prob=c["sinc_prob" + sfx],
                                   sizes=c["kernel_range"])
    p["kernel1"] = K.draw_kernel_params(rng, **kernel_args("")) if rng.random() < c["blur_prob"] else None
    p["resize1"] = b.get("resize1") or _draw_resize(rng, c["resize_prob"], c["resize_range"], c["resize_modes"])
    p["noise1"] = _draw_noise(rng, c["noise_prob"], c["gaussian_noise_prob"], c["noise_range"],
                              c["poisson_scale_range"], c["gray_noise_prob"], b.get("noise1"))
    p["jpeg1"] = _draw_jpeg(rng, c["jpeg_prob"], c["jpeg_range"])
    second = b["second_blur"] if "second_blur" in b else rng.random() < c["second_blur_prob"]
    p["kernel2"] = K.draw_kernel_params(rng, **kernel_args("2")) if second else None
    p["resize2"] = b.get("resize2") or _draw_resize(rng, c["resize_prob2"], c["resize_range2"], c["resize_modes2"])
    p["noise2"] = _draw_noise(rng, c["noise_prob2"], c["gaussian_noise_prob2"], c["noise_range2"],
                              c["poisson_scale_range2"], c["gray_noise_prob2"], b.get("noise2"))
    p["resize_first"] = b["resize_first"] if "resize_first" in b else bool(rng.random() < c["resize_first_prob"])
    p["final_mode"] = b.get("final_mode") or c["final_resize_modes"][int(rng.integers(len(c["final_resize_modes"])))]
    p["final_sinc"] = K.draw_final_sinc_params(rng, c["final_sinc_prob"], c["kernel_range"], c["final_sinc_omega"])
    p["jpeg2"] = _draw_jpeg(rng, c["jpeg_prob2"], c["jpeg_range2"])
    (ori_h, ori_w), (lq_h, lq_w) = output_shapes((h, w), c, scale)
    if c["gt_size"] is not None:
        lq_size = int(c["gt_size"]) // scale
        if lq_h < lq_size or lq_w < lq_size:
            raise UserError(f"LQ {lq_w}x{lq_h} is smaller than the {lq_size}px crop; lower gt_size")
        p["lq_crop"] = [int(rng.integers(lq_h - lq_size + 1)), int(rng.integers(lq_w - lq_size + 1))]
    else:
        p["lq_crop"] = None
    p["noise_seed"] = int(rng.integers(2 ** 63))  # the per-pixel noise draws: a generator seeded from rng
    return p


def describe(params):
    """Caption lines: the drawn parameters in short form."""
    def res(r):
        return "keep" if r["kind"] == "keep" else f"{r['kind']} {r['factor']:.2f} {r['mode']}"

    def noise(n):
        if n["kind"] == "none":
            return "no noise"
        g = " grey" if n["gray"] else ""
        return f"gauss {n['sigma']:.1f}{g}" if n["kind"] == "gaussian" else f"poisson {n['scale']:.2f}{g}"

    def blur(k):
        return "no blur" if k is None else K.describe(k)

    def q(x):
        return "no jpeg" if x is None else f"q{round(x)}"

    order = "resize+sinc, jpeg" if params["resize_first"] else "jpeg, resize+sinc"
    return [f"1: {blur(params['kernel1'])} | {res(params['resize1'])}",
            f"   {noise(params['noise1'])} | {q(params['jpeg1'])}",
            f"2: {blur(params['kernel2'])} | {res(params['resize2'])}",
            f"   {noise(params['noise2'])} | {q(params['jpeg2'])}",
            f"   {order} ({params['final_mode']}, {K.describe(params['final_sinc'])})"]


# ----------------------------------------------------------------------------------------------------------
# Image operations (float32 HxWx3 in [0, 1]; OpenCV with reflect-101 borders, as BasicSR's filter2D)
# ----------------------------------------------------------------------------------------------------------


def _cv2():
    import cv2

    return cv2


def set_cv2_threads(n=1):
    """OpenCV's own thread pool: 1 when the loader runs its own workers, so the two do not fight.

    Also asks glibc to keep freed memory for reuse (`keep_freed_memory`)."""
    _cv2().setNumThreads(int(n))
    keep_freed_memory()


@functools.lru_cache(maxsize=1)
def keep_freed_memory(mmap_threshold=32 << 20, trim_threshold=128 << 20):
    """glibc only (elsewhere a no-op): serve arrays below 32 MB from the heap and keep up to 128 MB of freed heap.

    Each pair makes and frees ~30 float32 images of 0.5-2 MB; by default glibc hands such freed memory back to
    the OS, and every new image then page-faults its memory in again, which cost ~30 % of the pipeline's time.
    Returns True when the settings took."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, int(mmap_threshold)) and mallopt(m_trim_threshold, int(trim_threshold)))


def _trim(k, tol=1e-9):
    """Drop outer rings whose total absolute weight is <= tol (zero padding, and the negligible tails of
    small-sigma kernels): filtering cost grows with the kernel area and the result changes by <= tol."""
    while k.shape[0] > 1:
        ring = np.abs(k).sum() - np.abs(k[1:-1, 1:-1]).sum()
        if ring > tol:
            break
        k = k[1:-1, 1:-1]
    return k


def filter2d(img, kernel):
    """Correlate each channel with `kernel` (odd, square), reflect-101 borders: BasicSR's filter2D.

    A rank-1 kernel (isotropic Gaussian) runs as two 1-D passes; the result is the same to float32 rounding."""
    cv2 = _cv2()
    k = _trim(np.asarray(kernel, dtype=np.float64))
    if k.shape[0] == 1:
        return img * np.float32(k[0, 0]) if k[0, 0] != 1 else img
    u, s, vt = np.linalg.svd(k)
    if s[1] <= 1e-7 * s[0]:  # two 1-D passes (filter2D twice: faster than sepFilter2D here)
        col = (u[:, 0] * math.sqrt(s[0])).astype(np.float32)[:, None]
        row = (vt[0] * math.sqrt(s[0])).astype(np.float32)[None, :]
        out = cv2.filter2D(img, -1, col, borderType=cv2.BORDER_REFLECT_101)
        return cv2.filter2D(out, -1, row, borderType=cv2.BORDER_REFLECT_101)
    k = k.astype(np.float32)
    n = k.shape[0]
    if n * n <= 121 or n > 15:
        return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT_101)
    # 13x13, 15x15: OpenCV switches to a DFT above ~121 taps, which costs ~2x the direct sum here; so correlate
    # column blocks of <= 121 taps directly and add them (same result to float32 rounding)
    c, w = n // 2, img.shape[1]
    padded = cv2.copyMakeBorder(img, 0, 0, c, c, cv2.BORDER_REFLECT_101)  # columns; rows by filter2D's border
    step = 121 // n
    out = None
    for q in range(0, n, step):
        part = cv2.filter2D(padded, -1, np.ascontiguousarray(k[:, q: q + step]), anchor=(0, c),
                            borderType=cv2.BORDER_REFLECT_101)[:, q: q + w]
        out = part.copy() if out is None else cv2.add(out, part)
    return out


_INTER = None


def _windows(n_in, n_out):
    """[start, end) of each output pixel's input window: floor(i n_in / n_out), ceil((i + 1) n_in / n_out)."""
    i = np.arange(n_out, dtype=np.int64)
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


def area_resize(img, h, w):
    """PyTorch's "area" interpolation (adaptive average pooling): each output pixel is the mean of its input
    window (see `_windows`; windows overlap for fractional factors, and upscaling repeats or pairs pixels).
    OpenCV's INTER_AREA is the same for integer downscales only (exact fractional areas otherwise, bilinear
    when upscaling, both sharper), so other factors go through an integral image."""
    cv2 = _cv2()
    ih, iw = img.shape[:2]
    if ih % h == 0 and iw % w == 0:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    integral = cv2.integral(img, sdepth=cv2.CV_64F)  # (ih + 1) x (iw + 1) x C running sums
    if integral.ndim == 2:
        integral = integral[:, :, None]
    ys, ye = _windows(ih, h)
    xs, xe = _windows(iw, w)
    rows = np.take(integral, ye, axis=0) - np.take(integral, ys, axis=0)  # window sums down the rows (np.take:
    sums = np.take(rows, xe, axis=1) - np.take(rows, xs, axis=1)         # ~4x fancy indexing here)
    area = ((ye - ys)[:, None] * (xe - xs)[None, :]).astype(np.float64)
    return (sums / area[:, :, None]).astype(np.float32)


def resize(img, size_hw, mode):
    """Resize to (h, w) as torch.nn.functional.interpolate (align_corners False, no antialiasing) does in
    Real-ESRGAN: "area" = `area_resize`; bilinear / bicubic = OpenCV INTER_LINEAR / INTER_CUBIC (the same values)."""
    global _INTER
    cv2 = _cv2()
    if _INTER is None:
        _INTER = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    h, w = max(1, int(size_hw[0])), max(1, int(size_hw[1]))
    if (h, w) == img.shape[:2]:
        return img
    if mode == "area":
        out = area_resize(img, h, w)
    else:
        out = cv2.resize(img, (w, h), interpolation=_INTER[mode])
    return out if out.ndim == 3 else out[:, :, None]


def to_float(u8):
    """uint8 -> float32 in [0, 1] (the one conversion the pipeline uses)."""
    return u8.astype(np.float32) * np.float32(1 / 255)


def _tiny(img):
    # OpenCV's Python binding reads a 4-tuple next to a few-pixel image as an array, not a scalar: numpy there
    return img.shape[0] * img.shape[1] < 64


def to_uint8(img):
    """[0, 1] float32 -> uint8, clipped and rounded to nearest (OpenCV's saturating cast: ~15x numpy's speed)."""
    if _tiny(img):
        return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    cv2 = _cv2()
    out = cv2.convertScaleAbs(cv2.max(img, (0.0,) * 4), alpha=255.0)  # max(., 0) first: convertScaleAbs takes |x|
    return out if out.ndim == img.ndim else out.reshape(img.shape)


def jpeg(img, quality):
    """Real JPEG: 8-bit encode at `quality` (rounded to an integer) and decode, with OpenCV (libjpeg-turbo,
    4:2:0; the same bytes as Pillow's encoder). OpenCV's encoder takes BGR, so the RGB image is converted
    first and decoded back to RGB: the YCbCr conversion sees the right channels."""
    cv2 = _cv2()
    bgr = cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(round(quality))])
    if not ok:
        raise RuntimeError("OpenCV JPEG encoding failed")
    return to_float(cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB))


def compress(img, quality, impl="diffjpeg"):
    """The pipeline's JPEG step: "diffjpeg" (the reference's: the image clamped to [0, 1] as Real-ESRGAN does
    before it, float quality, float result) or "libjpeg" (`jpeg`: 8-bit, integer quality)."""
    if impl == "libjpeg":
        return jpeg(img, quality)
    return diffjpeg(np.clip(img, 0.0, 1.0), quality)


def cv2_grey(img):
    """Luma 0.299 R + 0.587 G + 0.114 B of an RGB float32 image (HxW)."""
    cv2 = _cv2()
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


@functools.lru_cache(maxsize=16)
def _poisson_table(vals, guide=4096):
    """Inverse-CDF tables of Poisson(k * vals / 255) for the 256 grey levels k (BasicSR rounds the image to
    8 bits first, so there are only 256 different means).

    `answer[k * guide + j]` is the sample for every u in [j / guide, (j + 1) / guide) when that cell holds no
    CDF step, else -1: those few are settled by a search in the CDF. Exact up to the tail
    beyond `length` (probability < 1e-25)."""
    from scipy import special

    length = int(vals + 12 * math.sqrt(vals) + 30)
    lam = np.arange(256) * (vals / 255.0)
    x = np.arange(length, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logpmf = special.xlogy(x[None, :], lam[:, None]) - lam[:, None] - special.gammaln(x + 1)[None, :]
    cdf = np.cumsum(np.exp(logpmf), axis=1)
    cdf[:, -1] = 1.0
    lo = np.arange(guide) / guide
    # first x with cdf > j / guide, for every row at once: count the cdf values <= j / guide
    first = np.stack([np.searchsorted(cdf[k], lo, side="right") for k in range(256)])
    exact = np.take_along_axis(cdf, first, axis=1) > lo + 1.0 / guide  # ... and cdf > (j+1)/guide too
    answer = np.where(exact, first, -1).astype(np.int16).ravel()
    # rows offset by k make one increasing array, so one searchsorted settles the undecided u of any level
    # (k + u keeps u to ~3e-14, far below any probability that matters here)
    offset_cdf = (cdf + np.arange(256)[:, None]).ravel()
    return offset_cdf, answer, guide, length


def poisson_levels(levels, vals, rng):
    """Poisson(levels * vals / 255) samples (float32, same shape) for a uint8 array of levels, from `rng`.

    Inverse-CDF sampling with a guide table, from 32-bit uniforms (u = (b + 0.5) / 2^32: the distribution is
    exact to 2^-32 in probability); ~2x numpy's poisson."""
    offset_cdf, answer, guide, length = _poisson_table(int(vals))
    shift = 32 - int(math.log2(guide))
    lv = levels.reshape(-1)
    n = lv.size
    bits = rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n]  # raw 64-bit words, split in two
    idx = bits >> np.uint32(shift)  # the guide cell of u
    idx += lv.astype(np.uint32) << np.uint32(int(math.log2(guide)))
    x = np.take(answer, idx)
    todo = np.flatnonzero(x < 0)
    if todo.size:  # u fell in a cell holding a CDF step (a few percent): binary search in its row
        k = lv[todo].astype(np.int64)
        keys = k + (bits[todo] + 0.5) * (1.0 / 2 ** 32)
        order = np.argsort(keys)  # sorted keys search ~2x faster
        found = np.empty_like(order)
        found[order] = np.searchsorted(offset_cdf, keys[order], side="right")
        x[todo] = found - k * length
    return x.astype(np.float32).reshape(levels.shape)


def _vals(levels):
    """2^ceil(log2(number of distinct levels)), BasicSR's Poisson scaling."""
    n = int(np.count_nonzero(np.bincount(levels.ravel(), minlength=256)))
    return 2.0 ** math.ceil(math.log2(max(n, 1)))


def add_noise(img, noise, rng):
    """Gaussian (sigma in grey levels) or Poisson noise as BasicSR's *_pt functions, clipped to [0, 1].

    Grey noise is one noise image added to all three channels; grey Poisson noise is computed on the
    luma (0.299 R + 0.587 G + 0.114 B) of the 8-bit-rounded image."""
    kind = noise["kind"]
    if kind == "none":
        return img
    cv2 = _cv2()
    h, w = img.shape[:2]
    gray = noise["gray"]
    if kind == "gaussian":
        n = rng.standard_normal((h, w) if gray else (h, w, 3), dtype=np.float32)
        amount = noise["sigma"] / 255.0
    else:
        base = to_uint8(cv2_grey(img) if gray else img)
        vals = _vals(base)
        # Poisson(base * vals / 255) / vals - base / 255
        n = poisson_levels(base, vals, rng) * np.float32(1.0 / vals) - base.astype(np.float32) * np.float32(1.0 / 255)
        amount = noise["scale"]
    if _tiny(img):
        n = n.reshape(h, w, -1)
        return np.clip(img + np.float32(amount) * n, 0.0, 1.0).astype(np.float32)
    if gray:
        n = cv2.merge((n, n, n))
    out = cv2.scaleAdd(n, float(amount), img)  # img + amount * n, then clipped (OpenCV: one pass each)
    return cv2.min(cv2.max(out, (0.0,) * 4), (1.0,) * 4)


def usm_sharp(img, radius=51, sigma=8.0, weight=0.5, threshold=10, region=None):
    """BasicSR's USMSharp: img + weight * (img - blur), blended in by the blurred mask |img - blur| > threshold
    (Gaussian radius x radius, reflect-101 borders; the sharpened value is clipped to [0, 1]).

    region (y0, x0, h, w): return only that part, computing no more than it needs: the blur on the region
    grown by radius // 2 and the mask blur on that, each from a window clipped to the image, so the values
    are those of sharpening the whole image."""
    cv2 = _cv2()
    g = cv2.getGaussianKernel(int(radius), float(sigma)).astype(np.float32)
    ih, iw = img.shape[:2]
    y0, x0, h, w = region if region is not None else (0, 0, ih, iw)
    r = int(radius) // 2

    def grow(m):
        return max(0, y0 - m), max(0, x0 - m), min(ih, y0 + h + m), min(iw, x0 + w + m)

    a0, b0, a1, b1 = grow(2 * r)   # the blur's input window
    c0, d0, c1, d1 = grow(r)       # where the blur (and so the mask) is needed
    border = cv2.BORDER_REFLECT_101
    # two 1-D passes (faster than sepFilter2D here), each keeping only the rows / columns still needed
    blur = cv2.filter2D(img[a0:a1, b0:b1], -1, g, borderType=border)[c0 - a0: c1 - a0]
    blur = cv2.filter2D(blur, -1, g.T, borderType=border)[:, d0 - b0: d1 - b0]
    mid = img[c0:c1, d0:d1]  # OpenCV takes these views as they are (no copies)
    if _tiny(mid):
        soft = cv2.sepFilter2D((np.abs(mid - blur) * 255 > threshold).astype(np.float32), -1, g, g, borderType=border)
        mid, blur, soft = (a[y0 - c0: y0 - c0 + h, x0 - d0: x0 - d0 + w] for a in (mid, blur, soft))
        sharp = np.clip(mid + np.float32(weight) * (mid - blur), 0.0, 1.0)
        return (soft * sharp + (1 - soft) * mid).astype(np.float32)
    # OpenCV element-wise ops (several times numpy's speed here); the mask is 0 / 255 uint8, blurred with g / 255
    # (scalars as 4-tuples: a bare float is OpenCV's Scalar(v, 0, 0, 0), which would spare channels 2 and 3)
    mask = cv2.compare(cv2.absdiff(mid, blur), (float(threshold) / 255.0,) * 4, cv2.CMP_GT)
    ys, xs = slice(y0 - c0, y0 - c0 + h), slice(x0 - d0, x0 - d0 + w)
    # (float32 first: OpenCV's uint8 -> float32 1-D filter2D takes a slow path, ~10x)
    soft = cv2.filter2D(mask.astype(np.float32), -1, g * np.float32(1 / 255), borderType=border)[ys]
    soft = cv2.filter2D(soft, -1, g.T, borderType=border)[:, xs]
    mid, blur = mid[ys, xs], blur[ys, xs]
    sharp = cv2.scaleAdd(cv2.subtract(mid, blur), float(weight), mid)  # img + weight * residual
    sharp = cv2.min(cv2.max(sharp, (0.0,) * 4), (1.0,) * 4)
    return cv2.add(mid, cv2.multiply(soft, cv2.subtract(sharp, mid)))  # soft * sharp + (1 - soft) * img


# ----------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------


def crop_gt(hr, params, config=REALESRGAN):
    """Flip, reflect-101 pad (bottom/right) to crop_pad_size and crop it; whole-image mode: modcrop only."""
    scale = params["scale"]
    if params["flip"]:
        hr = hr[:, ::-1]
    if params["crop"] is not None:
        size = int(config["crop_pad_size"])
        h, w = hr.shape[:2]
        if h < size or w < size:
            hr = np.pad(hr, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")
        top, left = params["crop"]
        hr = hr[top: top + size, left: left + size]
    h, w = hr.shape[:2]
    return hr[: h - h % scale, : w - w % scale]  # a view: to_float copies it


def _stage(out, kernel, resize_p, noise, q, size_hw, rng, config):
    if kernel is not None:
        out = filter2d(out, K.build_kernel(kernel, config["blur_kernel_size"]))
    # always resized, as Real-ESRGAN does: a stage-1 "keep" is the same size (a no-op), a stage-2 "keep"
    # is ori / scale
    out = resize(out, size_hw, resize_p["mode"])
    out = add_noise(out, noise, rng)
    if q is not None:
        out = compress(out, q, config["jpeg_impl"])
    return out


def apply_params(hr, params, config=REALESRGAN):
    """The image work for drawn `params`: {"hr": uint8 GT, "hr_usm": float32 [0, 1] or None, "lr": uint8}."""
    hr = np.asarray(hr)
    if hr.ndim == 2:
        hr = np.repeat(hr[:, :, None], 3, axis=2)
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"degrade: expected a uint8 HxWx3 image, got {hr.dtype} {hr.shape}")
    if list(hr.shape[:2]) != params["hr_shape"]:
        raise ValueError(f"degrade: params were drawn for an HR of {params['hr_shape']}, got {list(hr.shape[:2])}")
    scale = params["scale"]
    gt = crop_gt(hr, params, config)
    ori_h, ori_w = gt.shape[:2]
    rng = np.random.Generator(np.random.PCG64(params["noise_seed"]))
    img = to_float(gt)
    usm_args = (config["usm_radius"], config["usm_sigma"], config["usm_weight"], config["usm_threshold"])
    # RealESRGANModel degrades the sharpened GT (filter2D(gt_usm, kernel1)): the whole image (crop) is sharpened
    src = usm_sharp(img, *usm_args) if config["degrade_usm"] else img

    r1 = params["resize1"]
    size1 = (int(ori_h * r1["factor"]), int(ori_w * r1["factor"]))
    out = _stage(src, params["kernel1"], r1, params["noise1"], params["jpeg1"], size1, rng, config)
    r2 = params["resize2"]
    size2 = (int(ori_h / scale * r2["factor"]), int(ori_w / scale * r2["factor"]))
    out = _stage(out, params["kernel2"], r2, params["noise2"], None, size2, rng, config)

    final_k = K.build_kernel(params["final_sinc"], config["blur_kernel_size"])
    lq_hw = (ori_h // scale, ori_w // scale)
    if params["resize_first"]:
        out = filter2d(resize(out, lq_hw, params["final_mode"]), final_k)
        if params["jpeg2"] is not None:
            out = compress(out, params["jpeg2"], config["jpeg_impl"])
    else:
        if params["jpeg2"] is not None:
            out = compress(out, params["jpeg2"], config["jpeg_impl"])
        out = filter2d(resize(out, lq_hw, params["final_mode"]), final_k)
    lr = to_uint8(out)

    if params["lq_crop"] is not None:
        lq_size = int(config["gt_size"]) // scale
        top, left = params["lq_crop"]
        lr = lr[top: top + lq_size, left: left + lq_size]
        y0, x0, gs = top * scale, left * scale, lq_size * scale
    else:
        y0, x0, gs = 0, 0, None
    hr_usm = None
    if config["usm"] and gs is None:
        hr_usm = src if config["degrade_usm"] else usm_sharp(img, *usm_args)
    elif config["usm"] and config["usm_crop"]:  # the GT crop sharpened alone, as RealESRGANModel's target
        hr_usm = usm_sharp(np.ascontiguousarray(img[y0: y0 + gs, x0: x0 + gs]), *usm_args)
    elif config["usm"]:  # the crop of the sharpened GT (RealESRNetModel); only that region is computed
        hr_usm = src[y0: y0 + gs, x0: x0 + gs] if config["degrade_usm"] else \
            usm_sharp(img, *usm_args, region=(y0, x0, gs, gs))
    if gs is not None:
        gt = gt[y0: y0 + gs, x0: x0 + gs]
    return {"hr": np.ascontiguousarray(gt), "hr_usm": None if hr_usm is None else np.ascontiguousarray(hr_usm),
            "lr": np.ascontiguousarray(lr)}


def degrade(gt_uint8, rng, config=REALESRGAN, scale=4, shared=None):
    """One degraded sample: {"hr": uint8 GT crop, "hr_usm": float32 [0, 1] sharpened GT (None when usm is off),
    "lr": uint8 LQ (exactly GT / scale), "params": the draws}. All randomness comes from `rng` (and the
    batch's `shared` choices, see `batch_params`)."""
    gt_uint8 = np.asarray(gt_uint8)
    params = sample_params(rng, config, gt_uint8.shape[:2], scale, shared)
    out = apply_params(gt_uint8, params, config)
    out["params"] = params
    return out


# whole images (convert.py degrade, validation, preview): no flip, no crops, no hr_usm target (the LQ is still
# made from the sharpened image when degrade_usm is on)
WHOLE_IMAGE = {"use_hflip": False, "crop_pad_size": None, "gt_size": None, "usm": False}


class RealESRGANTransform:
    """The loader's LR transform: `transform(hr_uint8, rng) -> {"lr", "hr", "hr_usm"}`, float32 HxWx3 in [0, 255].

    crop=False (default; the contract of degradations.transforms.BicubicTransform): the input (the loader's HR crop, or a whole
    image) is degraded whole: HR = the input cropped to a multiple of scale, LR = HR / scale, hr_usm = HR
    sharpened; no flip (the loader augments). crop=True: Real-ESRGAN's recipe for whole images or crops of at
    least crop_pad_size (400): flip p 0.5, reflect-101 pad to 400, random 400 crop, degrade, paired random crop
    HR gt_size / LR gt_size // scale (256 / 64). `transform.whole_image(hr, rng)`: {"lr", "hr"} of a whole image
    without sharpening (fixed validation LR).

    config: a preset name ("realesrgan"), a dict of degradation options over the Real-ESRGAN preset, or a
    training config (a dict with "scale": its "degradation" dict holds the options, its "scale" the scale).
    dtype "uint8" returns uint8 (hr_usm rounded). cv2_threads: OpenCV's own thread count (1: the loader's
    workers are the parallelism; None: leave it). hr_usm is hr when "usm" is off.
    """

    def __init__(self, config=None, scale=4, gt_size=256, crop=False, dtype="float32", cv2_threads=1):
        if isinstance(config, dict) and "scale" in config:  # a training config (degradations.transforms.make_transform passes one)
            scale = config["scale"]
            config = config.get("degradation") or {}
        preset, overrides = (config, {}) if isinstance(config, str) else ("realesrgan", dict(config or {}))
        self.scale = int(scale)
        self.crop = bool(crop)
        if self.crop and (gt_size is None or gt_size % self.scale):
            raise UserError(f"gt_size {gt_size} is not a multiple of the scale {self.scale}")
        if self.crop:
            overrides["gt_size"] = gt_size
        else:
            overrides.update(use_hflip=False, crop_pad_size=None, gt_size=None)
        self.config = make_config(overrides, preset)
        self.gt_size = gt_size
        self._whole = dict(self.config, **WHOLE_IMAGE)
        self.dtype = np.dtype(dtype)
        if cv2_threads is not None:
            set_cv2_threads(cv2_threads)

    def _format(self, out):
        if self.dtype == np.uint8:
            usm = out["hr"] if out["hr_usm"] is None else to_uint8(out["hr_usm"])
            return {"lr": out["lr"], "hr": out["hr"], "hr_usm": usm}
        hr = out["hr"].astype(np.float32)
        usm = hr if out["hr_usm"] is None else out["hr_usm"] * np.float32(255)
        return {"lr": out["lr"].astype(np.float32), "hr": hr, "hr_usm": usm}

    def __call__(self, hr_uint8, rng, shared=None):
        """shared: the batch's choices (`self.batch_params(batch_rng)`) when draws are per batch ({}: none)."""
        if shared is None and (self.config["draws"] == "batch" or self.config["pool_size"]):
            raise UserError("degradation options draws=batch / pool_size need the training source wrapped by "
                            "degradations.reference_batches (batch-level draws and the pool live there)")
        return self._format(degrade(hr_uint8, rng, self.config, self.scale, shared or None))

    def batch_params(self, rng):
        """The choices shared by one batch (draws="batch"), from the batch's own generator."""
        return batch_params(rng, self.config)

    def whole_image(self, hr_uint8, rng):
        """{"lr", "hr"} of the whole image (HR modcropped; LR exactly HR / scale), as `convert.py degrade`."""
        out = self._format(degrade(hr_uint8, rng, self._whole, self.scale))
        return {"lr": out["lr"], "hr": out["hr"]}
