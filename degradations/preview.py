"""A picture of the degradation pipeline: random GT crops beside their degraded LQ, with the drawn parameters.

    python -m degradations.preview -i ../shared/datasets/B100/HR -o preview.png -n 8 --seed 0

Each tile: the GT crop (256 px, shown at --tile px) and its LQ (64 px, upscaled nearest-neighbour to the same
size; made from the sharpened GT with DiffJPEG, as in training), captioned with the kernel (type, size,
sigma / omega, beta), resize (direction, factor, mode), noise (Gaussian sigma in grey levels or Poisson scale,
grey) and JPEG quality of both stages, and the final step.
"""
import os
import sys

import numpy as np


from utils import ArgumentParser, UserError, run_cli  # noqa: E402


def sample_rng(seed, index):
    return np.random.Generator(np.random.Philox(key=[int(seed) & 0xFFFFFFFFFFFFFFFF, index & 0xFFFFFFFF]))


def make_preview(images, n=8, seed=0, config=None, scale=4, tile=128, columns=2):
    """RGB uint8 grid of n (GT, LQ) pairs drawn from the uint8 `images` (list), with captions."""
    from PIL import Image, ImageDraw, ImageFont

    from degradations.pipeline import degrade, describe, make_config

    config = make_config(config)
    font = ImageFont.load_default()
    line_h, pad, lines = 11, 6, 5
    cell_w, cell_h = 2 * tile + pad, tile + lines * line_h + 2 * pad
    rows = (n + columns - 1) // columns
    grid = Image.new("RGB", (columns * (cell_w + pad) + pad, rows * cell_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for k in range(n):
        rng = sample_rng(seed, k)
        which = int(rng.integers(len(images)))
        out = degrade(images[which], rng, config, scale)
        gt = Image.fromarray(out["hr"]).resize((tile, tile), Image.BOX)
        lq = Image.fromarray(out["lr"]).resize((tile, tile), Image.NEAREST)
        x0 = pad + (k % columns) * (cell_w + pad)
        y0 = pad + (k // columns) * cell_h
        grid.paste(gt, (x0, y0))
        grid.paste(lq, (x0 + tile + pad, y0))
        for j, text in enumerate(describe(out["params"])):
            draw.text((x0, y0 + tile + 2 + j * line_h), text, fill=(0, 0, 0), font=font)
    return np.asarray(grid)


def main(argv=None):
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-i", "--input", required=True, help="folder of HR images (e.g. ../shared/datasets/B100/HR)")
    p.add_argument("-o", "--output", default="preview.png", help="output PNG (default preview.png)")
    p.add_argument("-n", type=int, default=8, help="number of GT / LQ pairs (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--scale", type=int, default=4, help="scale (default 4)")
    p.add_argument("--tile", type=int, default=128, help="display size of each crop in px (default 128)")
    p.add_argument("--columns", type=int, default=2, help="pairs per row (default 2)")
    args = p.parse_args(argv)
    import imaging
    from imaging.files import check_folder, check_output_file, list_images

    for option, value, low, high in (("-n", args.n, 1, 10000), ("--scale", args.scale, 1, 16),
                                     ("--tile", args.tile, 8, 4096), ("--columns", args.columns, 1, 1000)):
        if not low <= value <= high:
            raise UserError(f"{option} must be between {low} and {high}, got {value}")
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be >= 0 (as train.py and convert.py --seed)")
    if os.path.splitext(args.output)[1].lower() != ".png":
        raise UserError(f"-o {args.output}: the preview is a PNG; give a file name ending in .png")
    check_output_file(args.output)
    files = list_images(check_folder(args.input, "input", "pass -i IMG_DIR"))
    if not files:
        raise UserError(f"no images found in {args.input}")
    images = [imaging.read_image(path) for _, path in sorted(files.items())]
    grid = make_preview(images, args.n, args.seed, None, args.scale, args.tile, args.columns)
    imaging.write_image(args.output, grid, compress_level=9)
    print(f"wrote {args.output} ({grid.shape[1]}x{grid.shape[0]}, {args.n} pairs, seed {args.seed})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
