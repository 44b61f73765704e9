"""Convert datasets and models: a thin CLI over imaging/convert.py, degradations/dataset.py, model.load_model and
model/export.py.

    python convert.py numpy -i ./DIV2K -o ./DIV2K_BIN
    python convert.py jpeg -i ./DIV2K/DIV2K_train_LR_bicubic -o ./DIV2K/DIV2K_train_LR_bicubic_jpeg_90 --jpeg-quality 90
    python convert.py bicubic -i ./Set5/HR -o ./Set5/LR_bicubic --scale 2 3 4
    python convert.py sample -o ./sample
    python convert.py degrade -i ./Set5/HR -o ./Set5_realesrgan --scale 4 --seed 0   (fixed Real-ESRGAN-degraded set)
    python convert.py weights -i weights.h5 -o wdsr-b-32-x4.keras --profile wdsr-b-32 --scale 4
    python convert.py weights -i RealESRGAN_x4plus.pth -o realesrgan-x4plus.keras   (also .safetensors, ESRGAN .pth)
    python convert.py export -i model.keras -o model.onnx        (or -o DIR for a TF SavedModel)

The command word may come anywhere on the line (the seed puts it last: `-i A -o B numpy`).
"""
import argparse
import os
import sys

from imaging.convert import SAMPLE_TRAIN, SAMPLE_VALID  # noqa: F401  (the sample set's table, convert.SAMPLE_*)
from utils import UserError, atomic_path, run_cli

IN_TREE, OUT_DIR = "input folder (an image tree)", "output folder (the same tree)"
# command -> (help, {option: help}); the options' flags and types are in OPTIONS below
COMMANDS = {
    "numpy": ("mirror an image tree as .npy arrays (the loaders' fast format)",
              {"input": IN_TREE, "output": OUT_DIR, "workers": None, "overwrite": None}),
    "jpeg": ("JPEG-compress an LR tree (libjpeg; DIV2K_*_LR_bicubic_jpeg_90 as in the seed)",
             {"input": IN_TREE, "output": OUT_DIR, "jpeg_quality": None, "workers": None, "overwrite": None}),
    "bicubic": ("MATLAB-exact bicubic LR images OUT/X{s}/<stem>x{s}.png from a folder of HR images",
                {"input": "folder of HR images", "output": "output folder", "scale": "scales (default 2 3 4)",
                 "workers": None, "overwrite": None}),
    "sample": ("the small DIV2K-layout sample set from scikit-image's photographs",
               {"output": "output folder", "workers": None, "overwrite": None}),
    "degrade": ("a fixed Real-ESRGAN-degraded benchmark set OUT/HR + OUT/LR_realesrgan/X{s} (degradations/)",
                {"input": "folder of HR images", "output": "output folder", "scale": "scales (default 2 3 4)",
                 "seed": None, "workers": None, "overwrite": None}),
    "weights": ("published weights -> .keras: krasserm .h5, Real-ESRGAN / ESRGAN RRDBNet .pth / .safetensors",
                {"input": "weights file (.h5 / .pth / .pt / .safetensors)", "output": "MODEL.keras",
                 "profile": None, "scale": "model scale (default: from the file; krasserm .h5: its name)"}),
    "export": ("a model (any format model.load_model reads) -> ONNX, LiteRT, PyTorch or a TF SavedModel, by -o's "
               "suffix; each file is run and compared with Keras before it is written (model/export.py)",
               {"input": "model file", "output": "X.onnx, X.tflite, X.pth / X.safetensors, or a folder name for a "
                "TF SavedModel", "profile": None, "scale": "model scale (default: from the file)", "half": None,
                "input_size": None}),
}
OPTIONS = {
    "input": (("-i", "--input"), {}),
    "output": (("-o", "--output"), {}),
    "jpeg_quality": (("--jpeg-quality",), dict(type=int, default=90, help="JPEG quality 1-100 (default 90)")),
    "scale": (("--scale",), dict(type=int, nargs="+")),
    "profile": (("--profile",), dict(help="model profile of a krasserm .h5 (default: from its file name); for "
                                          "RRDBNet files the sizes come from the file and a profile is checked")),
    "workers": (("--workers",), dict(type=int, default=os.cpu_count() or 1,
                                     help="parallel processes (default: all cores)")),
    "overwrite": (("--overwrite",), dict(action="store_true", help="redo outputs that already exist (default: "
                                                                   "skip them, so an interrupted run resumes)")),
    "seed": (("--seed",), dict(type=int, default=0, help="random seed of the degradations (default 0)")),
    "half": (("--half",), dict(action="store_true", help="ONNX with fp16 weights and compute (float32 input/output)")),
    "input_size": (("--input-size",), dict(type=int, nargs=2, metavar=("H", "W"),
                                           help="LiteRT: a fixed LR input size, for models whose dynamic-size "
                                                "conversion fails (default: dynamic height and width)")),
}


SCALES = {"degrade": (1, 2, 3, 4), "bicubic": (2, 3, 4, 8)}  # the model scales; DIV2K's x8 for bicubic


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line `error: ...`, exit 2 (utils.run_cli)
        raise UserError(f"{message} (see convert.py --help)")


def build_parser():
    epilog = "\n".join(f"  {name:<8} " + " ".join(OPTIONS[o][0][-1] for o in opts) for name, (_, opts) in
                       COMMANDS.items())
    p = _Parser(prog="convert.py", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Convert SR datasets and models. Options of each command (convert.py COMMAND --help):\n"
                            + epilog)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser,
                           help=" | ".join(COMMANDS) + " (may also be given last, as in the seed)")
    for name, (text, opts) in COMMANDS.items():
        sp = sub.add_parser(name, help=text, description=text)
        for option, help_text in opts.items():
            flags, kw = OPTIONS[option]
            sp.add_argument(*flags, **{**kw, **({"help": help_text} if help_text else {})})
    return p


def parse_args(argv):
    """Accept the command word anywhere (`-i A -o B numpy` as in the seed, or `numpy -i A -o B`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    positions = [k for k, a in enumerate(argv) if a in COMMANDS]
    if positions:
        k = positions[-1]  # the last one: `-o sample sample` names the folder first
        argv = [argv[k]] + argv[:k] + argv[k + 1:]
    args = build_parser().parse_args(argv)
    scales = getattr(args, "scale", None)
    if scales is not None:
        if args.command in ("weights", "export") and len(scales) != 1:
            raise UserError(f"{args.command} needs a single --scale, got {' '.join(map(str, scales))}")
        allowed = SCALES.get(args.command, (1, 2, 3, 4, 8))
        bad = [s for s in scales if s not in allowed]
        if bad:
            raise UserError(f"--scale {bad[0]}: {args.command} takes {', '.join(map(str, allowed))}")
    if getattr(args, "seed", 0) < 0:
        raise UserError(f"--seed {args.seed}: must be >= 0 (as train.py --seed)")
    if getattr(args, "workers", 1) < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    return args


def load_model_file(args):
    """-i checked, then model.load_model (every format; a discriminator or a corrupt file is one line)."""
    if not args.input:
        raise UserError(f"{args.command} needs -i, the model or weights file to read")
    kind = "weights" if args.command == "weights" else "model"
    if os.path.isdir(args.input):
        raise UserError(f"-i {args.input} is a folder, not a file; give the {kind} file itself")
    if not os.path.isfile(args.input):
        raise UserError(f"{kind} file not found: {args.input}; give the .h5 / .pth / .safetensors / .keras file "
                        "with -i")
    import model as model_lib
    from profiles import PROFILES

    return model_lib.load_model(args.input, scale=args.scale[0] if args.scale else None, profile=args.profile,
                                profiles=PROFILES)


def main(argv=None):
    args = parse_args(argv)
    from imaging import convert as lib

    cmd, inp, out = args.command, getattr(args, "input", None), args.output
    scales = getattr(args, "scale", None) or [2, 3, 4]
    if cmd == "numpy":
        print(f"wrote {lib.to_numpy(inp, out, args.workers, args.overwrite)} arrays to {out}", file=sys.stderr)
    elif cmd == "jpeg":
        n = lib.to_jpeg(inp, out, args.jpeg_quality, args.workers, args.overwrite)
        print(f"wrote {n} JPEG images to {out}", file=sys.stderr)
    elif cmd == "bicubic":
        n = lib.bicubic_set(inp, out, scales, args.workers, args.overwrite)
        print(f"wrote LR images x{'/x'.join(map(str, scales))} of {n} HR images to {out}", file=sys.stderr)
    elif cmd == "sample":
        lib.make_sample(out, args.workers, args.overwrite)
        print(f"sample dataset in {out}: {len(lib.SAMPLE_TRAIN)} train images (ids {lib.SAMPLE_TRAIN_FIRST_ID}-"
              f"{lib.SAMPLE_TRAIN_FIRST_ID + len(lib.SAMPLE_TRAIN) - 1}), {len(lib.SAMPLE_VALID)} valid (ids "
              f"{lib.SAMPLE_VALID_FIRST_ID}-{lib.SAMPLE_VALID_FIRST_ID + len(lib.SAMPLE_VALID) - 1}), LR bicubic "
              f"x{'/x'.join(map(str, lib.SAMPLE_SCALES))}", file=sys.stderr)
    elif cmd == "degrade":
        from degradations.dataset import degrade_job, degrade_jobs

        lib.prepare(inp, out, cmd)
        jobs = degrade_jobs(inp, out, scales, args.seed, args.overwrite)
        lib.run_jobs(degrade_job, jobs, args.workers, "degrade")
        print(f"degraded {len(jobs)} images into {out} (HR/, LR_realesrgan/; seed {args.seed})", file=sys.stderr)
    elif cmd == "weights":
        from imaging.files import check_output_file
        from model.io import KERAS_EXTS

        if not out or not out.endswith(KERAS_EXTS):
            raise UserError(f"weights needs -o MODEL.keras, got {out}")
        check_output_file(out)  # before the load, which can take seconds
        if args.input and os.path.isfile(out) and os.path.samefile(out, args.input):
            raise UserError(f"-o {out} is the -i file; give another output name")
        network = load_model_file(args)
        with atomic_path(out) as tmp:
            network.save(tmp)
        import model as model_lib

        print(f"wrote {out} ({model_lib.count_params(network):,} parameters, x{model_lib.model_scale(network)})",
              file=sys.stderr)
    else:  # export
        from model.export import check_export_path, export_model

        if not out:
            raise UserError("export needs -o MODEL.onnx, or -o DIR for a TF SavedModel")
        check_export_path(out, args.half, args.input_size)  # before the load
        print(export_model(load_model_file(args), out, args.half, args.input_size), file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
