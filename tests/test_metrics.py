"""metrics.py against hand computations and a direct (loop) implementation of Wang et al.'s SSIM."""
import math

import numpy as np
import pytest

import metrics


def naive_ssim(a, b, k1=0.01, k2=0.03, L=255.0, size=11, sigma=1.5):
    """ssim_index.m written out: 2-D Gaussian window, a loop over every 'valid' window position."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    half = size // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    w = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    w /= w.sum()
    c1, c2 = (k1 * L) ** 2, (k2 * L) ** 2
    values = []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            pa, pb = a[i : i + size, j : j + size], b[i : i + size, j : j + size]
            mu1, mu2 = (w * pa).sum(), (w * pb).sum()
            s1 = (w * pa * pa).sum() - mu1 * mu1
            s2 = (w * pb * pb).sum() - mu2 * mu2
            s12 = (w * pa * pb).sum() - mu1 * mu2
            values.append(((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2)))
    return float(np.mean(values))


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, size=(23, 29, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(np.float64) + rng.normal(0, 12, size=hr.shape), -20, 280)
    return hr, sr


def test_quantize_rounds_and_clips():
    out = metrics.quantize(np.array([-3.0, 0.49, 0.5, 1.5, 254.6, 300.0]))
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 0, 2, 255, 255]  # np.round: halves to even


def test_rgb_to_y_matches_matlab_formula():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], np.uint8)
    y = metrics.rgb_to_y(px)
    np.testing.assert_allclose(y[0], [16 + 65.481, 16 + 128.553, 16 + 24.966, 235.0, 16.0], atol=1e-9)


def test_psnr_y_by_hand():
    hr = np.zeros((2, 2, 3), np.uint8)
    sr = np.zeros((2, 2, 3), np.float32)
    sr[0, 0] = [10, 20, 30]
    # Y difference at one pixel, zero elsewhere (the constant 16 cancels).
    dy = (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255
    expected = 10 * math.log10(255**2 / (dy**2 / 4))
    assert metrics.psnr(hr, sr, channel="y") == pytest.approx(expected, abs=1e-9)
    expected_rgb = 10 * math.log10(255**2 / ((100 + 400 + 900) / 12))
    assert metrics.psnr(hr, sr, channel="rgb") == pytest.approx(expected_rgb, abs=1e-9)


def test_psnr_rounds_sr_and_shaves():
    hr = np.full((8, 8, 3), 100, np.uint8)
    sr = np.full((8, 8, 3), 100.4)  # rounds to 100 -> identical
    assert metrics.psnr(hr, sr) == float("inf")
    sr = hr.astype(np.float64)
    sr[0, :] = 0  # only the border differs
    assert metrics.psnr(hr, sr, shave=1) == float("inf")
    assert metrics.psnr(hr, sr, shave=0) < 30


@pytest.mark.parametrize("channel", ["y", "rgb"])
def test_ssim_matches_direct_implementation(pair, channel):
    hr, sr = pair
    q = metrics.quantize(sr)
    if channel == "y":
        expected = naive_ssim(metrics.rgb_to_y(hr), metrics.rgb_to_y(q))
    else:
        expected = np.mean([naive_ssim(hr[..., c], q[..., c]) for c in range(3)])
    assert metrics.ssim(hr, sr, channel=channel) == pytest.approx(expected, abs=1e-4)
    assert abs(metrics.ssim(hr, sr, channel=channel) - expected) < 1e-10


def test_ssim_identity_and_shave(pair):
    hr, _ = pair
    assert metrics.ssim(hr, hr) == pytest.approx(1.0)
    a = naive_ssim(metrics.rgb_to_y(hr)[2:-2, 2:-2], metrics.rgb_to_y(hr[::-1])[2:-2, 2:-2])
    assert metrics.ssim(hr, hr[::-1], shave=2) == pytest.approx(a, abs=1e-10)


def test_score_keys_and_consistency(pair):
    hr, sr = pair
    s = metrics.score(hr, sr, shave=1)
    assert set(s) == {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}
    assert s["psnr_y"] == pytest.approx(metrics.psnr(hr, sr, 1, "y"))
    assert s["ssim_rgb"] == pytest.approx(metrics.ssim(hr, sr, 1, "rgb"))


def test_grey_hr_scored_on_grey_values():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, size=(20, 20), dtype=np.uint8)
    sr_grey = np.clip(hr + rng.normal(0, 5, hr.shape), 0, 255)
    sr_rgb = np.repeat(metrics.quantize(sr_grey)[..., None], 3, axis=-1)
    q = metrics.quantize(sr_grey).astype(np.float64)
    expected = 10 * math.log10(255**2 / np.mean((hr - q) ** 2))
    for sr in (sr_grey, sr_rgb):
        s = metrics.score(hr, sr)
        assert s["psnr_y"] == pytest.approx(expected)
        assert s["psnr_rgb"] == pytest.approx(expected)
        assert s["ssim_y"] == pytest.approx(naive_ssim(hr, q), abs=1e-10)
    # Not the same as three equal channels pushed through the Y formula (that compresses the range to 219/255).
    hr3 = np.repeat(hr[..., None], 3, axis=-1)
    assert metrics.psnr(hr3, sr_rgb) > expected + 1.0


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="sizes differ"):
        metrics.psnr(np.zeros((10, 10, 3), np.uint8), np.zeros((8, 10, 3)))


def test_psnr_metric_matches_numpy(pair):
    import keras

    hr, sr = pair
    sr = metrics.quantize(sr).astype(np.float32)
    hr_b = np.stack([hr, hr[::-1]]).astype(np.float32)
    sr_b = np.stack([sr, sr[::-1]])
    sr6 = np.concatenate([sr_b, np.zeros_like(sr_b)], axis=-1)  # logvar channels are ignored
    value = float(keras.ops.convert_to_numpy(metrics.psnr_metric(hr_b, sr6)))
    expected = np.mean([metrics.psnr(h, s, channel="rgb") for h, s in zip(hr_b, sr_b)])
    assert value == pytest.approx(expected, abs=1e-3)
