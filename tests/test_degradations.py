"""Real-ESRGAN degradation pipeline (degradations/): kernels, noise, JPEG, shapes, determinism, draw statistics."""
import math
import os

import numpy as np
import pytest
from scipy import ndimage, special

import degradations as D
from degradations import kernels as K
from degradations import pipeline as P
from utils import UserError

cv2 = pytest.importorskip("cv2")


def photo(h=160, w=200):
    from skimage import data as skdata

    return np.ascontiguousarray(skdata.astronaut()[40: 40 + h, 100: 100 + w])


def key_rng(seed, epoch, index):
    # the loader's keying (data._PatchSampler._rng)
    return np.random.Generator(np.random.Philox(key=[seed, (epoch << 32) | index]))


ALL_OFF = {"blur_prob": 0.0, "second_blur_prob": 0.0, "noise_prob": 0.0, "noise_prob2": 0.0, "jpeg_prob": 0.0,
           "jpeg_prob2": 0.0, "final_sinc_prob": 0.0, "resize_prob": [0, 0, 1], "resize_prob2": [0, 0, 1],
           "usm": False, "degrade_usm": False}
WHOLE = {"use_hflip": False, "crop_pad_size": None, "gt_size": None}


# ----------------------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------------------


def test_every_kernel_sums_to_one_and_is_21x21():
    rng = np.random.default_rng(0)
    for stage_sigma in ((0.2, 3.0), (0.2, 1.5)):
        for _ in range(150):
            p = K.draw_kernel_params(rng, sigma=stage_sigma)
            k = K.build_kernel(p)
            assert k.shape == (21, 21)
            assert abs(k.sum() - 1) < 1e-12, p
            c = (21 - p["size"]) // 2  # zero padding outside the drawn size
            if c:
                assert np.all(k[:c] == 0) and np.all(k[:, :c] == 0) and np.all(k[-c:] == 0) and np.all(k[:, -c:] == 0)
    for _ in range(50):
        k = K.build_kernel(K.draw_final_sinc_params(rng))
        assert k.shape == (21, 21) and abs(k.sum() - 1) < 1e-12
    assert np.array_equal(K.build_kernel({"type": "pulse", "size": 21}), K.pulse_kernel())


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.7])
def test_isotropic_gaussian_is_outer_product_of_1d_gaussians(sigma):
    x = np.arange(-10, 11)
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    np.testing.assert_allclose(K.gaussian_kernel(21, sigma), np.outer(g, g), rtol=0, atol=1e-14)
    # and OpenCV's 1-D Gaussian gives the same (an independent implementation)
    cg = cv2.getGaussianKernel(21, sigma)[:, 0]
    np.testing.assert_allclose(np.outer(cg, cg), K.gaussian_kernel(21, sigma), atol=1e-12)


@pytest.mark.parametrize("sx,sy,theta", [(2.0, 1.0, 0.6), (0.8, 2.2, -2.0), (1.5, 0.8, 3.0), (2.0, 2.0, 1.0)])
def test_anisotropic_gaussian_has_the_drawn_covariance(sx, sy, theta):
    k = K.gaussian_kernel(21, sx, sy, theta)
    xx, yy = np.meshgrid(np.arange(-10, 11), np.arange(-10, 11))
    assert abs((k * xx).sum()) < 1e-12 and abs((k * yy).sum()) < 1e-12
    moments = np.array([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * yy * xx).sum(), (k * yy * yy).sum()]])
    c, s = math.cos(theta), math.sin(theta)
    # R diag(sx^2, sy^2) R^T written out
    cov = np.array([[c * c * sx * sx + s * s * sy * sy, c * s * (sx * sx - sy * sy)],
                    [c * s * (sx * sx - sy * sy), s * s * sx * sx + c * c * sy * sy]])
    assert np.abs(moments - cov).max() <= 0.02 * np.abs(cov).max()
    np.testing.assert_allclose(np.diag(moments), np.diag(cov), rtol=0.02)
    # drawn: the anisotropic branch uses its sigma_x, sigma_y, theta
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = K.draw_kernel_params(rng, kernel_prob=(0, 1, 0, 0, 0, 0), sinc_prob=0, sigma=(0.8, 2.0))
        if p["size"] == 21:
            k = K.build_kernel(p)
            m = np.array([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * yy * xx).sum(), (k * yy * yy).sum()]])
            want = K.sigma_matrix(p["sigma_x"], p["sigma_y"], p["theta"])
            assert np.abs(m - want).max() <= 0.02 * np.abs(want).max()


def test_sinc_centre_value_and_radial_symmetry():
    for size, omega in ((21, math.pi / 5), (13, 2.0), (7, math.pi)):
        raw = K.sinc_kernel(size, omega, normalize=False)
        c = size // 2
        assert raw[c, c] == pytest.approx(omega ** 2 / (4 * math.pi), rel=1e-15)
        # the centre is the r -> 0 limit of omega J1(omega r) / (2 pi r)
        r = 1e-5
        assert raw[c, c] == pytest.approx(omega * special.j1(omega * r) / (2 * math.pi * r), rel=1e-8)
        assert raw[c, c + 1] == pytest.approx(omega * special.j1(omega) / (2 * math.pi), rel=1e-14)
        for k in (raw, K.sinc_kernel(size, omega)):
            np.testing.assert_allclose(k, k.T, atol=1e-16)
            np.testing.assert_allclose(k, k[::-1], atol=1e-16)
            np.testing.assert_allclose(k, k[:, ::-1], atol=1e-16)
        if size >= 11:  # points at the same radius 5: (3, 4) and (5, 0)
            assert raw[c + 3, c + 4] == pytest.approx(raw[c + 5, c], rel=1e-12)
    assert K.sinc_kernel(21, 1.0).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("iso", [True, False])
def test_generalized_with_beta_one_is_the_gaussian(iso):
    args = (15, 1.7) if iso else (15, 1.7, 0.9, 0.7)
    np.testing.assert_allclose(K.generalized_kernel(*args, beta=1.0), K.gaussian_kernel(*args), atol=1e-15)
    assert not np.allclose(K.generalized_kernel(*args, beta=2.0), K.gaussian_kernel(*args), atol=1e-4)


def test_plateau_shape():
    sx, sy, theta, beta = 2.0, 1.2, 0.4, 1.5
    k = K.plateau_kernel(21, sx, sy, theta, beta)
    xx, yy = np.meshgrid(np.arange(-10, 11), np.arange(-10, 11))
    inv = np.linalg.inv(K.sigma_matrix(sx, sy, theta))
    q = inv[0, 0] * xx ** 2 + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy ** 2
    np.testing.assert_allclose(k / k[10, 10], 1 / (1 + q ** beta), rtol=1e-12)
    # heavier tails than the Gaussian of the same sigma, and flatter at the top for larger beta
    g = K.gaussian_kernel(21, sx, sy, theta)
    assert k[10, 20] / k[10, 10] > g[10, 20] / g[10, 10]
    iso2, iso1 = K.plateau_kernel(21, 2.0, beta=2.0), K.plateau_kernel(21, 2.0, beta=1.0)
    assert iso2[10, 11] / iso2[10, 10] > iso1[10, 11] / iso1[10, 10]


def test_filter2d_matches_scipy_with_reflect_101_borders():
    rng = np.random.default_rng(1)
    img = rng.random((37, 41, 3)).astype(np.float32)
    for p in ({"type": "aniso", "size": 13, "sigma_x": 2.0, "sigma_y": 0.7, "theta": 0.3},  # column blocks
              {"type": "plateau_aniso", "size": 21, "sigma_x": 2.5, "sigma_y": 1.5, "theta": 1.0, "beta": 1.5},  # DFT
              {"type": "iso", "size": 21, "sigma_x": 1.3, "sigma_y": 1.3, "theta": 0.0},
              {"type": "sinc", "size": 9, "omega_c": 1.2}):
        k = K.build_kernel(p)
        ref = ndimage.correlate(img.astype(np.float64), k[:, :, None], mode="mirror")
        np.testing.assert_allclose(P.filter2d(img, k), ref, atol=2e-6)


# ----------------------------------------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [5.0, 20.0])
def test_gaussian_noise_std_on_flat_grey(sigma):
    img = np.full((200, 200, 3), 0.5, np.float32)
    out = P.add_noise(img, {"kind": "gaussian", "sigma": sigma, "gray": False}, np.random.default_rng(0))
    std = ((out - img) * 255).std()
    assert abs(std - sigma) <= 0.05 * sigma
    assert abs(((out - img) * 255).mean()) < 0.1 * sigma


def _poisson_test_image():
    # flat blocks at four levels, plus one row holding all 256 levels so that vals = 256 as in a photo
    img = np.zeros((101, 400, 3), np.uint8)
    for j, level in enumerate((32, 64, 128, 192)):
        img[:100, j * 100: (j + 1) * 100] = level
    img[100, :256] = np.arange(256)[:, None]
    return img


def test_poisson_noise_variance_is_proportional_to_intensity():
    img = P.to_float(_poisson_test_image())
    noise = P.add_noise(img, {"kind": "poisson", "scale": 1.0, "gray": False}, np.random.default_rng(0)) - img
    levels = (32, 64, 128, 192)
    var = np.array([noise[:100, j * 100: (j + 1) * 100].var() for j in range(4)])
    # Poisson(lam = level / 255 * 256) / 256: variance level / (255 * 256)
    want = np.array(levels) / (255.0 * 256)
    np.testing.assert_allclose(var, want, rtol=0.05)
    ratio = var / np.array(levels)
    assert ratio.max() / ratio.min() < 1.1
    # the table sampler against numpy's Poisson (an independent sampler): same mean and variance
    rng = np.random.default_rng(1)
    for level in (0, 3, 100, 255):
        ours = P.poisson_levels(np.full(100_000, level, np.uint8), 256, rng)
        theirs = rng.poisson(level * 256 / 255, 100_000)
        lam = level * 256 / 255
        for x in (ours, theirs):
            assert abs(x.mean() - lam) <= 4 * math.sqrt(max(lam, 1e-9) / 1e5) + 1e-12
            assert abs(x.var() - lam) <= 0.03 * lam + 1e-12
    # and its histogram against the Poisson pmf (scipy): chi-square
    from scipy import stats

    for level in (5, 200):
        lam = level * 256 / 255
        counts = np.bincount(P.poisson_levels(np.full(200_000, level, np.uint8), 256, rng).astype(int), minlength=600)
        pmf = stats.poisson.pmf(np.arange(counts.size), lam) * 200_000
        keep = pmf > 5
        assert stats.chisquare(counts[keep], pmf[keep] * counts[keep].sum() / pmf[keep].sum()).pvalue > 1e-3
    scaled = P.add_noise(img, {"kind": "poisson", "scale": 2.0, "gray": False}, np.random.default_rng(0)) - img
    assert scaled[:100, 200:300].std() == pytest.approx(2 * noise[:100, 200:300].std(), rel=0.05)


@pytest.mark.parametrize("kind", ["gaussian", "poisson"])
def test_grey_noise_is_equal_across_channels(kind):
    rng = np.random.default_rng(0)
    img = P.to_float(np.clip(photo(64, 64).astype(np.int32) // 2 + 64, 0, 255).astype(np.uint8))  # no clipping
    noise = {"kind": kind, "gray": True, "sigma": 10.0, "scale": 1.0}
    d = P.add_noise(img, noise, rng) - img
    assert np.abs(d).max() > 0
    np.testing.assert_allclose(d[..., 0], d[..., 1], atol=1e-6)
    np.testing.assert_allclose(d[..., 0], d[..., 2], atol=1e-6)
    colour = P.add_noise(img, dict(noise, gray=False), rng) - img
    assert np.abs(colour[..., 0] - colour[..., 1]).max() > 0.01


# ----------------------------------------------------------------------------------------------------------
# JPEG
# ----------------------------------------------------------------------------------------------------------


def test_jpeg_lower_quality_larger_error():
    from skimage import data as skdata

    crops = [P.to_float(np.ascontiguousarray(im[:128, :128, :3])) for im in (skdata.astronaut(), skdata.coffee(), skdata.chelsea())]
    qualities = (30, 45, 60, 75, 90)
    mse = np.array([[((P.jpeg(c, q) - c) ** 2).mean() for q in qualities] for c in crops]).mean(axis=0)
    assert np.all(np.diff(mse) < 0), mse
    assert mse[-1] > 0
    # real JPEG: the same decode as Pillow's libjpeg encoder at the same quality (an independent encoder)
    import io

    from PIL import Image

    u8 = P.to_uint8(crops[0])
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=60)
    pil = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    assert np.abs(P.to_uint8(P.jpeg(crops[0], 60)).astype(int) - pil).mean() < 0.5


# ----------------------------------------------------------------------------------------------------------
# shapes, plain resize, USM, the transform
# ----------------------------------------------------------------------------------------------------------


def test_lq_is_exactly_gt_over_scale_whatever_the_resizes():
    rng = np.random.default_rng(0)
    hr = photo(101, 77)
    config = D.make_config(dict(WHOLE, usm=False, resize_prob=[1, 1, 0], resize_prob2=[1, 1, 0]))
    for i in range(12):
        out = D.degrade(hr, rng, config, scale=4)
        assert out["hr"].shape == (100, 76, 3) and out["lr"].shape == (25, 19, 3) and out["lr"].dtype == np.uint8
    hr = photo(160, 200)
    t = D.RealESRGANTransform(config={"crop_pad_size": 160}, gt_size=128, crop=True)
    for i in range(4):
        out = t(hr, key_rng(0, 0, i))
        assert out["lr"].shape == (32, 32, 3) and out["hr"].shape == (128, 128, 3) and out["hr_usm"].shape == (128, 128, 3)
    out = D.degrade(hr, rng, D.make_config(dict(WHOLE, usm=False)), scale=2)
    assert out["lr"].shape == (80, 100, 3)


def test_tiny_images_whole_image_mode():
    rng = np.random.default_rng(7)
    config = D.make_config(WHOLE)
    for h, w in ((4, 4), (5, 9), (14, 4), (8, 18), (13, 13), (30, 7)):
        img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        for _ in range(3):
            out = D.degrade(img, rng, config)
            assert out["lr"].shape == (h // 4, w // 4, 3) and out["hr_usm"].shape == out["hr"].shape


def test_everything_off_is_a_plain_resize():
    hr = photo(96, 120)
    for mode, inter in (("area", cv2.INTER_AREA), ("bicubic", cv2.INTER_CUBIC)):
        config = D.make_config(dict(ALL_OFF, **WHOLE, resize_modes2=[mode], final_resize_modes=[mode]))
        out = D.degrade(hr, np.random.default_rng(0), config)
        ref = P.to_uint8(cv2.resize(P.to_float(hr), (30, 24), interpolation=inter))
        assert np.array_equal(out["lr"], ref)
        assert np.array_equal(out["hr"], hr)
        if mode == "area":  # an integer area downscale is the 4x4 block mean
            block = hr.astype(np.float64).reshape(24, 4, 30, 4, 3).mean(axis=(1, 3))
            assert np.abs(out["lr"] - block).max() <= 0.5 + 1e-3


def test_usm_region_equals_whole_image_and_scipy():
    rng = np.random.default_rng(0)
    img = P.to_float(photo(150, 170))
    full = P.usm_sharp(img)
    for y, x in ((0, 0), (20, 30), (50, 70)):
        part = P.usm_sharp(img, region=(y, x, 96, 96))
        np.testing.assert_allclose(part, full[y: y + 96, x: x + 96], atol=1e-6)
    # independent: BasicSR's USMSharp with scipy (reflect-101 = scipy's "mirror")
    g = cv2.getGaussianKernel(51, 8)[:, 0]

    def blur(a):
        return ndimage.correlate1d(ndimage.correlate1d(a, g, 0, mode="mirror"), g, 1, mode="mirror")

    a = img.astype(np.float64)
    res = a - blur(a)
    soft = blur((np.abs(res) * 255 > 10).astype(np.float64))
    ref = soft * np.clip(a + 0.5 * res, 0, 1) + (1 - soft) * a
    assert np.abs(full - ref).max() < 1e-4
    assert np.abs(full - img).max() > 0.01


def test_transform_outputs():
    hr = photo(300, 400)  # larger than gt_size: reflect-padded to 400, cropped, paired crop 256 / 64
    out = D.RealESRGANTransform(crop=True)(hr, key_rng(0, 0, 0))
    assert set(out) == {"lr", "hr", "hr_usm"}
    assert out["lr"].shape == (64, 64, 3) and out["hr"].shape == (256, 256, 3)
    for v in out.values():
        assert v.dtype == np.float32 and v.min() >= 0 and v.max() <= 255
    assert np.array_equal(out["lr"], np.round(out["lr"]))
    assert np.abs(out["hr_usm"] - out["hr"]).max() > 1
    u8 = D.RealESRGANTransform(crop=True, dtype="uint8")(hr, key_rng(0, 0, 0))
    assert all(v.dtype == np.uint8 for v in u8.values())
    assert np.array_equal(u8["lr"], out["lr"]) and np.array_equal(u8["hr"], out["hr"])
    with pytest.raises(UserError, match="unknown degradation option"):
        D.make_config({"blur_sigmaa": [1, 2]})
    with pytest.raises(UserError, match="probability"):
        D.make_config({"sinc_prob": 1.5})


# ----------------------------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------------------------


def test_same_seed_same_lq_and_keyed_by_seed_epoch_index():
    hr = photo(160, 200)
    t = D.RealESRGANTransform(config={"crop_pad_size": 160, "usm": False}, gt_size=128, crop=True)
    a = t(hr, key_rng(0, 1, 5))
    b = t(hr, key_rng(0, 1, 5))
    for k in a:
        assert np.array_equal(a[k], b[k])
    for other in (key_rng(1, 1, 5), key_rng(0, 2, 5), key_rng(0, 1, 6)):
        assert not np.array_equal(t(hr, other)["lr"], a["lr"])
    # no hidden state: a sample made after others (as on resume, in another worker) is the same
    seq = [t(hr, key_rng(0, 3, i))["lr"] for i in range(4)]
    assert np.array_equal(D.RealESRGANTransform(config=t.config, gt_size=128, crop=True)(hr, key_rng(0, 3, 2))["lr"], seq[2])
    # the params alone determine the image
    out = D.degrade(hr, key_rng(0, 0, 9), t.config)
    again = D.apply_params(hr, out["params"], t.config)
    assert np.array_equal(again["lr"], out["lr"])


# ----------------------------------------------------------------------------------------------------------
# distribution of the draws (the parameter sampler only)
# ----------------------------------------------------------------------------------------------------------


def _within_3se(count, n, p, what):
    se = math.sqrt(p * (1 - p) / n)
    assert abs(count / n - p) <= 3 * se + 1e-12, f"{what}: {count}/{n} vs p {p:.3f} (3 SE = {3 * se:.4f})"


def test_draw_distribution_over_2000_samples():
    n = 2000
    rng = np.random.default_rng(12345)
    config = D.REALESRGAN
    draws = [D.sample_params(rng, config, (400, 400), 4) for _ in range(n)]
    for stage, sfx in (("kernel1", ""), ("kernel2", "2")):
        kernels = [d[stage] for d in draws if d[stage] is not None]
        m = len(kernels)
        types = [k["type"] for k in kernels]
        _within_3se(types.count("sinc"), m, config["sinc_prob" + sfx], f"{stage} sinc")
        probs = np.array(config["kernel_prob" + sfx]) / np.sum(config["kernel_prob" + sfx])
        for name, p in zip(config["kernel_list" + sfx], probs):
            _within_3se(types.count(name), m, (1 - config["sinc_prob" + sfx]) * p, f"{stage} {name}")
        sizes = [k["size"] for k in kernels]
        for s in K.KERNEL_SIZES:
            _within_3se(sizes.count(s), m, 1 / 8, f"{stage} size {s}")
        lo, hi = config["blur_sigma" + sfx]
        sig = [k["sigma_x"] for k in kernels if k["type"] != "sinc"]
        assert lo <= min(sig) and max(sig) <= hi
    _within_3se(sum(d["kernel2"] is not None for d in draws), n, config["second_blur_prob"], "second blur")
    for stage, probs in (("resize1", config["resize_prob"]), ("resize2", config["resize_prob2"])):
        kinds = [d[stage]["kind"] for d in draws]
        for kind, p in zip(("up", "down", "keep"), probs):
            _within_3se(kinds.count(kind), n, p, f"{stage} {kind}")
        for mode in P.MODES:
            _within_3se(sum(d[stage]["mode"] == mode for d in draws), n, 1 / 3, f"{stage} {mode}")
    for stage, q_range in (("jpeg1", config["jpeg_range"]), ("jpeg2", config["jpeg_range2"])):
        q = np.array([d[stage] for d in draws])
        lo, hi = q_range
        assert lo <= q.min() and q.max() <= hi
        edges = np.linspace(lo, hi, 5)
        for a, b in zip(edges[:-1], edges[1:]):
            _within_3se(int(((q >= a) & (q < b)).sum()), n, 0.25, f"{stage} quality in [{a:.0f}, {b:.0f})")
        assert abs(q.mean() - (lo + hi) / 2) <= 3 * (hi - lo) / math.sqrt(12 * n)
    for stage, sfx in (("noise1", ""), ("noise2", "2")):
        _within_3se(sum(d[stage]["kind"] == "gaussian" for d in draws), n, config["gaussian_noise_prob" + sfx], f"{stage} gaussian")
        _within_3se(sum(d[stage]["gray"] for d in draws), n, config["gray_noise_prob" + sfx], f"{stage} grey")
    _within_3se(sum(d["final_sinc"]["type"] == "sinc" for d in draws), n, config["final_sinc_prob"], "final sinc")
    _within_3se(sum(d["resize_first"] for d in draws), n, config["resize_first_prob"], "resize first")
    _within_3se(sum(d["flip"] for d in draws), n, 0.5, "flip")


# ----------------------------------------------------------------------------------------------------------
# convert.py degrade -> a benchmark folder that open_pairs reads
# ----------------------------------------------------------------------------------------------------------


def test_convert_degrade_writes_a_benchmark_folder(tmp_path):
    import convert
    import data
    import imaging

    src = tmp_path / "HR_in"
    for name, (h, w) in (("a", (64, 80)), ("b", (70, 51))):
        imaging.write_image(src / f"{name}.png", photo(h, w))
    out = tmp_path / "OUT"
    assert convert.main(["degrade", "-i", str(src), "-o", str(out), "--scale", "4", "--seed", "0", "--workers", "1"]) == 0
    pairs = data.open_pairs(out, 4, downgrade="realesrgan")
    assert [p.stem for p in pairs] == ["a", "b"]
    assert os.path.basename(pairs[1].lr) == "bx4.png"
    lr, hr = data.load_pair(pairs[1], 4)
    assert lr.shape == (17, 12, 3) and hr.shape == (68, 48, 3)
    first = imaging.read_image(pairs[0].lr)
    convert.main(["degrade", "-i", str(src), "-o", str(out), "--scale", "4", "--seed", "0", "--overwrite", "--workers", "1"])
    assert np.array_equal(imaging.read_image(pairs[0].lr), first)  # a fixed set
    convert.main(["degrade", "-i", str(src), "-o", str(tmp_path / "OUT1"), "--scale", "4", "--seed", "1", "--workers", "1"])
    assert not np.array_equal(imaging.read_image(tmp_path / "OUT1" / "LR_realesrgan" / "X4" / "ax4.png"), first)


def test_transform_on_loader_crops_and_training_configs():
    hr = photo(160, 200)
    t = D.RealESRGANTransform({"scale": 4, "batch_size": 16, "degradation": {"final_sinc_prob": 0.0}})
    assert t.scale == 4 and t.config["final_sinc_prob"] == 0.0
    crop = np.ascontiguousarray(hr[:96, :96])  # default: the loader's crop is degraded whole, not flipped
    out = t(crop, key_rng(0, 0, 1))
    assert out["lr"].shape == (24, 24, 3) and out["hr"].shape == (96, 96, 3) and out["hr_usm"].shape == (96, 96, 3)
    assert np.array_equal(out["hr"], crop)
    big = t(photo(101, 77), key_rng(0, 0, 3))  # any size, as degradations.transforms.BicubicTransform
    assert big["lr"].shape == (25, 19, 3) and big["hr"].shape == (100, 76, 3)
    whole = t.whole_image(photo(101, 77), key_rng(0, 0, 2))
    assert set(whole) == {"lr", "hr"} and whole["lr"].shape == (25, 19, 3) and whole["hr"].shape == (100, 76, 3)
    with pytest.raises(UserError, match="unknown degradation option"):
        D.RealESRGANTransform({"scale": 4, "degradation": {"nope": 1}})


# ----------------------------------------------------------------------------------------------------------
# the reference recipe: sharpened GT degraded, DiffJPEG, batch-level draws and the pair pool
# ----------------------------------------------------------------------------------------------------------


def test_the_sharpened_gt_is_degraded_and_the_usm_target():
    hr = photo(96, 128)
    img = P.to_float(hr)
    only_resize = dict(ALL_OFF, **WHOLE, resize_modes2=["area"], final_resize_modes=["area"])
    usm = P.usm_sharp(img)
    sharp = D.degrade(hr, key_rng(0, 0, 0), D.make_config(dict(only_resize, degrade_usm=True)))
    plain = D.degrade(hr, key_rng(0, 0, 0), D.make_config(only_resize))
    # area to 1/4 of the sharpened (resp. plain) image: the LQ follows the sharpened GT
    expect = lambda x: P.to_uint8(P.resize(x, (24, 32), "area"))
    assert np.array_equal(sharp["lr"], expect(usm)) and np.array_equal(plain["lr"], expect(img))
    assert not np.array_equal(sharp["lr"], plain["lr"])
    # the target: the GT crop sharpened alone (RealESRGANModel), or cut from the sharpened crop (RealESRNetModel)
    big = photo(300, 400)
    for usm_crop in (True, False):
        t = D.RealESRGANTransform({"usm_crop": usm_crop}, crop=True)
        out = D.degrade(big, key_rng(0, 0, 4), t.config)
        gt = P.to_float(out["hr"])
        p = out["params"]
        (top, left), s = p["lq_crop"], 4
        pad = P.to_float(P.crop_gt(big, p, t.config))
        whole = P.usm_sharp(pad)[top * s: top * s + 256, left * s: left * s + 256]
        expect = P.usm_sharp(gt) if usm_crop else whole
        assert np.abs(out["hr_usm"] - expect).max() < 1e-6
        assert (np.abs(P.usm_sharp(gt) - whole).max() > 0.01)  # the two choices do differ near the crop's edges


def test_jpeg_impl_diffjpeg_is_the_pipelines_jpeg():
    from degradations.diffjpeg import diffjpeg

    hr = photo(64, 80)
    img = P.to_float(hr)
    jpeg_only = dict(ALL_OFF, **WHOLE, jpeg_prob=1.0, jpeg_range=[37.3, 37.3], resize_modes2=["area"],
                     final_resize_modes=["area"])
    for impl, fn in (("diffjpeg", lambda x: diffjpeg(x, 37.3)), ("libjpeg", lambda x: P.jpeg(x, 37))):
        out = D.degrade(hr, key_rng(0, 0, 1), D.make_config(dict(jpeg_only, jpeg_impl=impl)))
        assert np.array_equal(out["lr"], P.to_uint8(P.resize(fn(img), (16, 20), "area"))), impl
    assert D.REALESRGAN["jpeg_impl"] == "diffjpeg" and D.REALESRGAN["degrade_usm"] is True
    assert np.abs(P.compress(img + 0.5, 60) - diffjpeg(np.clip(img + 0.5, 0, 1), 60)).max() == 0  # clamped first
    with pytest.raises(UserError, match="jpeg_impl"):
        D.make_config({"jpeg_impl": "pillow"})
    with pytest.raises(UserError, match="draws"):
        D.make_config({"draws": "epoch"})
    with pytest.raises(UserError, match="pool_size"):
        D.make_config({"pool_size": -12})


def test_batch_params_are_shared_and_the_rest_per_sample():
    config = D.make_config({"draws": "batch"})
    shared = D.batch_params(np.random.default_rng(3), config)
    params = [D.sample_params(key_rng(0, 0, i), config, (400, 400), 4, shared) for i in range(12)]
    for p in params:
        assert p["resize1"] == shared["resize1"] and p["resize2"] == shared["resize2"]
        assert p["resize_first"] == shared["resize_first"] and p["final_mode"] == shared["final_mode"]
        assert (p["kernel2"] is not None) == shared["second_blur"]
        assert p["noise1"]["kind"] == shared["noise1"] and p["noise2"]["kind"] == shared["noise2"]
    for key in ("jpeg1", "jpeg2", "kernel1", "noise_seed"):  # per sample, as in Real-ESRGAN
        assert len({str(p[key]) for p in params}) == 12, key
    sigma = "sigma" if shared["noise1"] == "gaussian" else "scale"
    assert len({p["noise1"][sigma] for p in params}) == 12
    # batch-level choices have the per-sample distribution: over 600 batches, up/down/keep ~ resize_prob
    kinds = [D.batch_params(np.random.default_rng(k), config)["resize1"]["kind"] for k in range(600)]
    for kind, prob in zip(("up", "down", "keep"), config["resize_prob"]):
        _within_3se(kinds.count(kind), 600, prob, f"batch resize1 {kind}")


def _patches(tmp_path, config, batch_size=4, steps=5, seed=0):
    import data

    paths = [photo(96, 112)[:, k: k + 100] for k in range(3)]  # in-memory HR images
    t = D.RealESRGANTransform(dict(config, usm=False))
    return data.HRPatches(paths, 4, t, batch_size=batch_size, lr_patch=8, seed=seed, steps=steps)


def test_reference_batches_are_keyed_and_resume_exactly(tmp_path):
    sampler = _patches(tmp_path, {"draws": "batch", "pool_size": 8})
    a = D.reference_batches(sampler)
    assert isinstance(a, D.ReferenceBatches) and D.reference_batches(_patches(tmp_path, {})) is not None
    assert not isinstance(D.reference_batches(_patches(tmp_path, {})), D.ReferenceBatches)
    seq = [(e, b, a.batch(e, b)) for e in range(3) for b in range(5)]  # the pool spans epochs
    fresh = D.ReferenceBatches(sampler)  # as after a resume: a new process asks for a later batch first
    for e, b, batch in reversed(seq):
        again = fresh.batch(e, b)
        assert all(np.array_equal(again[k], batch[k]) for k in batch), (e, b)
    halves = [D.ReferenceBatches(sampler).batch(2, 3, p, 2) for p in range(2)]  # two processes, one batch
    assert np.array_equal(np.concatenate([h["lr"] for h in halves]), seq[13][2]["lr"])
    # the first pool_size / B steps hand out the fresh batches; later ones come from earlier batches
    assert a.source(0, 0) == [(0, k) for k in range(4)] and a.source(0, 1) == [(0, 4 + k) for k in range(4)]
    later = [i for b in range(2, 5) for _, i in a.source(0, b)]
    assert any(i < 8 for i in later)
    with pytest.raises(UserError, match="multiple of the batch size"):
        D.ReferenceBatches(_patches(tmp_path, {"pool_size": 10}))


def test_pool_matches_realesrgan_dequeue_and_enqueue():
    # the pool logic against RealESRGANModel._dequeue_and_enqueue itself, on batches whose pixels are their ids
    torch = pytest.importorskip("torch")
    model_mod = pytest.importorskip("testing.reference").require_reference("realesrgan.models.realesrgan_model")
    b, q, steps = 4, 24, 400
    cls = model_mod.RealESRGANModel
    ref = cls.__new__(cls)
    ref.queue_size = q
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.manual_seed(0)
    try:
        ref_out = []
        for g in range(steps):
            ids = torch.arange(g * b, (g + 1) * b, dtype=torch.float32).view(b, 1, 1, 1)
            ref.lq, ref.gt = ids.clone(), ids.clone()
            ref._dequeue_and_enqueue()
            ref_out.append(ref.lq.view(-1).long().tolist())
    finally:
        torch.Tensor.cuda = cuda

    fake = type("Sampler", (), {"batch_size": b, "seed": 0, "steps": steps, "fixed": False,
                                "transform": type("T", (), {"config": {"draws": "sample", "pool_size": q}})()})()
    pool = D.ReferenceBatches(fake)
    ours = [pool.pool_ids(g).tolist() for g in range(steps)]
    assert ours[: q // b] == ref_out[: q // b] == [list(range(g * b, (g + 1) * b)) for g in range(q // b)]

    def summary(out):
        flat = [i for step in out for i in step]
        delays = np.array([g - i // b for g, step in enumerate(out) for i in step])
        counts = np.bincount(flat)
        return delays, counts

    (d_ours, c_ours), (d_ref, c_ref) = summary(ours), summary(ref_out)
    # every pair handed out once, those of the filling steps twice (once fresh, once from the pool)
    for counts in (c_ours, c_ref):
        assert counts.max() == 2 and np.all(counts[: q] == 2) and counts[q:].max() == 1
    # the same delay distribution (geometric: each pooled pair leaves with p = b / q per step)
    from scipy import stats

    assert stats.ks_2samp(d_ours[d_ours > 0], d_ref[d_ref > 0]).pvalue > 0.01
    assert abs(d_ours[d_ours > 0].mean() - d_ref[d_ref > 0].mean()) < 0.1 * d_ref[d_ref > 0].mean()


def test_resize_is_torch_interpolate():
    # Real-ESRGAN resizes with F.interpolate (area = adaptive average pooling; bilinear / bicubic, align_corners
    # False, no antialiasing); fractional area factors and upscales differ from OpenCV's INTER_AREA
    torch = pytest.importorskip("torch")
    img = P.to_float(photo(120, 150))
    x = torch.from_numpy(img.transpose(2, 0, 1)[None].copy())
    for mode in P.MODES:
        for size in ((48, 60), (55, 71), (97, 130), (120, 151), (151, 181), (240, 300)):
            ref = torch.nn.functional.interpolate(x, size=size, mode=mode)[0].numpy().transpose(1, 2, 0)
            assert np.abs(P.resize(img, size, mode) - ref).max() < 2e-5, (mode, size)
    sharper = P.resize(img, (55, 71), "area")
    opencv = cv2.resize(img, (71, 55), interpolation=cv2.INTER_AREA)
    assert np.abs(sharper - opencv).max() > 0.05  # the difference this test guards


def test_batch_options_without_the_wrapper_are_an_error():
    t = D.RealESRGANTransform({"pool_size": 12})
    with pytest.raises(UserError, match="reference_batches"):
        t(photo(64, 64), key_rng(0, 0, 0))
    assert t(photo(64, 64), key_rng(0, 0, 0), shared={})["lr"].shape == (16, 16, 3)
