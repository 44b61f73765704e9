"""Attention maps and per-pixel outputs of A-ESRGAN discriminators (the seed's figures), RGB in as in training.

    python -m visualization.attention_maps --discriminator D.keras -i IMG -o OUT
    python -m visualization.attention_maps --run RUN_DIR -i IMG -o OUT      # every saved D over training time

For one discriminator it writes, per scale (`full_` / `half_` for the multi-scale model, nothing for one D):
  attn_{1,2,3}.png        the gates' sigmoid maps alpha (H/4, H/2, H) as JET heat maps, at their own size
                          (A-ESRGAN's Visualization_Script: applyColorMap(uint8(alpha*255), JET));
  attn_{k}_blend.png      the heat map blended with the image resized to its size (0.3 image + 0.7 heat, combine.py);
  d_output.png            sigmoid of the per-pixel logits (white = judged real), the figure of
                          Multi_discriminator_Output.py (which min-max normalises; we keep the probability scale);
  overview.png            all of the above side by side.
--stretch min-max normalises each alpha map before colouring (early in training the maps sit near 0.5).
With --run: attention_over_training.png, one row per checkpoint (models/discriminator/epoch-NNN.keras), columns
attn_1..3 blended and D's output, every map shown at the image size (nearest) so the rows line up.
Differences from the original scripts: RGB input (they read BGR with cv2 into an RGB-trained network), any
folder layout, .keras or PyTorch .pth checkpoints (--arch names the network for a .pth).
The image is cropped to a multiple of 8 (16 for the multi-scale D) from the top-left, as the network needs.
"""
import argparse
import glob
import os

import numpy as np

from utils import UserError, run_cli

BLEND_IMAGE, BLEND_HEAT = 0.3, 0.7


def jet(alpha, stretch=False):
    """alpha in [0, 1] (HxW) -> uint8 RGB JET heat map, as cv2.applyColorMap(uint8(alpha * 255), COLORMAP_JET).
    `stretch`: min-max normalise the map first (shows the structure of maps that are still near 0.5)."""
    import cv2

    alpha = np.asarray(alpha, np.float64)
    if stretch:
        alpha = (alpha - alpha.min()) / max(alpha.max() - alpha.min(), 1e-12)
    grey = np.uint8(np.clip(alpha, 0, 1) * 255)  # truncation, as np.uint8 in the original
    return cv2.applyColorMap(grey, cv2.COLORMAP_JET)[..., ::-1].copy()  # OpenCV's BGR -> RGB


def resize(img, height, width, nearest=False):
    import cv2

    if img.shape[:2] == (height, width):
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def blend(image, heat):
    """0.3 x the image (resized to the heat map) + 0.7 x the heat map (cv2.addWeighted in combine.py)."""
    small = resize(image, *heat.shape[:2]).astype(np.float64)
    return np.clip(BLEND_IMAGE * small + BLEND_HEAT * heat.astype(np.float64) + 0.5, 0, 255).astype(np.uint8)


def load_discriminator(path, arch=None, num_feat=64):
    """A discriminator from a .keras file, or a PyTorch .pth of A-ESRGAN / Real-ESRGAN (`arch` needed)."""
    import model

    if model.file_format(path) == "torch" and not arch and os.path.isfile(path):
        raise UserError(f"{path} is a PyTorch file: pass --arch attention-unet or attention-unet-multiscale")
    return model.load_discriminator(path, arch=arch, params={"num_feat": num_feat} if arch else None)


def size_multiple(d):
    from model.discriminator_layers import InputSizeCheck

    return max([layer.multiple for layer in d.layers if isinstance(layer, InputSizeCheck)] or [8])


def crop_to_fit(image, multiple):
    h, w = (image.shape[0] // multiple) * multiple, (image.shape[1] // multiple) * multiple
    if h == 0 or w == 0:
        raise UserError(f"the image is {image.shape[1]}x{image.shape[0]}; the discriminator needs at least "
                        f"{multiple}x{multiple}")
    return image[:h, :w]


def maps(d, image):
    """{name: HxW float map} for the (cropped) uint8 RGB image: `[prefix]attn_k` alphas and `[prefix]d_output`
    (sigmoid of the logits)."""
    import keras

    from model.archs.attention_unet import with_attention_maps

    net = with_attention_maps(d)
    out = net(image[None].astype("float32"), training=False)
    result = {}
    for key, value in out.items():
        arr = keras.ops.convert_to_numpy(value)[0, ..., 0].astype(np.float64)
        if key.endswith("logits"):
            result[key[: -len("logits")] + "d_output"] = 1.0 / (1.0 + np.exp(-arr))
        else:
            result[key] = arr
    return result


def d_probability(found, prefix):
    """D's per-pixel output `{prefix}d_output` as uint8 grey: the probability x 255, truncated."""
    return np.uint8(np.clip(found[f"{prefix}d_output"], 0, 1) * 255)


def prefixes(names):
    return sorted({n[: n.index("attn_")] for n in names if "attn_" in n}, key=lambda p: (p != "full_", p))


def write_one(d, image, out_dir, stretch=False):
    """Write the maps of one discriminator; returns the paths written."""
    from imaging.io import write_image

    image = crop_to_fit(image, size_multiple(d))
    found = maps(d, image)
    written = []

    def save(name, arr):
        written.append(write_image(os.path.join(out_dir, name), arr))

    panels = []
    for p in prefixes(found):
        row = []
        for k in (1, 2, 3):
            heat = jet(found[f"{p}attn_{k}"], stretch)
            mixed = blend(image, heat)
            save(f"{p}attn_{k}.png", heat)
            save(f"{p}attn_{k}_blend.png", mixed)
            row.append(mixed)
        prob = d_probability(found, p)
        save(f"{p}d_output.png", prob)
        row.append(np.repeat(prob[..., None], 3, axis=2))
        h, w = image.shape[:2]
        panels.append(np.concatenate([resize(image, h, w)] + [resize(r, h, w, nearest=True) for r in row], axis=1))
    save("overview.png", np.concatenate(panels, axis=0))
    return written


def checkpoints_of(run_dir):
    files = sorted(glob.glob(os.path.join(run_dir, "models", "discriminator", "epoch-*.keras")))
    if not files:
        raise UserError(f"no discriminator checkpoints in {os.path.join(run_dir, 'models', 'discriminator')}; "
                        "train with --trainer-task realesrgan and --save-discriminator")
    return files


def label(img, text):
    """Write `text` in the top-left corner (PIL's default bitmap font, black on white)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    box = draw.textbbox((2, 2), text)
    draw.rectangle((0, 0, box[2] + 2, box[3] + 2), fill=(255, 255, 255))
    draw.text((2, 2), text, fill=(0, 0, 0))
    return np.asarray(pil)


def write_grid(files, image, out_path, max_side=160, stretch=False):
    """One row per checkpoint: the image, attn_1..3 blended, D output; per scale for multi-scale Ds."""
    from imaging.io import write_image

    rows = []
    for path in files:
        d = load_discriminator(path)
        img = crop_to_fit(image, size_multiple(d))
        found = maps(d, img)
        scale = min(1.0, max_side / max(img.shape[:2]))
        h, w = max(1, int(img.shape[0] * scale)), max(1, int(img.shape[1] * scale))
        stem = os.path.splitext(os.path.basename(path))[0]
        for p in prefixes(found):
            cells = [label(resize(img, h, w), f"{stem} {p.rstrip('_')}".strip())]
            for k in (1, 2, 3):
                cells.append(label(resize(blend(img, jet(found[f"{p}attn_{k}"], stretch)), h, w, nearest=True), f"A{k}"))
            prob = d_probability(found, p)
            cells.append(label(resize(np.repeat(prob[..., None], 3, axis=2), h, w, nearest=True), "D"))
            rows.append(np.concatenate(cells, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    write_image(out_path, np.concatenate(rows, axis=0))
    return out_path


def build_parser():
    p = argparse.ArgumentParser(description="Attention maps and per-pixel outputs of A-ESRGAN discriminators.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--discriminator", "-d", help="discriminator file (.keras, or an A-ESRGAN .pth with --arch)")
    src.add_argument("--run", help="a train.py run directory: a grid over its saved discriminator checkpoints")
    p.add_argument("--arch", choices=("attention-unet", "attention-unet-multiscale"),
                   help="architecture of a PyTorch .pth discriminator")
    p.add_argument("--num-feat", type=int, default=64, help="width of a PyTorch .pth discriminator (default 64)")
    p.add_argument("-i", "--image", required=True, help="RGB image (any format imaging.read_image reads)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--max-side", type=int, default=160, help="--run: longest side of each grid cell (default 160)")
    p.add_argument("--stretch", action="store_true", help="min-max normalise each attention map before colouring "
                   "(default: alpha on its own [0, 1] scale, as the original scripts)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from imaging.io import read_image
    from utils import ensure_writable_dir

    image = read_image(args.image)
    ensure_writable_dir(args.output)
    if args.run:
        path = write_grid(checkpoints_of(args.run), image, os.path.join(args.output, "attention_over_training.png"),
                          args.max_side, args.stretch)
        print(f"wrote {path}")
        return 0
    written = write_one(load_discriminator(args.discriminator, args.arch, args.num_feat), image, args.output,
                        args.stretch)
    print(f"wrote {len(written)} images to {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
