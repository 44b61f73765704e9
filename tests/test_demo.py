"""demo.py end to end on a folder of odd images with tiny saved models; bad inputs give one-line errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import demo
from conftest import ROOT, smooth_image
from evaluation import upscale
from utils import run_cli

SIZES = {"rgb": (20, 26), "rgba": (18, 17), "grey": (15, 22), "grey16": (16, 16), "rgb16": (14, 19)}
EXT = {"grey": ".jpg"}  # --ext auto keeps the input's format; the others are PNGs


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
        elif stem == "grey16":
            Image.fromarray(small[..., 1].astype(np.uint16) * 257).save(lr / "grey16.png")  # mode I;16
        else:  # 16-bit RGB (Pillow cannot write it): values that 8 bits cannot hold
            import cv2

            deep = small.astype(np.uint16) * 257 + rng.integers(0, 200, small.shape).astype(np.uint16)
            cv2.imwrite(str(lr / "rgb16.png"), deep[..., ::-1])
    (lr / "notes.txt").write_text("not an image")
    return lr, hr


def _sizes_ok(out, stems):
    for stem in stems:
        h, w = SIZES[stem]
        assert Image.open(out / f"{stem}{EXT.get(stem, '.png')}").size == (2 * w, 2 * h), stem


def test_demo_plain_model(models, images, tmp_path, capsys):
    lr, hr = images
    out = tmp_path / "out"
    assert demo.main(["-i", str(lr), "-o", str(out), "--model", models["plain"], "--figure", "--hr", str(hr)]) == 0
    _sizes_ok(out, SIZES)
    for stem in SIZES:
        assert (out / f"{stem}_figure.png").stat().st_size > 1000
        assert not (out / f"{stem}_uncertainty.png").exists()
    err = capsys.readouterr().err  # 16-bit sources are kept, not reduced to 8 bit with a warning
    assert not [ln for ln in err.splitlines() if "16-bit" in ln and "8 bit" in ln], err


def test_alpha_and_16_bit_kept(models, images, tmp_path):
    """RGBA in -> RGBA PNG out (alpha by bicubic); 16-bit in -> 16-bit out, equal to the 8-bit domain run."""
    import cv2

    import imaging
    from evaluation import inference
    import metrics
    import model as model_lib

    lr, _ = images
    out = tmp_path / "out"
    assert demo.main(["-i", str(lr), "-o", str(out), "--model", models["plain"]]) == 0
    rgba = np.asarray(Image.open(out / "rgba.png"))
    assert Image.open(out / "rgba.png").mode == "RGBA" and rgba.shape == (36, 34, 4)
    np.testing.assert_array_equal(rgba[..., 3], 200)  # constant alpha stays constant under bicubic
    src = np.asarray(Image.open(lr / "rgba.png"))
    net = model_lib.load_model(models["plain"], compile=False)
    np.testing.assert_array_equal(rgba[..., :3], metrics.quantize(inference.super_resolve(net, src[..., :3])))
    for stem in ("grey16", "rgb16"):
        sr16 = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert sr16.dtype == np.uint16 and sr16.shape == (2 * SIZES[stem][0], 2 * SIZES[stem][1], 3), stem
        src16 = cv2.imread(str(lr / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        src16 = np.repeat(src16[..., None], 3, 2) if src16.ndim == 2 else src16[..., ::-1]
        ref = inference.super_resolve(net, src16.astype(np.float32) / 257)
        expect = np.clip(np.round(ref.astype(np.float64) * 257), 0, 65535)
        assert np.abs(sr16[..., ::-1].astype(np.float64) - expect).max() <= 1, stem
    # the 16-bit output keeps what 8 bits would lose: not a multiple of 257 everywhere
    assert np.any(cv2.imread(str(out / "rgb16.png"), cv2.IMREAD_UNCHANGED) % 257)
    # alpha of a 16-bit RGBA image: kept at 16 bit too
    deep = np.dstack([np.full((12, 13, 3), 40000, np.uint16), np.full((12, 13, 1), 30000, np.uint16)])
    folder = tmp_path / "in16"
    folder.mkdir()
    cv2.imwrite(str(folder / "a16.png"), deep)
    assert demo.main(["-i", str(folder), "-o", str(tmp_path / "o16"), "--model", models["plain"]]) == 0
    a16 = cv2.imread(str(tmp_path / "o16" / "a16.png"), cv2.IMREAD_UNCHANGED)
    assert a16.dtype == np.uint16 and a16.shape == (24, 26, 4)
    np.testing.assert_array_equal(a16[..., 3], 30000)
    assert imaging.read_image(str(tmp_path / "o16" / "a16.png")).dtype == np.uint8  # still readable by THE reader


def test_loss_mode_from_the_checkpoint(models, tmp_path):
    """An L1-trained GRAM checkpoint is read as l1 (its sigma map is not drawn with the l2 convention)."""
    import losses

    net = _tiny_model(pred_logvar=True)
    net.compile(optimizer="adam", loss=losses.SRLoss(pred_logvar=True, loss_mode="l1"))
    path = str(tmp_path / "gram-l1.keras")
    net.save(path)
    loaded = upscale.load_sr_model(path)
    assert upscale.checkpoint_loss_mode(loaded, path) == "l1"
    assert upscale.checkpoint_loss_mode(upscale.load_sr_model(models["logvar"]), models["logvar"]) == "l2"  # unknown


def test_zoom_figure_shows_the_detail(tmp_path):
    """The figure has the whole image plus crops at full resolution of the most detailed region."""
    from visualization import figures

    img = np.full((120, 160, 3), 128, np.uint8)
    img[70:90, 100:120] = np.random.default_rng(0).integers(0, 255, (20, 20, 3))  # the only texture
    y, x = figures.detail_box(img, 20)
    assert abs(y - 70) <= 1 and abs(x - 100) <= 1
    lr = img[::2, ::2]
    path = upscale.make_figure(str(tmp_path / "f.png"), lr, img, 2, hr=img, title="t")
    fig = np.asarray(Image.open(path))
    assert fig.shape[1] > fig.shape[0] * 2  # whole image + 4 crops side by side


def test_demo_tiled_equals_untiled(models, images, tmp_path):
    lr, _ = images
    a, b = tmp_path / "a", tmp_path / "b"
    assert demo.main(["-i", str(lr), "-o", str(a), "--model", models["plain"]]) == 0
    assert demo.main(["-i", str(lr), "-o", str(b), "--model", models["plain"], "--tile", "12",
                      "--tile-overlap", "4", "--self-ensemble"]) == 0
    for stem in SIZES:
        name = stem + EXT.get(stem, ".png")
        assert np.asarray(Image.open(a / name)).shape == np.asarray(Image.open(b / name)).shape


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
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", models["plain"], "--tile", "8",
                              "--tile-overlap", "4"), "--tile")
    # a tile too small for the receptive field (tiny edsr-1: radius 5.5 LR px -> overlap 7 > 8 / 2) runs with
    # the overlap that fits and one warning about seams (issue 22: RealESRGANer runs small tiles too)
    status, err = _run_cli(capsys, "-i", lr / "rgb.png", "-o", tmp_path / "o", "--model", models["plain"],
                           "--tile", "8")
    assert status == 0 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if "receptive field" in ln and "seams" in ln]
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", models["plain"], "--tile", "0"),
                    "--tile")
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", models["plain"],
                              "--tile-overlap", "-4"), "--tile-overlap")
    _one_line_error(*_run_cli(capsys, "-i", lr / "notes.txt", "-o", tmp_path / "o", "--model", models["plain"]),
                    "notes.txt", "not an image")
    _one_line_error(*_run_cli(capsys, "-i", lr / "*.gif", "-o", tmp_path / "o", "--model", models["plain"]),
                    "no images or videos match")
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", models["plain"], "--outscale", "0"),
                    "--outscale")
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", lr), "is a folder")


def test_demo_unreadable_image_is_skipped(models, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(smooth_image(np.random.default_rng(1), 10, 12)).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"\x89PNG garbage")
    status, err = _run_cli(capsys, "-i", folder, "-o", tmp_path / "out", "--model", models["plain"])
    assert status == 2 and "Traceback" not in err
    assert "bad.png" in err and (tmp_path / "out" / "good.png").exists()


def test_out_of_memory_becomes_one_line_hint(models, images, tmp_path, capsys, monkeypatch):
    from evaluation import inference

    def boom(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(inference, "super_resolve", boom)
    lr, _ = images
    _one_line_error(*_run_cli(capsys, "-i", lr, "-o", tmp_path / "o", "--model", models["plain"]), "--tile")


def test_outscale_matches_realesrgan(shared_dir, tmp_path):
    """`demo.py --outscale 3.5` equals Real-ESRGAN's inference_realesrgan.py --outscale 3.5 (RealESRGANer with the
    script's defaults: tile 0, pre_pad 0; then its cv2 Lanczos-4 resize) within 2 grey levels on 99.9% of pixels."""
    import cv2

    from testing.reference import require_reference

    utils_re = require_reference("realesrgan.utils")
    rrdbnet_arch = require_reference("basicsr.archs.rrdbnet_arch")
    weights = shared_dir / "weights" / "realesrgan-x4plus" / "RealESRGAN_x4plus.pth"
    if not weights.is_file():
        pytest.skip(f"{weights} not present")
    photo = cv2.imread(str(shared_dir / "datasets" / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"))[24:40, 14:34]
    cv2.imwrite(str(tmp_path / "photo.png"), photo)  # 20x16: 3.5x is whole (70x56), where int() and round() agree
    net = rrdbnet_arch.RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
    upsampler = utils_re.RealESRGANer(scale=4, model_path=str(weights), model=net, tile=0, tile_pad=10, pre_pad=0,
                                      half=False)
    ref, _ = upsampler.enhance(photo, outscale=3.5)
    assert demo.main(["-i", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--model", str(weights),
                      "--outscale", "3.5"]) == 0
    ours = cv2.imread(str(tmp_path / "out" / "photo.png"))
    assert ours.shape == ref.shape == (56, 70, 3)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert np.mean(diff <= 2) >= 0.999, (diff.max(), np.mean(diff <= 2))


def test_precision_policies(models, images, tmp_path):
    """--precision bf16/fp16 computes under Keras' mixed policy (float32 weights and output layers) and stays
    close to fp32; the fp32 model is returned as it is."""
    from evaluation import inference

    net = upscale.load_sr_model(models["plain"])
    assert upscale.with_precision(net, "fp32") is net
    lr = np.asarray(Image.open(images[0] / "rgb.png"), np.float32)
    ref = inference.super_resolve(net, lr)
    for precision, policy, tol in (("bf16", "mixed_bfloat16", 4.0), ("fp16", "mixed_float16", 0.5)):
        half = upscale.with_precision(net, precision)
        policies = {layer.dtype_policy.name for layer in half.layers}
        assert policy in policies and half.layers[-1].dtype_policy.name == "float32"
        assert all(w.dtype == "float32" for w in half.weights)
        out = inference.super_resolve(half, lr)
        assert out.dtype == np.float32 and 0 < np.abs(out - ref).max() <= tol, precision
    out = tmp_path / "bf16"
    assert demo.main(["-i", str(images[0] / "rgb.png"), "-o", str(out), "--model", models["plain"],
                      "--precision", "bf16"]) == 0
    assert Image.open(out / "rgb.png").size == (52, 40)


@pytest.mark.skipif(not os.environ.get("SISR_SLOW_TESTS"),
                    reason="RealESRGAN_x4plus on Set5 twice: ~1 CPU-minute (more on a shared machine): SISR_SLOW_TESTS=1")
def test_bf16_within_a_tenth_of_a_db_on_set5(shared_dir):
    """--precision bf16 with RealESRGAN_x4plus: mean PSNR-Y over Set5 (x4, 4 px border) within 0.1 dB of fp32."""
    import imaging
    import metrics
    from evaluation import inference

    weights = shared_dir / "weights" / "realesrgan-x4plus" / "RealESRGAN_x4plus.pth"
    set5 = shared_dir / "datasets" / "Set5"
    fp32 = upscale.load_sr_model(str(weights))
    scores = {}
    for precision in ("fp32", "bf16"):
        net = upscale.with_precision(fp32, precision)
        psnrs = []
        for hr_path in sorted((set5 / "HR").glob("*.png")):
            hr = imaging.read_image(str(hr_path))
            lr = imaging.read_image(str(set5 / "LR_bicubic" / "X4" / f"{hr_path.stem}x4.png"))
            sr = metrics.quantize(inference.super_resolve(net, lr))
            psnrs.append(metrics.psnr(hr[: sr.shape[0], : sr.shape[1]], sr, shave=4, channel="y"))
        scores[precision] = float(np.mean(psnrs))
    assert abs(scores["bf16"] - scores["fp32"]) < 0.1, scores


def test_inputs_and_output_names(models, tmp_path, capsys):
    """A folder with --recursive keeps its layout; a glob keeps the layout under its fixed part and reports the
    files it matched that are not images; --suffix, --ext, --outscale sizes, --skip-existing."""
    import cv2

    rng = np.random.default_rng(3)
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(smooth_image(rng, 10, 12)).save(src / "a.png")
    Image.fromarray(smooth_image(rng, 9, 11)).save(src / "sub" / "b.jpg", quality=95)
    Image.fromarray(smooth_image(rng, 8, 7)).save(src / "sub" / "deeper" / "c.webp")
    (src / "sub" / "notes.txt").write_text("x")
    out = tmp_path / "rec"
    assert demo.main(["-i", str(src), "-o", str(out), "--model", models["plain"], "--recursive"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "a.png", os.path.join("sub", "b.jpg"), os.path.join("sub", "deeper", "c.webp")]
    assert Image.open(out / "sub" / "deeper" / "c.webp").size == (14, 16)
    out = tmp_path / "flat"  # without --recursive: the folder itself only
    assert demo.main(["-i", str(src), "-o", str(out), "--model", models["plain"]]) == 0
    assert [p.name for p in out.iterdir()] == ["a.png"]
    # a glob: layout under its fixed part; a non-image it matched is one line and exit status 2
    out = tmp_path / "glob"
    status, err = _run_cli(capsys, "-i", str(src / "**" / "*"), "-o", out, "--model", models["plain"],
                           "--suffix", "_x2", "--ext", "png", "--outscale", "1.5")
    assert status == 2 and "notes.txt" in err and "Traceback" not in err
    assert Image.open(out / "sub" / "b_x2.png").size == (round(1.5 * 11), round(1.5 * 9))  # 16 x 14 (13.5 -> 14)
    assert Image.open(out / "a_x2.png").size == (18, 15)
    # --skip-existing leaves a finished output alone, and does the rest
    before = (out / "a_x2.png").stat().st_mtime_ns
    (out / "sub" / "b_x2.png").unlink()
    status, err = _run_cli(capsys, "-i", str(src / "**" / "*"), "-o", out, "--model", models["plain"],
                           "--suffix", "_x2", "--ext", "png", "--outscale", "1.5", "--skip-existing")
    assert (out / "a_x2.png").stat().st_mtime_ns == before and (out / "sub" / "b_x2.png").exists()
    # jpg at a quality, and -o naming the output file of one input
    assert demo.main(["-i", str(src / "a.png"), "-o", str(tmp_path / "one.jpg"), "--model", models["plain"],
                      "--quality", "50"]) == 0
    assert cv2.imread(str(tmp_path / "one.jpg")).shape == (20, 24, 3)
    assert not [p for p in tmp_path.rglob(".*tmp*")]  # atomic writes leave no temporary file


def test_keep_grey_and_alpha_through_the_model(models, tmp_path):
    """--keep-grey: grey in, grey out (the model's RGB output in OpenCV's grey weights); --alpha-mode model runs
    a non-flat alpha through the network as grey (as Real-ESRGAN does) and leaves a flat one exactly flat."""
    import cv2

    from evaluation import inference
    import metrics

    rng = np.random.default_rng(4)
    src = tmp_path / "in"
    src.mkdir()
    grey = smooth_image(rng, 12, 10)[..., 0]
    Image.fromarray(grey).save(src / "g.png")
    rgba = np.concatenate([smooth_image(rng, 12, 10), smooth_image(rng, 12, 10)[..., :1]], -1)
    Image.fromarray(rgba, "RGBA").save(src / "r.png")
    flat = rgba.copy()
    flat[..., 3] = 77
    Image.fromarray(flat, "RGBA").save(src / "f.png")
    out = tmp_path / "out"
    assert demo.main(["-i", str(src), "-o", str(out), "--model", models["plain"], "--keep-grey",
                      "--alpha-mode", "model"]) == 0
    net = upscale.load_sr_model(models["plain"])
    g = Image.open(out / "g.png")
    assert g.mode == "L" and g.size == (20, 24)
    expect = cv2.cvtColor(metrics.quantize(inference.super_resolve(net, grey)), cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(np.asarray(g), expect)
    alpha = np.asarray(Image.open(out / "r.png"))[..., 3]
    a_ref = cv2.cvtColor(metrics.quantize(inference.super_resolve(net, rgba[..., 3])), cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(alpha, a_ref)
    assert not np.array_equal(alpha, upscale.upscale_alpha(rgba[..., 3], 2, alpha.shape))  # not the bicubic one
    np.testing.assert_array_equal(np.asarray(Image.open(out / "f.png"))[..., 3], 77)


def test_interrupted_folder_resumes_with_skip_existing(models, tmp_path, monkeypatch):
    """Ctrl-C in the middle of a folder leaves finished images only (no partial file, no temporary);
    --skip-existing then does the rest and leaves the finished ones alone."""
    rng = np.random.default_rng(5)
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(smooth_image(rng, 10, 12)).save(src / f"{name}.png")
    out = tmp_path / "out"
    real, calls = upscale.Upscaler.__call__, []

    def interrupted(self, img):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, img)

    monkeypatch.setattr(upscale.Upscaler, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.main(["-i", str(src), "-o", str(out), "--model", models["plain"]])
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    done = (out / "a.png").stat().st_mtime_ns
    monkeypatch.setattr(upscale.Upscaler, "__call__", real)
    assert demo.main(["-i", str(src), "-o", str(out), "--model", models["plain"], "--skip-existing"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    assert (out / "a.png").stat().st_mtime_ns == done
