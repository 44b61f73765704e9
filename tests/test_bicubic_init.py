"""--bicubic-init: a fresh WDSR computes MATLAB bicubic upscaling away from the border."""
import numpy as np
import pytest

import imaging
from model import build_model
from model.bicubic_init import init_bicubic
from utils import UserError


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("weightnorm", [True, False])
def test_wdsr_starts_as_bicubic(scale, weightnorm):
    rng = np.random.default_rng(scale)
    lr = rng.integers(0, 256, (14, 17, 3)).astype(np.float32)
    model = build_model("wdsr-b", scale, num_filters=8, num_res_blocks=1, weightnorm=weightnorm)
    init_bicubic(model)
    sr = np.asarray(model(lr[None]))[0]
    ref = imaging.imresize(lr.astype(np.float64), scale=scale)
    border = 2 * scale  # zero 'same' padding vs MATLAB's symmetric edges
    np.testing.assert_allclose(sr[border:-border, border:-border], ref[border:-border, border:-border], atol=1e-3)


def test_bicubic_init_needs_a_skip_branch():
    with pytest.raises(UserError, match="WDSR"):
        init_bicubic(build_model("edsr", 2, num_filters=8, num_res_blocks=1))
