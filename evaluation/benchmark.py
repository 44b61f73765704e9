"""A bench run: each checkpoint (one at a time), the bicubic baseline or the images as they are, on each dataset."""
import gc
import os
import re
import sys

from evaluation import checkpoints, reports, scorer
from imaging.files import check_pair
from utils import UserError

INPUTS = ("lr", "hr", "as-is")


def dataset_kind(root):
    """benchmark (HR/ + LR_*), div2k (DIV2K_* folders) or images (any folder of images)."""
    if os.path.isdir(os.path.join(root, "HR")):
        return "benchmark"
    if any(re.fullmatch(r"DIV2K_(train|valid)_(HR|LR_.+)", n) for n in os.listdir(root)):
        return "div2k"
    return "images"


def dataset_label(root):
    return os.path.basename(os.path.normpath(root)) or root


def image_size(item):
    """(height, width) of an image file (header only) or array."""
    import numpy as np

    if isinstance(item, np.ndarray):
        return item.shape[:2]
    if str(item).lower().endswith(".npy"):
        return np.load(item, mmap_mode="r", allow_pickle=False).shape[:2]
    from PIL import Image

    try:
        with Image.open(item) as im:
            return im.height, im.width
    except Exception:  # the reader gives the one-line error later
        return None


def check_pairs(pairs, scale, shave, root):
    """Fail before any model runs: LR sizes that are not HR // scale, a shave that leaves nothing."""
    smallest = None
    for stem, lr, hr in pairs:
        hr_size = image_size(hr)
        if hr_size is None:
            continue
        lr_size = image_size(lr) if lr is not None else (hr_size[0] // scale, hr_size[1] // scale)
        if lr_size is not None:
            check_pair(lr_size, hr_size, scale, lr if isinstance(lr, str) else stem, hr)
        side = min(hr_size[0] // scale, hr_size[1] // scale) * scale
        smallest = side if smallest is None else min(smallest, side)
    if smallest is not None and 2 * shave >= smallest:
        raise UserError(f"--shave {shave} leaves nothing of the smallest image of {root} x{scale} ({smallest} px "
                        f"on its short side); use a smaller --shave")


class Benchmark:
    """The datasets of one bench run and how each is scored; `run` evaluates models on all of them.

    input: "lr" (LR -> SR scored against HR; a plain folder of images has no reference), "hr" (the HR images
    are super-resolved, no-reference metrics) or "as-is" (the images scored without super-resolution).
    Metric names are checked against each dataset (reference metrics need ground truth) on construction.
    """

    def __init__(self, datasets, input="lr", metrics=None, metric_options=None, shave=None, self_ensemble=False,
                 tile=None, tile_overlap=None, plots_dir=None, loss_mode=None, downgrade="bicubic", images=None,
                 progress=True):
        self.datasets, self.input, self.shave = list(datasets), input, shave
        self.self_ensemble, self.tile, self.tile_overlap = self_ensemble, tile, tile_overlap
        self.plots_dir, self.loss_mode, self.downgrade, self.images = plots_dir, loss_mode, downgrade, images
        self.metric_options, self.progress = metric_options, progress
        self.kinds = {root: dataset_kind(root) for root in self.datasets}
        self.metrics = {root: self._metrics_for(metrics, self.reference(root)) for root in self.datasets}
        self._pairs, self._images = {}, {}

    @staticmethod
    def _metrics_for(names, reference):
        if names:
            scorer.check_metrics(names, reference=reference)
            return list(names)
        return list(scorer.FIDELITY) if reference else scorer.no_reference_metrics()

    def reference(self, root):
        """True when this dataset is scored against ground truth."""
        return self.input == "lr" and self.kinds[root] in ("benchmark", "div2k")

    def shave_for(self, root, scale):
        """The border cut: given, else scale on benchmark sets and 0 on DIV2K (the seed's convention)."""
        return self.shave if self.shave is not None else (scale if self.kinds[root] == "benchmark" else 0)

    def pairs(self, root, scale):
        if (root, scale) not in self._pairs:
            import data

            pairs = data.open_pairs(root, scale, subset="valid", downgrade=self.downgrade,
                                    images=None if self.kinds[root] == "benchmark" else self.images)
            check_pairs(pairs, scale, self.shave_for(root, scale), root)
            self._pairs[(root, scale)] = pairs
        return self._pairs[(root, scale)]

    def image_list(self, root):
        if root not in self._images:
            import data

            files = data.open_hr_images(root, subset="valid",
                                        images=self.images if self.kinds[root] != "benchmark" else None)
            self._images[root] = [(os.path.splitext(os.path.basename(p))[0], p) for p in files]
        return self._images[root]

    def open(self, scales=()):
        """Open every dataset (and check LR sizes / shave) for the scales already known, before any model runs."""
        for root in self.datasets:
            if self.reference(root):
                for scale in scales:
                    self.pairs(root, scale)
            else:
                self.image_list(root)

    def rows(self, model, scale, name, label, loss_mode=None):
        """One result row per dataset for `model` (a keras model, "bicubic" or "as-is") at `scale`."""
        out = []
        ensemble = self.self_ensemble and not isinstance(model, str)
        for root in self.datasets:
            kind = self.kinds[root]
            common = dict(self_ensemble=ensemble, tile=self.tile, tile_overlap=self.tile_overlap,
                          progress=self.progress, dataset=dataset_label(root), name=name,
                          metrics=self.metrics[root], metric_options=self.metric_options)
            if self.reference(root):
                row = scorer.evaluate(model, self.pairs(root, scale), scale, shave=self.shave_for(root, scale),
                                      plots_dir=self.plots_dir, loss_mode=loss_mode, **common)
                row["input"] = "lr"
            else:
                row = scorer.evaluate_images(model, self.image_list(root), scale,
                                             input_kind="hr" if kind != "images" else "images", **common)
                if self.input == "as-is":
                    row["input"] = "as-is"
            row.update(dataset_path=os.path.abspath(root), kind=kind, label=label,
                       epoch=checkpoints.epoch_of(name) if name not in ("bicubic", "as-is") else None)
            print(reports.progress_line(row, name), file=sys.stderr)
            out.append(row)
        return out

    def run(self, paths, scales=None, bicubic=False):
        """Rows of every checkpoint in `paths` (one model in memory at a time), then the baselines.

        Returns (rows, seed): seed is the seed-format {model path: primary number of its first row}.
        """
        import keras

        rows, seed, model_scales = [], {}, []
        names = [os.path.basename(p) for p in paths]
        unique = len(set(names)) == len(names)  # table rows by file name, or by path when names repeat
        for path in paths:
            model = checkpoints.load_checkpoint(path)
            scale = checkpoints.checkpoint_scale(model, path)
            if scales and scale not in scales:
                raise UserError(f"checkpoint {path} is a x{scale} model but --scale {' '.join(map(str, scales))} "
                                f"was asked; drop --scale or pick checkpoints of that scale")
            model_scales.append(scale)
            label = (os.path.basename(path) if unique else path) + (" +SE" if self.self_ensemble else "")
            model_rows = self.rows(model, scale, path, label, checkpoints.loss_mode_for(model, path, self.loss_mode))
            rows.extend(model_rows)
            seed[path] = reports.lead_value(model_rows[0])
            # ONE model at a time: drop every reference (inference's cache holds models weakly), then Keras' state.
            del model
            keras.backend.clear_session()
            gc.collect()
        if self.input == "as-is":
            rows = self.rows("as-is", 1, "as-is", "Images (as is)")
            seed["as-is"] = reports.lead_value(rows[0])
        if bicubic:
            scales = scales or sorted(set(model_scales))
            if not scales:
                raise UserError("--bicubic without models needs --scale, e.g. --scale 2 3 4")
            bicubic_rows = [row for scale in scales for row in self.rows("bicubic", scale, "bicubic", "Bicubic")]
            rows = bicubic_rows + rows
            if not paths:
                seed["bicubic"] = reports.lead_value(bicubic_rows[0])
        return rows, seed
