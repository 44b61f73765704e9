"""Profiles (plain data, overrides) and the optimizer / learning-rate schedule factory."""
import keras
import numpy as np
import pytest

import model
import profiles
from optimizer import make_optimizer, make_schedule
from training import config as schema
from utils import UserError

EXPECTED = {"wdsr-a-8", "wdsr-a-16", "wdsr-a-32", "wdsr-b-8", "wdsr-b-16", "wdsr-b-32", "edsr-8", "edsr-16", "edsr",
            "sr-resnet"}


def test_profiles_are_plain_data_with_seed_values():
    assert EXPECTED <= set(profiles.PROFILES)  # the seed's profiles (later issues add RRDBNet / GAN ones)
    for name in EXPECTED:
        p = profiles.PROFILES[name]
        assert set(p) == {"arch", "model", "train"}
        assert p["arch"] in model.ARCHITECTURES
        assert set(p["model"]) <= set(model.arch_params(p["arch"]))
        t = p["train"]
        assert t["lr_boundaries"] == [200000] and t["lr_decay"] == 0.5 and t["batch_size"] == 16
        if p["arch"].startswith("wdsr"):
            assert t["learning_rate"] == 1e-3 and t["loss"] == "mae" and p["model"]["weightnorm"]
            assert p["model"]["res_expansion"] == (4 if p["arch"] == "wdsr-a" else 6)
            assert p["model"]["num_res_blocks"] == int(name.rsplit("-", 1)[1])
        elif p["arch"] == "edsr":
            assert t["learning_rate"] == 1e-4 and t["loss"] == "mae" and not p["model"]["weightnorm"]
        else:
            assert t["loss"] == "mse" and t["learning_rate"] == 1e-4
    full = profiles.PROFILES["edsr"]["model"]
    assert (full["num_res_blocks"], full["num_filters"], full["res_scaling"]) == (32, 256, 0.1)


def test_resolve_merges_overrides_and_ignores_none():
    c = schema.resolve(dict(profile="wdsr-a-32", res_expansion=6, learning_rate=5e-4, num_filters=None,
                            batch_size=None))
    assert c["res_expansion"] == 6 and c["learning_rate"] == 5e-4
    assert c["num_filters"] == 32 and c["batch_size"] == 16
    assert c["profile"] == "wdsr-a-32" and c["arch"] == "wdsr-a"
    assert schema.resolve({"profile": "edsr-16", "num_init_batches": 4})["num_init_batches"] == 4
    # resolve never mutates the table
    assert profiles.PROFILES["wdsr-a-32"]["model"]["res_expansion"] == 4


def test_every_profile_is_valid_schema_data_and_unknown_keys_are_errors(monkeypatch):
    import copy

    from training import config

    schema.check_profiles()  # every key of every profile is a declared option with a valid value
    bad = copy.deepcopy(profiles.PROFILES)
    bad["edsr-16"]["train"]["learning_rte"] = 1e-4  # a typo must not be silently ignored
    monkeypatch.setattr(profiles, "PROFILES", bad)
    with pytest.raises(ValueError, match="edsr-16.*learning_rte"):
        schema.check_profiles()
    with pytest.raises(ValueError, match="learning_rte"):
        config.resolve({"profile": "edsr-16"})
    bad["edsr-16"]["train"].pop("learning_rte")
    bad["edsr-16"]["train"]["batch_size"] = 0  # values are checked by the option's validator
    with pytest.raises(ValueError, match="batch-size 0"):
        schema.check_profiles()
    bad["edsr-16"]["train"]["batch_size"] = 16
    bad["edsr-16"]["train"]["degradation"] = {"jpeg_rnage": [30, 95]}  # the pipeline's own key check
    with pytest.raises(ValueError, match="jpeg_rnage"):
        schema.check_profiles()


def test_gan_profiles_use_real_esrgans_crop_recipe():
    from training import config

    for name in ("realesrnet-x4", "realesrgan-x4", "aesrgan-x4", "aesrgan-multi-x4"):
        c = config.resolve({"profile": name})
        assert (c["arch"], c["scale"], c["lr_transform"], c["realesrgan_crop"], c["lr_patch"]) == \
            ("rrdbnet", 4, "realesrgan", 400, 64), name  # 400 px HR patches -> GT 256 / LQ 64
        assert c["degradation"] == {} and c["trainer_task"] == "realesrgan"
    c = config.resolve({"profile": "aesrgan-x4", "degradation": {"final_sinc_prob": 0.5}})
    assert c["degradation"] == {"final_sinc_prob": 0.5}


def test_schema_resolves_profile_then_command_line():
    from training import config

    c = config.resolve({"profile": "edsr-16", "learning_rate": 5e-4, "optimizer": "adamw", "weight_decay": 0.01})
    assert (c["arch"], c["num_filters"], c["learning_rate"], c["lr_boundaries"]) == ("edsr", 64, 5e-4, [200000])
    assert config.optimizer_params(c)["name"] == "adamw"
    assert config.model_params(c) == {"num_filters": 64, "num_res_blocks": 16, "weightnorm": False,
                                      "pred_logvar": False}
    with pytest.raises(UserError, match="unknown option"):
        config.resolve({"profile": "edsr-16", "nonsense": 1})
    # the profile's optimizer is honoured (it was ignored: train.py hard-coded Adam)
    opt = make_optimizer(**config.optimizer_params(c))
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == pytest.approx(0.01)


def test_adding_an_option_is_one_declaration(monkeypatch):
    from training import config

    monkeypatch.setitem(config.OPTIONS, "toy_weight", config.Option(
        "toy_weight", float, 0.5, "weight of a toy loss term", "loss", validator=config.positive, profile=True))
    args = config.build_parser([]).parse_args(["--toy-weight", "2"])
    assert config.resolve(args)["toy_weight"] == 2.0
    assert config.resolve({})["toy_weight"] == 0.5
    with pytest.raises(UserError, match="--toy-weight -1"):
        config.resolve({"toy_weight": -1.0})
    assert "weight of a toy loss term (default: 0.5)" in " ".join(config.build_parser([]).format_help().split())


def test_resolve_rejects_bad_input():
    with pytest.raises(UserError, match="wdsr-a-16.*edsr"):
        schema.resolve({"profile": "wdsr-c-16"})
    with pytest.raises(UserError, match="res-expansion"):
        schema.resolve({"profile": "edsr-16", "res_expansion": 6})


def test_build_from_profile():
    m, c = schema.build_from_profile("wdsr-b-8", 3, num_res_blocks=1, pred_logvar=True)
    assert c["scale"] == 3 and c["num_res_blocks"] == 1
    assert model.model_scale(m) == 3 and model.predicts_logvar(m)


def test_schedule_halves_at_boundary_and_serializes():
    s = make_schedule(1e-3, [200000], 0.5)
    lr = lambda step: float(keras.ops.convert_to_numpy(s(step)))  # noqa: E731
    assert lr(0) == pytest.approx(1e-3) and lr(200000) == pytest.approx(1e-3)
    assert lr(200001) == pytest.approx(5e-4) and lr(10 ** 6) == pytest.approx(5e-4)
    s2 = make_schedule(1e-4, [10, 20], 0.5)
    assert float(keras.ops.convert_to_numpy(s2(25))) == pytest.approx(2.5e-5)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert float(keras.ops.convert_to_numpy(restored(200001))) == pytest.approx(5e-4)
    assert make_schedule(1e-3, None) == 1e-3


def test_optimizer_round_trips_in_saved_model(tmp_path):
    m = model.build_model("wdsr-a", 2, num_filters=4, num_res_blocks=1)
    opt = make_optimizer("adam", learning_rate=1e-3, boundaries=[1], decay=0.5, ema=True, ema_momentum=0.9,
                         clipnorm=1.0)
    m.compile(optimizer=opt, loss="mae")
    x = np.random.default_rng(0).uniform(0, 255, (2, 6, 6, 3)).astype("float32")
    y = np.random.default_rng(1).uniform(0, 255, (2, 12, 12, 3)).astype("float32")
    m.fit(x, y, batch_size=2, epochs=3, verbose=0)
    path = tmp_path / "opt.keras"
    m.save(path)
    loaded = keras.models.load_model(path)
    lo = loaded.optimizer
    assert int(lo.iterations.numpy()) == 3 and lo.use_ema and lo.ema_momentum == pytest.approx(0.9)
    assert lo.clipnorm == 1.0
    assert float(lo.learning_rate.numpy()) == pytest.approx(5e-4)  # past the boundary: halved
    for a, b in zip(lo.variables, m.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    loaded.fit(x, y, batch_size=2, epochs=1, verbose=0)  # resumes training
    with pytest.raises(UserError, match="optimizer"):
        make_optimizer("rmsprop")


def test_profiles_module_is_inert_data():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(profiles.__file__).read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_gan_profiles_equal_the_reference_configurations():
    """../shared/reference/aesrgan-realesrgan-facts.md section 3 (BasicSR / A-ESRGAN option files)."""
    expected = {"realesrnet-x4": ("none", 2e-4, 12, 1000), "realesrgan-x4": ("unet-sn", 1e-4, 12, 400),
                "aesrgan-x4": ("attention-unet", 1e-4, 6, 400),
                "aesrgan-multi-x4": ("attention-unet-multiscale", 1e-4, 16, 400)}
    for name, (d, lr, batch, kiters) in expected.items():
        c = schema.resolve({"profile": name})
        assert (c["discriminator"], c["learning_rate"], c["batch_size"]) == (d, lr, batch), name
        assert c["epochs"] * c["steps_per_epoch"] == kiters * 1000 and c["lr_boundaries"] == [kiters * 1000]
        assert (c["beta_1"], c["beta_2"], c["epsilon"], c["weight_decay"]) == (0.9, 0.99, 1e-8, 0.0)
        assert (c["ema"], c["ema_decay"], c["pixel_weight"], c["usm_target"]) == (True, 0.999, 1.0, True)
        assert (c["perceptual_weight"], c["gan_weight"]) == ((0.0, 0.1) if d == "none" else (1.0, 0.1))
        for network in ("generator", "discriminator"):
            opt = make_optimizer(c, network)
            assert isinstance(opt, keras.optimizers.Adam) and not isinstance(opt, keras.optimizers.AdamW)
            assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.99, 1e-8)


def test_optimizer_factory_per_network_and_fp16_scaling():
    c = schema.resolve({"profile": "realesrgan-x4", "d_learning_rate": 3e-4, "optimizer": "adamw",
                        "weight_decay": 0.01, "clipnorm": 2.0, "mixed_precision": "fp16"})
    g, d = make_optimizer(c, "generator"), make_optimizer(c, "discriminator")
    for opt in (g, d):
        assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
        inner = opt.inner_optimizer
        assert isinstance(inner, keras.optimizers.AdamW) and inner.weight_decay == pytest.approx(0.01)
        assert inner.clipnorm == 2.0 and inner.beta_2 == 0.99
    lr = lambda opt: float(keras.ops.convert_to_numpy(opt.inner_optimizer.learning_rate))  # noqa: E731
    assert lr(g) == pytest.approx(1e-4) and lr(d) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="network"):
        make_optimizer(c, "critic")


def test_every_boolean_option_has_a_no_form():
    parser = schema.build_parser([])
    for option in schema.OPTIONS.values():
        if option.type is bool:
            flag = "--no-" + option.flag[2:]
            args = parser.parse_args([flag])
            assert getattr(args, option.name) is False, flag
    c = schema.resolve(parser.parse_args(["-p", "rrdbnet", "--no-ema"]))
    assert c["ema"] is False and schema.resolve({"profile": "rrdbnet"})["ema"] is True


def test_options_that_cannot_act_are_errors():
    for words in (["--degradation", "final_sinc_prob=0.5"], ["--discriminator", "unet-sn"],
                  ["--perceptual-weight", "1"], ["--vgg-weights", "vgg.pth"], ["--gan-weight", "0.2"]):
        with pytest.raises(UserError, match="no effect"):
            schema.resolve(schema.build_parser(words).parse_args(["-p", "edsr-16", *words]))
    with pytest.raises(UserError, match="final_sinc_prob"):
        schema.resolve({"profile": "realesrgan-x4", "degradation": ["final_sinc_prob=abc"]})
    with pytest.raises(UserError, match="--seed -1"):
        schema.resolve({"seed": -1})
