"""VGG19 features before ReLU and the perceptual / GAN losses against PyTorch implementations (random weights)."""
import h5py
import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losses.adversarial import bce_with_logits, gan_loss, mean_probability
from losses.perceptual import LAYER_WEIGHTS, PerceptualLoss
from model.archs.vgg19 import BLOCKS, CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD, vgg19_features
from model.convert.vgg19 import build_vgg19
from utils import UserError

LAYERS = list(LAYER_WEIGHTS)


def torch_vgg19_features():
    """torchvision's vgg19().features, written out (torchvision may be absent): conv, ReLU, max-pool."""
    mods, cin = [], 3
    for b, n, filters in BLOCKS:
        for _ in range(n):
            mods += [nn.Conv2d(cin, filters, 3, 1, 1), nn.ReLU(inplace=False)]
            cin = filters
        mods.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*mods)


# BasicSR's names for torchvision's feature indices, conv layers only
TORCH_INDEX = {}
_i = 0
for _b, _n, _ in BLOCKS:
    for _k in range(1, _n + 1):
        TORCH_INDEX[f"conv{_b}_{_k}"] = _i
        _i += 2
    _i += 1


def torch_features(features, x01, layers):
    """Pre-ReLU outputs of `layers` (BasicSR VGGFeatureExtractor with use_input_norm, range_norm False)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    h = (x01 - mean) / std
    out, wanted = {}, {TORCH_INDEX[n]: n for n in layers}
    for i, m in enumerate(features):
        h = m(h)
        if i in wanted:
            out[wanted[i]] = h
        if len(out) == len(wanted):
            break
    return out


@pytest.fixture(scope="module")
def torch_vgg(tmp_path_factory):
    torch.manual_seed(0)
    features = torch_vgg19_features().eval()
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    # torchvision's file layout: features.N.* (plus a classifier, left out here)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return features, path


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def test_features_before_relu_match_torch(torch_vgg):
    features, path = torch_vgg
    vgg = build_vgg19(LAYERS, path)
    assert vgg.get_layer("preprocess").mode == "torch"
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    got = vgg(x)
    with torch.no_grad():
        want = torch_features(features, nchw(x / 255.0).float(), LAYERS)
    for name in LAYERS:
        g = keras.ops.convert_to_numpy(got[name])
        w = want[name].permute(0, 2, 3, 1).numpy()
        assert g.shape == w.shape
        assert g.min() < 0  # before the ReLU
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * np.abs(w).max())


def test_perceptual_loss_matches_torch_and_gradient(torch_vgg):
    features, path = torch_vgg
    loss = PerceptualLoss(build_vgg19(LAYERS, path))
    rng = np.random.default_rng(1)
    hr = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    sr = np.clip(hr + rng.normal(0, 20, hr.shape), 0, 255).astype("float32")
    with torch.no_grad():
        fs = torch_features(features, nchw(sr / 255.0).float(), LAYERS)
        fh = torch_features(features, nchw(hr / 255.0).float(), LAYERS)
    want = sum(w * F.l1_loss(fs[n], fh[n]).item() for n, w in LAYER_WEIGHTS.items())
    got = float(keras.ops.convert_to_numpy(loss(hr, sr)))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert float(keras.ops.convert_to_numpy(loss(hr, hr))) == 0.0

    import tensorflow as tf

    sr_var = tf.Variable(sr)
    with tf.GradientTape() as tape:
        value = loss(hr, sr_var)
    grad = tape.gradient(value, sr_var).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_keras_h5_weights_use_caffe_preprocessing(tmp_path, torch_vgg):
    features, _ = torch_vgg
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    # the layout of Keras's applications weight files: a group per layer, weight_names naming its datasets
    with h5py.File(path, "w") as f:
        names = []
        for conv, i in TORCH_INDEX.items():
            b, k = conv[4], conv[6]
            layer = f"block{b}_conv{k}"
            names.append(layer)
            g = f.create_group(layer)
            conv_mod = features[i]
            g.create_dataset(f"{layer}/kernel:0", data=conv_mod.weight.detach().numpy().transpose(2, 3, 1, 0))
            g.create_dataset(f"{layer}/bias:0", data=conv_mod.bias.detach().numpy())
            g.attrs["weight_names"] = [f"{layer}/kernel:0".encode(), f"{layer}/bias:0".encode()]
        f.attrs["layer_names"] = [n.encode() for n in names]
    vgg = build_vgg19(["conv2_2"], path)
    assert vgg.get_layer("preprocess").mode == "caffe"
    x = np.random.default_rng(2).uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    caffe_in = x[..., ::-1] - np.array(CAFFE_MEAN_BGR, "float32")  # BGR, mean-subtracted, [0, 255]
    h = nchw(caffe_in.copy()).float()
    with torch.no_grad():
        for m in list(features)[: TORCH_INDEX["conv2_2"] + 1]:
            h = m(h)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(vgg(x)["conv2_2"]), h.permute(0, 2, 3, 1).numpy(),
                               rtol=1e-3, atol=1e-3 * float(h.abs().max()))


def test_missing_or_wrong_weights(tmp_path):
    with pytest.raises(UserError, match=r"vgg19-dcbb9e9d\.pth.*download\.pytorch\.org.*notop\.h5") as e:
        build_vgg19(LAYERS, None)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="not found"):
        build_vgg19(LAYERS, tmp_path / "vgg19.pth")
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="no VGG19 conv weights"):
        build_vgg19(LAYERS, bad)
    with pytest.raises(UserError, match="unknown VGG19 layer"):
        vgg19_features(["conv6_1"])


def test_gan_losses_match_torch_and_sum_over_scales():
    rng = np.random.default_rng(3)
    full = rng.normal(0, 3, (2, 16, 16, 1)).astype("float32")
    half = rng.normal(0, 3, (2, 8, 8, 1)).astype("float32")
    bce = nn.BCEWithLogitsLoss()
    for target in (0.0, 1.0):
        want = bce(torch.from_numpy(full), torch.full(full.shape, target)).item()
        np.testing.assert_allclose(float(keras.ops.convert_to_numpy(bce_with_logits(full, target))), want, rtol=1e-5)
    one = float(keras.ops.convert_to_numpy(gan_loss(full, True)))
    both = float(keras.ops.convert_to_numpy(gan_loss([full, half], True)))
    other = bce(torch.from_numpy(half), torch.ones(half.shape)).item()
    np.testing.assert_allclose(both, one + other, rtol=1e-5)  # summed, not averaged
    p = float(keras.ops.convert_to_numpy(mean_probability([full, half])))
    np.testing.assert_allclose(p, (torch.sigmoid(torch.from_numpy(full)).mean() +
                                   torch.sigmoid(torch.from_numpy(half)).mean()).item() / 2, rtol=1e-5)
