"""Profiles (plain data, overrides) and the optimizer / learning-rate schedule factory."""
import keras
import numpy as np
import pytest

import model
import profiles
from optimizer import make_optimizer, make_schedule
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
    c = profiles.resolve("wdsr-a-32", res_expansion=6, learning_rate=5e-4, num_filters=None, batch_size=None)
    assert c["model"]["res_expansion"] == 6 and c["train"]["learning_rate"] == 5e-4
    assert c["model"]["num_filters"] == 32 and c["train"]["batch_size"] == 16
    assert c["profile"] == "wdsr-a-32" and c["arch"] == "wdsr-a"
    assert profiles.resolve("edsr-16", {"num_init_batches": 4})["train"]["num_init_batches"] == 4
    # resolve never mutates the table
    assert profiles.PROFILES["wdsr-a-32"]["model"]["res_expansion"] == 4


def test_every_profile_is_valid_schema_data_and_unknown_keys_are_errors(monkeypatch):
    import copy

    from training import config

    profiles.check()  # every key of every profile is a declared option with a valid value
    bad = copy.deepcopy(profiles.PROFILES)
    bad["edsr-16"]["train"]["learning_rte"] = 1e-4  # a typo must not be silently ignored
    monkeypatch.setattr(profiles, "PROFILES", bad)
    with pytest.raises(ValueError, match="edsr-16.*learning_rte"):
        profiles.check()
    with pytest.raises(ValueError, match="learning_rte"):
        config.resolve({"profile": "edsr-16"})
    bad["edsr-16"]["train"].pop("learning_rte")
    bad["edsr-16"]["train"]["batch_size"] = 0  # values are checked by the option's validator
    with pytest.raises(ValueError, match="batch-size 0"):
        profiles.check()
    bad["edsr-16"]["train"]["batch_size"] = 16
    bad["edsr-16"]["train"]["degradation"] = {"jpeg_rnage": [30, 95]}  # the pipeline's own key check
    with pytest.raises(ValueError, match="jpeg_rnage"):
        profiles.check()


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
        profiles.resolve("wdsr-c-16")
    with pytest.raises(UserError, match="res-expansion"):
        profiles.resolve("edsr-16", res_expansion=6)


def test_build_from_profile():
    m, c = profiles.build_from_profile("wdsr-b-8", 3, num_res_blocks=1, pred_logvar=True)
    assert c["scale"] == 3 and c["model"]["num_res_blocks"] == 1
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
