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


def reference_pairs(crops, draws=1, seed=0):
    """(LQ 64, GT 256) uint8 pairs by RealESRGANDataset + RealESRGANModel.feed_data (CPU, batch 1), or None
    when the reference packages are not installed."""
    from testing.reference import import_reference

    model_mod = import_reference("realesrgan.models.realesrgan_model")
    dataset_mod = import_reference("realesrgan.data.realesrgan_dataset")
    if model_mod is None or dataset_mod is None:
        return None
    import random

    import torch

    import imaging
    from basicsr.utils import DiffJPEG, USMSharp

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    cls = model_mod.RealESRGANModel
    model = cls.__new__(cls)  # its __init__ builds networks on CUDA; feed_data needs only these
    model.opt, model.device, model.is_train = dict(REFERENCE_OPT), torch.device("cpu"), True
    model.jpeger, model.usm_sharpener = DiffJPEG(differentiable=False), USMSharp()
    model._dequeue_and_enqueue = lambda: None
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for k, crop in enumerate(crops):
            names.append(f"{k:04d}.png")
            imaging.write_image(os.path.join(tmp, names[-1]), crop)
        with open(os.path.join(tmp, "meta.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
        dataset = dataset_mod.RealESRGANDataset(dict(REFERENCE_DATASET_OPT, dataroot_gt=tmp,
                                                     meta_info=os.path.join(tmp, "meta.txt"),
                                                     io_backend={"type": "disk"}))
        with torch.no_grad():
            for _ in range(draws):
                for k in range(len(crops)):
                    item = dataset[k]
                    model.feed_data({key: (v[None] if torch.is_tensor(v) else v) for key, v in item.items()})
                    to_u8 = lambda t: np.rint(t[0].permute(1, 2, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
                    out.append((to_u8(model.lq), to_u8(model.gt)))
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
