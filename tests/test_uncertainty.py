"""Uncertainty metrics on synthetic data with known answers, and the plots."""
import numpy as np
import pytest
from scipy import stats

import losses
from metrics import uncertainty


def synthetic(sigma, rng):
    """hr = 128, mean = hr + N(0, sigma^2) error, logvar encoding `sigma` (L2 convention)."""
    hr = np.full(sigma.shape, 128.0)
    mean = hr + sigma * rng.standard_normal(sigma.shape)
    return hr, mean


def random_ranking_ause(sd, steps=50):
    """Expected AUSE when sigma is independent of Gaussian errors N(0, sd^2).

    A random ranking removes pixels at random, so its curve stays at the full RMSE sd. The oracle keeps the
    values with |e| <= q, q the (1 - f/2) normal quantile, whose RMSE is
    sd * sqrt(1 - 2 q phi(q) / (1 - f)) (second moment of a normal truncated to [-q, q]).
    """
    f = np.arange(steps) / steps
    oracle = np.ones(steps)
    q = stats.norm.ppf(1 - f[1:] / 2)
    oracle[1:] = np.sqrt(1 - 2 * q * stats.norm.pdf(q) / (1 - f[1:]))
    return sd * float(np.mean(1 - oracle))


def test_calibrated_gaussian():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(2.0, 20.0, (200, 200, 3))
    hr, mean = synthetic(sigma, rng)
    m = uncertainty.metrics(hr, mean, losses.logvar_from_sigma(sigma))
    assert set(m) == {"nll", "ause_rmse", "spearman", "calibration_error"}
    assert m["calibration_error"] < 0.01
    entropy = float(np.mean(0.5 * np.log(2 * np.pi * np.e * sigma**2)))
    assert m["nll"] == pytest.approx(entropy, abs=0.01)
    assert m["spearman"] > 0.3  # sigma predicts |error| (varying scale)
    c = uncertainty.curves(hr, mean, losses.logvar_from_sigma(sigma))
    np.testing.assert_allclose(c["observed"], c["nominal"], atol=0.01)
    assert len(c["fractions"]) == 50 and c["fractions"][0] == 0 and c["fractions"][-1] == 0.98


def test_miscalibrated_is_detected():
    rng = np.random.default_rng(1)
    sigma = np.full((100, 100, 3), 5.0)
    hr, mean = synthetic(sigma, rng)
    over = uncertainty.metrics(hr, mean, losses.logvar_from_sigma(2 * sigma))  # over-dispersed
    c = uncertainty.curves(hr, mean, losses.logvar_from_sigma(2 * sigma))
    assert over["calibration_error"] > 0.15 and np.all(c["observed"] >= c["nominal"])
    good = uncertainty.metrics(hr, mean, losses.logvar_from_sigma(sigma))
    assert good["nll"] < over["nll"]


def test_random_sigma_gives_random_ause_and_no_rank_correlation():
    rng = np.random.default_rng(2)
    sd = 10.0
    shape = (200, 200, 3)
    hr, mean = synthetic(np.full(shape, sd), rng)
    random_sigma = rng.uniform(1.0, 50.0, shape)
    m = uncertainty.metrics(hr, mean, losses.logvar_from_sigma(random_sigma))
    expected = random_ranking_ause(sd)  # about 5.8 grey levels for sd = 10
    assert m["ause_rmse"] == pytest.approx(expected, rel=0.03)
    assert abs(m["spearman"]) < 0.01


def test_oracle_sigma_gives_zero_ause():
    rng = np.random.default_rng(3)
    shape = (60, 70, 3)
    # integer errors 1..40 with random sign: many ties in |error| and sigma
    err = rng.integers(1, 41, shape) * rng.choice([-1, 1], shape)
    hr = rng.integers(60, 190, shape).astype(np.uint8)
    mean = hr + err
    m = uncertainty.metrics(hr, mean, losses.logvar_from_sigma(np.abs(err)))
    assert m["ause_rmse"] == 0.0
    assert m["spearman"] == pytest.approx(1.0)
    # the worst ranking (sigma = 1 / |error|) is far from it
    worst = uncertainty.metrics(hr, mean, losses.logvar_from_sigma(100.0 / np.abs(err)))
    assert worst["ause_rmse"] > 5 and worst["spearman"] == pytest.approx(-1.0)


def test_l1_mode_uses_laplace_std():
    rng = np.random.default_rng(4)
    # Laplace errors with scale b: std sqrt(2) b; the L1 convention gives sigma = sqrt(2) b
    b = 6.0
    hr = np.full((150, 150, 3), 100.0)
    mean = hr + rng.laplace(0, b, hr.shape)
    s = np.full(hr.shape, np.log(b / losses.PIXEL_SCALE))
    err, sigma = uncertainty.errors_and_sigmas(hr, mean, s, loss_mode="l1")
    np.testing.assert_allclose(sigma, np.sqrt(2) * b)
    assert np.std(err) == pytest.approx(np.sqrt(2) * b, rel=0.02)
    assert np.isnan(uncertainty.metrics(hr, mean, s, loss_mode="l1")["spearman"])  # constant sigma


def test_six_channel_shave_grey_and_pooling():
    rng = np.random.default_rng(5)
    sigma = rng.uniform(2, 9, (20, 24, 3))
    hr, mean = synthetic(sigma, rng)
    s = losses.logvar_from_sigma(sigma)
    a = uncertainty.metrics(hr, mean, s, shave=4)
    b = uncertainty.metrics(hr, np.concatenate([mean, s], -1), shave=4)
    assert a == b
    err, _ = uncertainty.errors_and_sigmas(hr, mean, s, shave=4)
    assert err.size == 12 * 16 * 3
    # a grey HR is compared with each channel
    err, _ = uncertainty.errors_and_sigmas(hr[..., 0], mean, s)
    assert err.size == hr.size
    # lists are pixel-pooled: same as concatenating the images
    pooled = uncertainty.metrics([hr[:10], hr[10:]], [mean[:10], mean[10:]], [s[:10], s[10:]])
    whole = uncertainty.metrics(hr, mean, s)
    for k in ("nll", "calibration_error"):
        assert pooled[k] == pytest.approx(whole[k])
    with pytest.raises(ValueError):
        uncertainty.metrics(hr[:5], mean, s)
    with pytest.raises(ValueError):
        uncertainty.metrics(hr, mean)  # no logvar, 3 channels


def test_plots(tmp_path):
    rng = np.random.default_rng(6)
    sigma = rng.uniform(2, 9, (30, 30, 3))
    hr, mean = synthetic(sigma, rng)
    c = uncertainty.curves(hr, mean, losses.logvar_from_sigma(sigma))
    p1 = uncertainty.plot_sparsification(c, tmp_path / "plots" / "sparsification.png")
    p2 = uncertainty.plot_calibration({"a": c, "b": c}, tmp_path / "plots" / "calibration.png")
    for p in (p1, p2):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(x.name for x in (tmp_path / "plots").iterdir()) == ["calibration.png", "sparsification.png"]


def test_gram_study_plumbing(tmp_path, repo_root):
    """The study's train.py command lines, checkpoint choice, variant check and table (no training)."""
    from testing import gram_study
    from utils import UserError

    args, extra = gram_study.build_parser().parse_known_args(
        ["--dataset", "d", "--epochs", "1", "--steps-per-epoch", "2", "--lr-patch", "24"])
    argv = gram_study.train_argv(args, "gram", extra)
    assert argv[-2:] == ["--lr-patch", "24"] and "--dataset" in argv
    for flag in ("--pred_logvar", "--attention", "--block_attention_gradient"):
        assert flag in argv and flag not in gram_study.train_argv(args, "plain", extra)
    assert "--pred_logvar" in gram_study.train_argv(args, "nll", extra)
    assert "--attention" not in gram_study.train_argv(args, "nll", extra)
    # the seed's flags parse in train.py's own parser too (when train.py is there)
    try:
        import train
    except ImportError:
        train = None
    if train is not None:
        ns = train.build_parser().parse_args(argv)
        assert ns.pred_logvar and ns.attention and ns.block_attention_gradient

    models = tmp_path / "run" / "models"
    models.mkdir(parents=True)
    for name in ("epoch-001-psnr-20.5000.keras", "epoch-002-psnr-21.2500.keras", "epoch-003-psnr-21.0000.keras"):
        (models / name).write_bytes(b"")
    assert gram_study.pick_checkpoint(tmp_path / "run", "best").endswith("epoch-002-psnr-21.2500.keras")
    assert gram_study.pick_checkpoint(tmp_path / "run", "last").endswith("epoch-003-psnr-21.0000.keras")
    with pytest.raises(UserError):
        gram_study.pick_checkpoint(tmp_path / "empty", "best")

    gram_study.check_variant("gram", {"pred_logvar": True, "attention": True, "block_attention_gradient": True}, "r")
    with pytest.raises(UserError):  # a run that silently trained without the head
        gram_study.check_variant("nll", {"pred_logvar": False}, "r")

    u = {"nll": 3.0, "ause_rmse": 1.5, "spearman": 0.4, "calibration_error": 0.05}
    text = gram_study.table({"plain": {"row": {"psnr_y": 30.0, "ssim_y": 0.9}, "train_seconds": 10.0},
                             "gram": {"row": {"psnr_y": 29.9, "ssim_y": 0.89, "uncertainty": u, "mean_sigma": 4.0},
                                      "train_seconds": None}})
    lines = text.splitlines()
    assert len(lines) == 4 and "| plain L2 (MSE) | 30.00 | 0.9000 | – |" in lines[2] and "1.50" in lines[3]


def test_fast_paths_match_sorting_references():
    """The binned sparsification sums and coverage counts equal the plain argsort / sort versions."""
    rng = np.random.default_rng(7)
    n = 5003
    for key in (rng.random(n), rng.integers(0, 7, n).astype(float), np.full(n, 2.0)):  # ties, all tied
        values = rng.random(n)
        keep = np.maximum(n - np.round(np.arange(50) / 50 * n).astype(np.int64), 1)
        want = np.cumsum(values[np.argsort(key, kind="stable")])[keep - 1]
        np.testing.assert_allclose(uncertainty._kept_sums(key, values, keep), want, rtol=1e-12)
    err, sigma = rng.standard_normal(n) * 3, rng.uniform(1, 5, n)
    nominal, observed, _ = uncertainty.calibration(err, sigma)
    t = np.sort(np.abs(err) / sigma)
    z = stats.norm.ppf((1 + nominal) / 2)
    np.testing.assert_allclose(observed, np.searchsorted(t, z, side="right") / n)
    # subsampled Spearman stays close to the full one
    big_err = rng.standard_normal(600_000)
    big_sigma = np.abs(big_err) + rng.uniform(0, 2, big_err.size)
    full = stats.spearmanr(big_sigma, np.abs(big_err)).statistic
    assert uncertainty.spearman(big_err, big_sigma) == pytest.approx(full, abs=0.01)
