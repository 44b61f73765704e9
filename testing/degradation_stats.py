"""LQ statistics of the degradation pipeline against the reference (realesrgan 0.3.0 / basicsr 1.4.2) on the same GT.

Shared by benchmarks/degradation_stats.py and tests/test_degradation_stats.py.

Per (GT, LQ) pair: the Laplacian-variance ratio var(lap(Y(LQ))) / var(lap(Y(GT downscaled to the LQ size,
MATLAB bicubic))) (sharpness kept) and the chroma share of the high-frequency residual LQ - Gaussian(LQ, sigma 1):
(sum Cb^2 + sum Cr^2) / (sum Y^2 + sum Cb^2 + sum Cr^2) of the residual in JPEG YCbCr (colour noise / artefacts).

The reference LQ comes from the reference code itself: RealESRGANDataset.__getitem__ (its kernels, flip,
pad / crop) then RealESRGANModel.feed_data on the CPU, one sample per batch (the pool is skipped: it reorders
pairs, it does not change them).
"""
import os
import tempfile

import numpy as np

# options/train_realesrgan_x4plus.yml (realesrgan 0.3.0): dataset and degradation settings, written out here so
# that the reference is configured independently of degradations.REALESRGAN
REFERENCE_OPT = {
    "scale": 4, "gt_size": 256, "queue_size": 180,
    "resize_prob": [0.2, 0.7, 0.1], "resize_range": [0.15, 1.5], "gaussian_noise_prob": 0.5,
    "noise_range": [1, 30], "poisson_scale_range": [0.05, 3], "gray_noise_prob": 0.4, "jpeg_range": [30, 95],
    "second_blur_prob": 0.8, "resize_prob2": [0.3, 0.4, 0.3], "resize_range2": [0.3, 1.2],
    "gaussian_noise_prob2": 0.5, "noise_range2": [1, 25], "poisson_scale_range2": [0.05, 2.5],
    "gray_noise_prob2": 0.4, "jpeg_range2": [30, 95],
}
REFERENCE_DATASET_OPT = {
    "use_hflip": True, "use_rot": False, "blur_kernel_size": 21,
    "kernel_list": ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"],
    "kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], "sinc_prob": 0.1, "blur_sigma": [0.2, 3],
    "betag_range": [0.5, 4], "betap_range": [1, 2],
    "blur_kernel_size2": 21,
    "kernel_list2": ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"],
    "kernel_prob2": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], "sinc_prob2": 0.1, "blur_sigma2": [0.2, 1.5],
    "betag_range2": [0.5, 4], "betap_range2": [1, 2], "final_sinc_prob": 0.8,
}


def gt_crops(folders, size=400, seed=0, limit=None):
    """One random size x size crop per image (the whole side where the image is smaller: both pipelines pad it)."""
    import imaging
    from imaging.files import list_images

    rng = np.random.default_rng(seed)
    crops = []
    for folder in folders:
        for _, path in sorted(list_images(folder).items()):
            img = imaging.read_image(path)
            h, w = img.shape[:2]
            y, x = int(rng.integers(max(1, h - size + 1))), int(rng.integers(max(1, w - size + 1)))
            crops.append(np.ascontiguousarray(img[y: y + size, x: x + size]))
    return crops[:limit] if limit else crops


# ----------------------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------------------


def _luma(img):
    return img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def laplacian_ratio(lq, gt):
    """var(Laplacian(Y(LQ))) / var(Laplacian(Y(GT bicubic-downscaled to the LQ size)))."""
    import cv2

    from imaging.resize import imresize

    down = imresize(gt.astype(np.float64), output_shape=lq.shape[:2])
    lap = lambda im: cv2.Laplacian(_luma(im), cv2.CV_64F)
    return float(lap(lq.astype(np.float64)).var() / max(lap(down).var(), 1e-12))


def chroma_share(lq):
    """Chroma share of the high-frequency residual LQ - Gaussian(LQ, sigma 1) (JPEG YCbCr)."""
    import cv2

    img = lq.astype(np.float64)
    res = img - cv2.GaussianBlur(img, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT_101)
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    ycc = res @ m.T
    e = (ycc ** 2).sum(axis=(0, 1))
    return float((e[1] + e[2]) / max(e.sum(), 1e-12))


def stats(pairs):
    """{"laplacian_ratio": array, "chroma_share": array} over (lq, gt) uint8 / float [0, 255] pairs."""
    return {"laplacian_ratio": np.array([laplacian_ratio(lq, gt) for lq, gt in pairs]),
            "chroma_share": np.array([chroma_share(lq) for lq, gt in pairs])}


# ----------------------------------------------------------------------------------------------------------
# the three producers of (LQ, GT) pairs
# ----------------------------------------------------------------------------------------------------------


def reference_pipeline(folder, names, pool=False):
    """(RealESRGANDataset over folder/names, a RealESRGANModel that runs feed_data on the CPU), or None when the
    reference packages are not installed. pool: keep RealESRGANModel's pair pool (its tensors made on the CPU)."""
    from testing.reference import import_reference

    model_mod = import_reference("realesrgan.models.realesrgan_model")
    dataset_mod = import_reference("realesrgan.data.realesrgan_dataset")
    if model_mod is None or dataset_mod is None:
        return None
    import torch

    from basicsr.utils import DiffJPEG, USMSharp

    cls = model_mod.RealESRGANModel
    model = cls.__new__(cls)  # its __init__ builds networks on CUDA; feed_data needs only these
    model.opt, model.device, model.is_train = dict(REFERENCE_OPT), torch.device("cpu"), True
    jpeger = DiffJPEG(differentiable=False)
    # at batch > 1 with torch 2.x the DiffJPEG output is not contiguous and feed_data's next filter2D `.view`
    # fails; a contiguous copy changes no value
    model.jpeger = lambda x, quality: jpeger(x, quality=quality).contiguous()
    model.usm_sharpener = USMSharp()
    model.queue_size = REFERENCE_OPT["queue_size"]
    if not pool:
        model._dequeue_and_enqueue = lambda: None
    with open(os.path.join(folder, "meta.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    dataset = dataset_mod.RealESRGANDataset(dict(REFERENCE_DATASET_OPT, dataroot_gt=folder,
                                                 meta_info=os.path.join(folder, "meta.txt"),
                                                 io_backend={"type": "disk"}))
    return dataset, model


def reference_batch(dataset, model, indices):
    """feed_data on the dataset items `indices` as one batch; (lq, gt) float tensors N x 3 x H x W in [0, 1]."""
    import torch

    items = [dataset[k] for k in indices]
    batch = {key: torch.stack([it[key] for it in items]) for key in ("gt", "kernel1", "kernel2", "sinc_kernel")}
    with torch.no_grad():
        model.feed_data(batch)
    return model.lq, model.gt


def write_crops(folder, crops):
    import imaging

    names = []
    for k, crop in enumerate(crops):
        names.append(f"{k:04d}.png")
        imaging.write_image(os.path.join(folder, names[-1]), crop)
    return names


def reference_pairs(crops, draws=1, seed=0):
    """(LQ 64, GT 256) uint8 pairs by RealESRGANDataset + RealESRGANModel.feed_data (CPU, batch 1: the
    per-batch choices are then per sample), or None when the reference packages are not installed."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = reference_pipeline(tmp, write_crops(tmp, crops))
        if ref is None:
            return None
        for _ in range(draws):
            for k in range(len(crops)):
                lq, gt = reference_batch(*ref, [k])
                to_u8 = lambda t: np.rint(t[0].permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
                out.append((to_u8(lq), to_u8(gt)))
    return out


def training_pairs(crops, draws=1, seed=0, overrides=None):
    """(LQ 64, GT 256) pairs by the training transform (Real-ESRGAN's recipe: crop=True), keyed as the loader."""
    from degradations import RealESRGANTransform

    t = RealESRGANTransform(dict(overrides or {}), crop=True, dtype="uint8")
    out = []
    for d in range(draws):
        for k, crop in enumerate(crops):
            rng = np.random.Generator(np.random.Philox(key=[seed, (d << 32) | k]))
            smp = t(crop, rng)
            out.append((smp["lr"], smp["hr"]))
    return out


def convert_pairs(crops, draws=1, seed=0, overrides=None):
    """(LQ, HR) pairs written by `convert.py degrade`'s jobs (whole images), read back from the PNGs."""
    import imaging
    from degradations.dataset import degrade_job, degrade_jobs, lr_path

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in")
        for k, crop in enumerate(crops):
            imaging.write_image(os.path.join(src, f"{k:04d}.png"), crop)
        for d in range(draws):
            dst = os.path.join(tmp, f"out{d}")
            for job in degrade_jobs(src, dst, [4], seed + d, overrides=overrides):
                err = degrade_job(job)
                if err:
                    raise RuntimeError(err)
            for k in range(len(crops)):
                stem = f"{k:04d}"
                hr = imaging.read_image(os.path.join(dst, "HR", f"{stem}.png"))
                lr = imaging.read_image(lr_path(dst, stem, 4))
                out.append((lr, hr[: lr.shape[0] * 4, : lr.shape[1] * 4]))
    return out


# ----------------------------------------------------------------------------------------------------------
# paired: the reference code driven by the project's draws (same degradation choices, same GT crops)
# ----------------------------------------------------------------------------------------------------------


class _Script:
    """Stands in for the `random` / `np.random` modules the reference draws from: returns the scripted values
    in call order (choices -> [value]; choice, randint, uniform -> value)."""

    def __init__(self):
        self.values = []
        self.random = self  # np.random.uniform -> self.uniform

    def _pop(self, *args, **kwargs):
        return self.values.pop(0)

    choice = randint = uniform = _pop

    def choices(self, *args, **kwargs):
        return [self.values.pop(0)]


def _reference_kernel(degradations_mod, params, pad_to=21):
    """BasicSR's kernel functions on the project's drawn kernel numbers, zero-padded to 21 x 21."""
    kind = (params or {"type": "pulse"})["type"]
    if kind == "pulse":
        k = np.zeros((pad_to, pad_to))
        k[pad_to // 2, pad_to // 2] = 1
        return k
    size = params["size"]
    if kind == "sinc":
        k = degradations_mod.circular_lowpass_kernel(params["omega_c"], size, pad_to=False)
    else:
        iso = kind in ("iso",) or kind.endswith("_iso")
        args = (size, params["sigma_x"], params["sigma_y"], params["theta"])
        if kind in ("iso", "aniso"):
            k = degradations_mod.bivariate_Gaussian(*args, isotropic=iso)
        elif kind.startswith("generalized"):
            k = degradations_mod.bivariate_generalized_Gaussian(*args, params["beta"], isotropic=iso)
        else:
            k = degradations_mod.bivariate_plateau(*args, params["beta"], isotropic=iso)
    p = (pad_to - size) // 2
    return np.pad(k, p)


def _script_values(p):
    """The values feed_data and paired_random_crop draw, in their call order, for the project's params p."""
    vals = []
    for stage, noise in (("resize1", "noise1"), ("resize2", "noise2")):
        r = p[stage]
        vals.append(r["kind"])
        if r["kind"] != "keep":
            vals.append(r["factor"])
        vals.append(r["mode"])
        vals.append(0.0 if p[noise]["kind"] == "gaussian" else 0.999)  # np.random.uniform() < gaussian_noise_prob
        if stage == "resize1":
            vals.append(0.0 if p["kernel2"] is not None else 0.999)  # ... < second_blur_prob (after stage 1's JPEG)
    vals.append(0.0 if p["resize_first"] else 0.999)  # np.random.uniform() < 0.5
    vals.append(p["final_mode"])
    vals += list(p["lq_crop"] or (0, 0))  # paired_random_crop: random.randint top, left
    return vals


def paired_pairs(crops, draws=1, seed=0, overrides=None, rng_fn=None):
    """(ours, reference) lists of (LQ, GT) uint8 pairs from the SAME drawn degradation choices: the project's
    `sample_params` once per (crop, draw); ours = `apply_params`, reference = RealESRGANModel.feed_data (its
    filter2D, USM, interpolate, DiffJPEG, crop) with its random draws replaced by those choices and its kernels
    made by BasicSR's kernel functions from the same numbers. Only the per-pixel noise differs (each side's own
    generator). overrides: degradation options (degradations.pipeline.WHOLE_IMAGE: whole square crops, as
    `convert.py degrade`); rng_fn(draw, k): the generator of crop k's draws (default: the loader's keying).
    None when the reference packages are not installed."""
    from testing.reference import import_reference

    model_mod = import_reference("realesrgan.models.realesrgan_model")
    if model_mod is None:
        return None
    import torch

    import basicsr.data.transforms as transforms_mod
    from basicsr.data import degradations as bdeg
    from basicsr.utils import DiffJPEG, USMSharp

    from degradations import pipeline as P

    config = P.make_config(overrides)
    cls = model_mod.RealESRGANModel
    model = cls.__new__(cls)
    model.opt, model.device, model.is_train = dict(REFERENCE_OPT), torch.device("cpu"), True
    model.usm_sharpener = USMSharp()
    model._dequeue_and_enqueue = lambda: None
    jpeger, script, queue = DiffJPEG(differentiable=False), _Script(), {"jpeg": [], "noise": []}
    model.jpeger = lambda x, quality: jpeger(x, quality=torch.tensor([queue["jpeg"].pop(0)])).contiguous()

    def noise_fn(img, **kwargs):  # random_add_*_noise_pt with the drawn sigma / scale and grey flag
        n = queue["noise"].pop(0)
        gray = torch.tensor([float(n["gray"])])
        if n["kind"] == "gaussian":
            noise = bdeg.generate_gaussian_noise_pt(img, torch.tensor([n["sigma"]]), gray)
        else:
            noise = bdeg.generate_poisson_noise_pt(img, torch.tensor([n["scale"]]), gray)
        return torch.clamp(img + noise, 0, 1)

    saved = {(model_mod, "random"): model_mod.random, (model_mod, "np"): model_mod.np,
             (transforms_mod, "random"): transforms_mod.random,
             (model_mod, "random_add_gaussian_noise_pt"): model_mod.random_add_gaussian_noise_pt,
             (model_mod, "random_add_poisson_noise_pt"): model_mod.random_add_poisson_noise_pt}
    for (mod, name) in saved:
        setattr(mod, name, noise_fn if name.startswith("random_add") else script)
    ours, ref = [], []
    torch.manual_seed(seed)
    try:
        for d in range(draws):
            for k, crop in enumerate(crops):
                rng = rng_fn(d, k) if rng_fn else np.random.Generator(np.random.Philox(key=[seed, (d << 32) | k]))
                p = P.sample_params(rng, config, crop.shape[:2], 4)
                gt = P.to_float(P.crop_gt(crop, p, config))
                model.opt["gt_size"] = config["gt_size"] or gt.shape[0]  # whole (square) images: the crop is all
                out = P.apply_params(crop, p, config)
                ours.append((out["lr"], out["hr"]))
                script.values = _script_values(p)
                queue["jpeg"] = [q for q in (p["jpeg1"], p["jpeg2"])]
                queue["noise"] = [p["noise1"], p["noise2"]]
                kern = lambda x: torch.from_numpy(_reference_kernel(bdeg, x)).float()[None]
                data = {"gt": torch.from_numpy(gt.transpose(2, 0, 1).copy())[None], "kernel1": kern(p["kernel1"]),
                        "kernel2": kern(p["kernel2"]), "sinc_kernel": kern(p["final_sinc"])}
                with torch.no_grad():
                    model.feed_data(data)
                assert not script.values and not queue["jpeg"] and not queue["noise"], "reference draws out of step"
                to_u8 = lambda t: np.rint(t[0].permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
                ref.append((to_u8(model.lq), to_u8(model.gt)))
    finally:
        for (mod, name), value in saved.items():
            setattr(mod, name, value)
    return ours, ref
