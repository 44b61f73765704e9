"""LQ statistics of the degradation pipeline against the reference code (realesrgan 0.3.0 + basicsr 1.4.2) on
held-out GT crops (../shared Set14 / B100): the training transform and `convert.py degrade` (testing/degradation_stats.py).

Paired: the reference's feed_data runs on the same GT crops with the same drawn choices (its random draws
replaced by the project's), so the medians compare implementations, not two samples of draws (independent
draws need hundreds of pairs per side for a 10 % comparison: benchmarks/degradation_stats.py)."""
import numpy as np
import pytest

from testing import degradation_stats as S
from testing.reference import require_reference


@pytest.fixture(scope="module")
def crops(shared_dir):
    require_reference("realesrgan")
    folders = [shared_dir / "datasets" / name / "HR" for name in ("Set14", "B100")]
    every = S.gt_crops(folders, seed=0)
    return every[:4] + every[20:24]  # Set14 and B100 crops, 400 x 400 and padded 400 x 321


def _medians(pairs):
    st = S.stats(pairs)
    return {k: float(np.median(v)) for k, v in st.items()}


def test_training_transform_lq_statistics_match_the_reference(crops):
    ours, ref = S.paired_pairs(crops, draws=1, seed=0)
    assert all(np.array_equal(o[1], r[1]) for o, r in zip(ours, ref))  # the same GT crops
    a, b = _medians(ours), _medians(ref)
    for key in a:
        assert abs(a[key] / b[key] - 1) <= 0.10, (key, a[key], b[key])
    # and the difference the issue measured is gone: the plain GT + libjpeg is far off on one of the two
    old, ref_old = S.paired_pairs(crops[:4], draws=1, seed=0, overrides={"degrade_usm": False, "jpeg_impl": "libjpeg"})
    c, d = _medians(old), _medians(ref_old)
    assert c["chroma_share"] / d["chroma_share"] < 0.8 or c["laplacian_ratio"] / d["laplacian_ratio"] < 0.9


def test_convert_degrade_lq_statistics_match_the_reference(crops):
    from degradations.dataset import image_rng
    from degradations.pipeline import WHOLE_IMAGE

    square = [c for c in crops if c.shape[0] == c.shape[1]][:4]
    ours, ref = S.paired_pairs(square, draws=1, seed=0, overrides=WHOLE_IMAGE,
                               rng_fn=lambda d, k: image_rng(d, f"{k:04d}", 4))
    written = S.convert_pairs(square, draws=1, seed=0)  # what convert.py degrade writes: the same LQ
    assert all(np.array_equal(w[0], o[0]) for w, o in zip(written, ours))
    a, b = _medians(ours), _medians(ref)
    for key in a:
        assert abs(a[key] / b[key] - 1) <= 0.10, (key, a[key], b[key])
