"""Shared fixtures. Tests run on the TensorFlow backend unless a test starts a subprocess with another."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def jax_env(*pythonpath):
    """Environment for a JAX-backend subprocess (one backend per process) on the CPU.

    XLA's CPU optimisation passes dominate JAX's cost for these tiny models (one compile per initializer
    shape and per traced function); level 0 skips them, the numbers computed stay the same to float rounding.
    """
    xla_flags = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return env


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


@pytest.fixture(scope="session")
def shared_dir():
    """../shared, or skip: tests on reference data must pass without it."""
    if not (SHARED / "datasets").is_dir():
        pytest.skip("../shared reference data not present")
    return SHARED


def smooth_image(rng, height, width):
    """A photo-like test image: smooth colour gradients plus some texture, uint8 RGB."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.empty((height, width, 3))
    for c in range(3):
        fy, fx, phase = rng.uniform(0.02, 0.15, size=2).tolist() + [rng.uniform(0, 6.28)]
        img[..., c] = 128 + 80 * np.sin(fy * yy + phase) * np.cos(fx * xx) + 20 * rng.standard_normal((height, width))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_div2k_tree(root, train_ids=(1, 2, 3, 4), valid_ids=(801, 802), size=(96, 120), scales=(2, 3, 4), seed=0):
    """A tiny DIV2K-layout PNG tree (HR + LR_bicubic/X{s}); LR by PIL bicubic, good enough for plumbing tests."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for subset, ids in (("train", train_ids), ("valid", valid_ids)):
        hr_dir = root / f"DIV2K_{subset}_HR"
        hr_dir.mkdir(parents=True, exist_ok=True)
        for i in ids:
            hr = smooth_image(rng, *size)
            Image.fromarray(hr).save(hr_dir / f"{i:04d}.png")
            for s in scales:
                lr_dir = root / f"DIV2K_{subset}_LR_bicubic" / f"X{s}"
                lr_dir.mkdir(parents=True, exist_ok=True)
                h, w = size[0] // s, size[1] // s
                crop = Image.fromarray(hr[: h * s, : w * s])
                crop.resize((w, h), Image.BICUBIC).save(lr_dir / f"{i:04d}x{s}.png")
    return root


@pytest.fixture(scope="session")
def tiny_div2k(tmp_path_factory):
    """Session-wide tiny DIV2K PNG tree: train ids 1-4, valid ids 801-802, HR 96x120, scales 2/3/4."""
    return write_div2k_tree(tmp_path_factory.mktemp("tiny_div2k"))


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory):
    """The embedded sample dataset (`convert.py sample`: DIV2K layout from scikit-image's photographs), built once
    per test process in a temporary folder, so tests never depend on a ./sample left in the checkout."""
    import convert

    out = tmp_path_factory.mktemp("sample_dataset") / "sample"
    convert.main(["-o", str(out), "sample"])
    return out
