"""convert.py: numpy mirror (exact, resumable, corrupt files reported), jpeg downgrade, sample set, CLI."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import convert
import data
import imaging
from utils import UserError


def _npy_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def _run_cli(repo_root, *args):
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    return subprocess.run([sys.executable, str(repo_root / "convert.py"), *args], capture_output=True, text=True,
                          env=env, cwd=repo_root, timeout=120)


def test_numpy_roundtrip_exact(tiny_div2k, tmp_path):
    out = tmp_path / "bin"
    convert.main(["-i", str(tiny_div2k), "-o", str(out), "numpy"])  # seed's argument order, all cores
    pngs = sorted(os.path.relpath(os.path.join(d, f), tiny_div2k) for d, _, fs in os.walk(tiny_div2k) for f in fs)
    assert _npy_files(out) == sorted(os.path.splitext(p)[0] + ".npy" for p in pngs)
    for p in pngs:
        arr = np.load(out / (os.path.splitext(p)[0] + ".npy"))
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert np.array_equal(arr, np.asarray(Image.open(tiny_div2k / p).convert("RGB")))


def test_numpy_resumes_after_interruption(tiny_div2k, tmp_path):
    out = tmp_path / "bin"
    convert.main(["numpy", "-i", str(tiny_div2k), "-o", str(out), "--workers", "1"])  # command first works too
    done = out / "DIV2K_train_HR" / "0001.npy"
    stamp = os.path.getmtime(done)
    # what a killed run leaves: missing outputs and a temporary file from utils.atomic_path
    os.remove(out / "DIV2K_train_HR" / "0002.npy")
    shutil.rmtree(out / "DIV2K_valid_LR_bicubic" / "X3")
    leftover = out / "DIV2K_train_HR" / ".0002.abc123.tmp.npy"
    leftover.write_bytes(b"\x93NUMPY half written")
    time.sleep(0.01)
    convert.main(["-i", str(tiny_div2k), "-o", str(out), "--workers", "2", "numpy"])
    assert not leftover.exists()
    assert os.path.getmtime(done) == stamp  # finished files are not redone
    assert len(_npy_files(out)) == 6 * 4  # 6 HR + 18 LR
    for p in ("DIV2K_train_HR/0002", "DIV2K_valid_LR_bicubic/X3/0802x3"):
        assert np.array_equal(np.load(out / f"{p}.npy"), imaging.read_image(tiny_div2k / f"{p}.png"))


def test_numpy_killed_midway_then_resumed(repo_root, tmp_path):
    src = tmp_path / "src"
    (src / "HR").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(src / "HR" / f"{i:04d}.png")
    out = tmp_path / "bin"
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.Popen([sys.executable, str(repo_root / "convert.py"), "-i", str(src), "-o", str(out),
                             "--workers", "1", "numpy"], env=env, stderr=subprocess.DEVNULL, cwd=repo_root)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if (out / "HR").is_dir() and any(f.endswith(".npy") and not f.startswith(".") for f in os.listdir(out / "HR")):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    print("files present when killed:", len(os.listdir(out / "HR")))
    # whatever exists now is complete (atomic writes): every visible .npy loads
    for f in os.listdir(out / "HR"):
        if not f.startswith("."):
            assert np.load(out / "HR" / f).shape == (160, 160, 3)
    result = _run_cli(repo_root, "-i", str(src), "-o", str(out), "numpy")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out / "HR")) == [f"{i:04d}.npy" for i in range(30)]
    for i in (0, 29):
        assert np.array_equal(np.load(out / "HR" / f"{i:04d}.npy"), imaging.read_image(src / "HR" / f"{i:04d}.png"))


def test_numpy_corrupt_png_reported_and_skipped(repo_root, tiny_div2k, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_div2k / "DIV2K_valid_HR", src / "DIV2K_valid_HR")
    (src / "DIV2K_valid_HR" / "0803.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = tmp_path / "bin"
    result = _run_cli(repo_root, "-i", str(src), "-o", str(out), "numpy")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if "0803.png" in ln]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: 1 of 3 file(s) could not be converted")
    assert sorted(os.listdir(out / "DIV2K_valid_HR")) == ["0801.npy", "0802.npy"]  # the others went on


def test_cli_errors_are_one_line(repo_root, tmp_path):
    result = _run_cli(repo_root, "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "numpy")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: input folder not found: {tmp_path / 'missing'}"
    with pytest.raises(UserError, match="weights file not found"):
        convert.main(["-i", str(tmp_path / "w.h5"), "-o", str(tmp_path / "m.keras"), "weights"])
    with pytest.raises(UserError, match="no images"):
        (tmp_path / "empty").mkdir()
        convert.main(["-i", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "numpy"])


def test_help_lists_every_option(repo_root):
    result = _run_cli(repo_root, "--help")
    assert result.returncode == 0
    for opt in ("--input", "--output", "--jpeg-quality", "--scale", "--profile", "--workers", "--overwrite"):
        assert opt in result.stdout


def test_jpeg_downgrade_found_by_loader(tiny_div2k, tmp_path):
    root = tmp_path / "DIV2K"
    shutil.copytree(tiny_div2k, root)
    convert.main(["-i", str(root / "DIV2K_train_LR_bicubic"), "-o", str(root / "DIV2K_train_LR_bicubic_jpeg_90"),
                  "--jpeg-quality", "90", "--workers", "1", "jpeg"])
    pairs = data.open_pairs(root, 2, "train", downgrade="bicubic_jpeg_90")
    assert pairs[0].lr.endswith(os.path.join("DIV2K_train_LR_bicubic_jpeg_90", "X2", "0001x2.jpg"))
    lr_jpeg, hr = data.load_pair(pairs[0], 2)
    lr_png, _ = data.load_pair(data.open_pairs(root, 2, "train")[0], 2)
    diff = np.abs(lr_jpeg.astype(int) - lr_png)
    assert 0 < diff.mean() < 8  # compressed, but the same picture
    # then converted to numpy as in the seed, selected with --downgrade bicubic_jpeg_90
    convert.main(["-i", str(root), "-o", str(tmp_path / "BIN"), "--workers", "1", "numpy"])
    npy = data.open_pairs(tmp_path / "BIN", 2, "train", downgrade="bicubic_jpeg_90")
    assert np.array_equal(imaging.read_image(npy[0].lr), lr_jpeg)


def test_sample_dataset(tmp_path):
    out = tmp_path / "sample"
    convert.main(["-o", str(out), "sample"])
    for scale in (2, 3, 4):
        train = data.open_pairs(out, scale, "train")
        valid = data.open_pairs(out, scale, "valid")
        assert len(train) == len(convert.SAMPLE_TRAIN) >= 10 and len(valid) == len(convert.SAMPLE_VALID) >= 3
        assert train[0].stem == "0001" and valid[0].stem == "0801"
    lr, hr = data.load_pair(valid[0])
    assert hr.shape[0] % 24 == 0 and hr.shape[1] % 24 == 0
    assert np.array_equal(lr, imaging.resize.bicubic_downscale(hr, 4))
    before = {p: os.path.getmtime(out / p) for p in _npy_files(out)}
    convert.main(["-o", str(out), "sample"])  # complete: nothing redone
    assert before == {p: os.path.getmtime(out / p) for p in _npy_files(out)}


def test_numpy_grey_and_rgba_read_like_the_png(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(grey).save(src / "g.png")
    rgba = np.random.default_rng(0).integers(0, 256, (6, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(src / "a.png")
    convert.main(["-i", str(src), "-o", str(tmp_path / "bin"), "--workers", "1", "numpy"])
    for name in ("g", "a"):
        for keep_grey in (False, True):
            assert np.array_equal(imaging.read_image(tmp_path / "bin" / f"{name}.npy", keep_grey=keep_grey),
                                  imaging.read_image(src / f"{name}.png", keep_grey=keep_grey))
    assert np.load(tmp_path / "bin" / "g.npy").shape == (6, 8)
    assert np.load(tmp_path / "bin" / "a.npy").shape == (6, 8, 3)
    assert data._Source(str(tmp_path / "bin" / "g.npy")).shape == (6, 8, 3)  # the loader copes with grey .npy
