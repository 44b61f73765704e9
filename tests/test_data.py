"""data.py: image reading in every mode, dataset layouts and errors, the patch loader."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import data
import imaging
from conftest import jax_env, smooth_image
from degradations.transforms import BicubicTransform, hr_patch_of, make_transform
from utils import UserError


# ---------------------------------------------------------------------------------------------- read_image


def _rgb(h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_rgb_png_and_npy_roundtrip(tmp_path):
    img = _rgb()
    imaging.write_image(tmp_path / "sub" / "a.png", img)  # creates the folder
    assert np.array_equal(imaging.read_image(tmp_path / "sub" / "a.png"), img)
    np.save(tmp_path / "a.npy", img)
    out = imaging.read_image(tmp_path / "a.npy")
    assert out.dtype == np.uint8 and np.array_equal(out, img)
    assert not [f for f in os.listdir(tmp_path / "sub") if f.startswith(".")]  # no temp files left


def test_read_grey(tmp_path, capsys):
    g = _rgb()[:, :, 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    out = imaging.read_image(tmp_path / "g.png")
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8 and all(np.array_equal(out[:, :, c], g) for c in range(3))
    err = capsys.readouterr().err
    assert "g.png" in err and "grey" in err and err.count("\n") == 1
    assert np.array_equal(imaging.read_image(tmp_path / "g.png", keep_grey=True), g)


def test_read_rgba_drops_alpha(tmp_path, capsys):
    img = _rgb()
    rgba = np.concatenate([img, np.full((6, 5, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(imaging.read_image(tmp_path / "a.png"), img)
    assert "alpha" in capsys.readouterr().err
    Image.fromarray(rgba[:, :, [0, 3]], "LA").save(tmp_path / "la.png")
    assert imaging.read_image(tmp_path / "la.png").shape == (6, 5, 3)


def test_read_palette(tmp_path, capsys):
    img = _rgb()
    p = Image.fromarray(img).quantize(colors=16)
    p.save(tmp_path / "p.png")
    out = imaging.read_image(tmp_path / "p.png")
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.asarray(p.convert("RGB")))
    assert "palette" in capsys.readouterr().err


def test_read_16bit_grey(tmp_path, capsys):
    a = np.array([[0, 65535, 32768, 257, 128]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    out = imaging.read_image(tmp_path / "g16.png")
    assert out.shape == (1, 5, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 255, 128, 1, 0]  # 65535 -> 255 with rounding
    assert "16-bit" in capsys.readouterr().err
    assert imaging.read_image(tmp_path / "g16.png", keep_grey=True).shape == (1, 5)


def test_read_cmyk_jpeg(tmp_path, capsys):
    Image.fromarray(_rgb(16, 16)).convert("CMYK").save(tmp_path / "c.jpg")
    out = imaging.read_image(tmp_path / "c.jpg")
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert "CMYK" in capsys.readouterr().err


def test_read_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(UserError, match="bad.png"):
        imaging.read_image(bad)
    truncated = tmp_path / "trunc.png"
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "ok.png")
    truncated.write_bytes((tmp_path / "ok.png").read_bytes()[:300])
    with pytest.raises(UserError, match="trunc.png"):
        imaging.read_image(truncated)
    with pytest.raises(UserError, match="missing.png"):
        imaging.read_image(tmp_path / "missing.png")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.npy"):
        imaging.read_image(tmp_path / "junk.npy")


def test_read_keep_alpha_and_depth(tmp_path, capsys):
    """keep_alpha: RGBA/LA/palette transparency -> HxWx4; keep_depth: 16-bit PNG samples kept (as OpenCV reads)."""
    import cv2

    img = _rgb()
    rgba = np.concatenate([img, np.full((6, 5, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(imaging.read_image(tmp_path / "a.png", keep_alpha=True), rgba)
    Image.fromarray(rgba[:, :, [0, 3]], "LA").save(tmp_path / "la.png")
    la = imaging.read_image(tmp_path / "la.png", keep_alpha=True)
    assert np.array_equal(la, np.dstack([np.repeat(img[:, :, :1], 3, 2), rgba[:, :, 3:]]))
    p = Image.fromarray(img).quantize(colors=16)
    p.info["transparency"] = 0
    p.save(tmp_path / "pt.png", transparency=0)
    with Image.open(tmp_path / "pt.png") as im:
        ref = np.asarray(im.convert("RGBA"))
    assert np.array_equal(imaging.read_image(tmp_path / "pt.png", keep_alpha=True), ref) and ref[..., 3].min() == 0
    assert imaging.read_image(tmp_path / "pt.png").shape == (6, 5, 3)  # default unchanged
    # no alpha: keep_alpha changes nothing
    Image.fromarray(img).save(tmp_path / "rgb.png")
    assert np.array_equal(imaging.read_image(tmp_path / "rgb.png", keep_alpha=True, keep_depth=True), img)
    capsys.readouterr()
    rng = np.random.default_rng(3)
    deep = rng.integers(0, 65536, (6, 5, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d16.png"), deep)  # BGRA on disk
    out = imaging.read_image(tmp_path / "d16.png", keep_alpha=True, keep_depth=True)
    assert out.dtype == np.uint16 and np.array_equal(out, deep[..., [2, 1, 0, 3]])
    out = imaging.read_image(tmp_path / "d16.png", keep_depth=True)
    assert out.dtype == np.uint16 and np.array_equal(out, deep[..., 2::-1]) and "alpha" in capsys.readouterr().err
    out = imaging.read_image(tmp_path / "d16.png", keep_alpha=True)  # Pillow's 8 bit (high byte), with alpha
    assert out.dtype == np.uint8 and np.array_equal(out, (deep[..., [2, 1, 0, 3]] >> 8).astype(np.uint8))
    err = capsys.readouterr().err
    assert "16-bit" in err and len(err.strip().splitlines()) == 1
    g16 = np.array([[0, 65535, 32768, 257, 129]], dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert np.array_equal(imaging.read_image(tmp_path / "g16.png", keep_depth=True), np.repeat(g16[..., None], 3, 2))
    assert np.array_equal(imaging.read_image(tmp_path / "g16.png", keep_depth=True, keep_grey=True), g16)
    assert "16-bit" not in capsys.readouterr().err  # kept, not reduced
    np.save(tmp_path / "d16.npy", deep)
    assert np.array_equal(imaging.read_image(tmp_path / "d16.npy", keep_alpha=True, keep_depth=True), deep)
    assert imaging.read_image(tmp_path / "d16.npy").shape == (6, 5, 3)


# ---------------------------------------------------------------------------------------------- open_pairs


def test_open_pairs_div2k_png(tiny_div2k):
    pairs = data.open_pairs(tiny_div2k, 2, subset="train")
    assert [p.stem for p in pairs] == ["0001", "0002", "0003", "0004"]
    stem, lr, hr = pairs[0]  # plain tuple unpacking works
    assert lr.endswith(os.path.join("DIV2K_train_LR_bicubic", "X2", "0001x2.png"))
    assert hr.endswith(os.path.join("DIV2K_train_HR", "0001.png"))
    assert [p.stem for p in data.open_pairs(tiny_div2k, 3)] == ["0801", "0802"]  # valid by default
    assert [p.stem for p in data.open_pairs(tiny_div2k, 4, "train", images="2-3,9")] == ["0002", "0003"]
    lr_img, hr_img = data.load_pair(pairs[0], scale=2)
    assert lr_img.shape == (48, 60, 3) and hr_img.shape == (96, 120, 3)


def test_open_pairs_npy_tree_reads_identically(tiny_div2k, tmp_path):
    import convert

    out = tmp_path / "bin"
    convert.main(["-i", str(tiny_div2k), "-o", str(out), "--workers", "1", "numpy"])
    png = data.open_pairs(tiny_div2k, 2, "train")
    npy = data.open_pairs(out, 2, "train")
    assert [p.stem for p in npy] == [p.stem for p in png]
    assert npy[0].lr.endswith("0001x2.npy")
    for a, b in zip(png, npy):
        for x, y in zip(data.load_pair(a), data.load_pair(b)):
            assert np.array_equal(x, y)


def test_open_pairs_ntire_tracks(tmp_path):
    root = tmp_path / "d"
    img = _rgb(16, 16)
    imaging.write_image(root / "DIV2K_train_HR" / "0001.png", img)
    imaging.write_image(root / "DIV2K_train_HR" / "0002.png", img)
    imaging.write_image(root / "DIV2K_train_LR_x8" / "0001x8.png", img[:2, :2])
    imaging.write_image(root / "DIV2K_train_LR_x8" / "0002x8.png", img[:2, :2])
    imaging.write_image(root / "DIV2K_train_LR_mild" / "0001x4m.png", img[:4, :4])
    for k in (1, 2, 3, 4):
        imaging.write_image(root / "DIV2K_train_LR_wild" / f"0001x4w{k}.png", img[:4, :4])
    assert len(data.open_pairs(root, 8, "train")) == 2  # bicubic x8 -> LR_x8
    assert data.open_pairs(root, 4, "train", "mild", images="1")[0].lr.endswith("0001x4m.png")
    assert len(data.open_pairs(root, 4, "train", "wild", images="1")) == 4
    with pytest.raises(UserError, match="0002x4m"):
        data.open_pairs(root, 4, "train", "mild")
    with pytest.raises(UserError, match="--scale 4"):
        data.open_pairs(root, 2, "train", "mild")


def test_open_pairs_benchmark_with_and_without_lr(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "Bench"
    hrs = {"b": smooth_image(rng, 50, 61), "a": smooth_image(rng, 40, 40)}
    for stem, hr in hrs.items():
        imaging.write_image(root / "HR" / f"{stem}.png", hr)
    # without LR: made on the fly by imresize from the modcropped HR
    pairs = data.open_pairs(root, 3)
    assert [p.stem for p in pairs] == ["a", "b"]
    assert isinstance(pairs[1].lr, np.ndarray)
    assert np.array_equal(pairs[1].lr, imaging.imresize(hrs["b"][:48, :60], scale=1 / 3))
    lr, hr = data.load_pair(pairs[1], scale=3)
    assert lr.shape == (16, 20, 3) and hr.shape == (48, 60, 3)
    assert [p.stem for p in data.open_pairs(root, 3, images="2")] == ["b"]
    # with LR files
    for stem, hr in hrs.items():
        imaging.write_image(root / "LR_bicubic" / "X2" / f"{stem}x2.png", imaging.resize.bicubic_downscale(hr, 2))
    pairs = data.open_pairs(root, 2)
    assert pairs[0].lr.endswith(os.path.join("LR_bicubic", "X2", "ax2.png"))
    os.remove(root / "LR_bicubic" / "X2" / "bx2.png")
    with pytest.raises(UserError, match="bx2.png"):
        data.open_pairs(root, 2)


def test_open_pairs_benchmark_shared_set5(shared_dir):
    pairs = data.open_pairs(shared_dir / "datasets" / "Set5", 4)
    assert [p.stem for p in pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    grey = data.open_pairs(shared_dir / "datasets" / "Set14", 3, images="3")[0]
    lr, hr = data.load_pair(grey, 3, keep_grey=True)
    assert grey.stem == "bridge" and lr.ndim == 2 and hr.ndim == 2


def test_open_pairs_errors(tiny_div2k, tmp_path):
    with pytest.raises(UserError, match=r"nowhere.*convert\.py -i \./DIV2K -o .* numpy"):
        data.open_pairs(tmp_path / "nowhere", 2)
    (tmp_path / "other" / "stuff").mkdir(parents=True)
    with pytest.raises(UserError, match="expected DIV2K_"):
        data.open_pairs(tmp_path / "other", 2)
    with pytest.raises(UserError, match="LR_unknown"):
        data.open_pairs(tiny_div2k, 2, downgrade="unknown")
    with pytest.raises(UserError, match="jpeg_90.*--jpeg-quality 90 jpeg"):
        data.open_pairs(tiny_div2k, 2, downgrade="bicubic_jpeg_90")
    with pytest.raises(UserError, match="no images selected"):
        data.open_pairs(tiny_div2k, 2, "train", images="100-200")
    root = tmp_path / "partial"
    shutil.copytree(tiny_div2k, root)
    os.remove(root / "DIV2K_train_LR_bicubic" / "X4" / "0003x4.png")
    with pytest.raises(UserError, match="0003x4.png"):
        data.open_pairs(root, 4, "train")
    assert len(data.open_pairs(root, 4, "train", images="1-2")) == 2


# ---------------------------------------------------------------------------------------------- PatchDataset


@pytest.fixture(scope="module")
def exact_div2k(tmp_path_factory):
    """DIV2K PNG tree whose LR images are made by imaging.imresize (so patches can be checked exactly)."""
    root = tmp_path_factory.mktemp("exact")
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(120, 144), (96, 132)], start=1):
        hr = smooth_image(rng, h, w)
        imaging.write_image(root / "DIV2K_train_HR" / f"{i:04d}.png", hr)
        for s in (2, 3):
            imaging.write_image(root / "DIV2K_train_LR_bicubic" / f"X{s}" / f"{i:04d}x{s}.png", imaging.resize.bicubic_downscale(hr, s))
    return root


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("scale", [2, 3])
def test_patches_aligned(exact_div2k, augment, scale):
    pairs = data.open_pairs(exact_div2k, scale, "train")
    ds = data.PatchDataset(pairs, scale, batch_size=8, lr_patch=16, augment=augment, seed=1)
    lr, hr = ds[0]
    assert lr.shape == (8, 16, 16, 3) and hr.shape == (8, 16 * scale, 16 * scale, 3)
    assert lr.dtype == np.float32 and hr.dtype == np.float32
    m = 3  # the bicubic kernel of a patch border sees pixels outside the patch: compare the interior
    for k in range(8):
        down = imaging.imresize(hr[k].astype(np.uint8), scale=1 / scale).astype(np.float32)
        diff = np.abs(down - lr[k])[m:-m, m:-m]
        # without augmentation exact; rot90 swaps the order of MATLAB's two rounded passes (1 level)
        assert diff.max() <= (1 if augment else 0), (k, diff.max())
        shifted = np.abs(np.roll(down, 1, axis=0) - lr[k])[m:-m, m:-m]
        assert shifted.mean() > diff.mean() + 1  # a one-pixel misalignment would be visible


def test_patches_deterministic(exact_div2k):
    pairs = data.open_pairs(exact_div2k, 2, "train")
    a = data.PatchDataset(pairs, 2, batch_size=4, lr_patch=12, seed=5, steps=3)
    b = data.PatchDataset(pairs, 2, batch_size=4, lr_patch=12, seed=5, steps=3, workers=2)
    assert len(a) == 3
    for i in (2, 0, 1):  # order does not matter
        assert all(np.array_equal(x, y) for x, y in zip(a[i], b[i]))
    c = data.PatchDataset(pairs, 2, batch_size=4, lr_patch=12, seed=6, steps=3)
    assert not np.array_equal(a[0][0], c[0][0])
    first = a[0][0]
    a.on_epoch_end()  # a new epoch gives new crops ...
    assert not np.array_equal(first, a[0][0])
    v = data.PatchDataset(pairs, 2, batch_size=4, lr_patch=12, seed=5, steps=3, fixed=True, augment=False)
    first = v[1][1]
    v.on_epoch_end()  # ... except for validation crops (fixed=True)
    assert np.array_equal(first, v[1][1])
    assert data.PatchDataset(pairs, 2, batch_size=4, hr_patch=24).lr_patch == 12


def test_patches_npy_memmap_and_errors(tiny_div2k, tmp_path):
    import convert

    out = tmp_path / "bin"
    convert.main(["-i", str(tiny_div2k / "DIV2K_valid_HR"), "-o", str(out / "DIV2K_valid_HR"), "--workers", "1", "numpy"])
    convert.main(["-i", str(tiny_div2k / "DIV2K_valid_LR_bicubic"), "-o", str(out / "DIV2K_valid_LR_bicubic"),
                  "--workers", "1", "numpy"])
    png = data.PatchDataset(data.open_pairs(tiny_div2k, 2), 2, batch_size=4, lr_patch=20, seed=2)
    npy = data.PatchDataset(data.open_pairs(out, 2), 2, batch_size=4, lr_patch=20, seed=2)
    assert npy.lr_src[0].array is None  # memory-mapped, not loaded
    assert all(np.array_equal(x, y) for x, y in zip(png[0], npy[0]))
    with pytest.raises(UserError, match="smaller than the 64px patch"):
        data.PatchDataset(data.open_pairs(tiny_div2k, 2), 2, lr_patch=64)


def test_patches_with_keras_fit_iterator(exact_div2k):
    """Through Keras' own adapter with worker processes: same batches as direct indexing."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    pairs = data.open_pairs(exact_div2k, 2, "train")
    ds = data.PatchDataset(pairs, 2, batch_size=2, lr_patch=12, seed=9, steps=4, workers=2, use_multiprocessing=True)
    adapter = PyDatasetAdapter(ds, shuffle=False)
    adapter.on_epoch_begin()
    got = [b for b in adapter.get_numpy_iterator()]
    adapter.on_epoch_end()
    ref = data.PatchDataset(pairs, 2, batch_size=2, lr_patch=12, seed=9, steps=4)
    assert len(got) == 4
    for i, (lr, hr) in enumerate(got):
        assert np.array_equal(lr, ref[i][0]) and np.array_equal(hr, ref[i][1])


def test_validation_crops_fixed_and_aligned(exact_div2k):
    pairs = data.open_pairs(exact_div2k, 2, "train")
    crops = data.validation_crops(pairs, 2, count=5, lr_patch=16, seed=3)
    again = data.validation_crops(pairs, 2, count=5, lr_patch=16, seed=3)
    assert [c.stem for c in crops] == ["0001_c0", "0002_c1", "0001_c2", "0002_c3", "0001_c4"]
    for c, d in zip(crops, again):
        assert c.lr.dtype == np.uint8 and c.lr.shape == (16, 16, 3) and c.hr.shape == (32, 32, 3)
        assert np.array_equal(c.lr, d.lr) and np.array_equal(c.hr, d.hr)
        assert np.array_equal(imaging.imresize(c.hr, scale=0.5)[3:-3, 3:-3], c.lr[3:-3, 3:-3])
    assert len(data.validation_crops(pairs, 2, lr_patch=16)) == 2


def test_patch_dataset_on_jax_backend(tiny_div2k, repo_root):
    """numpy-only loader: a tiny fit() on the JAX backend consumes it (subprocess: one backend per process)."""
    import subprocess
    import sys

    code = (
        "import keras, data, numpy as np\n"
        "assert keras.backend.backend() == 'jax'\n"
        f"pairs = data.open_pairs({str(tiny_div2k)!r}, 2, 'train')\n"
        "ds = data.PatchDataset(pairs, 2, batch_size=2, lr_patch=8, steps=2, workers=2)\n"
        "inp = keras.Input((None, None, 3))\n"
        "model = keras.Model(inp, keras.layers.UpSampling2D(2)(keras.layers.Conv2D(3, 3, padding='same')(inp)))\n"
        "model.compile('adam', 'mae')\n"
        "hist = model.fit(ds, epochs=2, verbose=0)\n"
        "assert len(hist.history['loss']) == 2 and ds.epoch >= 2  # Keras calls on_epoch_end per epoch\n"
        "print('ok')\n")
    env = jax_env(repo_root)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=repo_root,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


# ---------------------------------------------------------------------- HR-only datasets, transforms, sharding


def test_imaging_is_the_one_reader_and_data_does_not_reexport_it():
    import imaging

    for name in ("read_image", "write_image", "imresize", "IMAGE_EXTS", "READABLE_EXTS"):
        assert not hasattr(data, name), name  # one import path: imaging
    assert ".png" in imaging.IMAGE_EXTS and ".npy" in imaging.READABLE_EXTS


def test_very_large_image_is_one_warning_line_of_ours(tmp_path, monkeypatch, capsys):
    import warnings

    img = _rgb(40, 30)
    Image.fromarray(img).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 px: over the bomb limit, under twice it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = imaging.read_image(tmp_path / "big.png")
    assert np.array_equal(out, img)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "big.png" in lines[0] and "30x40" in lines[0]


def test_open_hr_images_layouts(tmp_path, tiny_div2k):
    folder = tmp_path / "photos"
    for k in range(3):
        imaging.write_image(folder / f"p{k}.png", _rgb(20, 20, k))
    (folder / "notes.txt").write_text("not an image")
    assert [os.path.basename(p) for p in data.open_hr_images(folder)] == ["p0.png", "p1.png", "p2.png"]
    assert [os.path.basename(p) for p in data.open_hr_images(folder, images="2-3")] == ["p1.png", "p2.png"]
    div2k = data.open_hr_images(tiny_div2k, subset="train", images="2-3")
    assert [os.path.basename(p) for p in div2k] == ["0002.png", "0003.png"]
    with pytest.raises(UserError, match="is a file"):
        data.open_hr_images(folder / "p0.png")
    with pytest.raises(UserError, match="no images"):
        data.open_hr_images(_empty(tmp_path))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_hr_patches_make_lr_by_the_transform_per_sample(tmp_path):
    hrs = [smooth_image(np.random.default_rng(k), 40, 48) for k in range(3)]
    for k, hr in enumerate(hrs):
        imaging.write_image(tmp_path / f"{k}.png", hr)
    paths = data.open_hr_images(tmp_path)
    ds = data.HRPatches(paths, 2, BicubicTransform(2), batch_size=4, lr_patch=8, seed=3)
    b = ds.batch(0, 1)
    assert b["lr"].shape == (4, 8, 8, 3) and b["hr"].shape == (4, 16, 16, 3) and b["lr"].dtype == np.float32
    for k in range(4):  # exactly MATLAB bicubic of the (augmented) HR crop
        np.testing.assert_array_equal(b["lr"][k], imaging.imresize(b["hr"][k].astype(np.uint8), scale=0.5))
    # per sample: (seed, epoch, index) alone decide it, whichever batch or process asks
    again = data.HRPatches(paths, 2, BicubicTransform(2), batch_size=4, lr_patch=8, seed=3)
    np.testing.assert_array_equal(again.sample(0, 5)["hr"], b["hr"][1])
    assert not np.array_equal(ds.batch(1, 1)["hr"], b["hr"])  # another epoch, other crops

    seen = []

    def noisy(hr, rng):  # a transform that draws from the sample's generator (as the degradation pipeline does)
        seen.append(rng)
        lr = imaging.imresize(hr, scale=0.5).astype(np.float32) + rng.normal(0, 1, (hr.shape[0] // 2,) * 2 + (3,))
        return {"lr": lr, "hr": hr, "hr_usm": hr}

    ds = data.HRPatches(paths, 2, noisy, batch_size=2, lr_patch=8, seed=3)
    a, c = ds.batch(2, 0), ds.batch(2, 0)
    assert set(a) == {"lr", "hr", "hr_usm"} and np.array_equal(a["lr"], c["lr"])
    assert all(isinstance(r, np.random.Generator) for r in seen)


def test_realesrgan_recipe_hands_whole_patches_and_pads_small_images(tmp_path):
    """make_transform's crop path (--realesrgan-crop): the degradation dict reaches the pipeline, HRPatches hands
    over crop_pad_size patches (an image smaller than that whole, for the transform to pad) without augmenting,
    and the transform's paired crop is the batch (GT scale x lr_patch, LR lr_patch)."""
    for k, (h, w) in enumerate([(64, 80), (30, 40)]):
        imaging.write_image(tmp_path / f"{k}.png", smooth_image(np.random.default_rng(k), h, w))
    paths = data.open_hr_images(tmp_path)
    config = {"degradation": {"final_sinc_prob": 0.0, "jpeg_range": [60, 95]}, "realesrgan_crop": 48, "lr_patch": 8}
    t = make_transform("realesrgan", 2, config)
    assert t.crop and t.gt_size == 16 and t.scale == 2 and hr_patch_of(t) == 48
    assert t.config["final_sinc_prob"] == 0.0 and t.config["jpeg_range"] == [60, 95] and t.config["crop_pad_size"] == 48
    approx = make_transform("realesrgan", 2, dict(config, realesrgan_crop=0))
    assert not approx.crop and hr_patch_of(approx) is None and approx.config["final_sinc_prob"] == 0.0
    with pytest.raises(UserError, match="unknown degradation option"):
        make_transform("realesrgan", 2, {"degradation": {"nosuch": 1}})

    seen = []

    def recording(hr, rng):
        seen.append(hr.shape)
        return t(hr, rng)

    with pytest.raises(UserError, match="smaller than"):
        data.HRPatches(paths, 2, recording, hr_patch=48, augment=False)
    ds = data.HRPatches(paths, 2, recording, batch_size=6, hr_patch=hr_patch_of(t), augment=False, seed=1,
                        smaller_ok=True)
    b = ds.batch(0, 0)
    assert b["lr"].shape == (6, 8, 8, 3) and b["hr"].shape == b["hr_usm"].shape == (6, 16, 16, 3)
    assert set(seen) == {(48, 48, 3), (30, 40, 3)}  # 400-style patches of the big image, the small one whole
    np.testing.assert_array_equal(ds.batch(0, 0)["lr"], b["lr"])  # per-sample generators: repeatable


def test_shard_indices_are_disjoint_and_complete():
    pairs = [data.Pair("a", np.zeros((12, 12, 3), np.uint8), np.zeros((24, 24, 3), np.uint8))]
    ds = data.Patches(pairs, 2, batch_size=8, lr_patch=4, steps=3)
    for count in (1, 2, 4, 8):
        shares = [ds.epoch_indices(0, p, count) for p in range(count)]
        flat = sorted(i for s in shares for i in s)
        assert flat == list(range(24)) and sum(map(len, shares)) == 24
        full = ds.batch(0, 1)
        parts = [ds.batch(0, 1, p, count) for p in range(count)]
        np.testing.assert_array_equal(np.concatenate([q["hr"] for q in parts]), full["hr"])
    np.testing.assert_array_equal(ds.sample(0, 9)["lr"], ds.batch(0, 1)["lr"][1])  # sample 9 = batch 1, slot 1
    with pytest.raises(UserError, match="divisible by 3"):
        ds.batch_indices(0, 0, 3)
