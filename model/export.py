"""Deployment export (convert.py export): the output name picks the format, each file is run once in its own runtime
and compared with Keras before it replaces the output.

    X.onnx          ONNX, dynamic batch, height and width (tf2onnx); half=True: fp16 weights and compute, float32
                    input and output (onnxconverter-common), checked in onnxruntime
    X.tflite        LiteRT flatbuffer, built-in ops only (TF's converter), checked in the ai-edge-litert interpreter;
                    dynamic height and width where the converter can lower the model, else input_size=(H, W)
    DIR (no suffix) TF SavedModel folder, serving signature `serve` with dynamic H and W, checked by tf.saved_model.load
    X.pth / X.safetensors  PyTorch weights in the reference layout (model/convert's torch export)
Any other suffix is an error. Input: NxHxWx3 float32 in [0, 255]; output as the Keras model (pixel units).
"""
import contextlib
import os
import shutil
import tempfile
import warnings

import numpy as np

from model.io import ONNX_EXTS, TFLITE_EXTS, TORCH_EXTS
from utils import UserError, atomic_path, ensure_writable_dir

EXPORT_CHECK_SIZES = ((20, 24), (13, 17))  # two LR sizes every dynamic-size file is checked at, one odd
FORMATS = {**dict.fromkeys(ONNX_EXTS, "onnx"), **dict.fromkeys(TFLITE_EXTS, "tflite"),
           **dict.fromkeys(TORCH_EXTS, "torch"), "": "tf_saved_model"}
# largest |exported - Keras| accepted, in grey levels (fp16 keeps about 3 significant digits: 0.125 at 255)
TOLERANCE = {"onnx": 1.0, "onnx-fp16": 2.0, "tflite": 1.0, "tf_saved_model": 1.0}
FORMAT_HELP = ("give X.onnx (ONNX), X.tflite (LiteRT), X.pth / X.safetensors (PyTorch) or a folder name without a "
               "suffix (TF SavedModel)")


def export_format(path):
    """The format an output name asks for; UserError for a name no exporter writes (e.g. x.xyz)."""
    ext = os.path.splitext(os.path.normpath(os.fspath(path)))[1].lower()
    if ext not in FORMATS:
        raise UserError(f"-o {path}: cannot export to '{ext}'; {FORMAT_HELP}")
    return FORMATS[ext]


def check_export_path(path, half=False, input_size=None):
    """Before any model is loaded: a known format, options that apply to it, an output that can be written."""
    from imaging.files import check_output_file

    fmt = export_format(path)
    if half and fmt != "onnx":
        raise UserError(f"--half applies to ONNX export only; -o {path} is {fmt}")
    if input_size is not None:
        if fmt != "tflite":
            raise UserError(f"--input-size applies to LiteRT (.tflite) export only; -o {path} is {fmt}")
        if len(input_size) != 2 or min(input_size) < 1:
            raise UserError(f"--input-size {' '.join(map(str, input_size))}: give the LR height and width, e.g. "
                            "--input-size 128 128")
    if fmt == "tf_saved_model":
        if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise UserError(f"{path} exists and is not an empty folder; choose a new output folder for the SavedModel")
        check_output_file(os.path.join(os.path.abspath(path), "saved_model.pb"))
    else:
        check_output_file(path)
    if fmt in ("onnx", "tflite"):
        import keras

        if keras.backend.backend() != "tensorflow":
            raise UserError(f"{fmt} export runs on the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()}); "
                            "unset KERAS_BACKEND or set it to tensorflow")
    return fmt


def _inputs(sizes):
    return [np.random.default_rng(k).uniform(0, 255, (1, h, w, 3)).astype(np.float32) for k, (h, w) in enumerate(sizes)]


def _compare(model, run, sizes, path, runtime):
    """Largest |run(x) - Keras(x)| over inputs of `sizes`; UserError when the shapes differ."""
    worst = 0.0
    for x in _inputs(sizes):
        got, ref = np.asarray(run(x)), np.asarray(model(x, training=False))
        if got.shape != ref.shape:
            raise UserError(f"{path}: {runtime} gives shape {got.shape} for a {x.shape[1]}x{x.shape[2]} input, "
                            f"Keras {ref.shape}")
        worst = max(worst, float(np.abs(got.astype(np.float32) - ref).max()))
    return worst


# ---------------------------------------------------------------------------------------------------------- ONNX
def _write_onnx(model, path, half):
    with _quiet_native_stderr():
        model.export(path, format="onnx", verbose=False)
    if half:
        import onnx
        from onnxconverter_common import float16

        with warnings.catch_warnings():  # "float32 number 1e-09 will be truncated to 1e-07": fp16's range, expected
            warnings.simplefilter("ignore")
            full = onnx.load(path)
            half_model = float16.convert_float_to_float16(full, keep_io_types=True,
                                                          node_block_list=_shape_arithmetic(full.graph))
        # The converter marks a Cast's output float16 in value_info even where it keeps the Cast's target type
        # float32 (integer shape arithmetic through Max in tf2onnx graphs); onnxruntime then refuses the file.
        cast_to = {n.output[0]: a.i for n in half_model.graph.node if n.op_type == "Cast" for a in n.attribute
                   if a.name == "to"}
        for info in half_model.graph.value_info:
            if info.name in cast_to:
                info.type.tensor_type.elem_type = cast_to[info.name]
        onnx.save(half_model, path)


def _shape_arithmetic(graph):
    """Names of the nodes that compute sizes from `Shape` outputs (and constants): tf2onnx routes some of that
    integer arithmetic through float ops (Max), whose int32 sentinels overflow float16, so they stay float32."""
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    sizes, names = set(), []
    for node in graph.node:  # ONNX graphs are topologically sorted
        inputs = [i for i in node.input if i]
        if node.op_type == "Shape" or (any(i in sizes for i in inputs) and all(i in sizes or i in constants
                                                                                for i in inputs)):
            sizes.update(node.output)
            names.append(node.name)
    return names


def check_onnx(model, path, sizes=EXPORT_CHECK_SIZES):
    """Largest |ONNX - Keras| in grey levels over `sizes`, run in onnxruntime."""
    import onnxruntime

    sess = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return _compare(model, lambda x: sess.run(None, {name: x})[0], sizes, path, "onnxruntime")


# ---------------------------------------------------------------------------------------------------------- LiteRT
@contextlib.contextmanager
def _quiet_native_stderr():
    """The converters' C++ side prints the whole MLIR module and op-by-op errors on fd 2; the outcome is reported
    in one line instead."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _write_tflite(model, tmp, input_size, path):
    import keras
    import tensorflow as tf

    shape = (None, None, None, 3) if input_size is None else (1, *input_size, 3)
    try:
        with _quiet_native_stderr():
            model.export(tmp, format="litert", verbose=False,
                         input_signature=[keras.InputSpec(shape=shape, dtype="float32")],
                         target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})  # no TF (flex) ops
    except Exception as e:
        if input_size is None and "FLEX" in str(e).upper():
            raise UserError(f"-o {path}: LiteRT's built-in ops cannot run {model.name} with dynamic height and width "
                            "(the converter loses a static channel count); pass --input-size H W for a file of one "
                            "LR size") from None
        raise


def check_tflite(model, path, sizes=EXPORT_CHECK_SIZES):
    """Largest |LiteRT - Keras| in grey levels over `sizes`, run in the ai-edge-litert interpreter."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError("checking a LiteRT file needs the ai-edge-litert interpreter: "
                        "pip install -r requirements.txt") from None
    interpreter = Interpreter(model_path=path)
    entry, exit_ = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x):
        interpreter.resize_tensor_input(entry["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(exit_["index"]).copy()

    return _compare(model, run, sizes, path, "the LiteRT interpreter")


# ---------------------------------------------------------------------------------------------------------- SavedModel
@contextlib.contextmanager
def _atomic_dir(out_dir):
    """Yield a temporary folder beside `out_dir`; on success it replaces the (absent or empty) `out_dir`."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    ensure_writable_dir(parent)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.normpath(out_dir))}.", suffix=".tmp", dir=parent)
    try:
        target = os.path.join(tmp, "saved_model")
        yield target
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)
        os.replace(target, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_saved_model(model, path, sizes=EXPORT_CHECK_SIZES):
    """Largest |SavedModel - Keras| in grey levels over `sizes`, loaded back with tf.saved_model.load."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    return _compare(model, lambda x: loaded.serve(tf.constant(x)).numpy(), sizes, path, "the loaded SavedModel")


# ---------------------------------------------------------------------------------------------------------- PyTorch
def _export_torch(model, path):
    """PyTorch weights in the reference layout: model/convert's torch export (it checks its own round trip)."""
    try:
        from model.convert.torch_export import export_torch  # the PyTorch side's exporter
    except ImportError:
        raise UserError(f"-o {path}: PyTorch export is not available in this version; give X.onnx, X.tflite or a "
                        "folder") from None
    return export_torch(model, path)


# ---------------------------------------------------------------------------------------------------------- entry
def export_model(model, path, half=False, input_size=None):
    """Write `model` to `path` (format from the name, see FORMATS), run it in its runtime and compare with Keras;
    the output appears only when the difference is within TOLERANCE. Returns one line saying what was written."""
    path = os.fspath(path)
    fmt = check_export_path(path, half, input_size)
    if fmt == "torch":
        return _export_torch(model, path)
    model(np.zeros((1, 16, 16, 3), np.float32), training=False)  # Keras's exporter wants a model that ran once
    sizes = (tuple(input_size),) if input_size is not None else EXPORT_CHECK_SIZES
    key = "onnx-fp16" if half else fmt
    runtime = {"onnx": "onnxruntime", "tflite": "LiteRT", "tf_saved_model": "tf.saved_model.load"}[fmt]
    try:
        if fmt == "tf_saved_model":
            with _atomic_dir(path) as tmp:
                model.export(tmp, format="tf_saved_model", verbose=False)
                diff = _accept(check_saved_model(model, tmp, sizes), key, path, runtime)
        else:
            with atomic_path(path) as tmp:
                if fmt == "onnx":
                    _write_onnx(model, tmp, half)
                    diff = _accept(check_onnx(model, tmp, sizes), key, path, runtime)
                else:
                    _write_tflite(model, tmp, input_size, path)
                    diff = _accept(check_tflite(model, tmp, sizes), key, path, runtime)
    except UserError:
        raise
    except Exception as e:  # tf2onnx / TF's converter / the runtimes raise many types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot export to {path}: {first}") from None
    what = {"onnx": "ONNX (fp16 weights and compute, float32 input and output)" if half else "ONNX (fp32)",
            "tflite": "LiteRT" + (f" (input 1x{input_size[0]}x{input_size[1]}x3)" if input_size else
                                  " (dynamic height and width)"),
            "tf_saved_model": "TF SavedModel (signature 'serve', input NxHxWx3 float32 in [0, 255])"}[fmt]
    at = " and ".join(f"{h}x{w}" for h, w in sizes)
    return f"wrote {what} {path}; {runtime} vs Keras at {at}: max |diff| {diff:.4f} grey levels"


def _accept(diff, key, path, runtime):
    if not diff <= TOLERANCE[key]:  # NaN fails too
        raise UserError(f"-o {path}: {runtime} differs from Keras by {diff:.3f} grey levels (limit "
                        f"{TOLERANCE[key]:g}); nothing written")
    return diff
