"""The reference JPEG (degradations/diffjpeg.py) against BasicSR's DiffJPEG, and its own properties."""
import numpy as np
import pytest

from degradations.diffjpeg import diffjpeg, quality_factor
from testing.reference import require_reference

QUALITIES = (30.0, 41.7, 50.0, 63.2, 77.5, 95.0)
SIZES = ((64, 64), (400, 400), (123, 77), (37, 53), (250, 168))


def photo(h, w, noisy=False):
    from skimage import data as skdata

    img = skdata.astronaut()[:h, 512 - w:].astype(np.float32) / 255
    if noisy:  # what the pipeline hands the JPEG: a noisy float image, not 8-bit levels
        img = np.clip(img + np.random.default_rng(h * w).normal(0, 0.05, img.shape).astype(np.float32), 0, 1)
    return img


def test_matches_basicsr_diffjpeg_within_one_level():
    torch = pytest.importorskip("torch")
    ref = require_reference("basicsr.utils.diffjpeg").DiffJPEG(differentiable=False)
    worst = 1.0
    for h, w in SIZES:
        for noisy in (False, True):
            img = photo(h, w, noisy)
            batch = torch.from_numpy(np.repeat(img.transpose(2, 0, 1)[None], len(QUALITIES), 0))
            with torch.no_grad():  # one batch, one quality per sample, as the reference pipeline calls it
                out = ref(batch, quality=torch.tensor(QUALITIES, dtype=torch.float32)).numpy().transpose(0, 2, 3, 1)
            for k, q in enumerate(QUALITIES):
                ours = diffjpeg(img, q)
                assert ours.shape == img.shape and ours.dtype == np.float32
                diff = np.abs(np.round(ours * 255) - np.round(out[k] * 255))
                share = float(np.mean(diff <= 1))
                worst = min(worst, share)
                assert share >= 0.999, (h, w, q, noisy, share)
                assert np.abs(ours - out[k]).max() * 255 < 0.05, (h, w, q, noisy)  # float agreement, not just 8-bit
    assert worst >= 0.999


def test_quality_factor_and_error_falls_with_quality():
    assert quality_factor(50) == 1.0 and quality_factor(25) == 2.0 and quality_factor(75) == 0.5
    assert quality_factor(30) == pytest.approx(5 / 3) and quality_factor(95) == pytest.approx(0.1)
    img = photo(96, 128)
    errors = [np.abs(diffjpeg(img, q) - img).mean() for q in (30, 50, 70, 95)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.01 < errors[0] * 4
    # float quality: between its integer neighbours' tables, so a different image from both
    a, b, c = diffjpeg(img, 40), diffjpeg(img, 40.5), diffjpeg(img, 41)
    assert not np.array_equal(a, b) and not np.array_equal(b, c)


def test_chroma_is_subsampled_and_repeated_2x2():
    # a flat luma with chroma alternating every pixel: 4:2:0 averages it away; the output's chroma is constant
    # on each 2x2 block (repeated), so a colour checkerboard turns grey-ish
    img = np.zeros((32, 32, 3), np.float32)
    img[..., 0] = 0.5
    img[..., 1] = 0.5
    img[..., 2] = np.where((np.arange(32)[:, None] + np.arange(32)[None, :]) % 2, 0.8, 0.2)
    out = diffjpeg(img, 95)
    cb = out @ np.array([-0.168736, -0.331264, 0.5], np.float32)
    blocks = cb.reshape(16, 2, 16, 2).transpose(0, 2, 1, 3).reshape(16, 16, 4)
    assert np.ptp(blocks, axis=-1).max() < 0.02  # chroma constant per 2x2 block (luma varies a little)
    assert abs(out[..., 2].mean() - 0.5) < 0.02 and out[..., 2].std() < 0.1  # the checkerboard's colour is gone


def test_outputs_stay_in_range_and_padding_does_not_leak():
    img = np.ones((20, 30, 3), np.float32)  # white next to DiffJPEG's zero padding: clamped at 1
    out = diffjpeg(img, 30)
    assert out.shape == (20, 30, 3) and out.min() >= 0 and out.max() <= 1
    assert np.abs(out - 1).mean() < 0.05
