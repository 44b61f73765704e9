"""The project's Real-ESRGAN / Real-ESRNet training step against the reference code, step for step: the command.

The comparison itself is testing/reference_step.py (its docstring says what is compared); this prints its JSON
report.

    python benchmarks/reference_step.py --cli realesrgan --speed-steps 4   # full RealESRGAN_x4plus, batch 1, LR 32
    python benchmarks/reference_step.py --small                        # the reduced nets tests/test_reference_step.py uses
"""
import argparse
import json

from testing.reference_step import run
from utils import run_cli

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="reduced random RRDBNet / UNet-SN (the test's sizes)")
    p.add_argument("--lr-size", type=int, default=32, help="LR crop size (GT = 4x)")
    p.add_argument("--steps", type=int, default=3, help="iterations compared")
    p.add_argument("--cli", default="", help="recipes also run through train.py on the command line and compared "
                   "(e.g. realesrgan)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each side (0: the libraries' defaults)")
    p.add_argument("--speed-steps", type=int, default=0, help="more warm steps of each side, interleaved, timed")
    p.add_argument("--recipes", default="realesrgan,realesrnet", help="realesrgan and/or realesrnet")
    p.add_argument("--train-args", default="", help="more train.py options for the project's side (e.g. "
                   "'--epsilon 1e-9' to see how much Keras's epsilon placement explains)")
    p.add_argument("-o", "--output", help="write the JSON report here too")
    args = p.parse_args(argv)
    recipes = tuple(args.recipes.split(","))
    report = run(args.small, args.lr_size, args.steps, tuple(filter(None, args.cli.split(","))), args.speed_steps,
                 recipes=recipes, threads=args.threads, extra=args.train_args.split())
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        from utils import atomic_path

        with atomic_path(args.output) as tmp, open(tmp, "w") as f:
            f.write(text)


if __name__ == "__main__":
    run_cli(main)
