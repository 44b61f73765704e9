"""SRModel, THE class of every super-resolution network here: its config (arch, scale, params, output, loss mode)
rebuilds it, so a saved file says what it is; plus the scale / log-variance readers (with the fallback for files
written before the class existed)."""
import keras
import numpy as np

from model.registry import build_graph, float32_layer_names, set_float32

OUTPUTS = ("image", "image+logvar")


@keras.saving.register_keras_serializable(package="sisr")
class SRModel(keras.Model):
    """A registered generator (model/registry.py) at `scale` with `params`, built functionally (keras-hub style):
    `keras.models.load_model` alone restores it from its config. Output N x sH x sW x 3 in pixel units, plus 3
    raw log-variance channels when params["pred_logvar"] ("image+logvar"). `loss_mode` ("l1" / "l2") records
    the GRAM loss a log-variance model was trained with (also taken from the compiled SRLoss when saving)."""

    def __init__(self, arch, scale, params=None, loss_mode=None, dtype=None, float32_layers=None, name=None,
                 trainable=True, **kwargs):
        dtype = dtype or keras.config.dtype_policy().name
        graph, params = build_graph(arch, scale, params, dtype=dtype)
        super().__init__(inputs=graph.input, outputs=graph.output, name=name or graph.name, trainable=trainable,
                         **kwargs)
        set_float32(self, float32_layers)
        self.arch, self.scale, self.params = arch, int(scale), dict(params)
        self.loss_mode = loss_mode
        self.dtype_name = dtype

    @property
    def output_kind(self):
        return OUTPUTS[1] if self.params.get("pred_logvar") else OUTPUTS[0]

    def get_config(self):
        loss_mode = self.loss_mode
        if loss_mode is None and self.params.get("pred_logvar"):
            loss_mode = getattr(getattr(self, "loss", None), "loss_mode", None)  # compiled with losses.SRLoss
        return {"name": self.name, "trainable": self.trainable, "arch": self.arch, "scale": self.scale,
                "params": dict(self.params), "output": self.output_kind, "loss_mode": loss_mode,
                "dtype": self.dtype_name, "float32_layers": float32_layer_names(self)}

    @classmethod
    def from_config(cls, config):
        config = {k: v for k, v in config.items() if k != "output"}  # derived from params
        return cls(**config)


def build_model(arch, scale, **params):
    """A fresh SRModel; `params` as in the architecture's builder (registry.arch_params). None values mean
    default."""
    return SRModel(arch, scale, params)


def model_scale(model):
    """Upscaling factor of an SR model: from its config; for other models (files written before SRModel) output
    size over input size for an 8x8 input, by shape inference, else a forward pass on zeros."""
    if isinstance(model, SRModel):
        return model.scale
    size = 8
    try:
        height = model.compute_output_spec(keras.KerasTensor((1, size, size, 3))).shape[1]
    except Exception:
        height = None
    if height is None:
        height = model(np.zeros((1, size, size, 3), dtype="float32"), training=False).shape[1]
    return int(height) // size


def predicts_logvar(model):
    """True when the model outputs the RGB mean and 3 log-variance channels (6 channels)."""
    if isinstance(model, SRModel):
        return model.output_kind == "image+logvar"
    return int(model.outputs[0].shape[-1]) == 6


def model_loss_mode(model):
    """The GRAM loss mode recorded in an SRModel's config, or None (plain models, older files)."""
    if isinstance(model, SRModel) and model.params.get("pred_logvar"):
        return model.get_config()["loss_mode"]
    return None
