"""Models: seed-table parameter counts, every profile x scale builds/runs/round-trips, JAX parity, transfer."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import model
import profiles
from training import config as schema
from conftest import jax_env
from utils import UserError

SCALES = (2, 3, 4)
H, W = 17, 23  # odd sizes on purpose


def lr_batch(seed=0, n=1, h=H, w=W):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, h, w, 3)).astype("float32")


# The seed's table, through the same path as `train.py --print-model-summary --dry-run`.
@pytest.mark.parametrize("profile, scale, overrides, expected", [
    ("edsr-16", 2, {}, 1.37),
    ("wdsr-a-16", 2, {}, 1.19),
    ("wdsr-a-32", 2, {"res_expansion": 6}, 3.55),
    ("wdsr-a-32", 4, {"res_expansion": 6}, 3.56),
    ("wdsr-b-32", 2, {}, 0.59),
])
def test_seed_table_param_counts(profile, scale, overrides, expected):
    m, config = schema.build_from_profile(profile, scale, **overrides)
    assert round(model.count_params(m) / 1e6, 2) == expected
    text = model.describe(m)
    assert "Total params:" in text
    assert f"({expected:.2f}M)" in text.splitlines()[-1]
    assert text.splitlines()[-1].startswith("Parameters (seed-table count, weight-norm g excluded): ")


def test_wdsr_b_exact_count():
    m, _ = schema.build_from_profile("wdsr-b-32", 2)
    assert model.count_params(m) == 593852
    # Keras's own total also counts the redundant g: one per output channel of every weight-norm conv.
    g = sum(layer.filters for layer in model.weightnorm_layers(m))
    assert m.count_params() == 593852 + g


def _model_key(name):
    p = profiles.PROFILES[name]
    return p["arch"], json.dumps(p["model"], sort_keys=True)


# One profile per distinct network: the GAN profiles (realesrnet-x4, realesrgan-x4, aesrgan-*) train the very
# network of "rrdbnet" (same arch and model values), so building them again would test nothing new (~30 s each).
_FIRST = {}
for _name in profiles.PROFILES:
    _FIRST.setdefault(_model_key(_name), _name)
MODEL_PROFILES = list(_FIRST.values())


def test_model_profiles_cover_every_profile_network():
    covered = {_model_key(name) for name in MODEL_PROFILES}
    assert all(_model_key(name) in covered for name in profiles.PROFILES)
    assert len(covered) == len(MODEL_PROFILES) and "rrdbnet" in MODEL_PROFILES and "aesrgan-x4" not in MODEL_PROFILES


# Every distinct profile network is built and run at every scale at full size. To keep the suite fast, the
# save/load round trip of the deep profiles (edsr: 32 x 256, 41M parameters; wdsr-*-32; rrdbnet: 23 RRDBs)
# uses 4 blocks of the same profile: the layer types, names and serialization are the same, only repeated
# fewer times (the 8/16-block profiles round-trip at full size). The deep profiles run at full depth at one
# scale (x4) only: the other scales differ in the upsampler alone, which the 4-block build covers.
DEEP = 16


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("profile", MODEL_PROFILES)
def test_profile_builds_runs_and_round_trips(profile, scale, tmp_path):
    if scale not in model.arch_scales(profiles.PROFILES[profile]["arch"]):
        pytest.skip(f"{profile} has no x{scale}")
    deep = profiles.PROFILES[profile]["model"]["num_res_blocks"] > DEEP
    m, config = schema.build_from_profile(profile, scale, num_res_blocks=4 if deep and scale != 4 else None)
    x = lr_batch(scale)
    y = keras.ops.convert_to_numpy(m(x, training=False))
    assert y.shape == (1, H * scale, W * scale, 3)
    assert np.isfinite(y).all()
    assert model.model_scale(m) == scale
    assert not model.predicts_logvar(m)
    names = [layer.name for layer in m.layers]
    assert len(set(names)) == len(names)
    assert all(f"scale_{scale}" in n for n in names if "scale_" in n)

    if config["num_res_blocks"] > DEEP:
        m, _ = schema.build_from_profile(profile, scale, num_res_blocks=4)
        y = keras.ops.convert_to_numpy(m(x, training=False))
    path = tmp_path / "m.keras"
    m.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x, training=False)), y)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in m.layers]


def test_layer_names_do_not_depend_on_scale_or_build_count():
    def shared(m):
        return [layer.name for layer in m.layers if "scale_" not in layer.name]

    for arch in model.ARCHITECTURES:
        a = model.build_model(arch, 2, num_filters=8, num_res_blocks=2)
        b = model.build_model(arch, 4, num_filters=8, num_res_blocks=2)
        assert shared(a) == shared(b)
        assert any("scale_4" in layer.name for layer in b.layers)


@pytest.mark.parametrize("arch", list(model.ARCHITECTURES))
@pytest.mark.parametrize("scale", SCALES)
def test_pred_logvar_six_channels(arch, scale):
    if scale not in model.arch_scales(arch):
        pytest.skip(f"{arch} has no x{scale}")
    m = model.build_model(arch, scale, num_filters=8, num_res_blocks=1, pred_logvar=True)
    y = keras.ops.convert_to_numpy(m(lr_batch(), training=False))
    assert y.shape == (1, H * scale, W * scale, 6)
    assert model.predicts_logvar(m) and model.model_scale(m) == scale
    # the log-variance head starts at zero; the mean is in pixel units, unaffected by the extra head
    np.testing.assert_allclose(y[..., 3:], 0.0, atol=1e-6)
    plain = model.build_model(arch, scale, num_filters=8, num_res_blocks=1)
    model.transfer_weights(plain, m)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(lr_batch(), training=False)), y[..., :3],
                               rtol=1e-5, atol=1e-3)


def test_pixel_shuffle_matches_tf_depth_to_space():
    import tensorflow as tf

    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3 * 9)).astype("float32")
    for s in (2, 3):
        c = x[..., : 3 * s * s]
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.PixelShuffle(s)(c)),
                                      tf.nn.depth_to_space(c, s).numpy())


def test_normalize_denormalize():
    x = lr_batch()
    n = keras.ops.convert_to_numpy(model.Normalize()(x))
    np.testing.assert_allclose(n, (x - np.array(model.DIV2K_RGB_MEAN, dtype="float32")) / 127.5, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.Denormalize()(n)), x, rtol=1e-5, atol=1e-3)


def test_wdsr_structure_follows_krasserm():
    m = model.build_model("wdsr-b", 3, num_res_blocks=2)
    convs = [layer for layer in m.layers if isinstance(layer, model.WeightNormConv2D)]
    kernels = [(layer.name, layer.kernel_size, layer.filters) for layer in convs]
    assert kernels[0] == ("head", (3, 3), 32)
    assert kernels[1:4] == [("block_1_conv1", (1, 1), 192), ("block_1_conv2", (1, 1), 25),
                            ("block_1_conv3", (3, 3), 32)]
    assert ("conv2d_main_scale_3", (3, 3), 27) in kernels and ("conv2d_skip_scale_3", (5, 5), 27) in kernels
    a = model.build_model("wdsr-a", 2, num_res_blocks=1, weightnorm=False)
    assert [layer.kernel.shape for layer in a.layers if isinstance(layer, keras.layers.Conv2D)][1:3] == \
        [(3, 3, 32, 128), (3, 3, 128, 32)]


def test_build_model_rejects_bad_input():
    with pytest.raises(UserError, match="unknown architecture"):
        model.build_model("srcnn", 2)
    with pytest.raises(UserError, match="unsupported scale"):
        model.build_model("edsr", 8)
    with pytest.raises(UserError, match="res_expansion"):
        model.build_model("edsr", 2, res_expansion=4)


def _tiny_pair(tmp_path, arch="wdsr-a", **params):
    params = {"num_filters": 8, "num_res_blocks": 2, **params}
    x2 = model.build_model(arch, 2, **params)
    path = tmp_path / "x2.keras"
    x2.save(path)
    return x2, path, params


@pytest.mark.parametrize("arch", list(model.ARCHITECTURES))
def test_transfer_x2_to_x4(arch, tmp_path):
    x2, path, params = _tiny_pair(tmp_path, arch)
    x4 = model.build_model(arch, 4, **params)
    before = {layer.name: layer.get_weights() for layer in x4.layers if "scale_" in layer.name}
    names = model.transfer_weights(x4, path)
    assert names and not any("scale_" in n for n in names)
    shared = [layer.name for layer in x4.layers if layer.weights and "scale_" not in layer.name]
    assert names == shared
    for n in names:
        for a, b in zip(x4.get_layer(n).get_weights(), x2.get_layer(n).get_weights()):
            np.testing.assert_array_equal(a, b)
    for n, weights in before.items():
        for a, b in zip(x4.get_layer(n).get_weights(), weights):
            np.testing.assert_array_equal(a, b)


def test_transfer_rejects_mismatch(tmp_path):
    _, path, params = _tiny_pair(tmp_path)
    wider = model.build_model("wdsr-a", 4, num_filters=16, num_res_blocks=2)
    with pytest.raises(UserError, match="x2.keras.*head"):
        model.transfer_weights(wider, path)
    with pytest.raises(UserError, match="same architecture"):
        model.transfer_weights(model.build_model("sr-resnet", 2, num_filters=8, num_res_blocks=2), path)
    with pytest.raises(UserError, match="not found"):
        model.transfer_weights(wider, tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="bad.keras"):
        model.load_model(bad)


def test_transfer_between_weightnorm_and_plain(tmp_path):
    x = lr_batch()
    wn = model.build_model("wdsr-b", 2, num_filters=8, num_res_blocks=2)
    model.weightnorm_data_init(wn, [x])
    plain = model.build_model("wdsr-b", 2, num_filters=8, num_res_blocks=2, weightnorm=False)
    model.transfer_weights(plain, wn)
    y = keras.ops.convert_to_numpy(wn(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)), y, rtol=1e-4, atol=1e-2)
    back = model.build_model("wdsr-b", 2, num_filters=8, num_res_blocks=2)
    model.transfer_weights(back, plain)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(x)), y, rtol=1e-4, atol=1e-2)


JAX_SCRIPT = r"""
import json, sys
import numpy as np
import keras
import model
assert keras.backend.backend() == "jax"
cases = json.loads(sys.argv[2])
x = np.load(cases["x"])
for path, expected in cases["models"]:
    m = keras.models.load_model(path)
    y = np.asarray(m(x, training=False))
    ref = np.load(expected)
    assert y.shape == ref.shape, (path, y.shape, ref.shape)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-2, err_msg=path)
    # and a freshly built one, so the builders themselves run under JAX
    fresh = model.build_model(m.name.replace("_", "-"), model.model_scale(m),
                              num_filters=8, num_res_blocks=1)
    assert np.asarray(fresh(x)).shape[1] == ref.shape[1]
    if model.weightnorm_layers(fresh):  # data-dependent init runs eagerly under JAX too
        assert model.weightnorm_data_init(fresh, [x])
        head = fresh.get_layer("head")
        pre = np.asarray(keras.ops.conv(model.Normalize()(x), head.folded_kernel(), padding="same") + head.bias)
        np.testing.assert_allclose(pre.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
        np.testing.assert_allclose(pre.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
print("ok")
"""


def test_jax_backend_matches_tensorflow(tmp_path, repo_root):
    """Models saved under TF load and run under JAX with the same outputs (and build there from scratch)."""
    x = lr_batch(3)
    np.save(tmp_path / "x.npy", x)
    cases = {"x": str(tmp_path / "x.npy"), "models": []}
    for i, (arch, scale, extra) in enumerate([("edsr", 4, {"res_scaling": 0.1}), ("wdsr-a", 3, {}),
                                              ("wdsr-b", 2, {"pred_logvar": True}), ("sr-resnet", 4, {})]):
        m = model.build_model(arch, scale, num_filters=8, num_res_blocks=1, **extra)
        if arch.startswith("wdsr"):
            model.weightnorm_data_init(m, [x])
        path = tmp_path / f"{i}.keras"
        m.save(path)
        np.save(tmp_path / f"{i}.npy", keras.ops.convert_to_numpy(m(x, training=False)))
        cases["models"].append([str(path), str(tmp_path / f"{i}.npy")])
    env = jax_env()  # XLA optimisation passes off: they dominate JAX's cost here
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(repo_root), json.dumps(cases)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout
