"""LPIPS v0.1 (metrics/lpips.py) equals the lpips package on the same backbone and linear weights."""
import numpy as np
import pytest

from metrics import get_metric
from metrics import lpips as lpips_lib
from testing.reference import require_reference
from utils import UserError

from conftest import smooth_image


def _image_pairs(request, crop, count):
    """(name, img0, img1): `count` Set5 HR images (../shared; else synthetic photo-like ones) cropped to `crop`,
    each against its x4 bicubic round trip and against a noisy copy (noise of 5, 25 or 60 grey levels). Crops keep the comparison fast."""
    from imaging.io import read_image
    from imaging.resize import imresize

    try:
        root = request.getfixturevalue("shared_dir") / "datasets" / "Set5" / "HR"
        images = {p.stem: read_image(p) for p in sorted(root.glob("*.png"))}
    except pytest.skip.Exception:
        rng = np.random.default_rng(0)
        images = {f"synthetic{k}": smooth_image(rng, 96 + 8 * k, 128 - 8 * k) for k in range(3)}
    rng = np.random.default_rng(1)
    pairs = []
    for k, (name, hr) in enumerate(list(images.items())[:count]):
        hr = hr[:crop[0], :crop[1]]
        hr = hr[:hr.shape[0] // 4 * 4, :hr.shape[1] // 4 * 4]
        bicubic = imresize(imresize(hr, 0.25), 4)
        sigma = (5, 25, 60)[k % 3]  # noise of several strengths: distances that really differ
        noisy = np.clip(hr + rng.normal(0, sigma, hr.shape), 0, 255).astype(np.uint8)
        pairs += [(f"{name}/bicubic", bicubic, hr), (f"{name}/noise", noisy, hr)]
    return pairs


@pytest.mark.parametrize("net, crop, count", [("alex", (128, 128), 5), ("vgg", (64, 80), 3)])
def test_equals_lpips_package(net, crop, count, tmp_path, request):
    lpips_ref = require_reference("lpips")
    torch = require_reference("torch")
    torch.manual_seed(0)
    # the package's own linear weights; its backbone is a randomly initialised torchvision alexnet / vgg16, whose
    # `features` are written as a torchvision state dict (features.N.weight / .bias) for ours to read
    ref = lpips_ref.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    state = {f"features.{n.split('.')[1]}.{n.split('.')[2]}": p.detach().clone()
             for n, p in ref.net.named_parameters()}
    assert len(state) == 2 * sum(layer[0] == "conv" for layer in lpips_lib.NETS[net]["layers"])
    path = tmp_path / f"{net}.pth"
    torch.save(state, path)
    ours = lpips_lib.get_lpips(net, str(path))

    def to_torch(img):  # lpips.im2tensor: [0, 255] -> [-1, 1], NCHW
        return torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1

    values = []
    for name, img0, img1 in _image_pairs(request, crop, count):
        with torch.no_grad():
            expected = float(ref(to_torch(img0), to_torch(img1)))
        got = ours(img0, img1)
        values.append(got)
        assert got == pytest.approx(expected, abs=1e-4, rel=1e-4), name
    assert min(values) > 0 and max(values) > 2 * min(values)  # a real spread of distances was compared
    assert ours(img1, img1) == pytest.approx(0.0, abs=1e-7)


def test_shipped_linear_weights_equal_the_package():
    lpips_ref = require_reference("lpips")
    torch = require_reference("torch")
    from pathlib import Path

    for net in ("alex", "vgg"):
        state = torch.load(Path(lpips_ref.__file__).parent / "weights" / "v0.1" / f"{net}.pth", map_location="cpu",
                           weights_only=True)
        for k, w in enumerate(lpips_lib.linear_weights(net)):
            np.testing.assert_array_equal(w, state[f"lin{k}.model.1.weight"].numpy().reshape(-1))


def test_registered_lower_is_better():
    metric = get_metric("lpips")
    assert not metric.higher_is_better and metric.needs_reference and metric.arrow == "↓"
    assert set(metric.options) == {"net", "backbone"}


def test_missing_or_wrong_backbone_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"alexnet-owt-7be5be79\.pth \(https://download\.pytorch\.org/models/"):
        lpips_lib.get_lpips("alex", None)
    with pytest.raises(UserError, match=r"vgg16-397923af\.pth.*not found|not found.*vgg16-397923af\.pth"):
        lpips_lib.get_lpips("vgg", str(tmp_path / "vgg16.pth"))
    with pytest.raises(UserError, match="--lpips-net"):
        lpips_lib.get_lpips("squeeze", None)
    safetensors = pytest.importorskip("safetensors.numpy")
    wrong = tmp_path / "vgg16-features.safetensors"  # a VGG16 conv where AlexNet's 11x11 conv belongs
    safetensors.save_file({"features.0.weight": np.zeros((64, 3, 3, 3), np.float32),
                           "features.0.bias": np.zeros(64, np.float32)}, str(wrong))
    with pytest.raises(UserError, match="other --lpips-net"):
        lpips_lib.get_lpips("alex", str(wrong))
    other = tmp_path / "other.safetensors"
    safetensors.save_file({"conv.weight": np.zeros(1, np.float32)}, str(other))
    with pytest.raises(UserError, match="features.0 is missing"):
        lpips_lib.get_lpips("vgg", str(other))


def _random_alexnet_file(path):
    """A random AlexNet `features` state dict in torchvision's key layout (safetensors: no torch needed)."""
    safetensors = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    tensors, fan_in = {}, 3
    for layer in lpips_lib.NETS["alex"]["layers"]:
        if layer[0] == "conv":
            _, index, filters, kernel, _, _ = layer
            std = (2 / (fan_in * kernel * kernel)) ** 0.5  # He init keeps the features from vanishing
            shape = (filters, fan_in, kernel, kernel)
            tensors[f"features.{index}.weight"] = rng.normal(0, std, shape).astype(np.float32)
            tensors[f"features.{index}.bias"] = rng.normal(0, 0.01, filters).astype(np.float32)
            fan_in = filters
    safetensors.save_file(tensors, str(path))
    return path


def test_bench_reports_lpips_per_image_and_row(tmp_path, capsys):
    import json

    import bench
    import imaging
    from evaluation import scorer

    rng = np.random.default_rng(3)
    (tmp_path / "Set" / "HR").mkdir(parents=True)
    for k in range(2):
        imaging.write_image(tmp_path / "Set" / "HR" / f"im{k}.png", smooth_image(rng, 64, 72))
    backbone = _random_alexnet_file(tmp_path / "alexnet.safetensors")
    out = tmp_path / "b.json"
    common = ["--dataset", str(tmp_path / "Set"), "--bicubic", "--scale", "2", "-o", str(out), "--no-progress"]
    with pytest.raises(UserError, match=r"alexnet-owt-7be5be79\.pth"):  # before any image is scored
        bench.main(common + ["--metrics", "lpips"])
    assert not out.exists()
    bench.main(common + ["--metrics", "lpips", "psnr_y", "--lpips-backbone", str(backbone)])
    (row,) = json.loads((tmp_path / "b.results.json").read_text())["rows"]
    assert row["metric_options"]["lpips"] == {"net": "alex", "backbone": str(backbone)}
    per_image = [row["per_image"][f"im{k}"]["lpips"] for k in range(2)]
    assert row["lpips"] == pytest.approx(np.mean(per_image)) and min(per_image) > 0
    hr = imaging.read_image(tmp_path / "Set" / "HR" / "im0.png")
    sr = scorer.bicubic_upscale(imaging.imresize(hr, scale=0.5), 2)  # bench's LR made on the fly, then its bicubic
    assert per_image[0] == pytest.approx(lpips_lib.lpips(sr, hr, backbone=str(backbone)), abs=1e-6)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "LPIPS ↓" in lines[0]
    assert lines[-1] == f"Best LPIPS = {row['lpips']:.4f} for model bicubic"
