"""Image files on disk: listing (hidden and temporary files ignored), THE folder check, THE output-file check,
THE LR/HR pairing check and THE cleaner of the temporary files a killed run left (utils.atomic_path's)."""
import glob
import os
import tempfile

from imaging.io import READABLE_EXTS
from utils import UserError


def check_folder(path, name="input", hint=None):
    """THE folder check: `path`, or UserError "NAME folder not found: PATH" / "NAME PATH is a file, not a
    folder", followed by "; HINT" (what to pass instead) when given."""
    tail = f"; {hint}" if hint else ""
    if path is None or path == "":
        raise UserError(f"no {name} folder given{tail}")
    path = os.fspath(path)
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise UserError(f"{name} {path} is a file, not a folder{tail}")
        raise UserError(f"{name} folder not found: {path}{tail}")
    return path


def list_images(directory, exts=READABLE_EXTS):
    """{stem: path} of the image/array files directly in `directory` with one of `exts` (sorted by name; hidden
    and temporary files ignored). When an image was converted in place, the `.npy` wins over the PNG."""
    out = {}
    for name in sorted(os.listdir(directory)):
        stem, ext = os.path.splitext(name)
        if name.startswith(".") or ext.lower() not in exts:
            continue
        path = os.path.join(directory, name)
        if os.path.isfile(path) and (stem not in out or ext.lower() == ".npy"):
            out[stem] = path
    return out


def walk_images(root, exts=READABLE_EXTS):
    """Sorted relative paths of the files under `root` (recursive) with one of `exts`; hidden and temporary
    files and folders ignored."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts:
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def find_image(directory, stem, prefer_ext=None):
    """Path of `directory/stem.<ext>` for any readable extension (`prefer_ext` first), or None."""
    exts = ([prefer_ext] if prefer_ext else []) + [e for e in READABLE_EXTS if e != prefer_ext]
    for ext in exts:
        path = os.path.join(directory, stem + ext)
        if os.path.isfile(path):
            return path
    return None


def check_pair(lr_size, hr_size, scale, lr_name, hr_name):
    """THE LR/HR pairing rule: an LR image is its HR image cropped to a multiple of the scale, then downscaled,
    so LR (h, w) == HR (h, w) // scale. UserError naming both files otherwise."""
    scale = int(scale)
    expected = (int(hr_size[0]) // scale, int(hr_size[1]) // scale)
    if tuple(int(v) for v in lr_size[:2]) != expected:
        raise UserError(f"{lr_name}: LR {lr_size[1]}x{lr_size[0]} does not match HR {hr_name} {hr_size[1]}x"
                        f"{hr_size[0]} at x{scale} (expected {expected[1]}x{expected[0]}); wrong --scale, or a "
                        f"resized or mismatched LR file")


def remove_stale_temps(directory):
    """Delete the temporary files a killed run left under `directory` (utils.atomic_path names them
    `.<stem>.<random>.tmp<ext>`); returns how many."""
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(os.fspath(directory)), "**", ".*.tmp*"), recursive=True):
        if os.path.isfile(path):
            try:
                os.remove(path)
                removed += 1
            except OSError:
                pass
    return removed


def check_output_file(path, option="-o"):
    """THE output-file check, before any work and creating nothing: `path` is not a folder and the nearest
    existing folder above it is writable (utils.atomic_path makes the missing folders when it writes)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a directory; give a file name")
    check_writable_parent(os.path.dirname(os.path.abspath(path)), option, path)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} is not writable; choose another file")
    return path


def check_writable_parent(directory, option, path):
    """The nearest existing folder at or above `directory` must be writable (atomic writes make the rest)."""
    d = directory
    while not os.path.exists(d):
        d = os.path.dirname(d)
    if not os.path.isdir(d):
        raise UserError(f"{option} {path}: {d} is a file, not a directory")
    try:  # a real probe: permissions alone do not tell (root, read-only mounts, /proc)
        with tempfile.TemporaryFile(dir=d):
            pass
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write to {d} ({e.strerror}); choose a writable location") from None
