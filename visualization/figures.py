"""Figures for demo.py: side-by-side comparison panels and colour-mapped uncertainty maps (matplotlib, Agg)."""
import numpy as np

import utils


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _pyplot()
    with utils.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def to_map(values):
    """HxW or HxWxC values -> HxW map (channel mean), float64."""
    values = np.asarray(values, np.float64)
    return values.mean(axis=-1) if values.ndim == 3 else values


def comparison_figure(path, panels, suptitle=None, panel_size=4.0):
    """Write a row of panels as one PNG.

    panels: list of dicts {"title": str, "image": array, "cmap": optional str, "vmax": optional float,
    "label": colour-bar label}. An image with a "cmap" is drawn as a colour-mapped map (channel mean)
    with a colour bar; otherwise it is shown as an RGB/grey picture. Pictures of different sizes
    (LR vs SR) fill equal-sized panels; the LR is drawn with nearest-neighbour pixels.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size * len(panels), panel_size * 1.05), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _panel(fig, ax, panel, fontsize=11, map_interpolation=None)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return _save(fig, path)


def detail_box(img, size):
    """(y, x) of the size x size window with the most detail (sum of gradient magnitudes) in an HxW(xC) image."""
    g = to_map(img)
    h, w = g.shape
    size = min(size, h, w)
    mag = np.zeros_like(g)
    mag[:-1, :-1] = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
    integral = np.pad(mag.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size])
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def _panel(fig, ax, panel, fontsize, map_interpolation="nearest"):
    """Draw one panel dict (see `comparison_figure`): a picture, or a colour-mapped map with its colour bar."""
    img = np.asarray(panel["image"])
    if panel.get("cmap"):
        data = to_map(img)
        im = ax.imshow(data, cmap=panel["cmap"], vmin=0, vmax=panel.get("vmax") or max(float(data.max()), 1e-6),
                       interpolation=map_interpolation)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label(panel.get("label", ""))
    else:
        img = np.clip(img, 0, 255).astype(np.uint8)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(panel["title"], fontsize=fontsize)
    ax.set_axis_off()


def zoom_figure(path, whole, box, crops, suptitle=None, panel_size=3.2):
    """The whole image (the zoomed region outlined) beside zoomed crops of that region, as one PNG.

    A whole 4x image shows no detail at figure size; the crops (pixels drawn nearest-neighbour) do.
    whole: panel dict {"title", "image"}; box: (y, x, height, width) in the whole image's pixels;
    crops: panel dicts as for `comparison_figure`, already cut to the region (any resolution: LR crops are
    drawn in the same panel size).
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    img = np.asarray(whole["image"])
    aspect = img.shape[1] / img.shape[0]
    widths = [panel_size * aspect] + [panel_size] * len(crops)
    fig, axes = plt.subplots(1, 1 + len(crops), figsize=(sum(widths) + 0.8 * len(crops), panel_size * 1.15),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    axes = axes[0]
    _panel(fig, axes[0], whole, fontsize=10)
    y, x, bh, bw = box
    axes[0].add_patch(Rectangle((x - 0.5, y - 0.5), bw, bh, fill=False, edgecolor="yellow", linewidth=1.5))
    for ax, panel in zip(axes[1:], crops):
        _panel(fig, ax, panel, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return _save(fig, path)


def uncertainty_figure(path, std, title="predicted standard deviation", cmap="magma", vmax=None):
    """Write the per-pixel std (grey levels; channel mean for HxWx3) as a colour-mapped PNG with a colour bar."""
    plt = _pyplot()
    data = to_map(std)
    h, w = data.shape
    height = 5.0
    fig, ax = plt.subplots(figsize=(height * w / h + 1.2, height))
    im = ax.imshow(data, cmap=cmap, vmin=0, vmax=vmax if vmax is not None else _robust_max(data))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label("std (grey levels, 0-255)")
    ax.set_title(title)
    ax.set_axis_off()
    return _save(fig, path)


def _robust_max(data):
    """99.5th percentile: a few saturated pixels should not wash out the rest of the map."""
    return max(float(np.percentile(data, 99.5)), 1e-6)
