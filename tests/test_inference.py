"""inference.super_resolve: tiling equals full-image output, self-ensemble, log-variance combination."""
import numpy as np
import pytest

import keras

from evaluation import inference
from conftest import jax_env, smooth_image


def conv_model(scale=2, depth=3, filters=8, out_channels=3, seed=0):
    """Small plain conv net (receptive field radius `depth` LR pixels + 1 HR pixel)."""
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((None, None, 3))
    h = keras.layers.Rescaling(1 / 255.0)(x)
    for _ in range(depth):
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", bias_initializer="ones")(h)
    h = keras.layers.UpSampling2D(scale)(h)
    out = keras.layers.Conv2D(out_channels, 3, padding="same")(h)
    out = keras.layers.Rescaling(255.0)(out)
    return keras.Model(inp, out)


def edsr_like(scale=2, filters=8, blocks=2, seed=1):
    """EDSR-shaped stand-in: head conv, residual blocks, global skip, upsampler, tail conv."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = b = keras.layers.Conv2D(filters, 3, padding="same")(x)
    for _ in range(blocks):
        r = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(b)
        r = keras.layers.Conv2D(filters, 3, padding="same")(r)
        b = keras.layers.Add()([b, keras.layers.Rescaling(0.1)(r)])
    x = keras.layers.Add()([x, keras.layers.Conv2D(filters, 3, padding="same")(b)])
    x = keras.layers.Conv2D(filters, 3, padding="same")(keras.layers.UpSampling2D(scale)(x))
    x = keras.layers.Conv2D(3, 3, padding="same")(x)
    return keras.Model(inp, keras.layers.Rescaling(127.5, offset=127.5)(x))


def pointwise_model(scale=2, out_channels=3, seed=2):
    """1x1 convs + nearest upsampling: equivariant to flips and transposes by construction."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 1, activation="tanh")(keras.layers.Rescaling(1 / 255.0)(inp))
    x = keras.layers.UpSampling2D(scale)(x)
    return keras.Model(inp, keras.layers.Rescaling(255.0)(keras.layers.Conv2D(out_channels, 1)(x)))


@pytest.fixture(scope="module")
def image300():
    return smooth_image(np.random.default_rng(3), 300, 300)


@pytest.mark.parametrize("make", [conv_model, edsr_like], ids=["conv", "edsr-like"])
def test_tiled_equals_full(make, image300):
    model = make()
    full = inference.super_resolve(model, image300)
    assert full.shape == (600, 600, 3) and full.dtype == np.float32
    for jit in (False, True):
        tiled = inference.super_resolve(model, image300, tile=64, tile_overlap=12, jit=jit)
        assert tiled.shape == full.shape
        # receptive field radius < 12 LR pixels: equal up to float rounding (the spec asks for < 1 grey level)
        assert np.abs(tiled - full).max() < 1e-2, jit


def test_tiles_compile_once(image300):
    """All tiles of an image share one shape and fixed-size batches (one compile per image size); a tile at
    least as large as the image is the image (issue 22: the minimal plan replaced fixed 48x48 padded tiles)."""
    model = conv_model()
    calls = []
    predict = inference._predictor(model, True)
    inference._cache(model)["jit"] = lambda x: (calls.append(x.shape), predict(x))[1]
    inference.super_resolve(model, image300[:97, :131], tile=48, tile_overlap=8, jit=True)
    assert calls == [(4, 43, 45, 3)] * 3  # 3 x 4 tiles of 43x45 (<= 48), 4 per call
    inference.super_resolve(model, image300[:97, :131], tile=48, tile_overlap=8, jit=True, tile_batch=5)
    assert calls[3:] == [(4, 43, 45, 3)] * 3  # at most 5 per call: 3 equal calls of 4, none zero-filled
    inference.super_resolve(model, image300[:20, :33], tile=48, tile_overlap=8, jit=True)
    assert calls[6:] == [(1, 20, 33, 3)]


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (65, 17), (1, 9)])
def test_odd_sizes_and_tile_larger_than_image(shape):
    model = conv_model(scale=3, depth=2)
    img = smooth_image(np.random.default_rng(0), 80, 80)[: shape[0], : shape[1]]
    full = inference.super_resolve(model, img)
    tiled = inference.super_resolve(model, img, tile=64, tile_overlap=4)
    assert full.shape == tiled.shape == (3 * shape[0], 3 * shape[1], 3)
    # a tile larger than the image is reflect-padded: only the padded edge's receptive field may differ
    inner = np.abs(tiled - full)[: 3 * shape[0] - 12, : 3 * shape[1] - 12]
    assert inner.size == 0 or inner.max() < 1.0


def test_bad_tile_overlap():
    from utils import UserError

    with pytest.raises(UserError, match="overlap"):
        inference.super_resolve(conv_model(), np.zeros((8, 8, 3), np.uint8), tile=32, tile_overlap=16)


def test_scale_argument_and_probe():
    model = conv_model(scale=3, depth=1)
    assert inference.resolve_scale(model) == 3
    assert inference.resolve_scale(model, 3) == 3
    # a plain callable works too (e.g. bicubic baselines)
    sr = inference.super_resolve(lambda x: np.repeat(np.repeat(x, 2, 1), 2, 2), np.ones((5, 7, 3)), scale=2)
    assert sr.shape == (10, 14, 3)


def test_self_ensemble_equivariant_model_equals_plain():
    model = pointwise_model()
    img = smooth_image(np.random.default_rng(1), 23, 31)
    plain = inference.super_resolve(model, img)
    ens = inference.super_resolve(model, img, self_ensemble=True)
    np.testing.assert_allclose(ens, plain, atol=1e-3)
    tiled_ens = inference.super_resolve(model, img, self_ensemble=True, tile=16, tile_overlap=2)
    np.testing.assert_allclose(tiled_ens, plain, atol=1e-3)


def test_self_ensemble_generic_model_differs():
    model = edsr_like()
    img = smooth_image(np.random.default_rng(2), 21, 30)
    plain = inference.super_resolve(model, img)
    ens = inference.super_resolve(model, img, self_ensemble=True)
    assert ens.shape == plain.shape == (42, 60, 3)
    assert np.abs(ens - plain).max() > 1e-3


def test_transforms_invert():
    img = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    seen = set()
    for k, flip in inference.TRANSFORMS:
        t = inference._transform(img, k, flip)
        seen.add(t.tobytes() + bytes(t.shape))
        np.testing.assert_array_equal(inference._inverse(t, k, flip), img)
    assert len(seen) == 8


def test_logvar_total_variance():
    # two members per pixel, unit u = 127.5: sigma_k^2 = u^2 exp(s_k)
    u = inference.LOGVAR_UNIT
    mu = [np.full((1, 1, 3), 100.0), np.full((1, 1, 3), 110.0)]
    s = [np.full((1, 1, 3), np.log(4.0 / u**2)), np.full((1, 1, 3), np.log(16.0 / u**2))]
    out = inference.combine_ensemble([np.concatenate([m, v], -1) for m, v in zip(mu, s)])
    np.testing.assert_allclose(out[..., :3], 105.0)
    # mean of variances (4+16)/2 = 10, variance of means 25 -> 35 grey levels^2
    np.testing.assert_allclose(u**2 * np.exp(out[..., 3:]), 35.0, rtol=1e-5)
    np.testing.assert_allclose(inference.logvar_to_std(out[..., 3:]), np.sqrt(35.0), rtol=1e-5)


def test_logvar_model_ensemble_shapes():
    model = pointwise_model(out_channels=6)
    img = smooth_image(np.random.default_rng(4), 12, 10)
    plain = inference.super_resolve(model, img)
    ens = inference.super_resolve(model, img, self_ensemble=True)
    assert plain.shape == ens.shape == (24, 20, 6)
    # equivariant model: members agree, so the combined log-variance equals each member's (s clipped to
    # [-10, 10] as the loss does)
    np.testing.assert_allclose(ens[..., :3], plain[..., :3], atol=1e-3)
    np.testing.assert_allclose(ens[..., 3:], np.clip(plain[..., 3:], -10, 10), atol=1e-4)


def test_jax_backend_tiles_jit_and_buckets(repo_root):
    """JAX: jitted fixed-shape tiles and bucketed full images equal the eager (unpadded) run, and a set of
    images compiles once per bucket shape, not once per image."""
    import subprocess
    import sys

    code = """
import numpy as np, keras
from evaluation import inference
from test_inference import edsr_like
from conftest import smooth_image
assert keras.backend.backend() == "jax"
m = edsr_like()
rng = np.random.default_rng(0)
img = smooth_image(rng, 70, 90)
eager = inference.super_resolve(m, img, jit=False)
tiled = inference.super_resolve(m, img, tile=32, tile_overlap=10, jit=True)
assert eager.shape == tiled.shape == (140, 180, 3), (eager.shape, tiled.shape)
print("tiles", float(np.abs(eager - tiled).max()))
n0 = inference.trace_count(m)
diffs = []
for h, w in [(70, 90), (66, 81), (64, 96), (93, 70)]:
    im = smooth_image(rng, h, w)
    diffs.append(float(np.abs(inference.super_resolve(m, im) - inference.super_resolve(m, im, jit=False)).max()))
print("bucket", max(diffs))
print("traces", inference.trace_count(m) - n0, sorted(set(inference._cache(m)["traces"][n0:])))
"""
    env = jax_env(repo_root, repo_root / "tests")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=repo_root,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines() if " " in line)
    assert float(out["tiles"]) < 1.0
    assert float(out["bucket"]) < 1e-3  # exact up to float rounding, padded edges included
    n, shapes = out["traces"].split(" ", 1)
    # buckets (margin 8 for this net): 70x90 and 66x81 -> main 96x96, strips 16x96 / 96x16, corner 16x16;
    # 64x96 is already a bucket (one call); 93x70 adds main 96x96 (seen) ... all shapes reused after the first image
    assert eval(shapes) == [(1, 16, 16, 3), (1, 16, 96, 3), (1, 64, 96, 3), (1, 96, 16, 3), (1, 96, 96, 3)], shapes
    assert int(n) == 5  # one trace per distinct shape, though 4 images x (up to 4 calls) = 13 calls were made


def test_bucketed_xla_equals_unpadded_and_compiles_per_bucket():
    """TF with XLA (jit=True): padded-to-bucket runs with recomputed edge strips equal the unpadded graph."""
    model = edsr_like()
    assert inference.bucket_margin(model) == 8  # radius 7 LR px (6 convs at LR, 2 at HR), +1
    rng = np.random.default_rng(5)
    n0 = inference.trace_count(model)
    for h, w in [(37, 45), (40, 33)]:  # both pad to 64x64 (bucket 32); 33 < 4*8 would not be padded
        img = smooth_image(rng, h, w)
        ref = inference.super_resolve(model, img, jit=False)
        out = inference.super_resolve(model, img, jit=True)
        assert out.shape == ref.shape == (2 * h, 2 * w, 3)
        assert np.abs(out - ref).max() < 1e-3
    shapes = inference._cache(model)["traces"][n0:]
    assert sorted(set(shapes)) == [(1, 16, 16, 3), (1, 16, 64, 3), (1, 64, 16, 3), (1, 64, 64, 3)]
    assert len(shapes) == 4  # the second image reused every compiled shape


def test_receptive_radius_matches_a_perturbation():
    """The analytic radius bounds how far one changed LR pixel moves the output (and is tight for a chain)."""
    model = conv_model(scale=2, depth=3)
    radius = inference.receptive_radius(model)
    assert radius == 3.5  # 3 convs at LR (1 px each) + 1 at HR (0.5 LR px)
    img = smooth_image(np.random.default_rng(6), 31, 31).astype(np.float32)
    bumped = img.copy()
    bumped[15, 15] += 50
    diff = np.abs(inference.super_resolve(model, bumped) - inference.super_resolve(model, img)).max(-1)
    ys, xs = np.nonzero(diff > 1e-4)
    reach = max(np.abs(ys // 2 - 15).max(), np.abs(xs // 2 - 15).max())  # in LR pixels
    # nearest upsampling spreads a feature over s HR pixels, so the reach in whole LR pixels can be
    # radius + (1 - 1/s)/2 rounded up: covered by the margin that bucketing recomputes
    assert radius <= reach <= inference.bucket_margin(model)


def test_cache_does_not_keep_the_model_alive():
    """bench over many checkpoints: once the caller drops a model, it and its compiled functions are freed."""
    import gc
    import weakref

    gc.collect()
    entries = len(inference._CACHE)
    model = conv_model(depth=1, filters=4)
    img = smooth_image(np.random.default_rng(7), 20, 24)
    inference.super_resolve(model, img)  # shape-generic graph
    inference.super_resolve(model, img, jit=True)  # XLA, bucketed
    inference.super_resolve(model, img, tile=16, tile_overlap=4)
    assert len(inference._cache(model)) >= 3
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
    assert len(inference._CACHE) == entries


def test_bucket_sizes_and_accelerator_policy(monkeypatch):
    """CPU: axes shorter than 4 margins keep their size; GPU/TPU: bucketed from 2 margins, still exact."""
    assert inference._bucket_size(100, 32, 37) == 100 and inference._bucket_size(100, 32, 37, 2) == 128
    assert inference._bucket_size(96, 32, 5) == 96 and inference._bucket_size(97, 32, 5) == 128
    assert inference._bucket_size(97, None, 5) == 97
    model = edsr_like()  # margin 8
    img = smooth_image(np.random.default_rng(8), 20, 45)  # 20: below 4 margins, above 2
    ref = inference.super_resolve(model, img, jit=False)
    monkeypatch.setattr(inference, "has_accelerator", lambda: True)
    n0 = inference.trace_count(model)
    out = inference.super_resolve(model, img, jit=True)
    assert np.abs(out - ref).max() < 1e-3
    assert (1, 32, 64, 3) in inference._cache(model)["traces"][n0:]  # padded in both axes


# ------------------------------------------------------------------------------ the minimal tile plan (issue 22)
@pytest.mark.parametrize("tile", [16, 48, 84, 256])
@pytest.mark.parametrize("overlap", [0, 4, 21, 37])
def test_tile_plan_is_minimal(tile, overlap):
    """Cores partition the image; every core has `overlap` px of real context or touches the border; no tile is
    larger than the tile size or the image; one tile fewer could not give neighbours 2 * overlap shared pixels."""
    if tile <= 2 * overlap:
        return
    for size in range(1, 400, 13):
        t, tiles = inference._axis_plan(size, tile, overlap)
        assert t <= min(tile, size)
        assert [lo for _, lo, _ in tiles] == [0] + [hi for _, _, hi in tiles[:-1]] and tiles[-1][2] == size
        for start, lo, hi in tiles:
            assert 0 <= start and start + t <= size and lo < hi
            assert lo == 0 or lo - start >= overlap
            assert hi == size or start + t - hi >= overlap
        k = len(tiles) - 1  # the least work: k tiles of at most `tile` pixels could not cover with that context
        assert (size <= tile) == (k == 0) and (k == 0 or k * tile - 2 * overlap * (k - 1) < size)
    assert inference.tile_cost(120, 160, 256, 64) == 1.0  # a tile at least as large as the image is the image
    assert inference.tile_plan(120, 160, 84, 10)[0] == (70, 67)  # 2 x 3 tiles of 70x67, not 84x84 padded ones


def test_tile_batch_does_not_change_the_result():
    model = edsr_like()
    img = smooth_image(np.random.default_rng(9), 61, 75)
    ref = inference.super_resolve(model, img, tile=32, tile_overlap=8, tile_batch=1, jit=False)
    assert np.abs(ref - inference.super_resolve(model, img, jit=False)).max() < 1e-2
    for batch in (3, 16):
        for jit in (False, True):
            out = inference.super_resolve(model, img, tile=32, tile_overlap=8, tile_batch=batch, jit=jit)
            assert np.abs(out - ref).max() < 1e-2, (batch, jit)


def test_small_tile_gets_the_largest_overlap_it_can_take(capsys):
    """Default overlap = the receptive field (8 here); a tile too small for it runs with tile // 4 and one warning
    (once per model and tile), and an explicit overlap is used as given."""
    model = edsr_like()
    assert inference.default_tile_overlap(model) == 8
    assert inference.tile_overlap_for(model, 32) == 8
    img = smooth_image(np.random.default_rng(10), 40, 50)
    inference.super_resolve(model, img, tile=20)
    inference.super_resolve(model, img, tile=20)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: tile 20 leaves room for 5 LR px of overlap, less than "
                                               "the 8") and "use tile 32 or more" in err[0]
    assert inference.tile_overlap_for(model, 20, 9) == 9
    assert capsys.readouterr().err == ""


def test_default_overlap_caps_deep_nets():
    """RRDBNet's receptive-field bound is far beyond the context that matters (docs/demo.md): capped."""
    import model as model_lib

    tiny = model_lib.build_model("rrdbnet", 4, num_filters=8, num_res_blocks=1, growth_channels=4)
    assert inference.bucket_margin(tiny) == 20  # 1 RRDB: 15 convs + conv_first / trunk + HR convs
    assert inference.default_tile_overlap(tiny) == 20
    deeper = model_lib.build_model("rrdbnet", 4, num_filters=4, num_res_blocks=6, growth_channels=2)
    assert inference.bucket_margin(deeper) == 95  # 15 convs per block: 23 blocks (x4plus) give 350
    assert inference.default_tile_overlap(deeper) == inference.TILE_OVERLAP_CAP


TINY_NETS = {"rrdbnet": (4, dict(num_filters=8, num_res_blocks=1, growth_channels=4)),
             "edsr": (2, dict(num_filters=8, num_res_blocks=2))}


@pytest.fixture(scope="module", params=sorted(TINY_NETS))
def tiny_net(request, tmp_path_factory):
    """A saved tiny RRDBNet x4 / EDSR x2, a benchmark folder (HR/ only) and the same LR image in a folder."""
    import model as model_lib
    from imaging import imresize, write_image

    scale, params = TINY_NETS[request.param]
    keras.utils.set_random_seed(0)
    net = model_lib.build_model(request.param, scale, **params)
    root = tmp_path_factory.mktemp(request.param)
    net.save(root / "net.keras")
    hr = smooth_image(np.random.default_rng(11), 90 * scale, 110 * scale)
    write_image(str(root / "set" / "HR" / "a.png"), hr)
    write_image(str(root / "lr" / "a.png"), imresize(hr, scale=1.0 / scale))
    return {"root": root, "path": str(root / "net.keras"), "tile": 4 * inference.default_tile_overlap(net)}


def _bench_outputs(monkeypatch, tiny_net, *extra):
    """The 8-bit SR images bench.py scored (scorer.score_one's rounded output), by stem."""
    import bench
    from evaluation import scorer

    seen, score_one = {}, scorer.score_one

    def record(*args, **kwargs):
        out = score_one(*args, **kwargs)
        seen[args[7] if len(args) > 7 else kwargs["stem"]] = out[1]
        return out

    monkeypatch.setattr(scorer, "score_one", record)
    root = tiny_net["root"]
    assert bench.main(["-i", tiny_net["path"], "--dataset", str(root / "set"), "-o", str(root / "b.json"),
                       "--no-progress", *extra]) == 0
    return seen["a"]


def test_bench_and_demo_tiles_equal_untiled_by_default(tiny_net, monkeypatch):
    """Issue 18: `--tile N` with the default overlap gives the untiled result within 1 grey level (bench and demo),
    and an overlap below the receptive field shows seams (so the comparison can fail)."""
    import demo
    from imaging import read_image

    tile = str(tiny_net["tile"])  # 80 (RRDBNet, overlap 20) / 36 (EDSR, overlap 9) on a 110x90 LR image
    full = _bench_outputs(monkeypatch, tiny_net)
    tiled = _bench_outputs(monkeypatch, tiny_net, "--tile", tile)
    assert np.abs(tiled.astype(int) - full).max() <= 1
    seams = _bench_outputs(monkeypatch, tiny_net, "--tile", tile, "--tile-overlap", "2")
    assert np.abs(seams.astype(int) - full).max() > 1
    root = tiny_net["root"]
    for out, extra in (("full", []), ("tiled", ["--tile", tile])):
        assert demo.main(["-i", str(root / "lr"), "-o", str(root / out), "--model", tiny_net["path"], *extra]) == 0
    demo_full, demo_tiled = (read_image(str(root / out / "a.png")).astype(int) for out in ("full", "tiled"))
    assert np.abs(demo_full - full).max() <= 1 and np.abs(demo_tiled - demo_full).max() <= 1


def test_images_of_one_size_share_the_compiled_tiles():
    """XLA (jit=True): one trace per tile shape; a second image of the same size compiles nothing."""
    model = conv_model(depth=2, filters=4)
    rng = np.random.default_rng(12)
    n0 = inference.trace_count(model)
    for _ in range(2):
        inference.super_resolve(model, smooth_image(rng, 50, 70), tile=32, tile_overlap=4, jit=True)
    assert inference._cache(model)["traces"][n0:] == [(3, 29, 29, 3)]  # 2 x 3 tiles of 29x29: 2 calls of 3
