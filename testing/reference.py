"""Importing the reference PyTorch packages (basicsr, realesrgan, spandrel, lpips, torchvision) for comparisons.

They are optional (requirements-reference.txt). Two known snags are worked around here, once:
- torchvision's compiled ops may fail to load beside the CPU torch wheel; its fake-op registrations then raise
  at import. No compiled op is needed for the comparisons, so that module is skipped.
- basicsr 1.4.2 imports `torchvision.transforms.functional_tensor`, which newer torchvision removed; the
  functions it uses live in `torchvision.transforms.functional`.
"""
import importlib
import sys
import types


def _shim_torchvision():
    if "torchvision" in sys.modules:
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import torchvision.transforms.functional as functional
    except ImportError:
        return
    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional)


def import_reference(name):
    """The reference module `name` (e.g. "basicsr.utils.diffjpeg"), or None when it is not installed."""
    _shim_torchvision()
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def require_reference(name):
    """The reference module `name`, or skip the calling test when it is not installed."""
    import pytest

    module = import_reference(name)
    if module is None:
        pytest.skip(f"reference package {name.split('.')[0]} not installed (pip install -r requirements-reference.txt)")
    return module
