"""Image I/O (`imaging.io`: read_image, write_image, IMAGE_EXTS) and MATLAB-exact resizing (`imaging.resize`:
imresize). data.py re-exports these names, so `data.read_image` keeps working."""
from imaging.io import ARRAY_EXTS, IMAGE_EXTS, READABLE_EXTS, read_image, write_image  # noqa: F401
from imaging.resize import imresize  # noqa: F401
