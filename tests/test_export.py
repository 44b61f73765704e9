"""model/export.py (convert.py export): each deployment format, run in its own runtime, equals the Keras model.

ONNX fp32 within 1 grey level, ONNX fp16 within 2, LiteRT within 1, at two LR sizes other than those the exporter
checks itself, for RRDBNet-tiny, EDSR-tiny and SRVGGNetCompact-tiny; SavedModel; unknown suffixes; atomic output.
docs/export.md's table names these tests.
"""
import os
import re

import numpy as np
import pytest

import convert
import model
from model import export
from utils import UserError

ort = pytest.importorskip("onnxruntime")

# arch -> (scale, tiny params, LiteRT with dynamic height and width?)
ARCHS = {
    "rrdbnet": (2, dict(num_filters=8, num_res_blocks=1, growth_channels=4), False),  # nearest upsampling: see docs
    "edsr": (3, dict(num_filters=8, num_res_blocks=1), True),
    "srvgg-compact": (4, dict(num_filters=8, num_res_blocks=2), True),
}
SIZES = [(24, 32), (19, 13)]  # LR sizes other than export.EXPORT_CHECK_SIZES, one odd


def _lr(h, w, seed):
    return np.random.default_rng(seed).uniform(0, 255, (1, h, w, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=list(ARCHS))
def tiny(request, tmp_path_factory):
    """(arch, scale, keras model, its .keras file, a folder for outputs)."""
    arch = request.param
    if arch not in model.ARCHITECTURES:
        pytest.skip(f"{arch} is not in this version")
    scale, params, _ = ARCHS[arch]
    m = model.build_model(arch, scale, **params)
    folder = tmp_path_factory.mktemp(arch)
    m.save(folder / "m.keras")
    return arch, scale, m, folder / "m.keras", folder


def _max_diff(m, run, sizes, scale):
    worst = 0.0
    for k, (h, w) in enumerate(sizes):
        x = _lr(h, w, 10 + k)
        got, ref = np.asarray(run(x)), np.asarray(m(x, training=False))
        assert got.shape == ref.shape == (1, h * scale, w * scale, 3)
        worst = max(worst, float(np.abs(got.astype(np.float32) - ref).max()))
    return worst


def _onnx_run(path):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dims = sess.get_inputs()[0].shape
    assert not isinstance(dims[1], int) and not isinstance(dims[2], int) and dims[3] == 3  # dynamic H, W
    return sess, lambda x: sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_onnx_fp32_within_1_grey_level(tiny, capsys):
    arch, scale, m, src, folder = tiny
    out = folder / "m.onnx"
    convert.main(["export", "-i", str(src), "-o", str(out)])
    assert "onnxruntime vs Keras" in capsys.readouterr().err
    _, run = _onnx_run(out)
    diff = _max_diff(m, run, SIZES, scale)
    assert diff <= 1.0 and diff < 0.05, diff  # the limit, and what fp32 really gives


def test_onnx_fp16_within_2_grey_levels(tiny, capsys):
    import onnx

    arch, scale, m, src, folder = tiny
    out = folder / "m16.onnx"
    convert.main(["export", "-i", str(src), "-o", str(out), "--half"])
    assert "fp16 weights and compute" in capsys.readouterr().err
    graph = onnx.load(str(out)).graph
    weights = [t for t in graph.initializer if len(t.dims) == 4]  # conv kernels
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    sess, run = _onnx_run(out)
    assert sess.get_inputs()[0].type == "tensor(float)"  # float32 in and out, fp16 inside
    assert _max_diff(m, run, SIZES, scale) <= 2.0


def _litert_run(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    entry, exit_ = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x):
        interpreter.resize_tensor_input(entry["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(exit_["index"]).copy()

    return entry, run


def test_litert_within_1_grey_level(tiny):
    pytest.importorskip("ai_edge_litert")
    arch, scale, m, src, folder = tiny
    out = folder / "m.tflite"
    if ARCHS[arch][2]:  # dynamic height and width: one file, both sizes
        convert.main(["export", "-i", str(src), "-o", str(out)])
        entry, run = _litert_run(out)
        assert list(entry["shape_signature"]) == [-1, -1, -1, 3]
        assert _max_diff(m, run, SIZES, scale) <= 1.0
        return
    with pytest.raises(UserError, match=re.escape(f"-o {out}: ") + r".*dynamic height and width.*--input-size H W"):
        convert.main(["export", "-i", str(src), "-o", str(out)])
    assert not out.exists() and not [p for p in os.listdir(folder) if ".tmp" in p]
    for k, (h, w) in enumerate(SIZES):  # one fixed-size file per LR size
        out = folder / f"m{k}.tflite"
        export.export_model(m, out, input_size=(h, w))  # convert.py export --input-size H W
        entry, run = _litert_run(out)
        assert list(entry["shape_signature"]) == [1, h, w, 3]
        assert _max_diff(m, run, [(h, w)], scale) <= 1.0


def test_saved_model_equals_keras(tmp_path):
    import tensorflow as tf

    m = model.build_model("rrdbnet", 4, num_filters=8, num_res_blocks=1, growth_channels=4, pred_logvar=True)
    src, out = tmp_path / "m.keras", tmp_path / "sm"
    m.save(src)
    convert.main(["export", "-i", str(src), "-o", str(out)])
    loaded = tf.saved_model.load(str(out))
    for k, (h, w) in enumerate([(8, 12), (11, 7)]):
        x = _lr(h, w, k)
        got = np.asarray(loaded.serve(tf.constant(x)))
        ref = np.asarray(m(x, training=False))
        assert got.shape == ref.shape == (1, 4 * h, 4 * w, 6)
        assert np.abs(got - ref).max() < 0.05
    with pytest.raises(UserError, match="not an empty folder"):
        convert.main(["export", "-i", str(src), "-o", str(out)])


def test_unknown_suffix_and_misplaced_options_fail_before_the_load(tmp_path):
    missing = str(tmp_path / "absent.keras")  # never opened: the output is checked first
    for out, message in [("x.xyz", r"cannot export to '\.xyz'.*X\.tflite"), ("x.keras", r"cannot export to '\.keras'")]:
        with pytest.raises(UserError, match=message):
            convert.main(["export", "-i", missing, "-o", str(tmp_path / out)])
    for out, options, message in [("x.tflite", {"half": True}, "--half applies to ONNX export only"),
                                  ("x.onnx", {"input_size": (32, 32)}, "--input-size applies to LiteRT"),
                                  ("x.tflite", {"input_size": (0, 32)}, "give the LR height and width")]:
        with pytest.raises(UserError, match=message):
            export.check_export_path(tmp_path / out, **options)
    assert os.listdir(tmp_path) == []
    assert export.export_format(tmp_path / "m.tflite") == "tflite"
    assert export.export_format(tmp_path / "m.safetensors") == export.export_format(tmp_path / "m.pth") == "torch"
    assert export.export_format(tmp_path / "saved") == "tf_saved_model"


def test_a_file_that_fails_its_check_is_not_written(tmp_path, monkeypatch):
    m = model.build_model("edsr", 2, num_filters=4, num_res_blocks=1)
    monkeypatch.setitem(export.TOLERANCE, "onnx", -1.0)  # any difference is too much
    with pytest.raises(UserError, match=r"onnxruntime differs from Keras by .* grey levels .*nothing written"):
        export.export_model(m, tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary


def test_torch_suffixes_go_through_the_pytorch_export(tmp_path):
    m = model.build_model("edsr", 2, num_filters=8, num_res_blocks=1)
    out = tmp_path / "m.safetensors"
    message = export.export_model(m, out)  # model/convert/torch_export.py writes and reads it back
    assert message.startswith(f"wrote {out}") and "read back" in message
    back = model.load_model(out)
    x = _lr(13, 17, 0)
    assert np.abs(np.asarray(back(x)) - np.asarray(m(x, training=False))).max() < 1e-3
