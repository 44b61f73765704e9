"""A fixed degraded validation set in the benchmark layout (`convert.py degrade`).

    OUT/HR/<stem>.png                       the HR image (RGB)
    OUT/LR_realesrgan/X{s}/<stem>x{s}.png   HR cropped to a multiple of s, through the whole pipeline: exactly HR / s

Each LR image gets its own generator keyed by (seed, stem, scale), so the set is the same on every machine and
adding an image changes no other. `bench.py --dataset OUT --downgrade realesrgan --scale s` scores on it.
"""
import hashlib
import os

import numpy as np

# WHOLE_IMAGE: whole images: no flip, no 400 crop, no paired crop, no hr_usm target (the LQ is still made from the
# sharpened image: degrade_usm)
from degradations.pipeline import WHOLE_IMAGE, degrade, make_config, set_cv2_threads
from utils import UserError

DOWNGRADE = "realesrgan"


def image_rng(seed, stem, scale):
    """Generator for one LR image: Philox keyed by the seed and a stable hash of "<stem>x<scale>"."""
    h = int.from_bytes(hashlib.sha256(f"{stem}x{scale}".encode("utf-8")).digest()[:8], "little")
    return np.random.Generator(np.random.Philox(key=[int(seed) & 0xFFFFFFFFFFFFFFFF, h]))


def lr_path(output_dir, stem, scale):
    return os.path.join(output_dir, f"LR_{DOWNGRADE}", f"X{scale}", f"{stem}x{scale}.png")


def degrade_jobs(input_dir, output_dir, scales, seed, overwrite=False, overrides=None):
    """(src, stem, output_dir, scales to do, seed, overrides) for each HR image with outputs not there yet."""
    from imaging.files import list_images

    scales = [int(s) for s in scales]
    if any(s < 1 for s in scales):
        raise UserError(f"--scale must be positive integers, got {scales}")
    files = list_images(input_dir)
    if not files:
        raise UserError(f"no images found in {input_dir}")
    jobs = []
    for stem, src in sorted(files.items()):
        hr_done = os.path.exists(os.path.join(output_dir, "HR", f"{stem}.png"))
        todo = [s for s in scales if overwrite or not (hr_done and os.path.exists(lr_path(output_dir, stem, s)))]
        if todo:
            jobs.append((src, stem, output_dir, todo, int(seed), overrides))
    return jobs


def degrade_job(job):
    """Write one HR image and its degraded LR images; returns an error string (unreadable, too small) or None.

    HR is written as read (RGB); each LR is made from HR cropped to a multiple of its scale (top-left),
    the benchmark convention, so `data.load_pair` pairs them exactly."""
    import imaging

    src, stem, output_dir, scales, seed, overrides = job
    set_cv2_threads(1)  # the conversion runs one process per core
    try:
        hr = imaging.read_image(src)
    except UserError as e:
        return str(e)
    config = make_config(dict(overrides or {}, **WHOLE_IMAGE))
    for s in scales:
        if hr.shape[0] < s or hr.shape[1] < s:
            return f"{src} ({hr.shape[1]}x{hr.shape[0]}) is smaller than the scale {s}"
        out = degrade(hr, image_rng(seed, stem, s), config, s)
        imaging.write_image(lr_path(output_dir, stem, s), out["lr"])
    imaging.write_image(os.path.join(output_dir, "HR", f"{stem}.png"), hr)  # last: the pair counts as done
    return None
