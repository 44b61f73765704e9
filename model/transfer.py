"""Copy weights between two built networks by layer name and shape (the x2 -> x4 recipe, --pretrained-model),
converting weight-norm <-> plain convs exactly; model/io.transfer_weights opens files for it."""
import keras

from model.weightnorm import WeightNormConv2D, unfold_to_weightnorm
from utils import UserError


def _weights_for(src, dst):
    """Source layer weights converted to the destination layer's layout, or None when shapes do not fit.

    Plain conv <-> weight-norm conv of the same shape convert exactly (fold / unfold), so a model trained with
    weight norm can initialise one without it and back.
    """
    weights = src.get_weights()
    if isinstance(src, WeightNormConv2D) and not isinstance(dst, WeightNormConv2D):
        kernel, bias = src.folded_kernel(), src.bias
        weights = [keras.ops.convert_to_numpy(kernel)] + ([keras.ops.convert_to_numpy(bias)] if src.use_bias else [])
    elif isinstance(dst, WeightNormConv2D) and not isinstance(src, WeightNormConv2D) and weights:
        weights = unfold_to_weightnorm(weights[0], weights[1] if len(weights) > 1 else None)
    expected = [tuple(w.shape) for w in dst.weights]
    if [tuple(w.shape) for w in weights] != expected:
        return None
    return weights


def copy_weights(model, source, label):
    """Copy weights of same-named, same-shaped layers from the built model `source` into `model`.

    Scale-dependent layers carry `scale_{s}` in their names, so they do not match and keep their fresh
    initialisation. Returns the transferred layer names. UserError (starting with `label`) when nothing fits or
    a same-named layer has another shape (a different architecture or width).
    """
    src_layers = {layer.name: layer for layer in source.layers if layer.weights}
    transferred = []
    for layer in model.layers:
        src = src_layers.get(layer.name)
        if src is None or not layer.weights:
            continue
        weights = _weights_for(src, layer)
        if weights is None:
            got = [tuple(w.shape) for w in src.weights]
            want = [tuple(w.shape) for w in layer.weights]
            raise UserError(f"{label}: layer {layer.name!r} has weights {got} but the model needs {want}; "
                            "the pretrained model must have the same architecture and size")
        layer.set_weights(weights)
        transferred.append(layer.name)
    if not transferred:
        raise UserError(f"{label}: no layer matches the model by name; pass a model of the same architecture")
    return transferred
