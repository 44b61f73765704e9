"""Inference: full-image or tiled super-resolution with optional x8 geometric self-ensemble.

`super_resolve` is the one routine bench.py, demo.py and train.py's validation call.

Compilation policy (measured on CPU, TF backend, see docs/demo.md):
- full images (`tile=None`) run without XLA by default (TF: one shape-generic graph, traced once; other
  backends: eager): every benchmark image has its own size, and an XLA compile per shape costs about what
  it saves on a single pass;
- compiled tiles (`tile=N`, `jit=True`, the default on a GPU/TPU) always have the shape
  `tile_batch x N x N x 3` (the last batch and small images are padded), so XLA compiles once per model.
"""
import weakref

import numpy as np

# sigma^2 = LOGVAR_UNIT^2 * exp(s) in grey levels^2: the GRAM loss normalises the residual by 127.5.
LOGVAR_UNIT = 127.5

_CACHE = weakref.WeakKeyDictionary()  # model -> {"scale": int, "logvar": bool, "jit": fn}


def _cache(model):
    try:
        return _CACHE.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no caching
        return {}


def _is_keras_model(model):
    import keras

    return isinstance(model, keras.Model)


def _eager_call(model):
    """Callable float32 NHWC numpy -> numpy, running the model op by op (no compilation)."""
    if _is_keras_model(model):
        import keras

        return lambda x: keras.ops.convert_to_numpy(model(x, training=False))
    return lambda x: np.asarray(model(x))


def _graph_call(model):
    """Callable numpy -> numpy without XLA and without a per-shape compile.

    TensorFlow: one shape-generic tf.function graph (traced once; Grappler-optimised, about 10-15% less CPU
    than op-by-op eager in our measurement; Keras' own predict does the same on CPU-only machines).
    Other backends: the eager call.
    """
    import keras

    if not _is_keras_model(model) or keras.backend.backend() != "tensorflow":
        return _eager_call(model)
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, None], tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], jit_compile=False)
    return lambda x: fn(x).numpy()


def _jit_call(model):
    """Callable numpy -> numpy through an XLA-compiled function (compiled once per input shape).

    Weights are read at call time (TF captures variables, JAX gets them as arguments), so the compiled
    function stays valid while training updates the model.
    """
    import keras

    backend = keras.backend.backend()
    if not _is_keras_model(model) or backend not in ("tensorflow", "jax"):
        return _eager_call(model)  # torch/numpy: eager (torch.compile is slower to warm up than it saves here)
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False), jit_compile=True, reduce_retracing=False)
        return lambda x: fn(x).numpy()
    import jax

    def stateless(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    fn = jax.jit(stateless)

    def call(x):
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
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
        cache[kind] = make(model)
    return cache[kind]


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


# ---------------------------------------------------------------------------------------------- tiling
def _tile_starts(size, tile, overlap):
    """Tile starts along one axis and, for each, the [lo, hi) output core it owns (input pixels).

    Cores have stride tile - 2*overlap; a tile starts `overlap` before its core, clamped into the image,
    so every core has at least `overlap` pixels of real context on each side or touches the image
    border (where the tile edge is the image edge, exactly as in the full-image run).
    """
    core = tile - 2 * overlap
    out = []
    for lo in range(0, size, core):
        hi = min(lo + core, size)
        start = min(max(lo - overlap, 0), max(size - tile, 0))
        out.append((start, lo, hi))
    return out


def _pad_to(img, height, width):
    """Reflect-pad an HxWxC image at the bottom/right up to height x width (small images)."""
    ph, pw = height - img.shape[0], width - img.shape[1]
    if ph <= 0 and pw <= 0:
        return img
    mode = "reflect" if min(img.shape[:2]) > 1 else "edge"
    return np.pad(img, ((0, max(ph, 0)), (0, max(pw, 0)), (0, 0)), mode=mode)


def _run_tiled(predict, img, scale, tile, overlap, tile_batch, fixed_batch=True):
    h, w = img.shape[:2]
    padded = _pad_to(img, max(h, tile), max(w, tile))
    rows = _tile_starts(h, tile, overlap)
    cols = _tile_starts(w, tile, overlap)
    jobs = [(r, c) for r in rows for c in cols]
    out = None
    for b in range(0, len(jobs), tile_batch):
        chunk = jobs[b : b + tile_batch]
        # compiled: a fixed batch shape (zero-filled), so XLA compiles once; eager: only the real tiles
        batch = np.zeros((tile_batch if fixed_batch else len(chunk), tile, tile, img.shape[2]), np.float32)
        for i, ((ys, _, _), (xs, _, _)) in enumerate(chunk):
            batch[i] = padded[ys : ys + tile, xs : xs + tile]
        pred = predict(batch)
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
def super_resolve(model, lr, tile=None, tile_overlap=16, self_ensemble=False, jit="auto", scale=None,
                  tile_batch=4, loss_mode="l2"):
    """Super-resolve one image. Returns float32 (s*H, s*W, C) in pixel units, not rounded.

    model: keras model (or callable NHWC float32 -> NHWC) with output C = 3, or 6 for a log-variance model.
    lr: uint8 or float HxWx3 (or HxW grey) in pixel units [0, 255].
    tile: process in N x N tiles (batches of `tile_batch`), each cropped by `tile_overlap` input pixels per
      side; equals the full-image output where the overlap covers the receptive field. Images smaller
      than a tile are reflect-padded (outputs within the receptive field of the padded edge then differ
      slightly from a full-image run).
    self_ensemble: EDSR's x8 geometric ensemble (rotations x flip, inverted and averaged; log-variance
      outputs combined by the law of total variance, see `combine_ensemble`).
    jit: "auto" (XLA for fixed-shape tiles on a GPU/TPU; otherwise no XLA: full images have a new shape
      each, and on CPU a shape-generic TF graph costs least overall), True (XLA) or False (TF: one
      shape-generic graph; other backends: eager).
    scale: the upscaling factor; default read from the model (`model.model_scale`, cached).
    tile_batch: tiles per model call (fixed, the last batch is zero-filled).
    loss_mode: the log-variance convention ("l2" Gaussian / "l1" Laplace) used to combine the ensemble.
    """
    lr = np.asarray(lr)
    if lr.ndim == 2:
        lr = np.stack([lr] * 3, axis=-1)
    if lr.ndim != 3 or lr.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {lr.shape}")
    lr = lr.astype(np.float32)
    scale = resolve_scale(model, scale)
    if tile is not None:
        tile, tile_overlap = int(tile), int(tile_overlap)
        if tile_overlap < 0 or tile <= 2 * tile_overlap:
            from utils import UserError

            raise UserError(f"tile ({tile}) must be larger than twice the tile overlap ({tile_overlap})")
    if jit == "auto":
        jit = tile is not None and has_accelerator()
    predict = _predictor(model, bool(jit))

    def run(img):
        img = np.ascontiguousarray(img)
        if tile is None:
            return np.asarray(predict(img[None]), np.float32)[0]
        return _run_tiled(predict, img, scale, tile, tile_overlap, tile_batch, fixed_batch=bool(jit))

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
