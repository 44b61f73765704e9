"""THE registry of networks: name -> builder for generators (with their scales) and discriminators, filled by
decorators in model/archs/*; `build_graph` checks a name, scale and parameters and builds the functional graph."""
import inspect

import keras

from utils import UserError

ARCHITECTURES = {}  # generator name -> builder(scale, **params) -> keras.Model (functional)
ARCH_SCALES = {}  # generator name -> the scales its builder supports
DISCRIMINATORS = {}  # discriminator name -> builder(**params) -> keras.Model


def register_generator(name, scales=(2, 3, 4)):
    """Decorator: `builder(scale, **params)` becomes the generator `name`, at `scales`."""
    def decorate(builder):
        if name in ARCHITECTURES or name in DISCRIMINATORS:
            raise ValueError(f"network {name!r} is registered twice")
        ARCHITECTURES[name] = builder
        ARCH_SCALES[name] = tuple(int(s) for s in scales)
        return builder
    return decorate


def register_discriminator(name):
    """Decorator: `builder(**params)` becomes the discriminator `name`."""
    def decorate(builder):
        if name in ARCHITECTURES or name in DISCRIMINATORS:
            raise ValueError(f"network {name!r} is registered twice")
        DISCRIMINATORS[name] = builder
        return builder
    return decorate


def _generator(arch):
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def _discriminator(name):
    if name not in DISCRIMINATORS:
        raise UserError(f"unknown discriminator {name!r}; choose one of {', '.join(DISCRIMINATORS)}")
    return DISCRIMINATORS[name]


def arch_scales(arch):
    """Scales `build_model(arch, ...)` supports."""
    _generator(arch)
    return ARCH_SCALES[arch]


def arch_params(arch):
    """Names of the parameters `build_model(arch, scale, ...)` accepts."""
    return [p for p in inspect.signature(_generator(arch)).parameters if p != "scale"]


def arch_defaults(arch):
    """{parameter: default} of a generator (what a profile entry may leave out)."""
    sig = inspect.signature(_generator(arch))
    return {k: p.default for k, p in sig.parameters.items() if k != "scale" and p.default is not p.empty}


def discriminator_params(name):
    """Names of the parameters `build_discriminator(name, ...)` accepts."""
    return list(inspect.signature(_discriminator(name)).parameters)


def check_params(arch, scale=None, params=None, kind="generator"):
    """(builder, params without None values); UserError for an unknown name, scale or parameter."""
    params = {k: v for k, v in (params or {}).items() if v is not None}
    if kind == "generator":
        builder = _generator(arch)
        if scale not in arch_scales(arch):
            raise UserError(f"unsupported scale {scale!r} for {arch}; choose one of "
                            f"{', '.join(map(str, arch_scales(arch)))}")
        allowed, label = arch_params(arch), arch
    else:
        builder = _discriminator(arch)
        allowed, label = discriminator_params(arch), f"discriminator {arch}"
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise UserError(f"{label} does not take {', '.join(unknown)}; its parameters are {', '.join(allowed)}")
    return builder, params


def build_graph(arch, scale=None, params=None, kind="generator", dtype=None):
    """The functional keras.Model of a registered network, built under the dtype policy `dtype` (None: the
    global one); (graph, params used)."""
    builder, params = check_params(arch, scale, params, kind)
    previous = keras.config.dtype_policy()
    if dtype is not None:
        keras.config.set_dtype_policy(dtype)
    try:
        graph = builder(int(scale), **params) if kind == "generator" else builder(**params)
    finally:
        keras.config.set_dtype_policy(previous)
    return graph, params


def float32_layer_names(network):
    """Names of the layers computing in float32 in a network built under a mixed policy (its float32 outputs,
    training.distribute.keep_outputs_float32), so a rebuild from the config keeps them; [] otherwise."""
    names = [layer.name for layer in network.layers if layer.dtype_policy.name == "float32"]
    return [] if len(names) == len(network.layers) else names


def set_float32(network, names):
    for name in names or ():
        network.get_layer(name).dtype_policy = "float32"
