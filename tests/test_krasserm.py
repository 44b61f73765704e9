"""model/convert/krasserm.py: krasserm/super-resolution weight files into this project's WDSR."""
import h5py
import numpy as np
import pytest

from utils import UserError


def convert_krasserm_weights(h5_path, name, scale):
    """The converter on the (arch, params) of a krasserm model name (profiles.PROFILES or wdsr-a/b-N), as callers
    resolve a --profile."""
    import profiles
    from model.convert.krasserm import convert_krasserm_weights as convert, krasserm_target

    arch, params = krasserm_target(name, profiles.PROFILES)
    return convert(h5_path, arch, scale, params)


def write_krasserm_h5(path, scale=2, blocks=2, filters=32, expansion=6, seed=0):
    """A weights file laid out like krasserm's WDSR-B (Keras 2.2.4-tf save_weights, tfa WeightNormalization)."""
    rng = np.random.default_rng(seed)
    out = 3 * scale * scale
    shapes = [(3, 3, 3, filters)]
    for _ in range(blocks):
        shapes += [(1, 1, filters, filters * expansion), (1, 1, filters * expansion, int(filters * 0.8)),
                   (3, 3, int(filters * 0.8), filters)]
    shapes += [(3, 3, filters, out), (5, 5, 3, out)]
    names = ["input_1", "lambda"]
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4-tf"
        for i, shape in enumerate(shapes):
            name = "weight_normalization" + (f"_{i}" if i else "")
            names.append(name)
            g = f.create_group(name)
            weights = {"g": rng.uniform(0.2, 1.5, shape[-1]), "kernel": rng.normal(0, 0.1, shape),
                       "bias": rng.normal(0, 0.05, shape[-1]), "initialized": np.array(True)}
            g.attrs["weight_names"] = np.array([f"{name}/{k}:0".encode() for k in weights])
            for k, v in weights.items():
                g.create_dataset(f"{name}/{k}:0", data=np.asarray(v, np.float32) if k != "initialized" else v)
        for name in ["input_1", "lambda", "lambda_1", "lambda_2", "add", "lambda_3"]:
            if name not in f:
                f.create_group(name).attrs["weight_names"] = np.array([], dtype=np.float64)
        names += ["lambda_1", "lambda_2", "add", "lambda_3"]
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
    return shapes


def test_layout_and_folding(tmp_path):
    import model as model_lib
    from model.convert.krasserm import load_krasserm_weights, read_h5_layers

    h5 = tmp_path / "w.h5"
    write_krasserm_h5(h5)
    layers = read_h5_layers(str(h5))
    assert len(layers) == 9 and layers[0][0] == "weight_normalization"
    converted = convert_krasserm_weights(str(h5), "wdsr-b-2", 2)
    head = converted.get_layer("head").get_weights()
    np.testing.assert_array_equal(head[0], layers[0][1]["kernel"])  # v, g, bias copied unchanged
    np.testing.assert_array_equal(head[1], layers[0][1]["g"])
    skip = converted.get_layer("conv2d_skip_scale_2").get_weights()
    np.testing.assert_array_equal(skip[0], layers[-1][1]["kernel"])
    # The same weights folded into a plain-conv WDSR-B give the same outputs.
    plain = model_lib.build_model("wdsr-b", 2, num_filters=32, num_res_blocks=2, weightnorm=False)
    load_krasserm_weights(plain, str(h5))
    x = np.random.default_rng(1).uniform(0, 255, (1, 9, 11, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(converted(x)), np.asarray(plain(x)), rtol=1e-4, atol=1e-2)


def test_mismatches_are_user_errors(tmp_path):
    h5 = tmp_path / "w.h5"
    write_krasserm_h5(h5, scale=2)
    with pytest.raises(UserError, match="does not fit"):
        convert_krasserm_weights(str(h5), "wdsr-b-2", 3)
    with pytest.raises(UserError, match="weighted layers but the model has"):
        convert_krasserm_weights(str(h5), "wdsr-b-3", 2)
    with pytest.raises(UserError, match="unknown profile"):
        convert_krasserm_weights(str(h5), "nonsense", 2)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="bad.h5"):
        convert_krasserm_weights(str(bad), "wdsr-b-2", 2)


def test_convert_cli_writes_loadable_model(tmp_path):
    import convert
    import model as model_lib

    h5 = tmp_path / "w.h5"
    write_krasserm_h5(h5)
    out = tmp_path / "m.keras"
    convert.main(["weights", "-i", str(h5), "-o", str(out), "--profile", "wdsr-b-2", "--scale", "2"])
    assert model_lib.model_scale(model_lib.load_model(str(out))) == 2


def test_pretrained_wdsr_b_x4_set5(shared_dir):
    """krasserm's published WDSR-B (32 blocks, x4): >= 32.0 dB PSNR-Y on Set5 (32.09 measured independently)."""
    import data
    from evaluation import scorer
    weights = shared_dir / "weights" / "krasserm-wdsr-b-32-x4" / "weights.h5"
    model = convert_krasserm_weights(str(weights), "wdsr-b-32", 4)
    pairs = data.open_pairs(shared_dir / "datasets" / "Set5", 4)
    row = scorer.evaluate(model, pairs, 4, progress=False)
    assert row["shave"] == 4
    assert row["psnr_y"] >= 32.0, row
    assert row["psnr_y"] == pytest.approx(32.09, abs=0.02)
