"""NIQE (metrics/niqe.py): against a plain per-block implementation, known AGGD samples, distortions, the
shipped pristine model, and the A-ESRGAN protocol's bicubic number on Set5."""
import io

import numpy as np
import pytest
from scipy import ndimage, special

import imaging
import metrics
from metrics import niqe
from utils import UserError


@pytest.fixture(scope="module")
def reference():
    """testing.niqe_reference.reference_niqe: loops over blocks, an argmin over the alpha grid per fit."""
    from testing.niqe_reference import reference_niqe

    return reference_niqe


def _photo(rng, h, w, flat=False):
    """Photo-like uint8 RGB; flat=True adds a saturated region (exact-zero MSCN, the fragile case)."""
    from conftest import smooth_image

    img = smooth_image(rng, h, w)
    if flat:
        img[: h // 3, : w // 2] = 255
    return img


def _set5(shared_dir):
    return {p.stem: imaging.read_image(str(p)) for p in sorted((shared_dir / "datasets" / "Set5" / "HR").glob("*.png"))}


def test_alpha_grid_lookup_is_argmin():
    r = niqe._R_GRID
    assert len(niqe.ALPHA_GRID) == 9801 and np.all(np.diff(r) > 0)  # strictly increasing: the look-up is valid
    rng = np.random.default_rng(0)
    mids = (r[:-1] + r[1:]) / 2
    r_hat = np.concatenate([rng.uniform(0, 1, 2000), r[::97], mids[::89], [-1.0, 0.0, 5.0, np.nan, np.inf, -np.inf]])
    with np.errstate(invalid="ignore"):
        expected = np.array([np.argmin((r - v) ** 2) for v in r_hat])
    np.testing.assert_array_equal(niqe._nearest_alpha_index(r_hat), expected)


@pytest.mark.parametrize("alpha,beta_l,beta_r", [(0.6, 0.3, 0.5), (1.0, 1.0, 1.0), (2.0, 0.7, 0.4), (3.5, 2.0, 2.5)])
def test_aggd_fit_recovers_known_parameters(alpha, beta_l, beta_r):
    """Samples of an AGGD (each side a generalised Gaussian of scale beta, mass beta/(beta_l+beta_r))."""
    rng = np.random.default_rng(1)
    n = 400_000
    left = rng.random(n) < beta_l / (beta_l + beta_r)
    t = rng.gamma(1.0 / alpha, 1.0, n) ** (1.0 / alpha)  # |x| / beta has density ~ exp(-t^alpha)
    x = np.where(left, -beta_l * t, beta_r * t)
    a, bl, br, _ = niqe.aggd_fit(x[None])
    assert a[0] == pytest.approx(alpha, rel=0.03)
    assert bl[0] == pytest.approx(beta_l, rel=0.02) and br[0] == pytest.approx(beta_r, rel=0.02)
    # the feature mean of Eq. 8 is the distribution's mean
    mean = (br[0] - bl[0]) * special.gamma(2 / a[0]) / special.gamma(1 / a[0])
    assert mean == pytest.approx(x.mean(), abs=0.01 * (beta_l + beta_r))


def test_vectorised_equals_plain_reference(reference):
    rng = np.random.default_rng(2)
    for img in (_photo(rng, 300, 420), _photo(rng, 250, 290, flat=True)):
        plane = np.round(niqe.grey_plane(img, "y"))
        assert niqe.niqe(img) == pytest.approx(reference(plane), abs=1e-6)


def test_vectorised_equals_plain_reference_on_set5(shared_dir, reference):
    img = _set5(shared_dir)["bird"]
    for convert in ("y", "gray"):
        plane = np.round(niqe.grey_plane(img, convert))
        assert niqe.niqe(img, convert) == pytest.approx(reference(plane), abs=1e-6)


def test_basicsr_value_for_baboon(shared_dir):
    """BasicSR's own test: baboon, convert 'y', no crop -> 5.7295763 (MATLAB 5.7296)."""
    img = imaging.read_image(str(shared_dir / "datasets" / "Set14" / "HR" / "baboon.png"))
    assert niqe.niqe(img, "y") == pytest.approx(5.7295763, abs=2e-6)


def test_flat_and_smooth_images_score_finite_and_badly():
    yy, xx = np.mgrid[0:200, 0:300]
    constant = np.full((200, 300, 3), 128, np.uint8)
    ramp = np.repeat((xx * 0.8).astype(np.uint8)[..., None], 3, axis=-1)
    smooth = (128 + 60 * np.sin(xx / 40.0) * np.cos(yy / 30.0)).astype(np.uint8)
    photo = _photo(np.random.default_rng(3), 200, 300)
    natural = niqe.niqe(photo)
    for img in (constant, ramp, smooth, np.full((96, 96), 7.0)):
        value = niqe.niqe(img)
        assert np.isfinite(value) and value > natural


def test_conversions_and_crop():
    img = _photo(np.random.default_rng(4), 230, 250)
    grey = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(img).convert("L"))
    assert niqe.niqe(img, "gray") == pytest.approx(niqe.niqe(grey))  # 'gray' is Pillow's convert('L')
    y = np.round(metrics.rgb_to_y(img))
    assert niqe.niqe(img, "y") == pytest.approx(niqe.niqe(y))
    assert niqe.niqe(img, crop=10) == pytest.approx(niqe.niqe(img[10:-10, 10:-10]))
    assert niqe.niqe(img.astype(np.float32) + 0.2) == niqe.niqe(img)  # float SR is rounded like the other metrics
    m = metrics.get_metric("niqe")
    assert not m.higher_is_better and not m.needs_reference and m.arrow == "↓"
    assert m.fn(img, convert="gray", crop=10) == pytest.approx(niqe.niqe(img, "gray", 10))


def test_small_image_and_bad_options_are_user_errors():
    with pytest.raises(UserError, match=r"at least 96x96 pixels; this one is 95x200$"):
        niqe.niqe(np.zeros((200, 95, 3), np.uint8))
    with pytest.raises(UserError, match="110x110, 90x90 after a crop of 10"):
        niqe.niqe(np.zeros((110, 110), np.uint8), crop=10)
    with pytest.raises(UserError, match="conversion"):
        niqe.niqe(np.zeros((100, 100), np.uint8), convert="lab")


def test_shipped_params_equal_the_shared_copy(repo_root):
    shared = repo_root.parent / "shared" / "niqe" / "niqe_pris_params.npz"
    if not shared.is_file():
        pytest.skip("../shared/niqe not present")
    mine, theirs = np.load(niqe.PARAMS_FILE), np.load(shared)
    assert sorted(mine.files) == sorted(theirs.files) == ["cov_pris_param", "gaussian_window", "mu_pris_param"]
    for k in mine.files:
        np.testing.assert_array_equal(mine[k], theirs[k])
    mu, cov, window = niqe.pristine_params()
    assert mu.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)


def _jpeg(img, quality):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_distortions_score_worse_on_set5(shared_dir):
    """Blur (Gaussian sigma 1.5) on every Set5 HR image; JPEG q20 on those with at least 6 blocks of 96x96.

    butterfly and head (256 and 280 px: 2x2 blocks, 4 samples for a 36-dim covariance) score *better* after
    JPEG q20 (y: 5.155 -> 5.001, 8.350 -> 7.493), as in BasicSR, whose baboon value this code reproduces.
    """
    for name, hr in _set5(shared_dir).items():
        original = niqe.niqe(hr)
        blurred = np.clip(np.round(ndimage.gaussian_filter(hr.astype(np.float64), (1.5, 1.5, 0))), 0, 255)
        assert niqe.niqe(blurred.astype(np.uint8)) > original + 0.5, name
        if (hr.shape[0] // 96) * (hr.shape[1] // 96) >= 6:
            assert niqe.niqe(_jpeg(hr, 20)) > original + 0.5, name
