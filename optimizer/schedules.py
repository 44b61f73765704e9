"""Learning-rate schedules: piecewise-constant step decay (krasserm: halve at 200k steps)."""
import keras


def make_schedule(learning_rate, boundaries=None, decay=0.5):
    """lr for step <= boundaries[0], lr*decay up to boundaries[1], lr*decay**2 ... (a serializable Keras schedule).

    Without boundaries the plain float learning rate is returned.
    """
    boundaries = [int(b) for b in (boundaries or [])]
    if not boundaries:
        return float(learning_rate)
    if sorted(boundaries) != boundaries:
        raise ValueError(f"learning-rate boundaries must increase, got {boundaries}")
    values = [float(learning_rate) * float(decay) ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values, name="step_decay")
