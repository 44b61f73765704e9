"""demo.py end to end on a folder of odd images with tiny saved models; bad inputs give one-line errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import demo
from conftest import ROOT, smooth_image
from utils import run_cli

SIZES = {"rgb": (20, 26), "rgba": (18, 17), "grey": (15, 22), "grey16": (16, 16)}


def _tiny_model(pred_logvar=False):
    import model as model_lib

    return model_lib.build_model("edsr", 2, num_filters=8, num_res_blocks=1, pred_logvar=pred_logvar)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_models")
    paths = {}
    for name, logvar in (("plain", False), ("logvar", True)):
        paths[name] = str(root / f"{name}.keras")
        _tiny_model(logvar).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_images")
    lr, hr = root / "lr", root / "hr"
    lr.mkdir()
    hr.mkdir()
    rng = np.random.default_rng(0)
    for stem, (h, w) in SIZES.items():
        big = smooth_image(rng, 2 * h, 2 * w)
        Image.fromarray(big).save(hr / f"{stem}.png")
        small = np.asarray(Image.fromarray(big).resize((w, h), Image.BICUBIC))
        if stem == "rgb":
            Image.fromarray(small).save(lr / "rgb.png")
        elif stem == "rgba":
            alpha = np.full((h, w, 1), 200, np.uint8)
            Image.fromarray(np.concatenate([small, alpha], -1), "RGBA").save(lr / "rgba.png")
        elif stem == "grey":
            Image.fromarray(small[..., 0]).save(lr / "grey.jpg")
        else:
            Image.fromarray(small[..., 1].astype(np.uint16) * 257).save(lr / "grey16.png")  # mode I;16
    (lr / "notes.txt").write_text("not an image")
    return lr, hr


def _sizes_ok(out, stems):
    for stem in stems:
        h, w = SIZES[stem]
        assert Image.open(out / f"{stem}.png").size == (2 * w, 2 * h), stem


def test_demo_plain_model(models, images, tmp_path, capsys):
    lr, hr = images
    out = tmp_path / "out"
    assert demo.main(["-i", str(lr), "-o", str(out), "--model", models["plain"], "--figure", "--hr", str(hr)]) == 0
    _sizes_ok(out, SIZES)
    for stem in SIZES:
        assert (out / f"{stem}_figure.png").stat().st_size > 1000
        assert not (out / f"{stem}_uncertainty.png").exists()
    err = capsys.readouterr().err
    assert "16-bit" in err or "grey16" in err  # the 16-bit source is warned about, not fatal


def test_demo_tiled_equals_untiled(models, images, tmp_path):
    lr, _ = images
    a, b = tmp_path / "a", tmp_path / "b"
    assert demo.main(["-i", str(lr), "-o", str(a), "--model", models["plain"]]) == 0
    assert demo.main(["-i", str(lr), "-o", str(b), "--model", models["plain"], "--tile", "12",
                      "--tile-overlap", "4", "--self-ensemble"]) == 0
    for stem in SIZES:
        assert np.asarray(Image.open(a / f"{stem}.png")).shape == np.asarray(Image.open(b / f"{stem}.png")).shape


def test_demo_logvar_model(models, images, tmp_path):
    lr, hr = images
    out = tmp_path / "out"
    assert demo.main(["-i", str(lr), "-o", str(out), "--model", models["logvar"], "--figure", "--hr", str(hr),
                      "--self-ensemble"]) == 0
    _sizes_ok(out, SIZES)
    for stem, (h, w) in SIZES.items():
        logvar = np.load(out / f"{stem}_logvar.npy")
        assert logvar.shape == (2 * h, 2 * w, 3) and logvar.dtype == np.float32
        assert (out / f"{stem}_uncertainty.png").stat().st_size > 1000
        assert (out / f"{stem}_figure.png").exists()


def _cli(*args, cwd=ROOT):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(ROOT / "demo.py"), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def _run_cli(capsys, *args):
    """demo's CLI entry in-process (utils.run_cli, as `python demo.py` does): (exit status, stderr)."""
    with pytest.raises(SystemExit) as exc:
        run_cli(demo.main, [str(a) for a in args])
    return exc.value.code, capsys.readouterr().err


def _one_line_error(status, stderr, *words):
    assert status not in (0, None)
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], stderr


def test_demo_script_missing_folder(tmp_path):
    proc = _cli("-i", tmp_path / "missing", "-o", tmp_path / "o", "--model", tmp_path / "m.keras")
    _one_line_error(proc.returncode, proc.stderr, "missing")


def test_demo_bad_inputs(models, images, tmp_path, capsys):
    lr, _ = images
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(*_run_cli(capsys, "-i", empty, "-o", tmp_path / "o", "--model", models["plain"]), "no images")
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", tmp_path / "nope.keras"), "nope.keras")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file")
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", broken), "broken.keras")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", blocker / "sub", "--model", models["plain"]), "cannot write")
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", models["plain"], "--tile", "8"),
                    "--tile")


def test_demo_unreadable_image_is_skipped(models, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(smooth_image(np.random.default_rng(1), 10, 12)).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"\x89PNG garbage")
    status, err = _run_cli(capsys, "-i", folder, "-o", tmp_path / "out", "--model", models["plain"])
    assert status == 2 and "Traceback" not in err
    assert "bad.png" in err and (tmp_path / "out" / "good.png").exists()


def test_krasserm_name_parsing():
    assert demo._from_name("/x/wdsr-a-32-x4-psnr-29.1736.h5", None, None) == ("wdsr-a-32", 4)
    assert demo._from_name("weights.h5", "wdsr-b-32", 4) == ("wdsr-b-32", 4)
    assert demo._from_name("/w/krasserm-wdsr-b-32-x4/weights.h5", None, None) == ("wdsr-b-32", 4)
    with pytest.raises(demo.UserError, match="--profile"):
        demo._from_name("weights.h5", None, None)


def test_out_of_memory_becomes_one_line_hint(models, images, tmp_path, capsys, monkeypatch):
    import inference

    def boom(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(inference, "super_resolve", boom)
    lr, _ = images
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", models["plain"]), "--tile")
