"""Model export (convert.py export): ONNX (dynamic batch, height and width; checked in onnxruntime) and the TF
SavedModel, chosen by the output name; `check_export_path` says what is wrong with an output before any load."""
import os
import shutil
import tempfile

import numpy as np

from utils import UserError, atomic_path, ensure_writable_dir

EXPORT_CHECK_SIZES = ((20, 24), (13, 17))  # two LR sizes the exported file is checked at, one odd
FORMATS = {".onnx": "onnx", "": "tf_saved_model"}  # output suffix -> format (no suffix: a SavedModel folder)


def export_format(path):
    """The format an output name asks for; UserError for a name no exporter writes (e.g. x.tflite, x.xyz)."""
    ext = os.path.splitext(os.path.normpath(os.fspath(path)))[1].lower()
    if ext not in FORMATS:
        raise UserError(f"-o {path}: cannot export to '{ext}'; give X.onnx (ONNX) or a folder name without a suffix "
                        "(TF SavedModel)")
    return FORMATS[ext]


def check_export_path(path):
    """Before any model is loaded: a known format, and an output that can be written."""
    from imaging.files import check_output_file

    fmt = export_format(path)
    if fmt == "onnx":
        check_output_file(path)
    elif os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise UserError(f"{path} exists and is not an empty folder; choose a new output folder for the SavedModel")
    else:
        check_output_file(os.path.join(os.path.abspath(path), "saved_model.pb"))
    return fmt


def _export_onnx(model, path):
    import keras

    if keras.backend.backend() != "tensorflow":
        raise UserError(f"ONNX export runs on the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()}); "
                        "unset KERAS_BACKEND or set it to tensorflow")
    with atomic_path(path) as tmp:
        model.export(tmp, format="onnx", verbose=False)


def check_onnx(model, path):
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


def export_model(model, path):
    """Write `model` to `path` (format from the name, see FORMATS); returns one line saying what was written."""
    fmt = check_export_path(path)
    model(np.zeros((1, 16, 16, 3), np.float32), training=False)  # Keras's exporter wants a model that ran once
    try:
        (_export_onnx if fmt == "onnx" else _export_saved_model)(model, path)
    except UserError:
        raise
    except Exception as e:  # tf2onnx / TF raise many types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot export to {path}: {first}") from None
    if fmt == "onnx":
        sizes = " and ".join(f"{h}x{w}" for h, w in EXPORT_CHECK_SIZES)
        return f"wrote {path}; onnxruntime vs Keras at {sizes}: max |diff| {check_onnx(model, path):.4f} grey levels"
    return f"wrote TF SavedModel {path} (signature 'serve', input NxHxWx3 float32 in [0, 255])"
