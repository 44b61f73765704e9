"""THE scorer: super-resolve, round to 8 bits, crop, score with the metrics registry (bench.py and validation).

`score_one` is the one scoring step: a predictor's output for one LR image, rounded to 8 bits
(`metrics.quantize`), the HR cropped to it ("modcrop"), and each requested metric of `metrics.registry` called
with the border `shave`. `evaluate` runs it over (stem, lr, hr) pairs, where lr and hr are image paths (as
`data.open_pairs` returns them) or uint8 arrays already in memory; the row holds the mean over images of each
per-image number, as papers report. Training validation (`training.trainer.Validation`) calls `score_one` too.

`evaluate_images` is the no-reference counterpart: images without ground truth (real photographs, or the HR
images of a test set in the A-ESRGAN protocol) are super-resolved and scored by no-reference metrics (NIQE).
Metrics are named as in `metrics.registry`; `metric_options` maps a metric name to its keyword options.
"""
import inspect
import os

import numpy as np

import metrics as metrics_lib  # `evaluate` has a parameter named metrics
from evaluation import inference
from imaging.files import check_pair
from utils import UserError, warn

BICUBIC = "bicubic"
AS_IS = "as-is"  # evaluate_images without super-resolution: the images themselves are scored
FIDELITY = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")  # the default set with a reference


def bicubic_upscale(lr, scale):
    """The bicubic baseline: MATLAB-exact bicubic upscaling of a uint8 LR image (grey stays grey).

    uint8 arithmetic, rounded after each axis as MATLAB's imresize of a uint8 image: the PSNR tables' bicubic.
    """
    import imaging

    return imaging.imresize(np.asarray(lr), scale=scale)


def bicubic_upscale_float(img, scale):
    """MATLAB bicubic of the image as float, rounded once at the end: the A-ESRGAN NIQE tables' bicubic.

    (BasicSR's imresize works in float; on Set5 HR x4 this gives NIQE 7.8524 as the paper, the uint8 path 7.7258.)
    """
    import imaging

    return metrics_lib.quantize(imaging.imresize(np.asarray(img, dtype=np.float64), scale=scale))


def check_metrics(names, reference=True):
    """Registered Metric objects for `names`; UserError for unknown ones or reference metrics without reference."""
    from metrics import registry

    found = [registry.get_metric(n) for n in names]
    if not reference:
        needing = [m.name for m in found if m.needs_reference]
        if needing:
            raise UserError(f"metric(s) {', '.join(needing)} need a ground-truth image, which this input has not; "
                            f"use no-reference metrics here ({', '.join(no_reference_metrics())})")
    return found


def no_reference_metrics():
    from metrics import registry

    return [n for n in registry.metric_names() if not registry.get_metric(n).needs_reference]


def score_one(predict, lr, hr, scale, names, shave, metric_options=None, stem="", model_name=""):
    """THE scoring step: `predict(lr)` (float, C = 3 or 6) rounded to 8 bits and scored against `hr`.

    hr: the uint8 ground truth, cropped here to the output size (HR sizes not divisible by the scale lose
    their last rows/columns), or None for no-reference metrics. names: registered metrics, each called as
    `fn(sr, hr, shave=shave, **metric_options[name])`; an error of a metric names the image (`stem`).
    Returns (sr float output, quantized uint8 SR, cropped hr, {name: value}).
    """
    sr = np.asarray(predict(lr))
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if sr.shape[0] != h or sr.shape[1] != w:
        raise UserError(f"{model_name}: output {sr.shape[1]}x{sr.shape[0]} for a {lr.shape[1]}x{lr.shape[0]} "
                        f"input is not x{scale}; is it a model of another scale?")
    quantized = metrics_lib.quantize(sr[..., :3] if sr.ndim == 3 else sr)
    hr = None if hr is None else hr[:h, :w]
    values = {}
    for name in names:
        try:
            values[name] = float(metrics_lib.get_metric(name).fn(quantized, hr, shave=shave,
                                                                 **(metric_options or {}).get(name, {})))
        except UserError as e:
            raise UserError(f"{stem}: {e}") from None
    return sr, quantized, hr, values


def _load(item, keep_grey=True):
    """A pair element as a uint8 array: read paths with THE image reader, pass arrays through."""
    if isinstance(item, np.ndarray):
        return item
    import imaging

    return imaging.read_image(item, keep_grey=keep_grey)


def _item_name(item, stem):
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else stem


def _add_options(row, names, metric_options):
    """Record the options each metric ran with, e.g. row["metric_options"] = {"niqe": {"convert": "y", "crop": 0}}."""
    from metrics import registry

    opts = {}
    for n in names:
        m = registry.get_metric(n)
        if m.options:
            given = (metric_options or {}).get(n, {})
            defaults = {k: p.default for k, p in inspect.signature(m.fn).parameters.items() if k in m.options}
            opts[n] = {k: given.get(k, defaults.get(k)) for k in m.options}
    if opts:
        row["metric_options"] = opts


def _model_name(model):
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    name = getattr(model, "source_path", None) or getattr(model, "name", None)
    return name or getattr(model, "__name__", None) or repr(model)


def predictor(model, scale, self_ensemble=False, tile=None, tile_overlap=None, loss_mode="l2",
              bicubic=bicubic_upscale):
    """lr uint8 -> float32 sHxsWxC (C = 3 or 6) for a keras model, a callable, or "bicubic" (`bicubic(lr, scale)`).

    Models go through `inference.super_resolve` (full image, or THE tile routine when `tile` is given)."""
    if isinstance(model, str) and model == BICUBIC:
        if self_ensemble:
            raise UserError("--self-ensemble does not apply to the bicubic baseline")
        return lambda lr: bicubic(lr, scale)
    import keras

    if isinstance(model, keras.Model) or callable(model):
        def predict(lr):
            return inference.super_resolve(model, lr, tile=tile, tile_overlap=tile_overlap, loss_mode=loss_mode,
                                           self_ensemble=self_ensemble, scale=scale)

        return predict
    raise TypeError(f"cannot evaluate {model!r}: pass a keras model, a callable or 'bicubic'")


# Pixel-pool the uncertainty metrics over the whole set while it fits in this many values; beyond that
# (full DIV2K images) they are computed per image and averaged.
POOL_LIMIT = 30_000_000


def _uncertainty(hrs, means, logvars, shave, loss_mode="l2"):
    """uncertainty.metrics over lists of images, or None when the module is not available."""
    try:
        from metrics import uncertainty
    except ImportError:
        return None
    values = uncertainty.metrics(hrs, means, logvars, loss_mode=loss_mode, shave=shave)
    return {k: float(v) for k, v in values.items()}


def _uncertainty_plots(pooled, shave, loss_mode, plots_dir, row):
    """Sparsification and calibration PNGs of the pooled images (all of a set that fits in POOL_LIMIT)."""
    from metrics import uncertainty

    c = uncertainty.curves(*map(list, zip(*pooled)), loss_mode=loss_mode, shave=shave)
    label = os.path.splitext(os.path.basename(str(row["model"])))[0]
    stem = os.path.join(plots_dir, f"{label}_{row['dataset'] or 'data'}_x{row['scale']}")
    title = f"{label}, {row['dataset'] or ''} x{row['scale']}"
    uncertainty.plot_sparsification(c, f"{stem}_sparsification.png", title=f"Sparsification: {title}")
    uncertainty.plot_calibration(c, f"{stem}_calibration.png", title=f"Calibration: {title}")
    return [f"{stem}_sparsification.png", f"{stem}_calibration.png"]


def _progress(items, progress, label, dataset, scale):
    """`items` (a non-empty list), wrapped in a progress bar when asked; UserError when empty."""
    if not items:
        raise UserError(f"no images to evaluate{' in ' + str(dataset) if dataset else ''}")
    if not progress:
        return items
    from tqdm import tqdm

    label = os.path.basename(str(label))
    return tqdm(items, desc=f"{label} {dataset or ''} x{scale}".strip(), unit="img", leave=False, dynamic_ncols=True)


def evaluate(model, pairs, scale, shave=None, self_ensemble=False, tile=None, tile_overlap=None, progress=True,
             dataset=None, name=None, loss_mode=None, plots_dir=None, metrics=None, metric_options=None):
    """Evaluate `model` on `pairs` at `scale`; returns one result row (a JSON-able dict).

    model: a keras model, a callable NHWC float32 -> NHWC, or the string "bicubic" (baseline; no model).
    pairs: list of (stem, lr, hr) with paths or uint8 arrays; lr may be None (made from HR by MATLAB bicubic).
    shave: border pixels cut before scoring; None -> scale (the benchmark-set convention). Use shave=0 and
      row["psnr_rgb"] for the seed's DIV2K number.
    Row keys: model, dataset, scale, psnr_y, ssim_y, psnr_rgb, ssim_rgb, shave, self_ensemble, tile,
    num_images, per_image {stem: {psnr_y, ssim_y, psnr_rgb, ssim_rgb}}; for a log-variance model also
    uncertainty (uncertainty.metrics of the unquantised mean, pixel-pooled over the set when it is small,
    else averaged over images; see uncertainty_pooling), when that module is available.
    loss_mode: how a log-variance output is read ("l2" Gaussian, "l1" Laplace; losses.sigma_from_logvar);
      None -> from the model's compiled loss, else "l2".
    plots_dir: for a log-variance model, write its sparsification and calibration curves there as PNGs
      (`<model>_<dataset>_x<s>_sparsification.png`, `..._calibration.png`); their paths go to row["plots"].
    metrics: registered metric names to report (default FIDELITY, the four above); no-reference ones such as
      "niqe" are scored on the SR image alone. metric_options: {name: {option: value}}, e.g.
      {"niqe": {"convert": "gray", "crop": 0}}.
    An LR image whose size is not HR // scale (a resized or mismatched file) is a UserError naming it.
    """
    scale = int(scale)
    names = list(metrics) if metrics is not None else list(FIDELITY)
    check_metrics(names)
    shave = scale if shave is None else int(shave)
    if loss_mode is None:  # the log-variance convention: from a compiled checkpoint's loss, else Gaussian (l2)
        import losses

        loss_mode = losses.checkpoint_loss_mode(model)
    predict = predictor(model, scale, self_ensemble, tile, tile_overlap, loss_mode)
    pairs = list(pairs)
    iterator = _progress(pairs, progress, name or _model_name(model), dataset, scale)
    per_image, uncert, pooled, pooled_size = {}, [], [], 0
    for stem, lr_item, hr_item in iterator:
        lr = lr_item
        hr = _load(hr_item, keep_grey=True)
        if lr is None:
            import imaging

            h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
            lr = imaging.imresize(hr[:h, :w], scale=1.0 / scale)
        else:
            lr = _load(lr, keep_grey=True)
        check_pair(lr.shape, hr.shape, scale, _item_name(lr_item, stem), _item_name(hr_item, stem))
        if hr.ndim == 3 and lr.ndim == 2:
            lr = np.stack([lr] * 3, axis=-1)
        # Models take RGB; a grey LR (grey HR) goes in as three equal channels, and comes out scored on grey.
        sr, _, hr, per_image[stem] = score_one(predict, lr, hr, scale, names, shave, metric_options, stem,
                                               _model_name(model))
        mean = sr[..., :3] if sr.ndim == 3 else sr
        if sr.ndim == 3 and sr.shape[-1] == 6:
            hr3 = hr if hr.ndim == 3 else np.stack([hr] * 3, axis=-1)
            u = _uncertainty([hr3], [mean], [sr[..., 3:]], shave, loss_mode)
            if u is not None:
                uncert.append(u)
                per_image[stem]["uncertainty"] = u
                pooled_size += mean.size
                pooled = pooled + [(hr3, mean, sr[..., 3:])] if pooled_size <= POOL_LIMIT else []
    row = {"model": name or _model_name(model), "dataset": dataset, "scale": scale}
    for key in names:
        row[key] = float(np.mean([v[key] for v in per_image.values()]))
    row.update({"shave": shave, "self_ensemble": bool(self_ensemble), "tile": tile,
                "num_images": len(per_image), "metrics": names})
    _add_options(row, names, metric_options)
    if uncert:
        if pooled_size <= POOL_LIMIT:
            row["uncertainty"] = _uncertainty(*map(list, zip(*pooled)), shave, loss_mode)
            row["uncertainty_pooling"] = "pixels of all images"
        else:
            row["uncertainty"] = {k: float(np.nanmean([u[k] for u in uncert])) for k in uncert[0]}
            row["uncertainty_pooling"] = "mean over images"
        if plots_dir and pooled:
            row["plots"] = _uncertainty_plots(pooled, shave, loss_mode, plots_dir, row)
        elif plots_dir:
            warn(f"{row['dataset']}: too many pixels to pool for uncertainty plots; none written")
    row["per_image"] = per_image
    return row


def evaluate_images(model, images, scale, metrics=("niqe",), metric_options=None, self_ensemble=False, tile=None,
                    tile_overlap=None, progress=True, dataset=None, name=None, input_kind="images"):
    """No-reference evaluation: super-resolve each image x`scale` and score the result; one result row.

    model: a keras model, a callable, "bicubic" (MATLAB bicubic in float, rounded once: the A-ESRGAN tables'
      baseline, see bicubic_upscale_float) or "as-is" (no super-resolution: the images themselves are scored).
    images: list of (stem, path or uint8 array), e.g. the HR images of a test set (A-ESRGAN protocol: x4 applied
      to the original images) or any folder of photographs.
    metrics: registered no-reference metric names; metric_options as for `evaluate`.
    Row keys: model, dataset, scale, <metric>..., self_ensemble, tile, num_images, input, metrics,
    metric_options, per_image {stem: {metric: value, "size": [w, h] of the scored image}}.
    """
    names = list(metrics)
    check_metrics(names, reference=False)
    scale = 1 if isinstance(model, str) and model == AS_IS else int(scale)
    if isinstance(model, str) and model == AS_IS:
        def predict(img):
            return img
    else:
        import losses

        loss_mode = "l2" if isinstance(model, str) and model == BICUBIC else losses.checkpoint_loss_mode(model)
        predict = predictor(model, scale, self_ensemble, tile, tile_overlap, loss_mode,
                                bicubic=bicubic_upscale_float)
    images = list(images)
    iterator = _progress(images, progress, name or _model_name(model), dataset, scale)
    per_image = {}
    for stem, item in iterator:
        img = _load(item, keep_grey=False)  # models take RGB; grey stays grey through 'y' and 'gray' alike
        _, quantized, _, per_image[stem] = score_one(predict, img, None, scale, names, 0, metric_options, stem,
                                                     _model_name(model))
        per_image[stem]["size"] = [int(quantized.shape[1]), int(quantized.shape[0])]
    row = {"model": name or _model_name(model), "dataset": dataset, "scale": scale}
    for key in names:
        row[key] = float(np.mean([v[key] for v in per_image.values()]))
    row.update({"self_ensemble": bool(self_ensemble), "tile": tile, "num_images": len(per_image),
                "input": input_kind, "metrics": names})
    _add_options(row, names, metric_options)
    row["per_image"] = per_image
    return row
