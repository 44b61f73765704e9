"""Image-quality metrics: full-reference fidelity (PSNR/SSIM), uncertainty metrics, and the metrics registry.

`import metrics; metrics.psnr(...)` keeps working: the fidelity functions are re-exported here.
"""
from metrics.fidelity import (DATA_RANGE, psnr, psnr_metric, quantize, rgb_to_grey, rgb_to_y, score,  # noqa: F401
                              ssim)
from metrics.registry import METRICS, Metric, get_metric, metric_names, register  # noqa: F401
