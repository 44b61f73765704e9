"""Images on disk and in memory: `imaging.io` (read_image, write_image, IMAGE_EXTS: THE reader and writer),
`imaging.resize` (MATLAB-exact imresize), `imaging.files` (listing, THE folder check, THE LR/HR pairing check,
the temporary-file cleaner), `imaging.convert` (dataset conversions of convert.py). Import them from here."""
from imaging.io import ARRAY_EXTS, IMAGE_EXTS, READABLE_EXTS, read_image, write_image  # noqa: F401
from imaging.resize import imresize  # noqa: F401
