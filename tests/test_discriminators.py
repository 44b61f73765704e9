"""Discriminators: parameter counts, shapes, the gating quirk, the multi-scale pooling, layer-for-layer parity with
PyTorch implementations (torch.nn.utils.spectral_norm, BatchNorm2d, F.interpolate), spectral norm on 3 backends."""
import json

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import model
from model.archs.attention_unet import with_attention_maps
from model.convert.discriminators import load_torch_state_dict
from model.discriminator_layers import ResizeLike, SpectralConv2D
from utils import UserError


def trainable(m):
    return sum(int(np.prod(w.shape)) for w in m.trainable_weights)


def images(n=2, h=32, w=48, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, h, w, 3)).astype("float32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


# ---- independent PyTorch implementations, written from the A-ESRGAN / BasicSR layer tables ----------------------
SN = nn.utils.spectral_norm


class TorchGate(nn.Module):
    def __init__(self, c, gc):
        super().__init__()
        self.W = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c))
        self.theta = nn.Conv2d(c, c, 2, 2, 0, bias=False)
        self.phi = nn.Conv2d(gc, c, 1)
        self.psi = nn.Conv2d(c, 1, 1)

    def forward(self, x, g):
        theta = self.theta(x)
        phi = F.interpolate(self.phi(g), size=theta.shape[2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        alpha = F.interpolate(alpha, size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.W(alpha * x), alpha


class TorchCat(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.convU = SN(nn.Conv2d(cin, cout, 3, 1, 1, bias=False))

    def forward(self, skip, deep):
        up = F.interpolate(deep, scale_factor=2, mode="bilinear", align_corners=False)
        return torch.cat([skip, F.leaky_relu(self.convU(up), 0.2)], 1)


class TorchAttentionUNet(nn.Module):
    def __init__(self, nf):
        super().__init__()
        self.conv0 = nn.Conv2d(3, nf, 3, 1, 1)
        self.conv1 = SN(nn.Conv2d(nf, nf * 2, 3, 2, 1, bias=False))
        self.conv2 = SN(nn.Conv2d(nf * 2, nf * 4, 3, 2, 1, bias=False))
        self.conv3 = SN(nn.Conv2d(nf * 4, nf * 8, 3, 2, 1, bias=False))
        self.gating = SN(nn.Conv2d(nf * 8, nf * 4, 1, 1, 1, bias=False))
        self.attn_1, self.attn_2, self.attn_3 = TorchGate(nf * 4, nf * 4), TorchGate(nf * 2, nf * 4), TorchGate(nf, nf * 4)
        self.cat_1, self.cat_2, self.cat_3 = TorchCat(nf * 8, nf * 4), TorchCat(nf * 4, nf * 2), TorchCat(nf * 2, nf)
        self.conv4 = SN(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = SN(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = SN(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = SN(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = SN(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x):
        lrelu = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        x0 = lrelu(self.conv0(x))
        x1 = lrelu(self.conv1(x0))
        x2 = lrelu(self.conv2(x1))
        x3 = lrelu(self.conv3(x2))
        g = lrelu(self.gating(x3))
        a1, _ = self.attn_1(x2, g)
        a2, _ = self.attn_2(x1, g)
        a3, self.alpha3 = self.attn_3(x0, g)
        x4 = lrelu(self.conv4(self.cat_1(a1, x3)))
        x5 = lrelu(self.conv5(self.cat_2(a2, x4)))
        x6 = lrelu(self.conv6(self.cat_3(a3, x5)))
        return self.conv9(lrelu(self.conv8(lrelu(self.conv7(x6)))))


class TorchMultiscale(nn.Module):
    def __init__(self, nf):
        super().__init__()
        self.layer0, self.layer1 = TorchAttentionUNet(nf), TorchAttentionUNet(nf)

    def forward(self, x):
        return [self.layer1(x), self.layer0(F.avg_pool2d(x, 4, 2, 1, count_include_pad=True))]


class TorchUNetSN(nn.Module):
    def __init__(self, nf):
        super().__init__()
        self.conv0 = nn.Conv2d(3, nf, 3, 1, 1)
        self.conv1 = SN(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = SN(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = SN(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = SN(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = SN(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = SN(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = SN(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = SN(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x):
        lrelu = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = lrelu(self.conv0(x))
        x1 = lrelu(self.conv1(x0))
        x2 = lrelu(self.conv2(x1))
        x3 = lrelu(self.conv3(x2))
        x4 = lrelu(self.conv4(up(x3))) + x2
        x5 = lrelu(self.conv5(up(x4))) + x1
        x6 = lrelu(self.conv6(up(x5))) + x0
        return self.conv9(lrelu(self.conv8(lrelu(self.conv7(x6)))))


TORCH_NETS = {"attention-unet": TorchAttentionUNet, "attention-unet-multiscale": TorchMultiscale,
              "unet-sn": TorchUNetSN}


def torch_nhwc(t):
    return t.detach().permute(0, 2, 3, 1).numpy()


# ---- tests ------------------------------------------------------------------------------------------------------
def test_parameter_counts():
    expected = {"attention-unet": 5_399_044, "attention-unet-multiscale": 10_798_088, "unet-sn": 4_376_897}
    for name, count in expected.items():
        d = model.build_discriminator(name)
        assert trainable(d) == count, name
        # PyTorch counts the same parameters (u, v and BN running stats are buffers there)
        assert sum(p.numel() for p in TORCH_NETS[name](64).parameters()) == count


def test_output_shapes_gating_and_attention_maps():
    x = images()
    d = model.build_discriminator("attention-unet", num_feat=4)
    assert tuple(d(x).shape) == (2, 32, 48, 1)
    # gating signal: 1x1 conv with padding 1 -> H/8 + 2, a zero ring (no bias) that the LReLU keeps at zero
    g = numpy(keras.Model(d.input, d.get_layer("gating_lrelu").output)(x))
    assert g.shape == (2, 32 // 8 + 2, 48 // 8 + 2, 16)
    ring = np.concatenate([g[:, 0].ravel(), g[:, -1].ravel(), g[:, :, 0].ravel(), g[:, :, -1].ravel()])
    np.testing.assert_array_equal(ring, 0.0)
    assert np.abs(g[:, 1:-1, 1:-1]).max() > 0
    maps = with_attention_maps(d)(x)
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "logits": (2, 32, 48, 1), "attn_1": (2, 8, 12, 1), "attn_2": (2, 16, 24, 1), "attn_3": (2, 32, 48, 1)}
    a = numpy(maps["attn_3"])
    assert 0 < a.min() and a.max() < 1

    multi = model.build_discriminator("attention-unet-multiscale", num_feat=4)
    assert [tuple(t.shape) for t in multi(x)] == [(2, 32, 48, 1), (2, 16, 24, 1)]
    maps = with_attention_maps(multi)(x)
    assert tuple(maps["half_attn_3"].shape) == (2, 16, 24, 1) and tuple(maps["full_attn_1"].shape) == (2, 8, 12, 1)
    sn = model.build_discriminator("unet-sn", num_feat=4)
    assert tuple(sn(x).shape) == (2, 32, 48, 1)
    with pytest.raises(UserError, match="no attention gates"):
        with_attention_maps(sn)


def test_multiscale_downsample_is_count_include_pad_average():
    x = np.arange(2 * 16 * 16 * 3, dtype="float32").reshape(2, 16, 16, 3)
    multi = model.build_discriminator("attention-unet-multiscale", num_feat=4)
    down = numpy(keras.Model(multi.input, multi.get_layer("downsample_pool").output)(x)) * 255.0
    ref = F.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 4, 2, 1, count_include_pad=True)
    np.testing.assert_allclose(down, torch_nhwc(ref), rtol=1e-5, atol=1e-3)
    # corner: the 3x3 image pixels inside the window over 16 (the zero padding counts), not over 9
    np.testing.assert_allclose(down[0, 0, 0, 0], x[0, :3, :3, 0].sum() / 16, rtol=1e-5)


@pytest.mark.parametrize("name", list(TORCH_NETS))
def test_matches_pytorch_layer_for_layer(name):
    torch.manual_seed(0)
    ref = TORCH_NETS[name](4)
    x = images(h=32, w=32)
    t_in = torch.from_numpy(x / 255.0).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ref.train()
        ref(t_in)  # one training pass: u, v, BN running stats move away from their initial values
    d = model.build_discriminator(name, num_feat=4)
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    used = load_torch_state_dict(d, state)
    assert set(used) == set(state)

    def compare(training):
        ref.train(training)
        with torch.no_grad():
            want = ref(t_in)
        got = d(x, training=training)
        want = want if isinstance(want, list) else [want]
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        assert len(got) == len(want)
        for w, g in zip(want, got):
            np.testing.assert_allclose(numpy(g), torch_nhwc(w), rtol=1e-4, atol=2e-4)

    compare(False)  # stored u, v and running statistics
    compare(True)   # one power iteration and batch statistics, as PyTorch in training
    key = "layer1.conv3" if name.endswith("multiscale") else "conv3"
    layer = d.get_layer("full_conv3" if name.endswith("multiscale") else "conv3")
    np.testing.assert_allclose(numpy(layer.u), ref.state_dict()[f"{key}.weight_u"].numpy(), rtol=1e-4, atol=1e-5)

    with pytest.raises(UserError, match="lack"):
        load_torch_state_dict(d, {k: v for k, v in state.items() if not k.endswith("conv9.bias")})
    with pytest.raises(UserError, match="does not use"):
        load_torch_state_dict(d, {**state, "extra.weight": state[next(iter(state))]})


def test_resize_like_matches_torch():
    rng = np.random.default_rng(1)
    for src, dst in [((6, 8), (4, 6)), ((4, 6), (8, 12)), ((6, 8), (8, 12))]:  # the gates' three cases
        x = rng.standard_normal((2, *src, 3)).astype("float32")
        ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=dst, mode="bilinear", align_corners=False)
        got = numpy(ResizeLike()(x, np.zeros((2, *dst, 1), "float32")))
        np.testing.assert_allclose(got, torch_nhwc(ref), atol=1e-5)


def test_bad_input_size_and_names():
    d = model.build_discriminator("attention-unet", num_feat=4)
    with pytest.raises(UserError, match=r"^attention-unet discriminator input is 36x32; .* multiples of 8") as e:
        d(np.zeros((1, 36, 32, 3), "float32"))
    assert "\n" not in str(e.value)
    multi = model.build_discriminator("attention-unet-multiscale", num_feat=4)
    with pytest.raises(UserError, match="multiples of 16"):
        multi(np.zeros((1, 24, 32, 3), "float32"))
    with pytest.raises(UserError, match="unknown discriminator"):
        model.build_discriminator("patchgan")
    with pytest.raises(UserError, match="does not take"):
        model.build_discriminator("unet-sn", num_filters=3)


def test_save_load_round_trip(tmp_path):
    d = model.build_discriminator("attention-unet-multiscale", num_feat=4)
    x = images(n=1, h=32, w=32)
    d(x, training=True)
    d.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    for a, b in zip(d(x), loaded(x)):
        np.testing.assert_array_equal(numpy(a), numpy(b))


SN_SCRIPT = r"""
import json, sys
import numpy as np
import keras
import model
from model.discriminator_layers import SpectralConv2D
keras.utils.set_random_seed(0)
d = model.build_discriminator("unet-sn", num_feat=4)
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32")
y = (rng.uniform(size=(4, 16, 16, 1)) > 0.5).astype("float32")
layers = [l for l in d.layers if isinstance(l, SpectralConv2D)]
before = [keras.ops.convert_to_numpy(l.kernel).copy() for l in layers]
# Large steps, so the kernels move far and u, v must track them (one power iteration per step).
d.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.BinaryCrossentropy(from_logits=True),
          jit_compile=keras.backend.backend() == "jax")
d.fit(x, y, batch_size=2, epochs=5, verbose=0)
out = {"backend": keras.backend.backend(), "sigma": [], "moved": []}
for l, k0 in zip(layers, before):
    w = keras.ops.convert_to_numpy(l.effective_kernel(training=False)).reshape(-1, l.filters)
    out["sigma"].append(float(np.linalg.svd(w, compute_uv=False)[0]))
    k = keras.ops.convert_to_numpy(l.kernel)
    out["moved"].append(float(np.abs(k - k0).max() / np.abs(k0).max()))
    out.setdefault("raw", []).append(float(np.linalg.svd(k.reshape(-1, l.filters), compute_uv=False)[0]))
print(json.dumps(out))
"""


def check_sigma(out):
    assert min(out["moved"]) > 0.05  # the raw kernels (PyTorch's weight_orig) were trained
    assert max(out["raw"]) > 1.5  # ... and are not normalised themselves
    np.testing.assert_allclose(out["sigma"], 1.0, atol=0.03)  # the kernel the layer uses is W / sigma_max


def test_spectral_norm_after_training_steps_tensorflow(repo_root, capsys):
    # this process runs TensorFlow: Keras's fit with its tf.function train step
    exec(compile(SN_SCRIPT.replace("sys.argv[1]", repr(str(repo_root))), "sn_script", "exec"), {})
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["backend"] == "tensorflow"
    check_sigma(out)


# JAX and PyTorch: the same check after GAN steps in tests/test_gan.py (one subprocess per backend there).


def test_attention_map_pictures_cli(tmp_path):
    """visualization.attention_maps: one D's files (per scale), and the grid over a run's D checkpoints."""
    from imaging.io import read_image, write_image
    from visualization import attention_maps

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)  # cropped to 32x32 (multi-scale: multiple of 16)
    write_image(tmp_path / "img.png", img)
    run = tmp_path / "run" / "models" / "discriminator"
    run.mkdir(parents=True)
    for k, name in enumerate(("attention-unet", "attention-unet", "attention-unet-multiscale")):
        model.build_discriminator(name, num_feat=4).save(run / f"epoch-{k:03d}.keras")
    assert attention_maps.main(["-d", str(run / "epoch-002.keras"), "-i", str(tmp_path / "img.png"),
                                "-o", str(tmp_path / "one")]) == 0
    sizes = {p.name: read_image(p).shape[:2] for p in (tmp_path / "one").iterdir()}
    assert sizes["full_attn_1.png"] == (8, 8) and sizes["full_attn_3_blend.png"] == (32, 32)
    assert sizes["half_attn_3.png"] == (16, 16) and sizes["half_d_output.png"] == (16, 16)
    assert sizes["overview.png"] == (64, 5 * 32)  # two scales x (image, A1, A2, A3, D)
    # the heat map is OpenCV's JET of uint8(alpha * 255), in RGB
    alpha = attention_maps.maps(model.load_discriminator(run / "epoch-002.keras"), img[:32, :32])
    np.testing.assert_array_equal(read_image(tmp_path / "one" / "full_attn_1.png"), attention_maps.jet(
        alpha["full_attn_1"]))
    assert attention_maps.main(["--run", str(tmp_path / "run"), "-i", str(tmp_path / "img.png"),
                                "-o", str(tmp_path / "grid")]) == 0
    grid = read_image(tmp_path / "grid" / "attention_over_training.png")
    # rows: 2 single Ds (image cropped to 40x32, a multiple of 8) + 2 scales of the multi-scale one (32x32)
    assert grid.shape == (2 * 40 + 2 * 32, 5 * 32, 3)
    with pytest.raises(UserError, match="no discriminator checkpoints"):
        attention_maps.main(["--run", str(tmp_path), "-i", str(tmp_path / "img.png"), "-o", str(tmp_path / "x")])
    with pytest.raises(UserError, match="--arch"):
        (tmp_path / "d.pth").write_bytes(b"")
        attention_maps.main(["-d", str(tmp_path / "d.pth"), "-i", str(tmp_path / "img.png"), "-o", str(tmp_path)])


def test_pretrained_discriminator_from_a_pytorch_file(tmp_path):
    """--pretrained-discriminator / visualisation --arch: a BasicSR-style torch.save({"params": state_dict}) file,
    read by the safe reader (no unpickling of code)."""
    from training.gan import load_discriminator_weights
    from visualization.attention_maps import load_discriminator

    torch.manual_seed(1)
    ref = TorchAttentionUNet(4)
    x = images(n=1, h=16, w=16)
    with torch.no_grad():
        ref(torch.from_numpy(images(n=2, h=16, w=16, seed=5) / 255.0).permute(0, 3, 1, 2).float())  # u, v, BN stats
    ref.eval()
    path = tmp_path / "net_d_5000.pth"
    torch.save({"params": ref.state_dict()}, path)
    with torch.no_grad():
        want = torch_nhwc(ref(torch.from_numpy(x / 255.0).permute(0, 3, 1, 2).float()))
    d = model.build_discriminator("attention-unet", num_feat=4)
    load_discriminator_weights(d, path)
    np.testing.assert_allclose(numpy(d(x)), want, rtol=1e-4, atol=2e-4)
    d2 = load_discriminator(path, arch="attention-unet", num_feat=4)
    np.testing.assert_allclose(numpy(d2(x)), want, rtol=1e-4, atol=2e-4)
    with pytest.raises(UserError, match="do not fit layer conv1"):
        load_discriminator_weights(model.build_discriminator("unet-sn", num_feat=4), path)
