"""Datasets and loaders: dataset layouts (DIV2K, benchmark folders, folders of HR images) and the patch
samplers the trainer draws batches from (an LR transform, degradations/transforms.py, is handed in).

Image I/O, resizing and file listing live in `imaging/`. Only numpy and Pillow here (no degradations, no model);
Keras is imported lazily (only when `PatchDataset` is first used) so that `convert.py` starts fast.
"""
import collections
import math
import os
import re
from typing import NamedTuple, Union

import numpy as np

import imaging
from imaging.files import check_folder, check_pair, find_image, list_images
from imaging.io import _from_array
from imaging.resize import bicubic_downscale
from utils import UserError, parse_id_range, warn

# ----------------------------------------------------------------------------------------------------------
# Dataset layouts
# ----------------------------------------------------------------------------------------------------------


class Pair(NamedTuple):
    """One LR/HR example. `lr` is a file path, or a uint8 array when the LR image was made in memory."""

    stem: str
    lr: Union[str, np.ndarray]
    hr: str


# NTIRE 2018 tracks whose file names differ from the X{s}/<id>x{s} pattern: downgrade -> (scale, suffix)
NTIRE_TRACKS = {"x8": (8, "x8"), "mild": (4, "x4m"), "difficult": (4, "x4d"), "wild": (4, "x4w")}
_LR_CACHE = {}  # (hr_path, mtime, scale) -> uint8 LR made by imresize; in memory only


def _select(items, images, what, positional=False):
    """Filter (id, ...) items by an id range string / list; error when the selection is empty. positional: the
    ids are 1-based positions in sorted order (any folder that is not DIV2K's), which the error then says."""
    if images is None:
        selected = items
    else:
        ids = set(parse_id_range(images) if isinstance(images, str) else (int(i) for i in images))
        selected = [it for it in items if it[0] in ids]
    if not selected:
        hint = f"; the {len(items)} images of {what} are numbered 1..{len(items)} in name order (it is not a DIV2K " \
               f"folder), so give e.g. --training-images 1-{max(1, len(items) - 1)} --validation-images " \
               f"{len(items)}" if positional and items else "; check the --*-images range and the folder contents"
        raise UserError(f"no images selected in {what}" + (f" for id range {images}" if images is not None else "")
                        + hint)
    return selected


def _convert_hint(root):
    return (f"convert the DIV2K PNG tree with `python convert.py -i ./DIV2K -o {root} numpy`, "
            f"or build the small sample set with `python convert.py -o ./sample sample`")


def open_pairs(root, scale, subset="valid", downgrade="bicubic", images=None):
    """List the LR/HR pairs of a dataset folder as `Pair(stem, lr, hr)` tuples (sorted by stem).

    Layouts (detected automatically; PNG and converted `.npy` trees read identically):
    - DIV2K: `root/DIV2K_{subset}_HR/0001.png` and `root/DIV2K_{subset}_LR_{downgrade}/X{scale}/0001x{scale}.png`
      (`downgrade`: bicubic, unknown, or a derived set such as bicubic_jpeg_90); NTIRE 2018 tracks
      `DIV2K_{subset}_LR_x8/0001x8.png` (bicubic x8, used when `LR_bicubic/X8` is absent), `_LR_mild/0001x4m.png`,
      `_LR_difficult/0001x4d.png`, `_LR_wild/0001x4w{1..4}.png` (one pair per LR file). `images`: id range
      such as "1-800" or a list of ints, selecting among the ids present.
    - Benchmark folder: `root/HR/<stem>.png` and optional `root/LR_{downgrade}/X{scale}/<stem>x{scale}.png`.
      When that X{scale} folder is absent (bicubic only), LR images are made with `imresize` from HR cropped
      to a multiple of the scale and kept in memory. `images` selects 1-based positions in sorted stem order.
    """
    root = os.fspath(root)
    scale = int(scale)
    check_folder(root, "dataset", _convert_hint(root))
    if os.path.isdir(os.path.join(root, "HR")):
        return _open_benchmark(root, scale, downgrade, images)
    if any(re.fullmatch(r"DIV2K_(train|valid)_(HR|LR_.+)", n) for n in os.listdir(root)):
        return _open_div2k(root, scale, subset, downgrade, images)
    raise UserError(
        f"unrecognised dataset layout in {root}: expected DIV2K_{{train,valid}}_HR/0001.png + "
        f"DIV2K_{{train,valid}}_LR_bicubic/X{{2,3,4}}/0001x{{s}}.png (DIV2K), or HR/<name>.png + optional "
        f"LR_bicubic/X{{s}}/<name>x{{s}}.png (benchmark folder such as Set5)")


def _open_div2k(root, scale, subset, downgrade, images):
    if subset not in ("train", "valid"):
        raise ValueError(f"subset must be 'train' or 'valid', got {subset!r}")
    hr_dir = os.path.join(root, f"DIV2K_{subset}_HR")
    if not os.path.isdir(hr_dir):
        raise UserError(f"HR folder not found: {hr_dir}; download DIV2K_{subset}_HR into {root}, or "
                        f"build the sample set with `python convert.py -o ./sample sample`")
    hr_files = {int(s): p for s, p in list_images(hr_dir).items() if s.isdigit()}
    if not hr_files:
        raise UserError(f"no images named like 0001.png in {hr_dir}; expected the DIV2K layout")
    selected = _select(sorted(hr_files.items()), images, hr_dir)

    lr_root = os.path.join(root, f"DIV2K_{subset}_LR_{downgrade}")
    track = NTIRE_TRACKS.get(downgrade)
    if downgrade == "bicubic" and scale == 8 and not os.path.isdir(os.path.join(lr_root, "X8")):
        track = NTIRE_TRACKS["x8"]
        lr_root = os.path.join(root, f"DIV2K_{subset}_LR_x8")
    if track is not None:
        track_scale, suffix = track
        if scale != track_scale:
            raise UserError(f"downgrade {downgrade} is an x{track_scale} track; use --scale {track_scale}")
        lr_dir = lr_root
    else:
        lr_dir = os.path.join(lr_root, f"X{scale}")
        suffix = f"x{scale}"
    if not os.path.isdir(lr_dir):
        raise UserError(f"LR folder not found: {lr_dir}; {_lr_hint(root, subset, downgrade, scale)}")

    pairs = []
    for i, hr_path in selected:
        stem = f"{i:04d}"
        ext = os.path.splitext(hr_path)[1].lower()
        if downgrade == "wild":
            lrs = sorted(p for s, p in list_images(lr_dir).items() if re.fullmatch(rf"{stem}x4w\d*", s))
            if not lrs:
                raise UserError(f"missing LR image for {hr_path}: expected {os.path.join(lr_dir, stem + 'x4w1' + ext)}")
            pairs.extend(Pair(os.path.splitext(os.path.basename(p))[0], p, hr_path) for p in lrs)
            continue
        lr_path = find_image(lr_dir, stem + suffix, ext)
        if lr_path is None:
            raise UserError(f"missing LR image {os.path.join(lr_dir, stem + suffix + ext)} for {hr_path}; "
                            f"restrict the id range or re-create the LR set")
        pairs.append(Pair(stem, lr_path, hr_path))
    return pairs


def _lr_hint(root, subset, downgrade, scale):
    m = re.fullmatch(r"(.+)_jpeg_(\d+)", downgrade)
    if m:
        src = os.path.join(root, f"DIV2K_{subset}_LR_{m.group(1)}")
        dst = os.path.join(root, f"DIV2K_{subset}_LR_{downgrade}")
        return f"make it with `python convert.py -i {src} -o {dst} --jpeg-quality {m.group(2)} jpeg`"
    if downgrade == "bicubic":
        hr = os.path.join(root, f"DIV2K_{subset}_HR")
        out = os.path.join(root, f"DIV2K_{subset}_LR_bicubic")
        return f"download it or make it with `python convert.py -i {hr} -o {out} --scale {scale} bicubic`"
    return f"download DIV2K_{subset}_LR_{downgrade} (x{scale}) into {root}"


def _open_benchmark(root, scale, downgrade, images):
    hr_dir = os.path.join(root, "HR")
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise UserError(f"no images in {hr_dir}; expected HR/<name>.png")
    items = [(k + 1, stem, path) for k, (stem, path) in enumerate(sorted(hr_files.items()))]
    selected = _select(items, images, hr_dir, positional=True)
    lr_dir = os.path.join(root, f"LR_{downgrade}", f"X{scale}")
    pairs = []
    if not os.path.isdir(lr_dir):
        if downgrade != "bicubic":
            raise UserError(f"LR folder not found: {lr_dir}; only bicubic LR images can be made on the fly")
        for _, stem, hr_path in selected:
            pairs.append(Pair(stem, _bicubic_lr(hr_path, scale), hr_path))
        return pairs
    for _, stem, hr_path in selected:
        ext = os.path.splitext(hr_path)[1].lower()
        lr_path = find_image(lr_dir, f"{stem}x{scale}", ext)
        if lr_path is None:
            raise UserError(f"missing LR image {os.path.join(lr_dir, f'{stem}x{scale}{ext}')} for {hr_path}; "
                            f"remove {lr_dir} to have all LR images made by bicubic downscaling, or add the file")
        pairs.append(Pair(stem, lr_path, hr_path))
    return pairs


def _bicubic_lr(hr_path, scale):
    key = (os.path.abspath(hr_path), os.path.getmtime(hr_path), scale)
    if key not in _LR_CACHE:
        hr = imaging.read_image(hr_path, keep_grey=True)
        lr = bicubic_downscale(hr, scale)
        lr.setflags(write=False)
        _LR_CACHE[key] = lr
    return _LR_CACHE[key]


def load_pair(pair, scale=None, keep_grey=False):
    """Full images of a pair: (lr uint8, hr uint8). With `scale`, HR is cropped to exactly scale x LR size
    (top-left, as LR sets are made) and a too-small HR raises UserError."""
    lr = imaging.read_image(pair.lr, keep_grey=keep_grey)
    hr = imaging.read_image(pair.hr, keep_grey=keep_grey)
    if keep_grey and lr.ndim != hr.ndim:  # grey HR with a colour LR (or vice versa): compare in RGB
        lr, hr = (np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in (lr, hr))
    if scale is not None:
        check_pair(lr.shape, hr.shape, scale, pair.lr if isinstance(pair.lr, str) else pair.stem, pair.hr)
        hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
    return lr, hr


def iter_images(pairs, scale, keep_grey=False):
    """Yield (stem, lr, hr) full images for validation / benchmarking (HR cropped to scale x LR)."""
    for pair in pairs:
        lr, hr = load_pair(pair, scale, keep_grey=keep_grey)
        yield pair.stem, lr, hr


# ----------------------------------------------------------------------------------------------------------
# HR-only datasets and LR transforms
# ----------------------------------------------------------------------------------------------------------


def open_hr_images(root, subset="train", images=None):
    """HR image paths (sorted) of a dataset folder, for training with an LR transform (no LR files needed).

    Layouts: DIV2K (`root/DIV2K_{subset}_HR/0001.png`; `images` an id range), a benchmark folder (`root/HR/`),
    or any folder of images (`root/*.png|jpg|...|npy`; `images` selects 1-based positions in sorted order).
    """
    root = os.fspath(root)
    check_folder(root, "dataset", "give a folder of HR images or a DIV2K tree")
    div2k = os.path.join(root, f"DIV2K_{subset}_HR")
    if os.path.isdir(div2k):
        files = {int(s): p for s, p in list_images(div2k).items() if s.isdigit()}
        if not files:
            raise UserError(f"no images named like 0001.png in {div2k}; expected the DIV2K layout")
        return [p for _, p in _select(sorted(files.items()), images, div2k)]
    folder = os.path.join(root, "HR") if os.path.isdir(os.path.join(root, "HR")) else root
    files = sorted(list_images(folder).values())
    if not files:
        raise UserError(f"no images ({', '.join(imaging.READABLE_EXTS)}) in {folder}; give a folder of HR images")
    return [p for _, p in _select(list(enumerate(files, 1)), images, folder, positional=True)]


# ----------------------------------------------------------------------------------------------------------
# Patch loader
# ----------------------------------------------------------------------------------------------------------


class _Source:
    """Access to one image for cropping: a memory map for `.npy`, a decoded array otherwise."""

    __slots__ = ("path", "array", "shape")

    def __init__(self, path_or_array):
        if isinstance(path_or_array, np.ndarray):
            self.path, self.array = None, _from_array(path_or_array, "in-memory image", keep_grey=False)
        elif str(path_or_array).lower().endswith(".npy"):
            self.path, self.array = os.fspath(path_or_array), None
            try:
                m = np.load(self.path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise UserError(f"cannot read {self.path}: {e}; delete it and re-run the numpy conversion") from None
            if m.dtype == np.uint8 and m.ndim == 3 and m.shape[2] == 3:
                self.shape = m.shape
                return
            # grey (HxW) or unusual arrays: load and convert once, keep in memory
            self.path, self.array = None, imaging.read_image(path_or_array)
            self.shape = self.array.shape
            return
        else:
            self.path, self.array = None, imaging.read_image(path_or_array)
        self.shape = self.array.shape


_MMAP_CACHE = []


def _mmap_cache_size():
    """How many memory maps to keep open: each holds a file descriptor, so stay well under the limit."""
    if not _MMAP_CACHE:
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if soft != resource.RLIM_INFINITY and soft < 4096 and (hard == resource.RLIM_INFINITY or hard > soft):
                # all 1600 DIV2K files stay mapped when allowed; reopening a map costs ~1 ms per patch
                want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
            soft = 4096 if soft == resource.RLIM_INFINITY else soft
        except (ImportError, OSError, ValueError):
            soft = 512
        _MMAP_CACHE.append(int(min(2048, max(32, soft // 2 - 64))))
    return _MMAP_CACHE[0]


def shard_indices(indices, process_index=0, process_count=1):
    """This process's share of `indices`: contiguous, disjoint across processes, together complete.

    The hook for multi-device / multi-process training (training/distribute.py): every process draws the
    same global batch `b` (samples b*B .. b*B+B-1) and keeps its slice, so the data do not depend on the
    number of processes. len(indices) must be divisible by process_count.
    """
    indices = list(indices)
    process_count, process_index = int(process_count), int(process_index)
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process {process_index} of {process_count}")
    if len(indices) % process_count:
        raise UserError(f"a batch of {len(indices)} samples cannot be split evenly over {process_count} "
                        f"processes/devices; choose a --batch-size divisible by {process_count}")
    share = len(indices) // process_count
    return indices[process_index * share:(process_index + 1) * share]


class _PatchSampler:
    """Numpy-only patch sampling shared by `PatchDataset`, `Patches` and `HRPatches`.

    Every sample is a function of (seed, epoch, sample index) only: its numpy Generator is keyed by those
    three numbers. Batch `b` holds samples b*B .. b*B+B-1, so any number of worker threads or processes,
    any order of requests and a resumed run all give the same data.
    """

    def _setup(self, pairs, scale, batch_size, lr_patch, hr_patch, augment, seed, steps, fixed, transform=None,
               smaller_ok=False):
        pairs = list(pairs)
        if not pairs:
            raise UserError("no images to sample patches from")
        self.scale = int(scale)
        self.transform = transform
        if hr_patch is not None:
            if hr_patch % self.scale:
                raise UserError(f"HR patch size {hr_patch} is not a multiple of the scale {self.scale}")
            lr_patch = hr_patch // self.scale
        self.lr_patch = int(lr_patch)
        if self.lr_patch < 1:
            raise UserError(f"--lr-patch {lr_patch}: must be positive")
        self.hr_patch = self.lr_patch * self.scale
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise UserError(f"--batch-size {batch_size}: must be positive")
        self.augment = bool(augment)
        self.seed = int(seed)
        self.fixed = bool(fixed)
        self.steps = int(steps) if steps else max(1, math.ceil(len(pairs) / self.batch_size))
        self.epoch = 0
        self.stems = [p[0] for p in pairs]
        n_png = sum(not (isinstance(p[2], str) and p[2].lower().endswith(".npy")) for p in pairs)
        if n_png > 100:
            warn(f"decoding {n_png} non-.npy images into memory; convert the dataset with "
                 f"`python convert.py -i IN -o OUT numpy` for a faster start and less memory")
        self.hr_src = [_Source(p[2]) for p in pairs]
        hr_shapes = np.array([s.shape[:2] for s in self.hr_src])
        if transform is None:
            self.lr_src = [_Source(p[1]) for p in pairs]
            lr_shapes = np.array([s.shape[:2] for s in self.lr_src])
        else:  # HR only: the LR crop is made from the HR crop
            self.lr_src = None
            lr_shapes = hr_shapes // self.scale
        for k, p in enumerate(pairs):
            if transform is None:
                check_pair(lr_shapes[k], hr_shapes[k], self.scale, p[1] if isinstance(p[1], str) else p[0], p[2])
            if (lr_shapes[k] < self.lr_patch).any() and not smaller_ok:
                name = p[1] if isinstance(p[1], str) else p[2] if isinstance(p[2], str) else p[0]
                raise UserError(f"image {name} ({lr_shapes[k][1]}x{lr_shapes[k][0]} at LR size) is smaller than the "
                                f"{self.lr_patch}px patch (LR pixels); use a smaller --lr-patch")
        # inclusive upper bound of the crop corner (LR pixels); smaller_ok: a smaller image is handed over whole
        self._max_yx = np.maximum(lr_shapes - self.lr_patch, 0)
        self._mmaps = collections.OrderedDict()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mmaps"] = collections.OrderedDict()  # memory maps are reopened in each worker process
        return state

    def _view(self, src):
        if src.array is not None:
            return src.array
        cache = self._mmaps
        m = cache.get(src.path)
        if m is None:
            # a plain ndarray over the mapped file: slicing it skips np.memmap's per-slice overhead
            m = np.load(src.path, mmap_mode="r").view(np.ndarray)
            cache[src.path] = m
            while len(cache) > _mmap_cache_size():
                try:  # threads share the cache: another one may have evicted the same entry
                    cache.popitem(last=False)
                except KeyError:
                    break
        else:
            try:
                cache.move_to_end(src.path)
            except KeyError:
                pass
        return m

    def rng(self, epoch, index):
        """The numpy Generator of sample `index` of `epoch` (`fixed`: the same in every epoch).

        Philox with an explicit key (seed, epoch, index) avoids SeedSequence, which costs ~1 ms per call."""
        epoch = 0 if self.fixed else int(epoch)
        key = [self.seed & 0xFFFFFFFFFFFFFFFF, ((epoch & 0xFFFFFFFF) << 32) | (int(index) & 0xFFFFFFFF)]
        return np.random.Generator(np.random.Philox(key=key))

    @staticmethod
    def _augment(view, flip, rot):
        """Horizontal flip then np.rot90(view, rot) on an HxWxC view, without copying (views only)."""
        if flip:
            view = view[:, ::-1]
        if rot == 1:
            return view[:, ::-1].transpose(1, 0, 2)
        if rot == 2:
            return view[::-1, ::-1]
        if rot == 3:
            return view.transpose(1, 0, 2)[:, ::-1]
        return view

    def _params(self, epoch, index):
        """(rng, image, y, x, flip, rot) of a sample: one draw of 5 uniforms from its own generator."""
        rng = self.rng(epoch, index)
        u = rng.random(5).tolist()
        i = min(int(u[0] * len(self.hr_src)), len(self.hr_src) - 1)
        my, mx = self._max_yx[i].tolist()
        y, x = min(int(u[1] * (my + 1)), my), min(int(u[2] * (mx + 1)), mx)
        flip, rot = (u[3] < 0.5, min(int(u[4] * 4), 3)) if self.augment else (False, 0)
        return rng, i, y, x, flip, rot

    def _crops(self, i, y, x, flip, rot):
        p, s, hp = self.lr_patch, self.scale, self.hr_patch
        hr = self._augment(self._view(self.hr_src[i])[y * s: y * s + hp, x * s: x * s + hp], flip, rot)
        lr = None if self.lr_src is None else self._augment(self._view(self.lr_src[i])[y: y + p, x: x + p], flip, rot)
        return lr, hr

    def sample(self, epoch, index):
        """Sample `index` of `epoch`: {"lr": float32 PxPx3, "hr": float32 sPxsPx3, ...} in [0, 255]."""
        rng, *where = self._params(epoch, index)
        lr, hr = self._crops(*where)
        if self.transform is None:
            return {"lr": np.asarray(lr, np.float32), "hr": np.asarray(hr, np.float32)}
        out = self.transform(np.ascontiguousarray(hr), rng)
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    def batch_indices(self, index, process_index=0, process_count=1):
        """Sample indices of batch `index` for one process (see `shard_indices`)."""
        b = self.batch_size
        return shard_indices(range(int(index) * b, (int(index) + 1) * b), process_index, process_count)

    def epoch_indices(self, epoch, process_index=0, process_count=1):
        """All sample indices this process draws in `epoch` (steps x its share of each batch)."""
        return [i for b in range(self.steps) for i in self.batch_indices(b, process_index, process_count)]

    def batch(self, epoch, index, process_index=0, process_count=1):
        """Batch `index` of `epoch` as a dict of stacked float32 arrays ({"lr": BxPxPx3, "hr": Bx(sP)x(sP)x3},
        plus whatever keys the transform adds, e.g. "hr_usm")."""
        indices = self.batch_indices(index, process_index, process_count)
        if self.transform is not None:
            samples = [self.sample(epoch, i) for i in indices]
            return {k: np.stack([smp[k] for smp in samples]) for k in samples[0]}
        # paired: crop views go straight into the batch, converted to float32 while copying (one pass)
        p, hp = self.lr_patch, self.hr_patch
        lr = np.empty((len(indices), p, p, 3), np.float32)
        hr = np.empty((len(indices), hp, hp, 3), np.float32)
        for k, i in enumerate(indices):
            lr[k], hr[k] = self._crops(*self._params(epoch, i)[1:])
        return {"lr": lr, "hr": hr}


class Patches(_PatchSampler):
    """Random aligned LR/HR patches of paired images (numpy only): `batch(epoch, index) -> {"lr", "hr"}`.

    pairs: from `open_pairs`. lr_patch (default 48) or hr_patch (= lr_patch * scale) sets the size.
    augment: random horizontal flip + rot90, identical for LR and HR. `fixed=True` repeats the same samples
    every epoch. `steps`: batches per epoch (default: one pass worth, ceil(len(pairs) / batch_size)).
    `.npy` sources are memory-mapped and only the crop is read; other formats are decoded once into memory.
    """

    def __init__(self, pairs, scale, batch_size=16, lr_patch=48, hr_patch=None, augment=True, seed=0,
                 steps=None, fixed=False):
        self._setup(pairs, scale, batch_size, lr_patch, hr_patch, augment, seed, steps, fixed)


class HRPatches(_PatchSampler):
    """Random HR patches of HR-only images with the LR made by `transform(hr_crop_uint8, rng) -> dict`
    (`BicubicTransform`, or the Real-ESRGAN degradation pipeline); the rng is the sample's own Generator.

    hr_paths: from `open_hr_images`. Patches are cropped at LR-pixel positions (HR corner a multiple of scale)
    and augmented before the transform. `smaller_ok`: an image smaller than the patch is handed over whole
    (cropped to the patch in the dimension where it is larger), for transforms that pad (Real-ESRGAN's recipe:
    `hr_patch=hr_patch_of(transform)`, augment=False). Otherwise as `Patches`.
    """

    def __init__(self, hr_paths, scale, transform, batch_size=16, lr_patch=48, hr_patch=None, augment=True,
                 seed=0, steps=None, fixed=False, smaller_ok=False):
        pairs = [Pair(os.path.splitext(os.path.basename(os.fspath(p)))[0] if not isinstance(p, np.ndarray)
                      else f"image{k}", None, p) for k, p in enumerate(hr_paths)]
        self._setup(pairs, scale, batch_size, lr_patch, hr_patch, augment, seed, steps, fixed, transform=transform,
                    smaller_ok=smaller_ok)


def validation_crops(pairs, scale, count=None, lr_patch=48, hr_patch=None, seed=0):
    """Fixed random aligned crops for per-epoch validation: a list of `Pair(stem, lr, hr)` with uint8 arrays.

    `count` crops (default: one per image), taken from the images in turn; the same crops for the same
    arguments (no augmentation). Stems are `<image stem>_c<k>`. `.npy` sources are read crop-only.
    """
    pairs = list(pairs)
    count = len(pairs) if count is None else int(count)
    sampler = _PatchSampler()
    sampler._setup(pairs, scale, 1, lr_patch, hr_patch, False, seed, 1, True)
    rng = np.random.Generator(np.random.Philox(key=[seed & 0xFFFFFFFFFFFFFFFF, 0x76616C]))  # "val"
    p, s, hp = sampler.lr_patch, sampler.scale, sampler.hr_patch
    out = []
    for k in range(count):
        i = k % len(pairs)
        y, x = np.floor(rng.random(2) * (sampler._max_yx[i] + 1)).astype(np.int64).tolist()
        lr = np.array(sampler._view(sampler.lr_src[i])[y: y + p, x: x + p])
        hr = np.array(sampler._view(sampler.hr_src[i])[y * s: y * s + hp, x * s: x * s + hp])
        out.append(Pair(f"{sampler.stems[i]}_c{k}", lr, hr))
    return out


def _make_patch_dataset_class():
    import keras

    class PatchDataset(_PatchSampler, keras.utils.PyDataset):
        """`Patches` as a `keras.utils.PyDataset` of `(lr, hr)` tuples, for `model.fit` (train.py uses the
        numpy `Patches` through its own loop). `workers`/`use_multiprocessing` as in PyDataset."""

        def __init__(self, pairs, scale, batch_size=16, lr_patch=48, hr_patch=None, augment=True, seed=0,
                     steps=None, fixed=False, workers=1, use_multiprocessing=False, max_queue_size=10):
            super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
            self._setup(pairs, scale, batch_size, lr_patch, hr_patch, augment, seed, steps, fixed)

        def __len__(self):
            return self.steps

        def __getitem__(self, index):
            if index < 0 or index >= self.steps:
                raise IndexError(index)
            b = self.batch(self.epoch, index)
            return b["lr"], b["hr"]

        def on_epoch_end(self):
            self.epoch += 1

    PatchDataset.__module__ = __name__
    PatchDataset.__qualname__ = "PatchDataset"
    return PatchDataset


def __getattr__(name):
    # PatchDataset subclasses keras.utils.PyDataset; build it on first use so importing data.py stays fast
    if name == "PatchDataset":
        cls = _make_patch_dataset_class()
        globals()["PatchDataset"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
