"""Parameter counts (the seed table's: weight norm's redundant g excluded) and the printable model summary."""
import os

import numpy as np

from model.weightnorm import WeightNormConv2D


def count_params(model):
    """Parameters of the equivalent plain model: all weights (BN statistics included, as Keras's 'Total params')
    except weight norm's per-channel g, a redundant scale that folds into the kernel (the seed table's count)."""
    total = 0
    for w in model.weights:
        total += int(np.prod(w.shape))
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, WeightNormConv2D):
            total -= int(np.prod(layer.g.shape))
    return total


def describe(model):
    """Keras's summary text (with its 'Total params:' line) and the seed-table parameter count."""
    lines = []
    # Keras renders the table with rich, whose console width comes from COLUMNS (80 when not a terminal),
    # which would crop the 'Connected to' column; widen it for this call only.
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "120"
    try:
        model.summary(print_fn=lambda text, line_break=False: lines.append(text))
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    n = count_params(model)
    lines.append(f"Parameters (seed-table count, weight-norm g excluded): {n:,} ({n / 1e6:.2f}M)")
    return "\n".join(line.rstrip("\n") for line in lines)
