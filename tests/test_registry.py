"""The registries (model/registry.py): every generator and discriminator builds, saves, loads with
`keras.models.load_model` alone (its class config rebuilds it) and gives the same output on TensorFlow, JAX and
PyTorch; files written before the registry (tests/fixtures/legacy-*) still load, with their scale, log-variance
output, loss mode and kind found the old way."""
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import model
from conftest import jax_env
from utils import UserError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = {"num_filters": 8, "num_res_blocks": 1, "growth_channels": 4, "res_expansion": 2}  # where the arch takes them


def generator_cases():
    """(file stem, arch, scale, params): every registered generator at its smallest and largest scale, with the
    log-variance head at the largest."""
    cases = []
    for arch in model.ARCHITECTURES:
        params = {k: v for k, v in TINY.items() if k in model.arch_params(arch)}
        scales = model.arch_scales(arch)
        cases.append((f"{arch}-x{scales[0]}", arch, scales[0], params))
        cases.append((f"{arch}-x{scales[-1]}-logvar", arch, scales[-1], {**params, "pred_logvar": True}))
    return cases


def discriminator_cases():
    return [(f"d-{name}", name, {"num_feat": 4}) for name in model.DISCRIMINATORS]


LOAD_SCRIPT = r"""
import json, sys
import numpy as np
import keras
import model  # registers the classes; nothing else is needed to load
cases = json.loads(sys.argv[1])
x = np.load(cases["x"])
worst = {}
for stem, path in cases["files"].items():
    m = keras.models.load_model(path)
    out = m(x, training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    ref = np.load(cases["outputs"][stem])
    got = [keras.ops.convert_to_numpy(o) for o in out]
    assert [g.shape for g in got] == [ref[f"out{k}"].shape for k in range(len(got))], stem
    worst[stem] = max(float(np.abs(g - ref[f"out{k}"]).max()) for k, g in enumerate(got))
    assert type(m).__name__ == cases["classes"][stem], (stem, type(m).__name__)
print("RESULT " + json.dumps({"backend": keras.backend.backend(), "worst": worst}))
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every registered network, built tiny under TensorFlow with fixed weights, saved, with its outputs."""
    tmp = tmp_path_factory.mktemp("registry")
    x = np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    np.save(tmp / "x.npy", x)
    cases = {"x": str(tmp / "x.npy"), "files": {}, "outputs": {}, "classes": {}, "configs": {}}
    keras.utils.set_random_seed(0)
    networks = [(stem, model.build_model(arch, scale, **params)) for stem, arch, scale, params in generator_cases()]
    networks += [(stem, model.build_discriminator(name, **params)) for stem, name, params in discriminator_cases()]
    for stem, net in networks:
        out = net(x, training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        path = tmp / f"{stem}.keras"
        net.save(path)
        np.savez(tmp / f"{stem}.npz", **{f"out{k}": keras.ops.convert_to_numpy(o) for k, o in enumerate(out)})
        cases["files"][stem] = str(path)
        cases["outputs"][stem] = str(tmp / f"{stem}.npz")
        cases["classes"][stem] = type(net).__name__
        cases["configs"][stem] = net.get_config()
    return cases


def test_every_network_is_covered(saved):
    assert {"edsr", "wdsr-a", "wdsr-b", "sr-resnet", "rrdbnet"} <= set(model.ARCHITECTURES)
    assert set(model.DISCRIMINATORS) == {"attention-unet", "attention-unet-multiscale", "unet-sn"}
    assert len(saved["files"]) == 2 * len(model.ARCHITECTURES) + len(model.DISCRIMINATORS)
    assert {saved["classes"][s] for s, *_ in generator_cases()} == {"SRModel"}
    assert {saved["classes"][s] for s, *_ in discriminator_cases()} == {"Discriminator"}


@pytest.mark.parametrize("stem, arch, scale, params", generator_cases(), ids=[c[0] for c in generator_cases()])
def test_generator_config_round_trip(saved, stem, arch, scale, params):
    """The saved config holds arch, scale, params, output kind; load_model alone restores them and the output."""
    config = saved["configs"][stem]
    assert (config["arch"], config["scale"], config["params"]) == (arch, scale, params)
    assert config["output"] == ("image+logvar" if params.get("pred_logvar") else "image")
    m = keras.models.load_model(saved["files"][stem])
    assert isinstance(m, model.SRModel) and m.get_config() == config
    assert model.model_scale(m) == scale and model.predicts_logvar(m) == bool(params.get("pred_logvar"))
    assert model.model_kind(m) == "generator"
    x = np.load(saved["x"])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(m(x, training=False)), np.load(saved["outputs"][stem])["out0"])
    # the forward-pass reading of the scale (older files) agrees with the config
    assert model.model_scale(keras.Model(m.input, m.output)) == scale


@pytest.mark.parametrize("stem, name, params", discriminator_cases(), ids=[c[0] for c in discriminator_cases()])
def test_discriminator_config_round_trip(saved, stem, name, params):
    config = saved["configs"][stem]
    assert (config["arch"], config["params"], config["kind"]) == (name, params, "discriminator")
    path = saved["files"][stem]
    m = keras.models.load_model(path)
    assert isinstance(m, model.Discriminator) and m.get_config() == config and model.model_kind(m) == "discriminator"
    with pytest.raises(UserError, match=r"d-.*\.keras is a discriminator, not a super-resolution model"):
        model.load_model(path)
    assert isinstance(model.load_discriminator(path), model.Discriminator)


def test_same_output_on_jax_and_torch(saved):
    """One subprocess per other backend loads every saved network with keras.models.load_model alone."""
    # every generator once (its largest scale, with the log-variance head) and every discriminator: ~40 s of CPU
    files = {s: p for s, p in saved["files"].items() if s.endswith("-logvar") or s.startswith("d-")}
    arg = json.dumps({**{k: saved[k] for k in ("x", "outputs", "classes")}, "files": files})
    envs = {"jax": jax_env(), "torch": {**os.environ, "KERAS_BACKEND": "torch"}}
    procs = {b: subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, arg], env={**env, "CUDA_VISIBLE_DEVICES": ""},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for b, env in envs.items()}
    for backend, p in procs.items():
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, f"{backend}:\n{out[-3000:]}"
        result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
        assert result["backend"] == backend and set(result["worst"]) == set(files)
        # pixel units (0..255) and logits: float32 rounding of different conv kernels only (measured <= 1e-4)
        bad = {k: v for k, v in result["worst"].items() if v > 1e-3}
        assert not bad, (backend, bad)


def test_float32_outputs_survive_a_rebuild_from_config():
    """Mixed precision: the float32 output layers (training.distribute.keep_outputs_float32) are in the config, so
    a rebuild from it (a process-local copy) is the same network, and float32_network gives an all-float32 one."""
    from training.distribute import float32_network

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        m = model.build_model("edsr", 2, num_filters=8, num_res_blocks=1)
        for name in ("tail", "denormalize"):
            m.get_layer(name).dtype_policy = "float32"
        config = m.get_config()
        assert config["dtype"] == "mixed_float16" and set(config["float32_layers"]) == {"tail", "denormalize"}
    finally:
        keras.config.set_dtype_policy(previous)
    copy = type(m).from_config(config)  # under the float32 global policy: the config says mixed
    assert copy.get_layer("head").dtype_policy.name == "mixed_float16"
    assert copy.get_layer("tail").dtype_policy.name == "float32"
    published = float32_network(m)
    assert isinstance(published, model.SRModel) and published.get_config()["dtype"] == "float32"
    assert {layer.dtype_policy.name for layer in published.layers} == {"float32"}


def test_registry_errors_are_one_line():
    with pytest.raises(UserError, match="unknown architecture 'nope'; choose one of edsr"):
        model.build_model("nope", 2)
    with pytest.raises(UserError, match="unsupported scale 3 for rrdbnet"):
        model.build_model("rrdbnet", 3)
    with pytest.raises(UserError, match="edsr does not take width; its parameters are num_filters"):
        model.build_model("edsr", 2, width=3)
    with pytest.raises(UserError, match="unknown discriminator 'nope'"):
        model.build_discriminator("nope")
    with pytest.raises(UserError, match="discriminator unet-sn does not take num_filters"):
        model.build_discriminator("unet-sn", num_filters=4)
    with pytest.raises(ValueError, match="registered twice"):
        model.register_generator("edsr")(lambda scale: None)


def test_a_new_architecture_is_one_decorated_function(tmp_path):
    """Adding an architecture: the decorator is all the registry needs (scales, parameters, saving, loading)."""
    from model.layers import conv2d, lr_input, sr_output
    from model.registry import ARCH_SCALES, ARCHITECTURES

    @model.register_generator("test-espcn", scales=(2, 3))
    def espcn(scale, num_filters=8, pred_logvar=False):
        x_in = lr_input()
        x = conv2d(num_filters, 3, "head", activation="relu")(x_in)
        x = conv2d(3 * scale * scale, 3, f"conv_scale_{scale}")(x)
        return keras.Model(x_in, sr_output(model.PixelShuffle(scale, name=f"shuffle_scale_{scale}")(x)), name="espcn")

    try:
        assert model.arch_scales("test-espcn") == (2, 3) and model.arch_params("test-espcn") == ["num_filters",
                                                                                               "pred_logvar"]
        m = model.build_model("test-espcn", 3, num_filters=4)
        m.save(tmp_path / "e.keras")
        loaded = model.load_model(tmp_path / "e.keras")
        assert model.model_scale(loaded) == 3 and loaded.get_config()["params"] == {"num_filters": 4}
    finally:
        del ARCHITECTURES["test-espcn"], ARCH_SCALES["test-espcn"]


# ----------------------------------------------------------------------------------------------------------------
# Files written by the code before the registry (tests/fixtures/make_legacy.py)
# ----------------------------------------------------------------------------------------------------------------
def _legacy_outputs():
    return np.load(FIXTURES / "legacy-outputs.npz")


def test_legacy_edsr_loads():
    m = model.load_model(FIXTURES / "legacy-edsr-x2.keras")
    assert not isinstance(m, model.SRModel)  # a plain functional model: the fallbacks read it
    assert model.model_scale(m) == 2 and not model.predicts_logvar(m) and model.model_kind(m) == "generator"
    ref = _legacy_outputs()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(m(ref["x"], training=False)), ref["edsr"])
    assert model.transfer_weights(model.build_model("edsr", 4, num_filters=8, num_res_blocks=1),
                                  FIXTURES / "legacy-edsr-x2.keras")


def test_legacy_gram_checkpoint_keeps_scale_logvar_and_loss_mode():
    import losses

    path = FIXTURES / "legacy-gram-srresnet-x3-l1.keras"
    m = model.load_model(path)
    assert model.model_scale(m) == 3 and model.predicts_logvar(m) and model.model_kind(m) == "generator"
    assert model.model_loss_mode(m) is None  # not in a config: found in the compiled loss of the file
    assert losses.checkpoint_loss_mode(m, path) == "l1"
    ref = _legacy_outputs()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(m(ref["x"], training=False)), ref["gram"])


def test_legacy_discriminator_is_recognised():
    path = FIXTURES / "legacy-unet-sn-d.keras"
    with pytest.raises(UserError, match="legacy-unet-sn-d.keras is a discriminator, not a super-resolution model"):
        model.load_model(path)
    d = model.load_discriminator(path)
    assert model.model_kind(d) == "discriminator"
    ref = _legacy_outputs()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(d(ref["x"], training=False)), ref["d"])
    fresh = model.build_discriminator("unet-sn", num_feat=2)
    assert model.load_discriminator(path, into=fresh) is fresh
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh(ref["x"], training=False)), ref["d"])


def test_new_gram_checkpoint_carries_its_loss_mode(tmp_path):
    """Compiled with SRLoss (train.py's checkpoint saver) or set on the model: the config records the mode."""
    import losses

    m = model.build_model("edsr", 2, num_filters=8, num_res_blocks=1, pred_logvar=True)
    m.compile(optimizer="sgd", loss=losses.SRLoss(pred_logvar=True, loss_mode="l1"), jit_compile=False)
    m.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras", compile=False)
    assert loaded.get_config()["loss_mode"] == "l1" and model.model_loss_mode(loaded) == "l1"
    assert losses.checkpoint_loss_mode(loaded) == "l1"
    plain = model.build_model("edsr", 2, num_filters=8, num_res_blocks=1)
    plain.compile(optimizer="sgd", loss=losses.SRLoss(), jit_compile=False)
    assert plain.get_config()["loss_mode"] is None and model.model_loss_mode(plain) is None


@pytest.mark.parametrize("content, words", [
    (b"this is not a model\n", "is not a Keras model: a .keras file is a zip archive"),
    ("truncated", "truncated"),
])
def test_wrong_files_say_what_they_are(tmp_path, content, words):
    path = tmp_path / "m.keras"
    if content == "truncated":
        model.build_model("edsr", 2, num_filters=4, num_res_blocks=1).save(tmp_path / "full.keras")
        content = (tmp_path / "full.keras").read_bytes()[:3000]
    path.write_bytes(content)
    with pytest.raises(UserError, match=words) as e:
        model.load_model(path)
    assert "\n" not in str(e.value)
    (tmp_path / "m.h5").write_text("text")
    with pytest.raises(UserError, match=r"m\.h5 is not an HDF5 file"):
        model.load_model(tmp_path / "m.h5")
    with pytest.raises(UserError, match="unknown model file type"):
        model.load_model(FIXTURES / "make_legacy.py")
