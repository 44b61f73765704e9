"""Shared fixtures. Tests run on the TensorFlow backend unless a test starts a subprocess with another.
The project is installed in editable mode (`make setup`); helpers shared with benchmarks live in testing/."""
import os
from pathlib import Path

import pytest

from testing.images import smooth_image, write_div2k_tree  # noqa: F401  (tests import them from here too)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


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
