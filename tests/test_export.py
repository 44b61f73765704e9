"""convert.py export: ONNX (dynamic H and W, run in onnxruntime) and TF SavedModel equal the Keras model."""
import numpy as np
import pytest

import convert
import model
from utils import UserError

ort = pytest.importorskip("onnxruntime")


def _lr(h, w, seed):
    return np.random.default_rng(seed).uniform(0, 255, (1, h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("arch, scale", [("rrdbnet", 2), ("edsr", 3)])
def test_onnx_equals_keras_at_two_sizes(arch, scale, tmp_path):
    params = {"growth_channels": 4} if arch == "rrdbnet" else {}
    m = model.build_model(arch, scale, num_filters=8, num_res_blocks=1, **params)
    src, out = tmp_path / "m.keras", tmp_path / "m.onnx"
    m.save(src)
    convert.main(["export", "-i", str(src), "-o", str(out)])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    dims = sess.get_inputs()[0].shape
    assert not isinstance(dims[1], int) and not isinstance(dims[2], int) and dims[3] == 3  # dynamic H, W
    for k, (h, w) in enumerate([(24, 32), (19, 13)]):  # sizes other than those convert.py checked, one odd
        x = _lr(h, w, k)
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        ref = np.asarray(m(x, training=False))
        assert got.shape == ref.shape == (1, h * scale, w * scale, 3)
        assert np.abs(got - ref).max() < 0.05  # grey levels


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
