"""RRDBNet: parameter counts, Keras vs an independent PyTorch RRDBNet on the same weights, weight import."""
import re

import numpy as np
import pytest

import model
import model.convert.esrgan
import model.convert.torch_layout
from profiles import PROFILES
from utils import UserError

torch = pytest.importorskip("torch")
from testing import torch_rrdbnet  # noqa: E402

TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}


def lr_image(h=12, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def keras_sr(m, lr):
    return np.asarray(m(lr[None].astype(np.float32), training=False))[0]


@pytest.mark.parametrize("scale, expected", [(4, 16_697_987), (2, 16_703_171), (1, 16_723_907)])
def test_param_counts_match_real_esrgan(scale, expected):
    """Full width, 1 and 2 blocks: the 23-block count follows exactly (the blocks are identical; building the
    16.7M-parameter model three times would cost ~40 s here; test_models builds the profile itself)."""
    import profiles
    from training import config as schema

    counts = []
    for blocks in (1, 2):
        m, config = schema.build_from_profile("rrdbnet", scale, num_res_blocks=blocks)
        counts.append(model.count_params(m))
        assert m.count_params() == counts[-1]
    assert counts[1] - counts[0] == 719_424  # one RRDB (3 RDBs of 239,808)
    assert counts[0] + (profiles.PROFILES["rrdbnet"]["model"]["num_res_blocks"] - 1) * 719_424 == expected
    net = torch_rrdbnet.RRDBNet(num_feat=64, num_block=23, num_grow_ch=32, scale=scale)
    assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize("scale, size", [(4, (12, 16)), (2, (12, 16)), (1, (12, 16)), (2, (11, 13)), (1, (10, 7))])
def test_keras_matches_pytorch_on_imported_weights(scale, size):
    """Same random weights in both; x2/x1 check the unshuffle channel permutation, odd sizes the reflect pad."""
    sd = torch_rrdbnet.random_state_dict(scale=scale, seed=scale, **TINY)
    m = model.build_model("rrdbnet", scale, num_filters=8, num_res_blocks=1, growth_channels=4)
    model.convert.esrgan.load_rrdbnet_state_dict(m, sd)
    lr = lr_image(*size, seed=scale)
    f = {4: 1, 2: 2, 1: 4}[scale]
    ph, pw = (-size[0]) % f, (-size[1]) % f
    padded = np.pad(lr, ((0, ph), (0, pw), (0, 0)), mode="reflect")  # what Real-ESRGAN's inferencer does
    ref = torch_rrdbnet.run(sd, padded, scale)[: size[0] * scale, : size[1] * scale]
    got = keras_sr(m, lr)
    assert got.shape == (size[0] * scale, size[1] * scale, 3)
    assert np.abs(ref).max() > 20  # the weights do something
    np.testing.assert_allclose(got, ref, atol=2e-3 * 255, rtol=1e-4)
    if scale == 2 and size == (12, 16):  # without the permutation the x2 model is wrong
        wrong = m.get_layer("conv_first_scale_2")
        k, b = wrong.get_weights()
        wrong.set_weights([model.convert.torch_layout.torch_to_keras_kernel(sd["conv_first.weight"]), b])
        assert np.abs(keras_sr(m, lr) - ref).max() > 1.0


def test_unshuffle_permutation_against_torch():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    t = torch.nn.functional.pixel_unshuffle(x, 2).permute(0, 2, 3, 1).numpy()  # NHWC, torch channel order
    np.testing.assert_array_equal(torch_rrdbnet.pixel_unshuffle(x, 2).permute(0, 2, 3, 1).numpy(), t)
    k = np.asarray(model.archs.rrdbnet.PixelUnshuffle(2)(x.permute(0, 2, 3, 1).numpy()))
    perm = model.convert.torch_layout.unshuffle_permutation(3, 2)
    np.testing.assert_array_equal(k, t[..., perm])


def test_old_esrgan_key_names(tmp_path):
    sd = torch_rrdbnet.random_state_dict(num_feat=8, num_block=2, num_grow_ch=4, scale=4, seed=1)
    old = {}
    for k, v in sd.items():
        k2 = re.sub(r"^body\.", "RRDB_trunk.", k).replace("conv_body", "trunk_conv").replace("conv_up", "upconv")
        k2 = k2.replace("conv_hr", "HRconv")
        k2 = re.sub(r"\.rdb(\d)", r".RDB\1", k2)
        old[k2] = v
    assert "RRDB_trunk.1.RDB3.conv5.weight" in old and "upconv2.bias" in old
    torch.save({k: torch.from_numpy(v) for k, v in old.items()}, tmp_path / "old.pth")
    m = model.convert.esrgan.convert_torch_weights(tmp_path / "old.pth")
    lr = lr_image(seed=5)
    np.testing.assert_allclose(keras_sr(m, lr), torch_rrdbnet.run(sd, lr, 4), atol=0.5, rtol=1e-4)


def test_mismatch_names_first_key(tmp_path):
    sd = torch_rrdbnet.random_state_dict(scale=4, **TINY)
    for scale in (4, 2, 1):  # the shape table the file is checked against is PyTorch's, key order included
        ref = torch_rrdbnet.RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, scale=scale).state_dict()
        assert model.convert.esrgan.expected_shapes(scale, 8, 2, 4) == {k: tuple(v.shape) for k, v in ref.items()}
        assert list(model.convert.esrgan.expected_shapes(scale, 8, 2, 4)) == list(ref)
    wider = model.build_model("rrdbnet", 4, num_filters=16, num_res_blocks=1, growth_channels=4)
    with pytest.raises(UserError, match=r"key 'conv_first.weight' has shape \(8, 3, 3, 3\).*needs \(16, 3, 3, 3\)"):
        model.convert.esrgan.load_rrdbnet_state_dict(wider, sd, "x.pth")
    deeper = model.build_model("rrdbnet", 4, num_filters=8, num_res_blocks=2, growth_channels=4)
    with pytest.raises(UserError, match=r"x.pth: key 'body.1.rdb1.conv1.weight' is missing"):
        model.convert.esrgan.load_rrdbnet_state_dict(deeper, sd, "x.pth")
    with pytest.raises(UserError, match=r"key 'head.0.weight' is not an RRDBNet"):
        model.convert.esrgan.load_rrdbnet_state_dict(wider, {"head.0.weight": np.zeros((8, 3, 3, 3))}, "e.pth")
    torch.save({"params": {k: torch.from_numpy(v) for k, v in sd.items()}}, tmp_path / "t.pth")
    with pytest.raises(UserError, match="--scale 2"):
        model.convert.esrgan.convert_torch_weights(tmp_path / "t.pth", scale=2)
    with pytest.raises(UserError, match=r"key 'conv_first.weight' has shape \(8, 3, 3, 3\) but the model.*64"):
        model.convert.esrgan.convert_torch_weights(tmp_path / "t.pth", params=PROFILES["rrdbnet"]["model"])


# Per-image PSNR-Y (shave 4, output round(clip(sr))) of Real-ESRGAN x4plus on Set5 x4, computed with PyTorch
# (testing/torch_rrdbnet.py on the same .pth); their mean is 26.6332, the figure an independent PyTorch run gives.
TORCH_SET5_PSNR_Y = {"baby": 25.9007, "bird": 28.8584, "butterfly": 22.4354, "head": 29.6369, "woman": 26.3349}


def _realesrgan_row(shared_dir, stems):
    import data
    from evaluation import scorer

    m = model.load_model(shared_dir / "weights" / "realesrgan-x4plus" / "RealESRGAN_x4plus.pth")  # converted in memory
    assert model.count_params(m) == 16_697_987 and model.model_scale(m) == 4
    pairs = [p for p in data.open_pairs(shared_dir / "datasets" / "Set5", 4) if p.stem in stems]
    return scorer.evaluate(m, pairs, 4, progress=False)


def test_realesrgan_x4plus_two_set5_images_match_pytorch(shared_dir):
    """The two smallest Set5 images (~10 s of CPU); the full set is the opt-in test below and README figure."""
    row = _realesrgan_row(shared_dir, ("butterfly", "head"))
    for stem, value in row["per_image"].items():
        assert value["psnr_y"] == pytest.approx(TORCH_SET5_PSNR_Y[stem], abs=0.01), stem


@pytest.mark.skipif(not __import__("os").environ.get("SISR_SLOW_TESTS"),
                    reason="full Set5 with the 16.7M-parameter model: ~1 min of CPU; set SISR_SLOW_TESTS=1")
def test_realesrgan_x4plus_set5_psnr(shared_dir):
    row = _realesrgan_row(shared_dir, set(TORCH_SET5_PSNR_Y))
    assert row["num_images"] == 5
    assert row["psnr_y"] == pytest.approx(26.6332, abs=0.01)


BACKEND_SCRIPT = r"""
import sys
import numpy as np
import keras
import model
m = keras.models.load_model(sys.argv[2])
x = np.load(sys.argv[3])
y = keras.ops.convert_to_numpy(m(x, training=False))
np.testing.assert_allclose(y, np.load(sys.argv[4]), rtol=1e-4, atol=0.01)
fresh = model.build_model("rrdbnet", 1, num_filters=8, num_res_blocks=1, growth_channels=4, pred_logvar=True)
assert keras.ops.convert_to_numpy(fresh(x)).shape == (1, 13, 11, 6)
print("ok", keras.backend.backend())
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_run_rrdbnet(backend, tmp_path, repo_root):
    """A x2 model saved under TF (odd input: the reflect pad and crop) gives the same output on JAX and PyTorch."""
    import os
    import subprocess
    import sys

    from conftest import jax_env

    m = model.build_model("rrdbnet", 2, num_filters=8, num_res_blocks=1, growth_channels=4)
    x = lr_image(13, 11, seed=9)[None].astype(np.float32)
    m.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(m(x)))
    env = jax_env() if backend == "jax" else {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT, str(repo_root), str(tmp_path / "m.keras"),
                             str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ok {backend}" in result.stdout


def test_convert_weights_cli_safetensors_x1(tmp_path):
    """convert.py weights on a .safetensors x1 RRDBNet: the saved .keras gives PyTorch's output."""
    from safetensors.numpy import save_file

    import convert

    sd = torch_rrdbnet.random_state_dict(scale=1, seed=3, **TINY)
    save_file(sd, str(tmp_path / "w.safetensors"))
    convert.main(["weights", "-i", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "w.keras")])
    m = model.load_model(tmp_path / "w.keras", compile=False)
    assert model.model_scale(m) == 1
    lr = lr_image(8, 12, seed=4)
    np.testing.assert_allclose(keras_sr(m, lr), torch_rrdbnet.run(sd, lr, 1), atol=0.5, rtol=1e-4)
    with pytest.raises(UserError, match="profile wdsr-b-32 is wdsr-b"):
        convert.main(["weights", "-i", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "x.keras"),
                      "--profile", "wdsr-b-32"])
