"""Every network, one file each; importing a file registers its builders (model/registry.py)."""
from model.archs import attention_unet  # noqa: F401
from model.archs import edsr  # noqa: F401
from model.archs import msrresnet  # noqa: F401
from model.archs import rrdbnet  # noqa: F401
from model.archs import srresnet  # noqa: F401
from model.archs import srvgg  # noqa: F401
from model.archs import unet_discriminator  # noqa: F401
from model.archs import vgg19  # noqa: F401  (the perceptual loss's feature extractor; not a generator)
from model.archs import wdsr  # noqa: F401
