"""GAN losses of Real-ESRGAN / A-ESRGAN: vanilla BCE-with-logits against constant maps (1 real, 0 fake),
averaged over pixels and batch; with several discriminator outputs (A-ESRGAN's multi-scale D) the per-scale
losses are SUMMED, with equal weight (aesrgan_model.py; BasicSR's MultiScaleGANLoss, which averages, is not
what A-ESRGAN trains with). keras.ops only.
"""
from keras import ops


def bce_with_logits(logits, target):
    """mean over all elements of BCE(sigmoid(logits), target), computed stably from the logits."""
    logits = ops.cast(logits, "float32")
    return ops.mean(ops.relu(logits) - logits * target + ops.log1p(ops.exp(-ops.abs(logits))))


def as_list(outputs):
    """A discriminator's output(s) as a list (multi-scale models return one map per scale)."""
    if isinstance(outputs, dict):
        return list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def gan_loss(outputs, target_is_real):
    """Sum over the discriminator's outputs of the mean BCE against an all-ones (real) or all-zeros map."""
    target = 1.0 if target_is_real else 0.0
    return sum(bce_with_logits(o, target) for o in as_list(outputs))


def mean_probability(outputs):
    """Mean sigmoid of the discriminator's outputs (averaged over scales): D's belief the input is real."""
    maps = as_list(outputs)
    return sum(ops.mean(ops.sigmoid(ops.cast(o, "float32"))) for o in maps) / len(maps)
