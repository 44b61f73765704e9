"""Discriminator, THE class of every GAN discriminator here: its config (arch, params, kind) rebuilds it, so a
saved file says it is a discriminator."""
import keras

from model.registry import build_graph, float32_layer_names, set_float32


@keras.saving.register_keras_serializable(package="sisr")
class Discriminator(keras.Model):
    """A registered discriminator (model/registry.py) with `params`, built functionally: RGB N x H x W x 3 in
    [0, 255] -> per-pixel logits N x H x W x 1 (multi-scale: a list, full resolution first)."""

    kind = "discriminator"

    def __init__(self, arch, params=None, dtype=None, float32_layers=None, name=None, trainable=True,
                 **kwargs):
        dtype = dtype or keras.config.dtype_policy().name
        graph, params = build_graph(arch, params=params, kind="discriminator", dtype=dtype)
        super().__init__(inputs=graph.input, outputs=graph.output, name=name or graph.name, trainable=trainable,
                         **kwargs)
        set_float32(self, float32_layers)
        self.arch, self.params = arch, dict(params)
        self.dtype_name = dtype

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "arch": self.arch, "params": dict(self.params),
                "kind": self.kind, "dtype": self.dtype_name,
                "float32_layers": float32_layer_names(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**{k: v for k, v in config.items() if k != "kind"})


def build_discriminator(name, **params):
    """A fresh discriminator: RGB N x H x W x 3 in [0, 255] -> per-pixel logits N x H x W x 1 (multi-scale: a list,
    full resolution first). `params` as in its builder (e.g. num_feat, 64). None values mean default."""
    return Discriminator(name, params)
