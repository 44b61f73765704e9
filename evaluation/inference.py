"""Inference: full-image or tiled super-resolution with optional x8 geometric self-ensemble.

`super_resolve` is the one routine bench.py, demo.py and training validation call (through evaluation.scorer).

Compilation policy (measured on CPU, see docs/demo.md and docs/speed.md):
- TensorFlow, full images: one shape-generic graph without XLA (traced once); every benchmark image has its
  own size, and an XLA compile per shape costs about what it saves on a single pass.
- JAX, full images: jitted `stateless_call` on a few *bucket* shapes (H and W rounded up to a multiple of
  `bucket`, default 32). Zero "same" padding inside the network makes a padded run differ from the unpadded
  one within the receptive field of the padded (bottom/right) edges, so those strips are recomputed from
  crops that end at the real image edge (see `_run_bucketed`): the output equals the unpadded run, and a
  benchmark set compiles a handful of times, not once per image. Op-by-op JAX was 2.5-4x slower.
- PyTorch: eager under `torch.no_grad()` (no autograd graph); torch.compile warms up slower on CPU than it
  saves.
- Tiles (`tile=N`, THE tile routine `_run_tiled` on the minimal `tile_plan`): all tiles of an image have one
  shape (at most N x N, never larger than the image), batched `tile_batch` per call; XLA-compiled once per
  image size on JAX and, on TensorFlow, where a GPU/TPU is present.

Cached callables hold their model through a weak reference, and the cache is keyed weakly by the model, so
a model (and its compiled functions) is freed as soon as the caller drops it (bench over many checkpoints).
"""
import math
import weakref

import numpy as np

from utils import UserError, warn

# sigma^2 = LOGVAR_UNIT^2 * exp(s) in grey levels^2: the GRAM loss normalises the residual by 127.5.
LOGVAR_UNIT = 127.5
DEFAULT_BUCKET = 32

# model -> {"scale": int, "radius": float, "graph"/"jit"/"eager": fn, "traces": [shapes], "warned_tiles": {tile}}.
# The values must never reference the model strongly: a WeakKeyDictionary entry whose value holds its key is
# never freed.
_CACHE = weakref.WeakKeyDictionary()


def _cache(model):
    try:
        return _CACHE.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no caching
        return {}


def _weak(model):
    """A callable returning `model`: a weak reference where possible, so closures do not keep it alive."""
    try:
        return weakref.ref(model)
    except TypeError:
        return lambda: model


def _is_keras_model(model):
    import keras

    return isinstance(model, keras.Model)


def _backend():
    import keras

    return keras.backend.backend()


def _eager_call(model):
    """Callable float32 NHWC numpy -> numpy, running the model op by op (no compilation, no autograd)."""
    ref = _weak(model)
    if not _is_keras_model(model):
        return lambda x: np.asarray(ref()(x))
    import keras

    if _backend() == "torch":
        import torch

        def call(x):
            # no autograd graph (less memory and time); no_grad rather than inference_mode, whose tensors
            # must never reach training (train.py validates with this call between steps), as in Keras' predict
            with torch.no_grad():
                return keras.ops.convert_to_numpy(ref()(x, training=False))

        return call
    return lambda x: keras.ops.convert_to_numpy(ref()(x, training=False))


def _graph_call(model):
    """Callable numpy -> numpy without XLA and without a per-shape compile.

    TensorFlow: one shape-generic tf.function graph (traced once; Grappler-optimised, about 10-15% less CPU
    than op-by-op eager in our measurement; Keras' own predict does the same on CPU-only machines).
    Other backends: the eager call.
    """
    if not _is_keras_model(model) or _backend() != "tensorflow":
        return _eager_call(model)
    import tensorflow as tf

    ref = _weak(model)
    spec = tf.TensorSpec([None, None, None, None], tf.float32)
    fn = tf.function(lambda x: ref()(x, training=False), input_signature=[spec], jit_compile=False)
    return lambda x: fn(x).numpy()


def _jit_call(model, traces=None):
    """Callable numpy -> numpy through an XLA-compiled function (compiled once per input shape).

    Weights are read at call time (TF captures variables, JAX gets them as arguments), so the compiled
    function stays valid while training updates the model. `traces` (a list) records each traced shape.
    """
    backend = _backend()
    if not _is_keras_model(model) or backend not in ("tensorflow", "jax"):
        return _eager_call(model)  # torch/numpy: eager (torch.compile is slower to warm up than it saves here)
    traces = [] if traces is None else traces
    ref = _weak(model)
    if backend == "tensorflow":
        import tensorflow as tf

        def traced(x):
            traces.append(tuple(x.shape))
            return ref()(x, training=False)

        fn = tf.function(traced, jit_compile=True, reduce_retracing=False)
        return lambda x: fn(x).numpy()
    import jax

    def stateless(trainable, non_trainable, x):
        traces.append(tuple(x.shape))  # runs once per new shape (a trace, i.e. a compilation)
        return ref().stateless_call(trainable, non_trainable, x, training=False)[0]

    fn = jax.jit(stateless)

    def call(x):
        m = ref()
        tv = [v.value for v in m.trainable_variables]
        ntv = [v.value for v in m.non_trainable_variables]
        return np.asarray(fn(tv, ntv, x))

    return call


_ACCELERATOR = []


def has_accelerator():
    """True when Keras sees a GPU/TPU (cached). On CPU, XLA was slower than eager even when warm."""
    if not _ACCELERATOR:
        try:
            import keras

            devices = keras.distribution.list_devices()
        except Exception:  # backends without the distribution API (torch on CPU)
            devices = []
        _ACCELERATOR.append(any(not str(d).lower().startswith("cpu") for d in devices))
    return _ACCELERATOR[0]


def _predictor(model, jit):
    kind, make = ("jit", _jit_call) if jit else ("graph", _graph_call)
    cache = _cache(model)
    if kind not in cache:
        cache[kind] = make(model, cache.setdefault("traces", [])) if jit else make(model)
    return cache[kind]


def trace_count(model):
    """How many times the model's compiled inference function was traced (compiled), for tests/benchmarks."""
    return len(_cache(model).get("traces", []))


def resolve_scale(model, scale=None):
    """The model's upscaling factor: `scale` if given, else model.model_scale, else a probe (cached)."""
    if scale is not None:
        return int(scale)
    cache = _cache(model)
    if "scale" not in cache:
        try:
            from model import model_scale

            cache["scale"] = int(model_scale(model))
        except (ImportError, AttributeError, ValueError, KeyError):
            probe = _eager_call(model)(np.zeros((1, 8, 8, 3), np.float32))
            cache["scale"] = int(probe.shape[1] // 8)
    return cache["scale"]


# ---------------------------------------------------------------------------------------- receptive field
def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _resample_factor(layer):
    """How a layer changes the resolution: (factor, is_conv). Upsampling > 1, pixel-unshuffle/strides < 1."""
    name = type(layer).__name__.lower()
    for attr in ("scale", "size", "block_size", "upscale_factor", "factor"):
        value = getattr(layer, attr, None)
        if isinstance(value, (int, tuple, list)) and not isinstance(value, bool):
            f = _pair(value)[0]
            if "unshuffle" in name or "spacetodepth" in name or "space_to_depth" in name:
                return 1.0 / f
            if "shuffle" in name or "upsampl" in name or "depthtospace" in name or "depth_to_space" in name:
                return float(f)
    if "transpose" in name and getattr(layer, "strides", None) is not None:
        return float(_pair(layer.strides)[0])
    strides = getattr(layer, "strides", None) if getattr(layer, "kernel_size", None) is not None else None
    if strides is not None and _pair(strides)[0] > 1:
        return 1.0 / _pair(strides)[0]
    if "pool" in name and getattr(layer, "pool_size", None) is not None:
        return 1.0 / _pair(layer.strides or layer.pool_size)[0]
    return 1.0


def _sublayers(model):
    try:
        return [l for l in model._flatten_layers(include_self=False, recursive=True) if not getattr(l, "layers", None)]
    except AttributeError:
        return list(getattr(model, "layers", []))


def receptive_radius(model):
    """An upper bound on the receptive-field radius of an SR model, in LR pixels (cached).

    Sum over all conv-like layers (anything with a `kernel_size`, or a `pool_size`) of
    (k - 1) / 2 * dilation, converted to LR pixels by the resolution the layers before it produced
    (upsampling, pixel (un)shuffle and strides, taken in layer order). Every path through the network
    crosses each conv at most once, so the sum bounds the longest path; it is the exact radius of a
    plain chain (EDSR: 36 LR px for 16 blocks; RRDBNet 23 blocks: about 350).
    """
    cache = _cache(model)
    if "radius" in cache:
        return cache["radius"]
    radius, factor = 0.0, 1.0
    if _is_keras_model(model):
        for layer in _sublayers(model):
            kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
            if kernel is not None:
                k, d = _pair(kernel)[0], _pair(getattr(layer, "dilation_rate", 1) or 1)[0]
                radius += (k - 1) / 2 * d / factor
            factor *= _resample_factor(layer)
    else:
        radius = float("inf")  # unknown callable: never pad
    cache["radius"] = radius
    return radius


# ----------------------------------------------------------------------------------- bucketed full image
def _bucket_size(n, bucket, margin, min_factor=4):
    """Padded size of one axis: a multiple of `bucket`, or n itself where padding would not pay.

    A padded axis needs a strip of 2*margin recomputed at its far edge. On a CPU, below 4*margin that strip
    would be half the image or more (more compute than a compile saves), so such axes keep their exact size;
    on a GPU/TPU, where compiling costs far more than computing, every axis that holds the strip (n >= 2*margin)
    is bucketed (`min_factor` 2).
    """
    if not bucket or n % bucket == 0 or n < min_factor * margin:
        return n
    return -(-n // bucket) * bucket


def _pad_to(img, height, width):
    """Reflect-pad an HxWxC image at the bottom/right up to height x width (bucketed full images)."""
    ph, pw = height - img.shape[0], width - img.shape[1]
    if ph <= 0 and pw <= 0:
        return img
    mode = "reflect" if min(img.shape[:2]) > 1 else "edge"
    return np.pad(img, ((0, max(ph, 0)), (0, max(pw, 0)), (0, 0)), mode=mode)


def _run_bucketed(predict, img, scale, bucket, margin):
    """The full-image output of `img` from calls on bucket-sized inputs only; equal to the unpadded run.

    Main pass: the image padded at the bottom/right to (Hb, Wb); its output is exact more than `margin`
    LR pixels (>= the receptive radius) from a padded edge. The bottom strip (the last `margin` rows),
    the right strip and the corner are taken from second runs on crops of 2*margin rows/columns that end
    at the real image edge, padded along the other axis only: shapes (2m, Wb), (Hb, 2m), (2m, 2m).
    """
    h, w = img.shape[:2]
    factor = 2 if has_accelerator() else 4
    hb, wb = _bucket_size(h, bucket, margin, factor), _bucket_size(w, bucket, margin, factor)
    if (hb, wb) == (h, w):
        return np.asarray(predict(img[None]), np.float32)[0]
    m, s = margin, scale
    ye = h - m if hb > h else h  # main pass rows [0, ye) and columns [0, xe) are exact
    xe = w - m if wb > w else w
    main = np.asarray(predict(_pad_to(img, hb, wb)[None]), np.float32)[0]
    out = np.empty((h * s, w * s, main.shape[-1]), np.float32)
    out[: ye * s, : xe * s] = main[: ye * s, : xe * s]
    if hb > h:  # bottom strip: input rows [h-2m, h), real bottom edge, width padded
        band = np.asarray(predict(_pad_to(img[h - 2 * m :], 2 * m, wb)[None]), np.float32)[0]
        out[ye * s :, : xe * s] = band[m * s :, : xe * s]
    if wb > w:  # right strip
        band = np.asarray(predict(_pad_to(img[:, w - 2 * m :], hb, 2 * m)[None]), np.float32)[0]
        out[: ye * s, xe * s :] = band[: ye * s, m * s :]
    if hb > h and wb > w:  # bottom-right corner: both real edges
        corner = np.asarray(predict(np.ascontiguousarray(img[h - 2 * m :, w - 2 * m :])[None]), np.float32)[0]
        out[ye * s :, xe * s :] = corner[m * s :, m * s :]
    return out


# ---------------------------------------------------------------------------------------------- tiling
def _axis_plan(size, tile, overlap):
    """The minimal tiles along one axis: (length t, [(start, lo, hi)]), [lo, hi) the output core a tile owns.

    One tile when the axis fits (a tile at least as large as the image is the image). Otherwise the fewest
    tiles k of one length t <= tile such that neighbours share at least 2 * overlap pixels: the extra work
    is 2 * overlap * (k - 1) pixels, the least any plan with that context can do (t = ceil((size + 2 *
    overlap * (k - 1)) / k), starts spread evenly). A core boundary sits mid-way in the shared strip, so
    every core has `overlap` pixels of real context on each side or touches the image border, where the tile
    edge is the image edge exactly as in a full-image run.
    """
    if size <= tile:
        return size, [(0, 0, size)]
    k = -(-(size - 2 * overlap) // (tile - 2 * overlap))
    t = -(-(size + 2 * overlap * (k - 1)) // k)
    starts = [round(i * (size - t) / (k - 1)) for i in range(k)]
    bounds = [0] + [(starts[i + 1] + starts[i] + t) // 2 for i in range(k - 1)] + [size]
    return t, [(s, bounds[i], bounds[i + 1]) for i, s in enumerate(starts)]


def tile_plan(height, width, tile, overlap):
    """Tile shape (th, tw) and tiles [((ys, ylo, yhi), (xs, xlo, xhi))] of an image: see `_axis_plan`."""
    th, rows = _axis_plan(height, tile, overlap)
    tw, cols = _axis_plan(width, tile, overlap)
    return (th, tw), [(r, c) for r in rows for c in cols]


def tile_cost(height, width, tile, overlap):
    """Pixels the network computes for a tiled image / the image's pixels (1.0: nothing computed twice)."""
    (th, tw), jobs = tile_plan(height, width, tile, overlap)
    return len(jobs) * th * tw / (height * width)


def _run_tiled(predict, img, scale, tile, overlap, tile_batch, fixed_batch=True):
    """THE tile routine: the minimal plan's tiles through `predict` in batches, cores stitched at x`scale`.

    Every tile of an image has one shape, so a compiled predictor traces once per image size. Compiled
    (fixed_batch): every call has the same batch size, the fewest calls of at most `tile_batch` tiles, the
    last one zero-filled; eager: only the real tiles.
    """
    h, w = img.shape[:2]
    (th, tw), jobs = tile_plan(h, w, tile, overlap)
    calls = -(-len(jobs) // max(1, int(tile_batch)))
    size = -(-len(jobs) // calls)
    out = None
    for b in range(0, len(jobs), size):
        chunk = jobs[b : b + size]
        batch = np.zeros((size if fixed_batch else len(chunk), th, tw, img.shape[2]), np.float32)
        for i, ((ys, _, _), (xs, _, _)) in enumerate(chunk):
            batch[i] = img[ys : ys + th, xs : xs + tw]
        pred = np.asarray(predict(batch), np.float32)
        if out is None:
            out = np.empty((h * scale, w * scale, pred.shape[-1]), np.float32)
        for i, ((ys, ylo, yhi), (xs, xlo, xhi)) in enumerate(chunk):
            out[ylo * scale : yhi * scale, xlo * scale : xhi * scale] = pred[
                i, (ylo - ys) * scale : (yhi - ys) * scale, (xlo - xs) * scale : (xhi - xs) * scale
            ]
    return out


# ------------------------------------------------------------------------------------- self-ensemble
def _transform(img, k, flip):
    """Geometric transform k of EDSR's x8 ensemble: rotate by k*90 degrees, then optionally flip."""
    img = np.rot90(img, k, axes=(0, 1))
    return img[:, ::-1] if flip else img


def _inverse(img, k, flip):
    img = img[:, ::-1] if flip else img
    return np.rot90(img, -k, axes=(0, 1))


TRANSFORMS = [(k, flip) for flip in (False, True) for k in range(4)]


def combine_ensemble(outputs, loss_mode="l2"):
    """Average x8 ensemble outputs (each sHxsWxC, already inverted). 3 channels: plain mean.

    6 channels (mean RGB, log-variance s): law of total variance in grey levels^2,
    var = mean_k(sigma_k^2) + var_k(mu_k), sigma_k from s_k by `losses.sigma_from_logvar` (L2 mode:
    sigma^2 = 127.5^2 exp(s)); the result is converted back to s with `losses.logvar_from_sigma`.
    """
    # streamed (outputs may be a generator): one running sum per moment instead of 8 full-size copies
    n, total, total_sq, total_var = 0, 0.0, 0.0, 0.0
    for out in outputs:
        out = np.asarray(out, np.float64)
        n += 1
        total = total + out[..., :3]
        if out.shape[-1] == 6:
            total_sq = total_sq + out[..., :3] ** 2
            total_var = total_var + logvar_to_std(out[..., 3:], loss_mode).astype(np.float64) ** 2
    mean = total / n
    if out.shape[-1] == 3:
        return mean.astype(np.float32)
    var = total_var / n + np.maximum(total_sq / n - mean**2, 0.0)
    s = _std_to_logvar(np.sqrt(np.maximum(var, 1e-300)), loss_mode)
    return np.concatenate([mean, s], axis=-1).astype(np.float32)


# ------------------------------------------------------------------------------------------ public API
def bucket_margin(model):
    """LR pixels recomputed at a padded edge: the receptive radius rounded up, plus one for the HR rounding."""
    r = receptive_radius(model)
    return None if not math.isfinite(r) else int(math.ceil(r)) + 1


# Tile overlap for nets whose receptive-field bound is larger (RRDBNet: 348 LR px). Measured on Real-ESRGAN
# x4plus (docs/demo.md): an edge 64 LR px away changes the output by at most 0.24 grey levels (32 px: 3.4,
# 16 px: 24; Real-ESRGAN's own tile_pad of 10 leaves seams of tens of grey levels).
TILE_OVERLAP_CAP = 64


def check_tile_options(tile=None, tile_overlap=None, tile_batch=None):
    """UserError naming the option when --tile / --tile-overlap / --tile-batch cannot work (bench and demo)."""
    if tile is not None and tile < 1:
        raise UserError(f"--tile {tile} must be a positive tile size in LR pixels, e.g. --tile 256")
    if tile_overlap is not None and tile_overlap < 0:
        raise UserError(f"--tile-overlap {tile_overlap} is negative; give LR pixels of context (>= 0)")
    if tile is not None and tile_overlap is not None and tile <= 2 * tile_overlap:
        raise UserError(f"--tile ({tile}) must be larger than twice --tile-overlap ({tile_overlap})")
    if tile_batch is not None and tile_batch < 1:
        raise UserError(f"--tile-batch must be 1 or more (got {tile_batch})")


def default_tile_overlap(model):
    """Tile overlap covering the model's receptive field (`bucket_margin`), capped at TILE_OVERLAP_CAP."""
    margin = bucket_margin(model)
    return TILE_OVERLAP_CAP if margin is None else min(margin, TILE_OVERLAP_CAP)


def tile_overlap_for(model, tile, overlap=None):
    """The overlap a tile of `tile` LR pixels runs with: `overlap` as given, else the model's default.

    A given overlap must leave a core (tile > 2 * overlap; UserError otherwise). The default is cut to
    tile // 4 where the tile is too small for it (at least half of each tile is then core, so a tiled image
    costs at most about 4x its pixels), with a one-line warning, once per model and tile size: the output
    then differs from the untiled one near tile edges.
    """
    tile = int(tile)
    if tile < 1:
        raise UserError(f"tile {tile} must be a positive number of LR pixels, e.g. 256")
    if overlap is not None:
        overlap = int(overlap)
        if overlap < 0 or tile <= 2 * overlap:
            raise UserError(f"tile ({tile}) must be larger than twice the tile overlap ({overlap})")
        return overlap
    needed = default_tile_overlap(model)
    if 4 * needed <= tile:
        return needed
    fitted = tile // 4
    warned = _cache(model).setdefault("warned_tiles", set())
    if tile not in warned:
        warned.add(tile)
        warn(f"tile {tile} leaves room for {fitted} LR px of overlap, less than the {needed} this model's receptive "
             f"field needs: expect seams at tile edges (differences from the untiled output that may exceed 1 grey "
             f"level: 35 for Real-ESRGAN x4plus at tile 84); use tile {4 * needed} or more for a seamless result")
    return fitted


def super_resolve(model, lr, tile=None, tile_overlap=None, self_ensemble=False, jit="auto", scale=None,
                  tile_batch=4, loss_mode="l2", bucket=DEFAULT_BUCKET):
    """Super-resolve one image. Returns float32 (s*H, s*W, C) in pixel units, not rounded.

    model: keras model (or callable NHWC float32 -> NHWC) with output C = 3, or 6 for a log-variance model.
    lr: uint8 or float HxWx3 (or HxW grey) in pixel units [0, 255].
    tile: process in tiles of at most N x N LR pixels (`tile_plan`: the fewest tiles, all of one shape, none
      larger than the image), `tile_batch` per call; equals the full-image output where the overlap covers
      the receptive field. tile_overlap: LR pixels of context each tile core gets from its neighbours;
      None: the model's receptive field (`tile_overlap_for`).
    self_ensemble: EDSR's x8 geometric ensemble (rotations x flip, inverted and averaged; log-variance
      outputs combined by the law of total variance, see `combine_ensemble`).
    jit: "auto" (JAX: XLA, full images on bucket shapes; TensorFlow: XLA for tiles on a GPU/TPU, otherwise
      one shape-generic graph; PyTorch: eager), True (XLA where the backend has it) or False
      (TF: the shape-generic graph; other backends: eager).
    scale: the upscaling factor; default read from the model (`model.model_scale`, cached).
    tile_batch: at most this many tiles per model call (compiled: the last call zero-filled to the same size).
    loss_mode: the log-variance convention ("l2" Gaussian / "l1" Laplace) used to combine the ensemble.
    bucket: with XLA on full images, round H and W up to a multiple of this (exact output, see
      `_run_bucketed`), so a set of images compiles once per bucket; None or 0: one compile per shape.
    """
    lr = np.asarray(lr)
    if lr.ndim == 2:
        lr = np.stack([lr] * 3, axis=-1)
    if lr.ndim != 3 or lr.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {lr.shape}")
    lr = lr.astype(np.float32)
    scale = resolve_scale(model, scale)
    if tile is not None:
        tile = int(tile)
        tile_overlap = tile_overlap_for(model, tile, tile_overlap)
    if jit == "auto":
        backend = _backend() if _is_keras_model(model) else None
        jit = backend == "jax" or (tile is not None and has_accelerator())
    predict = _predictor(model, bool(jit))
    margin = bucket_margin(model) if jit and tile is None and bucket else None

    def run(img):
        img = np.ascontiguousarray(img)
        if tile is not None:
            return _run_tiled(predict, img, scale, tile, tile_overlap, tile_batch, fixed_batch=bool(jit))
        if margin is not None:
            return _run_bucketed(predict, img, scale, int(bucket), margin)
        return np.asarray(predict(img[None]), np.float32)[0]

    if not self_ensemble:
        return run(lr)
    return combine_ensemble((_inverse(run(_transform(lr, k, f)), k, f) for k, f in TRANSFORMS), loss_mode)


def logvar_to_std(logvar, loss_mode="l2"):
    """Per-pixel standard deviation in grey levels from the log-variance s (L2: 127.5*exp(s/2)).

    Delegates to `losses.sigma_from_logvar`, which owns the unit convention (and clips s to [-10, 10]).
    """
    try:
        from losses import sigma_from_logvar
    except ImportError:  # keep inference usable without the GRAM module
        return (LOGVAR_UNIT * np.exp(np.clip(np.asarray(logvar, np.float64), -10, 10) / 2)).astype(np.float32)
    return np.asarray(sigma_from_logvar(logvar, loss_mode), np.float32)


def _std_to_logvar(std, loss_mode="l2"):
    try:
        from losses import logvar_from_sigma
    except ImportError:
        return 2 * np.log(std / LOGVAR_UNIT)
    return np.asarray(logvar_from_sigma(std, loss_mode), np.float64)
