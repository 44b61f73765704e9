"""Converters, one module per source family, each taking (arch, params), never a profile name:
torch_pickle (the safe .pth / .safetensors reader), torch_layout (PyTorch -> Keras tensor layouts), esrgan
(RRDBNet, BasicSR and old ESRGAN layouts), discriminators (A-ESRGAN / Real-ESRGAN U-Nets), vgg19 (torchvision /
Keras VGG19), krasserm (krasserm's Keras 2 .h5). model/io.py is the loader that picks one."""
