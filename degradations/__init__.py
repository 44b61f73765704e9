"""Real-world degradations: Real-ESRGAN's second-order pipeline as a per-sample host-side transform.

`degradations.degrade(hr_uint8, rng)`, `degradations.RealESRGANTransform()`, the preset `REALESRGAN` and
`make_config(overrides)`; kernels in `degradations.kernels`, the reference JPEG in `degradations.diffjpeg`,
batch-level draws and the pair pool in `degradations.batches`. See docs/degradations.md.
"""
from degradations.batches import ReferenceBatches, reference_batches
from degradations.pipeline import (PRESETS, REALESRGAN, RealESRGANTransform, apply_params, batch_params, degrade,
                                   describe, make_config, sample_params, set_cv2_threads)

__all__ = ["PRESETS", "REALESRGAN", "RealESRGANTransform", "ReferenceBatches", "apply_params", "batch_params",
           "degrade", "describe", "make_config", "reference_batches", "sample_params", "set_cv2_threads"]
