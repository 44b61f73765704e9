"""Dataset conversions: numpy mirror, JPEG downgrade, bicubic LR sets, the embedded sample set, krasserm weights.

    python convert.py -i ./DIV2K -o ./DIV2K_BIN numpy
    python convert.py -i ./DIV2K/DIV2K_train_LR_bicubic -o ./DIV2K/DIV2K_train_LR_bicubic_jpeg_90 --jpeg-quality 90 jpeg
    python convert.py -i ./Set5/HR -o ./Set5/LR_bicubic --scale 2 3 4 bicubic
    python convert.py -o ./sample sample
    python convert.py degrade -i ./Set5/HR -o ./Set5_realesrgan --scale 4 --seed 0   (fixed Real-ESRGAN-degraded set)
    python convert.py -i weights.h5 -o wdsr-b-32-x4.keras --profile wdsr-b-32 --scale 4 weights
    python convert.py weights -i RealESRGAN_x4plus.pth -o realesrgan-x4plus.keras   (also .safetensors, ESRGAN .pth)
    python convert.py export -i model.keras -o model.onnx        (or -o DIR for a TF SavedModel)

The command word may come anywhere on the line (the seed puts it last).
"""
import argparse
import glob
import multiprocessing
import os
import sys

import numpy as np

from utils import UserError, atomic_path, ensure_writable_dir, run_cli, warn

COMMANDS = ("numpy", "jpeg", "bicubic", "sample", "weights", "export")
COMMANDS += ("degrade",)  # the Real-ESRGAN degradation pipeline (degradations/)
SAMPLE_TRAIN_FIRST_ID, SAMPLE_VALID_FIRST_ID = 1, 801


def build_parser():
    p = argparse.ArgumentParser(
        prog="convert.py",
        description="Convert SR datasets: numpy (mirror an image tree as .npy), jpeg (JPEG-compress an LR tree), "
                    "bicubic (MATLAB-exact LR images from HR), sample (small DIV2K-layout set from scikit-image "
                    "photos), weights (krasserm .h5 or RRDBNet .pth/.safetensors -> .keras), export (model -> ONNX or "
                    "TF SavedModel).")
    p.add_argument("command", choices=COMMANDS,
                   help="numpy | jpeg | bicubic | sample | weights | export (may also be given last, as in the seed)")
    p.add_argument("-i", "--input", help="input folder (numpy, jpeg: image tree; bicubic: folder of HR images) "
                                         "or weights file (weights: .h5 / .pth / .pt / .safetensors; export: any "
                                         "model file, .keras included)")
    p.add_argument("-o", "--output", help="output folder (numpy, jpeg, bicubic, sample), .keras file (weights), "
                                          ".onnx file or SavedModel folder (export)")
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1-100 for the jpeg command (default 90, as the seed's bicubic_jpeg_90)")
    p.add_argument("--scale", type=int, nargs="+", default=None,
                   help="scale(s) for bicubic (default 2 3 4), or the model scale for weights/export (default: from "
                        "the file; krasserm .h5: its name, else 4)")
    p.add_argument("--profile", default=None,
                   help="weights command: model profile of a krasserm .h5 (default: from its file name, else "
                        "wdsr-b-32); for .pth/.safetensors RRDBNet files the sizes come from the file and a profile "
                        "given here is checked against it")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel processes for numpy / jpeg / bicubic (default: all cores)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo outputs that already exist (default: skip them, so an interrupted run resumes)")
    p.add_argument("--seed", type=int, default=0, help="degrade: random seed of the degradations (default 0)")
    return p


def parse_args(argv):
    """Accept the command word anywhere (`-i A -o B numpy` as in the seed, or `numpy -i A -o B`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    positions = [k for k, a in enumerate(argv) if a in COMMANDS]
    if positions and "-h" not in argv and "--help" not in argv:
        k = positions[-1]  # the last one: `-o sample sample` names the folder first
        argv = [argv[k]] + argv[:k] + argv[k + 1:]
    args = build_parser().parse_args(argv)
    if args.scale is None and args.command not in ("weights", "export"):  # weights: from the file (.h5: 4)
        args.scale = [2, 3, 4]
    return args


# ----------------------------------------------------------------------------------------------------------
# parallel file jobs
# ----------------------------------------------------------------------------------------------------------


def _run_jobs(fn, jobs, workers, desc):
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
        results = map(fn, jobs)
        pool = None
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


def _walk(input_dir, exts):
    """Sorted relative paths of files under input_dir with one of `exts` (hidden/temporary files ignored)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(input_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts:
                out.append(os.path.relpath(os.path.join(dirpath, f), input_dir))
    return sorted(out)


def _remove_stale_temps(output_dir):
    """Temporary files left by a killed run (`.<stem>.<random>.tmp<ext>` from utils.atomic_path)."""
    for path in glob.glob(os.path.join(output_dir, "**", ".*.tmp.*"), recursive=True):
        try:
            os.remove(path)
        except OSError:
            pass


def _need_input_dir(args):
    if not args.input:
        raise UserError(f"{args.command} needs -i INPUT_DIR")
    if not os.path.isdir(args.input):
        if os.path.exists(args.input):
            raise UserError(f"input {args.input} is a file, not a folder; pass -i INPUT_DIR")
        raise UserError(f"input folder not found: {args.input}")
    if not args.output:
        raise UserError(f"{args.command} needs -o OUTPUT_DIR")
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise UserError("input and output folders must differ")
    ensure_writable_dir(args.output)


# ----------------------------------------------------------------------------------------------------------
# numpy
# ----------------------------------------------------------------------------------------------------------


def _numpy_job(job):
    import data

    src, dst = job
    try:
        arr = data.read_image(src, keep_grey=True)  # grey stays HxW, so the .npy reads exactly like the image
    except UserError as e:
        return str(e)
    with atomic_path(dst) as tmp:
        np.save(tmp, np.ascontiguousarray(arr))
    return None


def _mirror_jobs(args, exts, suffix):
    """(src, dst) for every image under -i whose mirror under -o (same relative path, `suffix`) is not there yet:
    re-running a command after an interruption does only what is left (all of it with --overwrite)."""
    rel = _walk(args.input, exts)
    if not rel:
        raise UserError(f"no images found under {args.input}")
    jobs = []
    for r in rel:
        dst = os.path.join(args.output, os.path.splitext(r)[0] + suffix)
        if args.overwrite or not os.path.exists(dst):
            jobs.append((os.path.join(args.input, r), dst))
    skipped = len(rel) - len(jobs)
    if skipped:
        print(f"{skipped} of {len(rel)} images already converted; converting the remaining {len(jobs)}", file=sys.stderr)
    return jobs


def cmd_numpy(args):
    """Mirror every image under -i as uint8 HxWx3 .npy (HxW for grey) under -o (same relative paths, .npy suffix)."""
    import data

    _need_input_dir(args)
    _remove_stale_temps(args.output)
    jobs = _mirror_jobs(args, data.IMAGE_EXTS, ".npy")
    _run_jobs(_numpy_job, jobs, args.workers, "numpy")
    print(f"wrote {len(jobs)} arrays to {args.output}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------------
# jpeg
# ----------------------------------------------------------------------------------------------------------


def _jpeg_job(job):
    import data
    from PIL import Image

    src, dst, quality = job
    try:
        arr = data.read_image(src, keep_grey=True)
    except UserError as e:
        return str(e)
    with atomic_path(dst) as tmp:
        Image.fromarray(arr).save(tmp, format="JPEG", quality=quality)
    return None


def cmd_jpeg(args):
    """JPEG-compress every image under -i into the same tree under -o as `<stem>.jpg` (the loader reads .jpg)."""
    import data

    _need_input_dir(args)
    if not 1 <= args.jpeg_quality <= 100:
        raise UserError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    _remove_stale_temps(args.output)
    jobs = [(src, dst, args.jpeg_quality) for src, dst in _mirror_jobs(args, data.READABLE_EXTS, ".jpg")]
    _run_jobs(_jpeg_job, jobs, args.workers, f"jpeg q{args.jpeg_quality}")
    print(f"wrote {len(jobs)} JPEG images to {args.output}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------------
# bicubic
# ----------------------------------------------------------------------------------------------------------


def _bicubic_job(job):
    import data

    src, stem, out_dir, scales = job
    try:
        hr = data.read_image(src, keep_grey=True)  # grey stays grey, as in the reference sets
    except UserError as e:
        return str(e)
    for s in scales:
        if hr.shape[0] < s or hr.shape[1] < s:
            return f"{src} is smaller than the scale {s}"
        data.write_image(os.path.join(out_dir, f"X{s}", f"{stem}x{s}.png"), data.bicubic_downscale(hr, s))
    return None


def cmd_bicubic(args):
    """Write OUT/X{s}/<stem>x{s}.png for each HR image: crop to a multiple of s, MATLAB-exact bicubic 1/s."""
    import data

    _need_input_dir(args)
    if any(s < 1 for s in args.scale):
        raise UserError(f"--scale must be positive integers, got {args.scale}")
    _remove_stale_temps(args.output)
    files = data._list_images(args.input)
    if not files:
        raise UserError(f"no images found in {args.input}")
    jobs = []
    for stem, src in files.items():
        todo = [s for s in args.scale
                if args.overwrite or not os.path.exists(os.path.join(args.output, f"X{s}", f"{stem}x{s}.png"))]
        if todo:
            jobs.append((src, stem, args.output, todo))
    _run_jobs(_bicubic_job, jobs, args.workers, "bicubic")
    print(f"wrote LR images for {len(jobs)} HR images to {args.output}/X{{{','.join(map(str, args.scale))}}}",
          file=sys.stderr)


# ----------------------------------------------------------------------------------------------------------
# sample
# ----------------------------------------------------------------------------------------------------------

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


def skimage_data_dir():
    try:
        import skimage
    except ImportError:
        raise UserError("scikit-image is not installed; `pip install -r requirements.txt`") from None
    return os.path.join(os.path.dirname(skimage.__file__), "data")


def _sample_job(job):
    import data

    src, top, left, h, w, hr_path, lr_paths = job
    try:
        img = data.read_image(src)
    except UserError as e:
        return str(e)
    crop = img[top: top + h, left: left + w]
    if crop.shape[:2] != (h, w):
        return f"{src} is smaller than expected ({img.shape[1]}x{img.shape[0]}); reinstall scikit-image"
    data.write_image(hr_path, crop, compress_level=1)
    for s, lr_path in lr_paths:
        data.write_image(lr_path, data.bicubic_downscale(crop, s), compress_level=1)
    return None


def cmd_sample(args):
    """Small DIV2K-layout PNG dataset (train 0001-0010, valid 0801-0803, LR bicubic X2/X3/X4), deterministic."""
    if not args.output:
        raise UserError("sample needs -o OUTPUT_DIR, e.g. python convert.py -o ./sample sample")
    ensure_writable_dir(args.output)
    _remove_stale_temps(args.output)
    src_dir = skimage_data_dir()
    jobs = []
    for subset, crops, first in (("train", SAMPLE_TRAIN, SAMPLE_TRAIN_FIRST_ID),
                                 ("valid", SAMPLE_VALID, SAMPLE_VALID_FIRST_ID)):
        for k, (name, top, left, h, w) in enumerate(crops):
            src = os.path.join(src_dir, name)
            if not os.path.isfile(src):
                raise UserError(f"{src} is missing from the scikit-image installation; reinstall scikit-image")
            stem = f"{first + k:04d}"
            hr_path = os.path.join(args.output, f"DIV2K_{subset}_HR", f"{stem}.png")
            lr_paths = [(s, os.path.join(args.output, f"DIV2K_{subset}_LR_bicubic", f"X{s}", f"{stem}x{s}.png"))
                        for s in SAMPLE_SCALES]
            if args.overwrite or not all(os.path.exists(p) for p in [hr_path] + [p for _, p in lr_paths]):
                jobs.append((src, top, left, h, w, hr_path, lr_paths))
    _run_jobs(_sample_job, jobs, args.workers, "sample")
    print(f"sample dataset in {args.output}: {len(SAMPLE_TRAIN)} train images (ids "
          f"{SAMPLE_TRAIN_FIRST_ID}-{SAMPLE_TRAIN_FIRST_ID + len(SAMPLE_TRAIN) - 1}), {len(SAMPLE_VALID)} valid "
          f"(ids {SAMPLE_VALID_FIRST_ID}-{SAMPLE_VALID_FIRST_ID + len(SAMPLE_VALID) - 1}), "
          f"LR bicubic x{'/x'.join(map(str, SAMPLE_SCALES))}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------------------


def cmd_weights(args):
    """Published weights -> a Keras 3 .keras model: krasserm (Keras 2) .h5 (model/krasserm.py), Real-ESRGAN / ESRGAN
    RRDBNet .pth / .pt / .safetensors (model/import_weights.py; the pickle is never executed)."""
    if not args.input or not os.path.isfile(args.input):
        raise UserError(f"weights file not found: {args.input}; give the .h5 / .pth / .safetensors file with -i")
    if not args.output:
        raise UserError("weights needs -o MODEL.keras")
    if not args.output.endswith(".keras"):
        raise UserError(f"output {args.output} must end with .keras")
    if args.scale is not None and len(args.scale) != 1:
        raise UserError(f"weights needs a single --scale, got {args.scale}")
    scale = args.scale[0] if args.scale else None
    import model as model_lib

    if args.input.lower().endswith(model_lib.registry.H5_EXTS):
        try:
            from model.krasserm import convert_krasserm_weights, profile_and_scale
        except ImportError as e:
            raise UserError(f"weight conversion is not available ({e})") from None
        try:
            profile, scale = profile_and_scale(args.input, args.profile, scale)
        except UserError:  # a name that says nothing: the seed's defaults
            profile, scale = args.profile or "wdsr-b-32", scale or 4
        model = convert_krasserm_weights(args.input, profile, scale)
    elif args.input.lower().endswith(model_lib.registry.TORCH_EXTS):
        model = model_lib.load_model(args.input, compile=False, profile=args.profile, scale=scale)
    else:
        raise UserError(f"{args.input}: unknown weights format; give a krasserm .h5 or an RRDBNet .pth / .pt / "
                        ".safetensors file")
    with atomic_path(args.output) as tmp:
        model.save(tmp)
    print(f"wrote {args.output} ({model_lib.count_params(model):,} parameters, x{model_lib.model_scale(model)})",
          file=sys.stderr)


def cmd_degrade(args):
    """OUT/HR/<stem>.png + OUT/LR_realesrgan/X{s}/<stem>x{s}.png: whole images through the Real-ESRGAN pipeline."""
    from degradations.dataset import degrade_job, degrade_jobs

    _need_input_dir(args)
    _remove_stale_temps(args.output)
    jobs = degrade_jobs(args.input, args.output, args.scale, args.seed, args.overwrite)
    _run_jobs(degrade_job, jobs, args.workers, "degrade")
    print(f"degraded {len(jobs)} images into {args.output} (HR/, LR_realesrgan/; seed {args.seed})", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------------

EXPORT_CHECK_SIZES = ((20, 24), (13, 17))  # two LR sizes the exported file is checked at, one odd


def _export_onnx(model, path):
    """ONNX with dynamic batch, height and width (Keras's exporter: tf2onnx on the TF backend)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise UserError(f"ONNX export runs on the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()}); "
                        "unset KERAS_BACKEND or set it to tensorflow")
    with atomic_path(path) as tmp:
        model.export(tmp, format="onnx", verbose=False)


def _check_onnx(model, path):
    """Largest |ONNX - Keras| in grey levels over EXPORT_CHECK_SIZES, run in onnxruntime."""
    import onnxruntime

    sess = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 0.0
    for k, (h, w) in enumerate(EXPORT_CHECK_SIZES):
        x = np.random.default_rng(k).uniform(0, 255, (1, h, w, 3)).astype(np.float32)
        got = sess.run(None, {name: x})[0]
        ref = np.asarray(model(x, training=False))
        if got.shape != ref.shape:
            raise UserError(f"{path}: onnxruntime gives shape {got.shape} for a {h}x{w} input, Keras {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def _export_saved_model(model, out_dir):
    """TF SavedModel directory (Keras's tf_saved_model export; serving signature with dynamic H and W)."""
    import shutil
    import tempfile

    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise UserError(f"{out_dir} exists and is not an empty folder; choose a new output folder for the SavedModel")
    parent = os.path.dirname(os.path.abspath(out_dir))
    ensure_writable_dir(parent)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.normpath(out_dir))}.", suffix=".tmp", dir=parent)
    try:
        target = os.path.join(tmp, "saved_model")
        model.export(target, format="tf_saved_model", verbose=False)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.replace(target, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cmd_export(args):
    """A model (any format model.load_model opens) -> ONNX (-o X.onnx) or a TF SavedModel folder (-o DIR)."""
    import model as model_lib

    if not args.input:
        raise UserError("export needs -i MODEL (.keras, .pth, .safetensors or krasserm .h5)")
    if not args.output:
        raise UserError("export needs -o MODEL.onnx, or -o DIR for a TF SavedModel")
    if args.scale is not None and len(args.scale) != 1:
        raise UserError(f"export needs a single --scale, got {args.scale}")
    model = model_lib.load_model(args.input, compile=False, profile=args.profile,
                                 scale=args.scale[0] if args.scale else None)
    model(np.zeros((1, 16, 16, 3), np.float32), training=False)  # Keras's exporter wants a model that ran once
    try:
        if args.output.lower().endswith(".onnx"):
            _export_onnx(model, args.output)
        else:
            _export_saved_model(model, args.output)
    except UserError:
        raise
    except Exception as e:  # tf2onnx / TF raise many types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot export {args.input} to {args.output}: {first}") from None
    if args.output.lower().endswith(".onnx"):
        diff = _check_onnx(model, args.output)
        print(f"wrote {args.output}; onnxruntime vs Keras at {' and '.join(f'{h}x{w}' for h, w in EXPORT_CHECK_SIZES)}: "
              f"max |diff| {diff:.4f} grey levels", file=sys.stderr)
    else:
        print(f"wrote TF SavedModel {args.output} (signature 'serve', input NxHxWx3 float32 in [0, 255])",
              file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    {"numpy": cmd_numpy, "jpeg": cmd_jpeg, "bicubic": cmd_bicubic, "sample": cmd_sample, "degrade": cmd_degrade,
     "weights": cmd_weights, "export": cmd_export}[args.command](args)
    return 0


if __name__ == "__main__":
    run_cli(main)
