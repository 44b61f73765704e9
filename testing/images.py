"""Synthetic test images and datasets shared by tests and benchmarks: a photo-like image, a tiny DIV2K tree."""
from pathlib import Path

import numpy as np


def smooth_image(rng, height, width):
    """A photo-like test image: smooth colour gradients plus some texture, uint8 RGB."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.empty((height, width, 3))
    for c in range(3):
        fy, fx, phase = rng.uniform(0.02, 0.15, size=2).tolist() + [rng.uniform(0, 6.28)]
        img[..., c] = 128 + 80 * np.sin(fy * yy + phase) * np.cos(fx * xx) + 20 * rng.standard_normal((height, width))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_div2k_tree(root, train_ids=(1, 2, 3, 4), valid_ids=(801, 802), size=(96, 120), scales=(2, 3, 4), seed=0):
    """A tiny DIV2K-layout PNG tree (HR + LR_bicubic/X{s}); LR by PIL bicubic, good enough for plumbing tests."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for subset, ids in (("train", train_ids), ("valid", valid_ids)):
        hr_dir = root / f"DIV2K_{subset}_HR"
        hr_dir.mkdir(parents=True, exist_ok=True)
        for i in ids:
            hr = smooth_image(rng, *size)
            Image.fromarray(hr).save(hr_dir / f"{i:04d}.png")
            for s in scales:
                lr_dir = root / f"DIV2K_{subset}_LR_bicubic" / f"X{s}"
                lr_dir.mkdir(parents=True, exist_ok=True)
                h, w = size[0] // s, size[1] // s
                crop = Image.fromarray(hr[: h * s, : w * s])
                crop.resize((w, h), Image.BICUBIC).save(lr_dir / f"{i:04d}x{s}.png")
    return root
