"""THE registry of evaluation metrics: train.py validates with them (`--monitor`), bench.py reports any set.

A metric scores one SR image: `fn(sr, hr=None, shave=0, **options) -> float`, with `sr` uint8 (rounded by
`metrics.quantize`) HxWx3 and `hr` the uint8 ground truth (HxW for grey HR) or None for no-reference metrics.
"""
from dataclasses import dataclass, field
from typing import Callable

from utils import UserError


@dataclass(frozen=True)
class Metric:
    name: str                      # registry key, also the results-file key ("psnr_y", "niqe")
    fn: Callable                   # fn(sr, hr=None, shave=0, **options) -> float
    higher_is_better: bool
    needs_reference: bool          # False: scored on the SR image alone (NIQE)
    label: str = ""                # table header, e.g. "PSNR-Y (dB)"
    options: tuple = field(default=())  # names of keyword options fn accepts besides shave

    def better(self, a, b):
        """True when score a is better than score b (b may be None)."""
        if b is None:
            return True
        return a > b if self.higher_is_better else a < b

    @property
    def arrow(self):
        return "↑" if self.higher_is_better else "↓"


METRICS = {}


def register(metric):
    """Add a Metric (or replace one of the same name); returns it."""
    METRICS[metric.name] = metric
    return metric


def get_metric(name):
    _load_builtin()
    if name not in METRICS:
        raise UserError(f"unknown metric {name!r}; choose one of {', '.join(metric_names())}")
    return METRICS[name]


def metric_names():
    _load_builtin()
    return list(METRICS)


_builtin_loaded = False


def _load_builtin():
    """Register the built-in metrics once, on the first lookup; a metric registered earlier under the same name
    (a user's own) is kept, and an early `register()` does not stop the built-ins from loading."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    import metrics.fidelity as fidelity

    builtin = []
    for channel in ("y", "rgb"):
        builtin.append(Metric(f"psnr_{channel}", _full_reference(fidelity.psnr, channel), True, True,
                              f"PSNR-{channel.upper()} (dB)"))
        builtin.append(Metric(f"ssim_{channel}", _full_reference(fidelity.ssim, channel), True, True,
                              f"SSIM-{channel.upper()}"))
    builtin.append(Metric("niqe", _niqe, False, False, "NIQE", options=("convert", "crop")))
    builtin.append(Metric("lpips", _lpips, False, True, "LPIPS", options=("net", "backbone")))
    for metric in builtin:
        METRICS.setdefault(metric.name, metric)


def _niqe(sr, hr=None, shave=0, convert="y", crop=0):
    """NIQE of the SR image alone; `shave` (the PSNR border convention) is not used: NIQE has its own `crop`."""
    import metrics.niqe as niqe

    return niqe.niqe(sr, convert=convert, crop=crop)


def _lpips(sr, hr=None, shave=0, net="alex", backbone=None):
    """LPIPS v0.1 on the whole RGB image: `shave` (the PSNR border convention) is not used."""
    import metrics.lpips as lpips

    if hr is None:
        raise ValueError("this metric needs a reference image")
    return lpips.lpips(sr, hr, net=net, backbone=backbone)


def _full_reference(fn, channel):
    def score(sr, hr=None, shave=0):
        if hr is None:
            raise ValueError("this metric needs a reference image")
        return fn(hr, sr, shave=shave, channel=channel)

    score.__name__ = f"{fn.__name__}_{channel}"
    return score
