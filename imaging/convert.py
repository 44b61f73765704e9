"""Dataset conversions of convert.py: numpy mirror, JPEG downgrade, bicubic LR sets, the embedded sample set,
and the resumable parallel job runner they share (a job returns an error string or None)."""
import multiprocessing
import os
import sys

import numpy as np

from imaging.files import check_folder, check_output_file, list_images, remove_stale_temps, walk_images
from imaging.io import IMAGE_EXTS, READABLE_EXTS, read_image, write_image
from imaging.resize import bicubic_downscale
from utils import UserError, atomic_path

SAMPLE_TRAIN_FIRST_ID, SAMPLE_VALID_FIRST_ID = 1, 801
# (file in skimage/data, top, left, height, width): RGB photographs bundled in the scikit-image wheel.
# Sizes are multiples of 24 so x2, x3, x4 (and x8) divide them. Train and valid crops never overlap;
# 0803 is the other view of the stereo pair whose left view is 0006.
SAMPLE_TRAIN = [
    ("astronaut.png", 4, 4, 504, 504),
    ("chelsea.png", 6, 9, 288, 432),
    ("coffee.png", 8, 12, 384, 576),
    ("rocket.jpg", 10, 8, 408, 624),
    ("ihc.png", 4, 4, 504, 504),
    ("motorcycle_left.png", 10, 10, 480, 720),
    ("hubble_deep_field.jpg", 0, 0, 432, 480),
    ("hubble_deep_field.jpg", 440, 520, 432, 480),
    ("retina.jpg", 240, 240, 480, 480),
    ("retina.jpg", 720, 480, 480, 480),
]
SAMPLE_VALID = [
    ("hubble_deep_field.jpg", 440, 0, 432, 480),
    ("retina.jpg", 240, 840, 480, 480),
    ("motorcycle_right.png", 10, 10, 480, 720),
]
SAMPLE_SCALES = (2, 3, 4)


def run_jobs(fn, jobs, workers, desc):
    """Run fn(job) -> error string or None over jobs in a process pool with a progress bar.

    A job that fails (e.g. a corrupt image) is reported by name and skipped; the others go on. At the end
    a UserError lists the failures, so the exit status is non-zero and a re-run redoes only what is missing.
    """
    from tqdm import tqdm

    errors = []
    if not jobs:
        return
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        results, pool = map(fn, jobs), None
    else:
        pool = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn").Pool(workers)
        results = pool.imap_unordered(fn, jobs, chunksize=1)
    try:
        for err in tqdm(results, total=len(jobs), desc=desc, unit="img", file=sys.stderr):
            if err:
                tqdm.write(f"error: {err}; skipped", file=sys.stderr)
                errors.append(err)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    if errors:
        raise UserError(f"{len(errors)} of {len(jobs)} file(s) could not be converted (listed above); "
                        f"replace or remove them and re-run the same command to finish")


def prepare(input_dir, output_dir, command):
    """Before any work, creating nothing: the input folder, an output folder that can be made and differs from
    the input; then a killed run's temporaries under the output are removed."""
    check_folder(input_dir, "input")
    check_output_dir(output_dir, command)
    if os.path.abspath(input_dir) == os.path.abspath(output_dir):
        raise UserError("input and output folders must differ")
    remove_stale_temps(output_dir)


def check_output_dir(output_dir, command):
    """-o given, not a file, and writable (its missing folders are made by the first write)."""
    if not output_dir:
        raise UserError(f"{command} needs -o OUTPUT_DIR")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserError(f"-o {output_dir} is a file, not a folder; give an output folder")
    check_output_file(os.path.join(os.path.abspath(output_dir), "probe"), "-o")


def mirror_jobs(input_dir, output_dir, exts, suffix, overwrite=False):
    """(src, dst) for every image under input_dir whose mirror under output_dir (same relative path, `suffix`)
    is not there yet: re-running after an interruption does only what is left (all of it with overwrite)."""
    rel = walk_images(input_dir, exts)
    if not rel:
        raise UserError(f"no images found under {input_dir}")
    jobs = [(os.path.join(input_dir, r), os.path.join(output_dir, os.path.splitext(r)[0] + suffix)) for r in rel]
    jobs = [(src, dst) for src, dst in jobs if overwrite or not os.path.exists(dst)]
    if len(rel) > len(jobs):
        print(f"{len(rel) - len(jobs)} of {len(rel)} images already converted; converting the remaining "
              f"{len(jobs)}", file=sys.stderr)
    return jobs


def numpy_job(job):
    src, dst = job
    try:
        arr = read_image(src, keep_grey=True)  # grey stays HxW, so the .npy reads exactly like the image
    except UserError as e:
        return str(e)
    with atomic_path(dst) as tmp:
        np.save(tmp, np.ascontiguousarray(arr))
    return None


def to_numpy(input_dir, output_dir, workers=1, overwrite=False):
    """Mirror every image under input_dir as uint8 HxWx3 .npy (HxW for grey) under output_dir; returns the count."""
    prepare(input_dir, output_dir, "numpy")
    jobs = mirror_jobs(input_dir, output_dir, IMAGE_EXTS, ".npy", overwrite)
    run_jobs(numpy_job, jobs, workers, "numpy")
    return len(jobs)


def jpeg_job(job):
    from PIL import Image

    src, dst, quality = job
    try:
        arr = read_image(src, keep_grey=True)
    except UserError as e:
        return str(e)
    with atomic_path(dst) as tmp:
        Image.fromarray(arr).save(tmp, format="JPEG", quality=quality)
    return None


def to_jpeg(input_dir, output_dir, quality=90, workers=1, overwrite=False):
    """JPEG-compress (libjpeg) every image under input_dir into the same tree as `<stem>.jpg`; returns the count."""
    if not 1 <= quality <= 100:
        raise UserError(f"--jpeg-quality must be in 1..100, got {quality}")
    prepare(input_dir, output_dir, "jpeg")
    jobs = [(src, dst, quality) for src, dst in mirror_jobs(input_dir, output_dir, READABLE_EXTS, ".jpg", overwrite)]
    run_jobs(jpeg_job, jobs, workers, f"jpeg q{quality}")
    return len(jobs)


def bicubic_job(job):
    src, stem, out_dir, scales = job
    try:
        hr = read_image(src, keep_grey=True)  # grey stays grey, as in the reference sets
    except UserError as e:
        return str(e)
    for s in scales:
        if hr.shape[0] < s or hr.shape[1] < s:
            return f"{src} is smaller than the scale {s}"
        write_image(os.path.join(out_dir, f"X{s}", f"{stem}x{s}.png"), bicubic_downscale(hr, s))
    return None


def bicubic_set(input_dir, output_dir, scales=(2, 3, 4), workers=1, overwrite=False):
    """OUT/X{s}/<stem>x{s}.png for each HR image: crop to a multiple of s, MATLAB-exact bicubic 1/s; returns the
    number of HR images done."""
    prepare(input_dir, output_dir, "bicubic")
    files = list_images(input_dir)
    if not files:
        raise UserError(f"no images found in {input_dir}")
    jobs = []
    for stem, src in files.items():
        todo = [s for s in scales
                if overwrite or not os.path.exists(os.path.join(output_dir, f"X{s}", f"{stem}x{s}.png"))]
        if todo:
            jobs.append((src, stem, output_dir, todo))
    run_jobs(bicubic_job, jobs, workers, "bicubic")
    return len(jobs)


def skimage_data_dir():
    try:
        import skimage
    except ImportError:
        raise UserError("scikit-image is not installed; `pip install -r requirements.txt`") from None
    return os.path.join(os.path.dirname(skimage.__file__), "data")


def sample_job(job):
    src, top, left, h, w, hr_path, lr_paths = job
    try:
        img = read_image(src)
    except UserError as e:
        return str(e)
    crop = img[top: top + h, left: left + w]
    if crop.shape[:2] != (h, w):
        return f"{src} is smaller than expected ({img.shape[1]}x{img.shape[0]}); reinstall scikit-image"
    write_image(hr_path, crop, compress_level=1)
    for s, lr_path in lr_paths:
        write_image(lr_path, bicubic_downscale(crop, s), compress_level=1)
    return None


def make_sample(output_dir, workers=1, overwrite=False):
    """Small DIV2K-layout PNG dataset (train 0001-0010, valid 0801-0803, LR bicubic X2/X3/X4), deterministic."""
    check_output_dir(output_dir, "sample")
    remove_stale_temps(output_dir)
    src_dir = skimage_data_dir()
    jobs = []
    for subset, crops, first in (("train", SAMPLE_TRAIN, SAMPLE_TRAIN_FIRST_ID),
                                 ("valid", SAMPLE_VALID, SAMPLE_VALID_FIRST_ID)):
        for k, (name, top, left, h, w) in enumerate(crops):
            src = os.path.join(src_dir, name)
            if not os.path.isfile(src):
                raise UserError(f"{src} is missing from the scikit-image installation; reinstall scikit-image")
            stem = f"{first + k:04d}"
            hr_path = os.path.join(output_dir, f"DIV2K_{subset}_HR", f"{stem}.png")
            lr_paths = [(s, os.path.join(output_dir, f"DIV2K_{subset}_LR_bicubic", f"X{s}", f"{stem}x{s}.png"))
                        for s in SAMPLE_SCALES]
            if overwrite or not all(os.path.exists(p) for p in [hr_path] + [p for _, p in lr_paths]):
                jobs.append((src, top, left, h, w, hr_path, lr_paths))
    run_jobs(sample_job, jobs, workers, "sample")
    return len(jobs)
