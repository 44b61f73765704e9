"""Every bad input and every fault of the command-line tools: one `error:` line, exit 2, no traceback, nothing left.

One table row per case: the tool, its arguments, an optional setup, and words the error line must contain.
Each row runs the tool's `main` in this process through `utils.run_cli` (as `python TOOL.py` does), watching the
folder the outputs would go to: a failed command leaves no file and no folder behind.
"""
import importlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from utils import run_cli

TOOLS = {"train": "train", "bench": "bench", "demo": "demo", "convert": "convert",
         "preview": "degradations.preview"}
TINY_TRAIN = ["--profile", "edsr-16", "--scale", "2", "--num-filters", "4", "--num-res-blocks", "1", "--batch-size",
              "2", "--lr-patch", "8", "--validation-steps", "2", "--no-jit-compile"]


def run_tool(capsys, tool, argv):
    """(exit status, stdout, stderr lines) of `tool` run on argv in this process."""
    capsys.readouterr()
    module = importlib.import_module(TOOLS[tool])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(module.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, [line for line in err.splitlines() if line.strip()]


def snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


# ---------------------------------------------------------------------------------------------------------------
# Files the rows use (one set per module)
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_div2k):
    from PIL import Image

    from model import build_discriminator, build_model

    root = tmp_path_factory.mktemp("cli_files")
    f = {"root": root, "div2k": tiny_div2k}
    build_model("edsr", 4, num_filters=4, num_res_blocks=1).save(root / "x4.keras")
    f["x4"] = root / "x4.keras"
    build_discriminator("unet-sn", num_feat=4).save(root / "disc.keras")
    f["disc"] = root / "disc.keras"
    (root / "text.keras").write_text("this is not a model\n")
    f["text_keras"] = root / "text.keras"
    (root / "text.h5").write_text("this is not a model\n")
    f["text_h5"] = root / "text.h5"
    f["truncated_keras"] = root / "truncated.keras"
    f["truncated_keras"].write_bytes(f["x4"].read_bytes()[:3000])
    (root / "text.pth").write_text("this is not a model\n")
    f["text_pth"] = root / "text.pth"
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / "a.png")
    f["images"] = images
    f["image"] = images / "a.png"
    (root / "empty").mkdir()
    f["empty"] = root / "empty"
    (root / "not_an_image.png").write_text("text")
    f["not_image"] = root / "not_an_image.png"
    bench_set = root / "Set1"
    (bench_set / "HR").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(bench_set / "HR" / "img.png")
    f["bench_set"] = bench_set
    (root / "zero.png").write_bytes(b"")
    f["zero_png"] = root / "zero.png"
    (root / "zero_dir").mkdir()
    (root / "zero_dir" / "zero.png").write_bytes(b"")
    f["zero_dir"] = root / "zero_dir"
    (root / "dir.keras").mkdir()
    f["dir_keras"] = root / "dir.keras"
    (root / "not_a_video.mp4").write_text("not a video")
    if _write_clip(root / "clip.mp4"):
        f["video"] = root / "clip.mp4"
    f["not_video"] = root / "not_a_video.mp4"
    f["blocker"] = root / "a_file"
    f["blocker"].write_text("a file where a folder should be")
    return f


def _write_clip(path, frames=3, size=32):
    """A tiny silent H.264 clip (PyAV); False without PyAV (the rows that use it skip)."""
    try:
        import av
    except ImportError:
        return False
    with av.open(str(path), "w") as dst:
        stream = dst.add_stream("libx264", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 40 * k, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return True


@pytest.fixture(scope="module")
def finished_run(files, tmp_path_factory):
    """A tiny finished train.py run (1 epoch): its folder is copied by the resume rows before they damage it."""
    import train

    out = tmp_path_factory.mktemp("cli_run")
    run_dir = train.main([*TINY_TRAIN, "--dataset", files["div2k"], "--outdir", out, "--epochs", "1",
                          "--steps-per-epoch", "1"])
    return Path(run_dir)


def damaged_run(finished_run, tmp_path, damage):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    state = json.loads((run / "state.json").read_text())
    damage(run, state)
    return run


def _truncate(run, state):
    path = run / state["checkpoint"]
    path.write_bytes(path.read_bytes()[:200])


def _zero_fill(run, state):
    path = run / state["checkpoint"]
    path.write_bytes(b"\0" * path.stat().st_size)


def _garbage(run, state):
    (run / state["checkpoint"]).write_bytes(b"garbage " * 100)


def _pickled(run, state):
    np.save(run / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (run / "x.npy").replace(run / state["checkpoint"])


def _state_field(run, state):
    (run / "state.json").write_text(json.dumps({**state, "epoch": "abc"}))


def _empty_args(run, state):
    (run / "args.json").write_text("{}")


def _zero_byte_args(run, state):
    (run / "args.json").write_text("")


def _missing_state_file(run, state):
    (run / state["checkpoint"]).unlink()


RESUME_ROWS = [
    ("truncated", _truncate, "corrupt"),
    ("zero-filled", _zero_fill, "corrupt"),
    ("garbage", _garbage, "corrupt"),
    ("object array", _pickled, "corrupt"),
    ("non-integer epoch", _state_field, "epoch"),
    ("empty args.json", _empty_args, "args.json"),
    ("zero-byte args.json", _zero_byte_args, "args.json"),
    ("missing state file", _missing_state_file, "missing"),
]


@pytest.mark.parametrize("damage,words", [(d, w) for _, d, w in RESUME_ROWS], ids=[r[0] for r in RESUME_ROWS])
def test_resume_of_a_damaged_run(capsys, finished_run, tmp_path, damage, words):
    run = damaged_run(finished_run, tmp_path, damage)
    before = snapshot(run)
    code, _, err = run_tool(capsys, "train", ["--resume", run, "--epochs", "2"])
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    assert words in err[0] and "allow_pickle" not in err[0], err
    assert snapshot(run) == before


# ---------------------------------------------------------------------------------------------------------------
# The table: (id, tool, argv with {placeholders} from `files`, words the error must contain)
# ---------------------------------------------------------------------------------------------------------------
ROWS = [
    # train.py
    ("train seed negative", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--seed", "-1"], "--seed"),
    ("train degradation non-numeric", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--lr-transform", "realesrgan",
                                                "--degradation", "final_sinc_prob=abc"], "final_sinc_prob"),
    ("train degradation without transform", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--degradation",
                                                      "final_sinc_prob=0.5"], "--lr-transform"),
    ("train discriminator on pixel profile", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--discriminator",
                                                       "unet-sn"], "--discriminator"),
    ("train perceptual weight on pixel profile", "train", [*TINY_TRAIN, "--dataset", "{div2k}",
                                                           "--perceptual-weight", "1"], "--perceptual-weight"),
    ("train vgg weights on pixel profile", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--vgg-weights",
                                                     "{text_pth}"], "--vgg-weights"),
    ("train learning rate nan", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--learning-rate", "nan"],
     "--learning-rate"),
    ("train pretrained text .keras", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--pretrained-model",
                                               "{text_keras}"], "text.keras"),
    ("train pretrained text .h5", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--pretrained-model",
                                            "{text_h5}"], "HDF5"),
    ("train pretrained discriminator as generator", "train", [*TINY_TRAIN, "--dataset", "{div2k}",
                                                              "--pretrained-model", "{disc}"], "discriminator"),
    ("train benchmark folder ids", "train", [*TINY_TRAIN, "--dataset", "{bench_set}"], "1.."),
    ("train monitor niqe small crops", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--monitor", "niqe"],
     "--lr-patch"),
    ("train empty dataset folder", "train", [*TINY_TRAIN, "--dataset", "{empty}"], "empty"),
    ("train dataset is a file", "train", [*TINY_TRAIN, "--dataset", "{image}"], "a.png"),
    ("train missing dataset", "train", [*TINY_TRAIN, "--dataset", "{root}/nope"], "nope"),
    ("train epochs zero", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--outdir", "{out}/runs", "--epochs", "0"],
     "--epochs"),
    ("train batch size zero", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--batch-size", "0"], "--batch-size"),
    ("train workers negative", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--workers", "-1"], "--workers"),
    ("train steps per epoch zero", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--outdir", "{out}/runs",
                                             "--epochs", "1", "--steps-per-epoch", "0"], "--steps-per-epoch"),
    ("train lr patch zero", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--lr-patch", "0"], "--lr-patch"),
    ("train learning rate infinite", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--learning-rate", "inf"],
     "--learning-rate"),
    ("train learning rate negative", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--learning-rate", "-1"],
     "--learning-rate"),
    ("train learning rate non-numeric", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--learning-rate", "abc"],
     "--learning-rate"),
    ("train huge scale", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--scale", "1000"], "--scale"),
    ("train image range reversed", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--training-images", "900-801"],
     "900-801"),
    ("train image range non-numeric", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--training-images", "abc"],
     "abc"),
    ("train outdir is a file", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--outdir", "{blocker}", "--epochs",
                                         "1"], "a_file"),
    ("train unknown option", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--nosuch"], "--nosuch"),
    ("train resume missing run", "train", ["--resume", "{root}/nope"], "nope"),
    ("train resume not a run", "train", ["--resume", "{images}"], "args.json"),
    ("train pretrained missing", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--pretrained-model",
                                           "{root}/nope.keras"], "nope.keras"),
    ("train pretrained truncated .keras", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--pretrained-model",
                                                    "{truncated_keras}"], "truncated"),
    ("train pretrained directory", "train", [*TINY_TRAIN, "--dataset", "{div2k}", "--pretrained-model",
                                             "{dir_keras}"], "dir.keras"),
    # bench.py
    ("bench second output unwritable", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--scale", "4", "-o",
                                                 "{out}/a.json", "--results", "/proc/r.json"], "/proc"),
    ("bench output is a folder", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--scale", "4", "-o",
                                           "{empty}"], "empty"),
    ("bench niqe as-is without -i", "bench", ["--bicubic", "--input", "as-is", "--metrics", "niqe", "--dataset",
                                              "{bench_set}", "--scale", "4"], "--bicubic"),
    ("bench discriminator", "bench", ["-i", "{disc}", "--dataset", "{bench_set}", "--scale", "4"],
     "is a discriminator, not a super-resolution model"),
    ("bench text .keras", "bench", ["-i", "{text_keras}", "--dataset", "{bench_set}"], "text.keras"),
    ("bench truncated .keras", "bench", ["-i", "{truncated_keras}", "--dataset", "{bench_set}"], "truncated"),
    ("bench missing model", "bench", ["-i", "{root}/nope.keras", "--dataset", "{bench_set}"], "nope.keras"),
    ("bench missing dataset", "bench", ["-i", "{x4}", "--dataset", "{root}/nope"], "nope"),
    ("bench scale zero", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--scale", "0"], "--scale"),
    ("bench tile negative", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--tile", "-5"], "--tile"),
    ("bench unknown metric", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--metrics", "nosuch"], "nosuch"),
    ("bench wrong scale", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--scale", "2"], "x4"),
    ("bench output is the model", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "-o", "{x4}"], ".json"),
    ("bench output equals results", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "-o", "{out}/a.json",
                                              "--results", "{out}/a.json"], "--results"),
    ("bench scale non-numeric", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--scale", "abc"], "--scale"),
    ("bench scale negative", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--scale", "-4"], "--scale"),
    ("bench unknown option", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--nosuch"], "--nosuch"),
    ("bench directory named .keras", "bench", ["-i", "{dir_keras}", "--dataset", "{bench_set}"], "dir.keras"),
    ("bench glob matches nothing", "bench", ["-i", "{root}/*.nothing", "--dataset", "{bench_set}"], "nothing"),
    ("bench text .pth", "bench", ["-i", "{text_pth}", "--dataset", "{bench_set}"], "text.pth"),
    ("bench image as model", "bench", ["-i", "{image}", "--dataset", "{bench_set}"], "a.png"),
    ("bench tile overlap negative", "bench", ["-i", "{x4}", "--dataset", "{bench_set}", "--tile-overlap", "-1"],
     "--tile-overlap"),
    ("bench missing scale for bicubic", "bench", ["--bicubic", "--dataset", "{bench_set}"], "--scale"),
    # demo.py
    ("demo scale mismatch", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--scale", "2"], "x4"),
    ("demo discriminator", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{disc}"],
     "is a discriminator, not a super-resolution model"),
    ("demo text .keras", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{text_keras}"], "zip"),
    ("demo text .h5", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{text_h5}"], "HDF5"),
    ("demo missing model", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{root}/nope.keras"], "nope.keras"),
    ("demo missing input", "demo", ["-i", "{root}/nope", "-o", "{out}/demo", "-m", "{x4}"], "nope"),
    ("demo empty input folder", "demo", ["-i", "{empty}", "-o", "{out}/demo", "-m", "{x4}"], "empty"),
    ("demo output is a file", "demo", ["-i", "{images}", "-o", "{blocker}", "-m", "{x4}"], "a_file"),
    ("demo tile zero", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--tile", "0"], "--tile"),
    ("demo outscale nan", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--outscale", "nan"],
     "--outscale"),
    ("demo outscale negative", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--outscale", "-2"],
     "--outscale"),
    ("demo truncated .keras", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{truncated_keras}"], "truncated"),
    ("demo directory named .keras", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{dir_keras}"], "folder"),
    ("demo zero-byte image", "demo", ["-i", "{zero_png}", "-o", "{out}/demo", "-m", "{x4}"], "zero.png"),
    ("demo folder of one zero-byte image", "demo", ["-i", "{zero_dir}", "-o", "{out}/demo", "-m", "{x4}"],
     "zero.png"),
    ("demo not a video", "demo", ["-i", "{not_video}", "-o", "{out}/v.mp4", "-m", "{x4}"], "not_a_video.mp4"),
    ("demo not a video into a folder", "demo", ["-i", "{not_video}", "-o", "{out}/demo", "-m", "{x4}"],
     "not_a_video.mp4"),
    ("demo glob matches nothing", "demo", ["-i", "{root}/*.nothing", "-o", "{out}/demo", "-m", "{x4}"], "nothing"),
    ("demo output is the input", "demo", ["-i", "{image}", "-o", "{image}", "-m", "{x4}"], "overwrite"),
    ("demo output folder is the input folder", "demo", ["-i", "{images}", "-o", "{images}", "-m", "{x4}"],
     "overwrite"),
    ("demo outscale zero", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--outscale", "0"],
     "--outscale"),
    ("demo outscale infinite", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--outscale", "inf"],
     "--outscale"),
    ("demo quality 101", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--quality", "101"],
     "--quality"),
    ("demo crf negative", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--crf", "-1"], "--crf"),
    ("demo video into an image name", "demo", ["-i", "{video}", "-o", "{out}/v.png", "-m", "{x4}"], "v.png"),
    ("demo image into a video name", "demo", ["-i", "{image}", "-o", "{out}/a.mp4", "-m", "{x4}"], "a.mp4"),
    ("demo unknown codec", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--codec", "nosuch"],
     "--codec"),
    ("demo tile batch zero", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--tile-batch", "0"],
     "--tile-batch"),
    ("demo tile non-numeric", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--tile", "abc"],
     "--tile"),
    ("demo tile overlap too large", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--tile", "8",
                                             "--tile-overlap", "4"], "--tile-overlap"),
    ("demo huge scale", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--scale", "1000"], "x4"),
    ("demo text .pth", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{text_pth}"], "text.pth"),
    ("demo missing hr folder", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--hr",
                                        "{root}/nope"], "nope"),
    ("demo unwritable output", "demo", ["-i", "{images}", "-o", "/proc/demo", "-m", "{x4}"], "/proc"),
    ("demo suffix is a path", "demo", ["-i", "{images}", "-o", "{out}/demo", "-m", "{x4}", "--suffix", "/../../x"],
     "--suffix"),
    ("demo empty output", "demo", ["-i", "{images}", "-o", "", "-m", "{x4}"], "-o"),
    # convert.py
    ("convert weights output is the input", "convert", ["weights", "-i", "{x4}", "-o", "{x4}"], "-i"),
    ("convert weights output not .keras", "convert", ["weights", "-i", "{x4}", "-o", "{out}/x.onnx"], ".keras"),
    ("convert weights missing input", "convert", ["weights", "-i", "{root}/nope.pth", "-o", "{out}/x.keras"],
     "nope.pth"),
    ("convert weights truncated .keras", "convert", ["weights", "-i", "{truncated_keras}", "-o", "{out}/x.keras"],
     "truncated"),
    ("convert weights image as input", "convert", ["weights", "-i", "{image}", "-o", "{out}/x.keras"], "a.png"),
    ("convert export keras output", "convert", ["export", "-i", "{x4}", "-o", "{out}/x.keras"], ".keras"),
    ("convert export text .keras", "convert", ["export", "-i", "{text_keras}", "-o", "{out}/x.onnx"], "text.keras"),
    ("convert bicubic same folder", "convert", ["bicubic", "-i", "{images}", "-o", "{images}"], "differ"),
    ("convert bicubic scale negative", "convert", ["bicubic", "-i", "{images}", "-o", "{out}/lr", "--scale", "-2"],
     "--scale"),
    ("convert bicubic missing input", "convert", ["bicubic", "-i", "{root}/nope", "-o", "{out}/lr"], "nope"),
    ("convert bicubic output is a file", "convert", ["bicubic", "-i", "{images}", "-o", "{blocker}"], "a_file"),
    ("convert degrade workers negative", "convert", ["degrade", "-i", "{images}", "-o", "{out}/deg", "--workers",
                                                     "-1"], "--workers"),
    ("convert degrade seed non-numeric", "convert", ["degrade", "-i", "{images}", "-o", "{out}/deg", "--seed",
                                                     "abc"], "--seed"),
    ("convert unknown command", "convert", ["nosuch", "-i", "{images}", "-o", "{out}/x"], "nosuch"),
    ("convert numpy input is a file", "convert", ["numpy", "-i", "{image}", "-o", "{out}/np"], "a.png"),
    ("convert weights without -i", "convert", ["weights", "-o", "{out}/x.keras"], "-i"),
    ("convert weights -i folder", "convert", ["weights", "-i", "{empty}", "-o", "{out}/x.keras"], "folder"),
    ("convert weights text .pth", "convert", ["weights", "-i", "{text_pth}", "-o", "{out}/x.keras"], "text.pth"),
    ("convert weights unwritable output", "convert", ["weights", "-i", "{x4}", "-o", "/proc/x.keras"], "/proc"),
    ("convert export unknown format", "convert", ["export", "-i", "{x4}", "-o", "{out}/x.xyz"], ".xyz"),
    ("convert export discriminator", "convert", ["export", "-i", "{disc}", "-o", "{out}/x.onnx"],
     "is a discriminator, not a super-resolution model"),
    ("convert export unwritable output", "convert", ["export", "-i", "{x4}", "-o", "/proc/x.onnx"], "/proc"),
    ("convert degrade seed negative", "convert", ["degrade", "-i", "{images}", "-o", "{out}/deg", "--seed", "-1"],
     "--seed"),
    ("convert degrade scale zero", "convert", ["degrade", "-i", "{images}", "-o", "{out}/deg", "--scale", "0"],
     "--scale"),
    ("convert bicubic scale five", "convert", ["bicubic", "-i", "{images}", "-o", "{out}/lr", "--scale", "5"],
     "5"),
    ("convert bicubic input is a file", "convert", ["bicubic", "-i", "{image}", "-o", "{out}/lr"], "a.png"),
    ("convert numpy empty input", "convert", ["numpy", "-i", "{empty}", "-o", "{out}/np"], "empty"),
    # degradations/preview.py
    ("preview scale zero", "preview", ["-i", "{images}", "-o", "{out}/p.png", "--scale", "0"], "--scale"),
    ("preview tile zero", "preview", ["-i", "{images}", "-o", "{out}/p.png", "--tile", "0"], "--tile"),
    ("preview columns zero", "preview", ["-i", "{images}", "-o", "{out}/p.png", "--columns", "0"], "--columns"),
    ("preview count zero", "preview", ["-i", "{images}", "-o", "{out}/p.png", "-n", "0"], "-n"),
    ("preview input is a file", "preview", ["-i", "{image}", "-o", "{out}/p.png"], "a.png"),
    ("preview scale negative", "preview", ["-i", "{images}", "-o", "{out}/p.png", "--scale", "-4"], "--scale"),
    ("preview count negative", "preview", ["-i", "{images}", "-o", "{out}/p.png", "-n", "-3"], "-n"),
    ("preview tile non-numeric", "preview", ["-i", "{images}", "-o", "{out}/p.png", "--tile", "abc"], "--tile"),
    ("preview seed negative", "preview", ["-i", "{images}", "-o", "{out}/p.png", "--seed", "-5"], "--seed"),
    ("preview seed non-numeric", "preview", ["-i", "{images}", "-o", "{out}/p.png", "--seed", "nan"], "--seed"),
    ("preview output not png", "preview", ["-i", "{images}", "-o", "{out}/p.jpg"], ".png"),
    ("preview output is a folder", "preview", ["-i", "{images}", "-o", "{empty}"], "empty"),
    ("preview unwritable output", "preview", ["-i", "{images}", "-o", "/proc/p.png"], "/proc"),
    ("preview missing input", "preview", ["-i", "{root}/nope", "-o", "{out}/p.png"], "nope"),
    ("preview empty input folder", "preview", ["-i", "{empty}", "-o", "{out}/p.png"], "empty"),
    ("preview zero-byte image", "preview", ["-i", "{zero_dir}", "-o", "{out}/p.png"], "zero.png"),
]


@pytest.mark.parametrize("tool,argv,words", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input(capsys, files, tmp_path, tool, argv, words):
    out = tmp_path / "out"
    out.mkdir()
    values = {k: str(v) for k, v in files.items()}
    values["out"] = str(out)
    try:
        argv = [a.format(**values) for a in argv]
    except KeyError as e:
        pytest.skip(f"no {e} file here (PyAV missing)")
    if tool == "train" and "--outdir" not in argv and "--resume" not in argv:
        argv += ["--outdir", str(out / "runs"), "--epochs", "1", "--steps-per-epoch", "1"]
    watched = {str(out): snapshot(out), str(files["root"]): snapshot(files["root"])}
    code, _, err = run_tool(capsys, tool, argv)
    assert code == 2, (code, err)
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    assert not any("Traceback" in line for line in err), err
    assert words in errors[0], errors[0]
    assert not re.search(r"\{\d+\}", errors[0]), errors[0]  # a value in template braces: X{5}
    for folder, before in watched.items():
        assert snapshot(folder) == before, f"{folder} changed: {sorted(set(snapshot(folder)) - set(before))}"


def test_state_saving_on_a_full_disk_is_one_line_and_resume_stays_exact(capsys, files, tmp_path, monkeypatch):
    """ENOSPC while the state is written: one line naming the folder and the last good state; the run then
    resumes from that state after space is freed and ends where an uninterrupted run ends."""
    import train
    import training.trainer as trainer_module

    common = [*TINY_TRAIN, "--dataset", files["div2k"], "--steps-per-epoch", "2"]
    reference = Path(train.main([*common, "--outdir", tmp_path / "ref", "--epochs", "2"]))

    real_savez = np.savez
    calls = {"n": 0}

    def full_disk_on_second_epoch(f, **arrays):  # states: step 0 (resume-000), epoch 1 (resume-001), epoch 2
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(28, "No space left on device")
        return real_savez(f, **arrays)

    monkeypatch.setattr(trainer_module.np, "savez", full_disk_on_second_epoch)
    code, _, err = run_tool(capsys, "train", [*common, "--outdir", tmp_path / "full", "--epochs", "2"])
    errors = [line for line in err if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and err[-1] == errors[0], err
    assert "No space left" in errors[0] and "--resume" in errors[0] and "resume-001" in errors[0], errors
    (run,) = (tmp_path / "full").iterdir()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no half-written temporary file
    monkeypatch.setattr(trainer_module.np, "savez", real_savez)
    train.main(["--resume", run])

    def final(run_dir):
        state = json.loads((run_dir / "state.json").read_text())
        with np.load(run_dir / state["checkpoint"]) as f:
            return state, {k: f[k] for k in f.files if k != "meta"}

    (state_a, arrays_a), (state_b, arrays_b) = final(reference), final(run)
    assert state_a["global_step"] == state_b["global_step"] == 4
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)


def test_unknown_keras_backend_is_one_line(repo_root, tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "nosuch"}
    result = subprocess.run([sys.executable, str(repo_root / "demo.py"), "-i", str(tmp_path), "-m", "x.keras"],
                            env=env, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "jax" in lines[0] and "nosuch" in lines[0], result.stderr


def test_no_tensorflow_start_up_noise(repo_root, files):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    result = subprocess.run([sys.executable, str(repo_root / "bench.py"), "-i", str(files["x4"]), "--dataset",
                             str(files["bench_set"]), "--scale", "4", "--no-progress"],
                            env=env, capture_output=True, text=True, timeout=300, cwd=files["root"])
    assert result.returncode == 0, result.stderr
    for noise in ("oneDNN", "cpu_feature_guard", "absl::InitializeLog"):
        assert noise not in result.stderr, result.stderr


def test_warnings_do_not_share_a_line_with_a_progress_bar(capsys):
    from tqdm import tqdm

    from utils import warn

    with tqdm(total=3, file=__import__("sys").stderr, ncols=40) as bar:
        bar.update(1)
        warn("something odd")
        bar.update(1)
    err = capsys.readouterr().err
    assert any(line.strip() == "warning: something odd" for line in err.replace("\r", "\n").splitlines()), err



# ---------------------------------------------------------------------------------------------------------------
# Disk full in the writers (monkeypatched): one line, exit 2, nothing under the final name, no temporary left
# ---------------------------------------------------------------------------------------------------------------
def _no_space(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_demo_on_a_full_disk_is_one_line(capsys, files, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image.Image, "save", _no_space)
    out = tmp_path / "demo"
    code, _, err = run_tool(capsys, "demo", ["-i", files["images"], "-o", out, "-m", files["x4"]])
    errors = [line for line in err if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and err[-1] == errors[0] and "No space left" in errors[0], err
    assert not any("Traceback" in line for line in err), err
    assert not [p for p in out.rglob("*") if p.is_file()], snapshot(out)


def test_convert_weights_on_a_full_disk_is_one_line(capsys, files, tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(keras.Model, "save", _no_space)
    target = tmp_path / "w" / "x.keras"
    code, _, err = run_tool(capsys, "convert", ["weights", "-i", files["x4"], "-o", target])
    errors = [line for line in err if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and err[-1] == errors[0] and "No space left" in errors[0], err
    assert not target.exists() and not [p for p in tmp_path.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------------------------------------------
# Things that must just work, or say so
# ---------------------------------------------------------------------------------------------------------------
def test_demo_tile_larger_than_the_image_is_the_image(capsys, files, tmp_path):
    out = tmp_path / "demo"
    code, _, err = run_tool(capsys, "demo", ["-i", files["image"], "-o", out, "-m", files["x4"], "--tile", "100000"])
    assert code == 0, err
    assert not [line for line in err if "error" in line or "memory" in line], err
    from PIL import Image

    with Image.open(out / "a.png") as im:
        assert im.size == (160, 160)


def test_demo_warns_when_16_bit_grey_becomes_rgb(capsys, files, tmp_path):
    from PIL import Image

    src = tmp_path / "grey16.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 65535, (24, 24), dtype=np.uint16)).save(src)
    code, _, err = run_tool(capsys, "demo", ["-i", src, "-o", tmp_path / "out", "-m", files["x4"]])
    assert code == 0, err
    assert any(line.startswith("warning:") and "grey image converted to RGB" in line for line in err), err


def test_convert_help_lists_every_command(capsys):
    import convert

    with pytest.raises(SystemExit) as exit_info:
        convert.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("numpy", "jpeg", "bicubic", "sample", "degrade", "weights", "export"):
        assert command in out.split("positional arguments")[1], command


def test_best_line_says_when_bicubic_beats_every_model():
    from evaluation.reports import best_line

    rows = [{"model": "bicubic", "label": "Bicubic", "dataset": "Set5", "scale": 4, "kind": "benchmark",
             "psnr_y": 30.0},
            {"model": "m.keras", "label": "m.keras", "dataset": "Set5", "scale": 4, "kind": "benchmark",
             "psnr_y": 20.0}]
    line = best_line(rows[1:] + rows[:1], {"m.keras": 20.0})
    note, last = line.splitlines()
    assert last == "Best PSNR = 20.0000 for model m.keras", line
    assert note.startswith("Bicubic PSNR = 30.0000") and "beats every model" in note, line
    rows[0]["psnr_y"] = 10.0
    assert "bicubic" not in best_line(rows[1:] + rows[:1], {"m.keras": 20.0})


def test_no_cli_imports_keras_before_run_cli(repo_root):
    """utils.run_cli hides TensorFlow's start-up notices with an import hook, which only works when no CLI
    module imports keras or tensorflow at its top level."""
    import subprocess
    import sys

    code = ("import sys, train, bench, demo, convert, degradations.preview; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=repo_root)
    assert result.returncode == 0 and result.stdout.strip() == "[]", (result.stdout, result.stderr)


def test_short_training_run_exits_cleanly_without_start_up_noise(repo_root, files, tmp_path):
    """A run shorter than the background trace of the train step still exits 0 (a daemon thread inside
    TensorFlow at exit aborted it: status 134), and prints none of TensorFlow's start-up notices."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    result = subprocess.run([sys.executable, str(repo_root / "train.py"), *TINY_TRAIN, "--dataset",
                             str(files["div2k"]), "--outdir", str(tmp_path), "--epochs", "1", "--steps-per-epoch", "1"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for noise in ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "terminate called"):
        assert noise not in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_unknown_keras_backend_is_one_line_in_every_tool(capsys, monkeypatch, tool):
    monkeypatch.setenv("KERAS_BACKEND", "nosuch")
    code, _, err = run_tool(capsys, tool, ["--help"])
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "nosuch" in err[0], err


def test_bench_keys_have_no_double_slash(capsys, files, tmp_path):
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(files["x4"], models / "x4.keras")
    out = tmp_path / "b.json"
    code, _, err = run_tool(capsys, "bench", ["-i", f"{models}//", "--dataset", files["bench_set"], "--scale", "4",
                                              "-o", out, "--no-progress"])
    assert code == 0, err
    keys = list(json.loads(out.read_text()))
    assert keys == [str(models / "x4.keras")], keys
