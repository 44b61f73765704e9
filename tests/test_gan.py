"""GAN training (training/gan.py) on the trainer: G and D summaries, steps on the sample set with tiny G / D, the
Real-ESRGAN degradation pipeline and a random VGG on TensorFlow (unet-sn), JAX and PyTorch (attention U-Net), and
exact resume."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import train
from conftest import ROOT, jax_env


def test_dry_run_prints_generator_and_discriminator_summaries(capsys):
    assert train.main(["--profile", "aesrgan-x4", "--print-model-summary", "--dry-run"]) is None
    out = capsys.readouterr().out
    assert 'Model: "rrdbnet"' in out and "16,697,987" in out  # Real-ESRGAN x4plus generator
    assert 'Model: "attention_unet"' in out and "Trainable params: 5,399,044" in out
    assert "Discriminator trainable parameters (PyTorch's count): 5,399,044" in out
    # the other profiles' discriminators through the same text (without building their 16.7M generators again)
    from training import config as schema
    from training.gan import describe_discriminator

    for profile, name, count in (("aesrgan-multi-x4", "attention_unet_multiscale", "10,798,088"),
                                 ("realesrgan-x4", "unet_discriminator_sn", "4,376,897")):
        text = describe_discriminator(schema.resolve({"profile": profile}))
        assert f'Model: "{name}"' in text and f"Trainable params: {count}" in text
    assert describe_discriminator(schema.resolve({"profile": "realesrnet-x4"})) is None  # L1 only


# Run by this process (TensorFlow) and by JAX / PyTorch subprocesses. Tiny G (RRDBNet 4 filters, 1 block), tiny D,
# a random VGG19 at 1/16 width, LR from the Real-ESRGAN pipeline on the sample images (HR 32 px crops).
# modes (comma-separated) "steps": 2 epochs x 2 steps, report; "resume": uninterrupted run vs Ctrl-C after step 3
# + restart (each in its own run directory below run_dir).
GAN_SCRIPT = r"""
import json, os, sys
import numpy as np
import keras
root, discriminator, run_dir, mode, sample = sys.argv[1:6]
import data, model
from degradations import RealESRGANTransform
from losses.perceptual import LAYER_WEIGHTS, PerceptualLoss
from model.discriminator_layers import SpectralConv2D
from model.archs.vgg19 import vgg19_features
from optimizer import make_optimizer
from training.gan import GANTask, GANTrainer


def adam(lr):  # BasicSR's Adam
    return make_optimizer("adam", learning_rate=lr, beta_2=0.99, epsilon=1e-8)


def make(seed=0):
    keras.utils.set_random_seed(0)  # the VGG is fixed (read from a file in real runs; not in the checkpoint)
    vgg = PerceptualLoss(vgg19_features(list(LAYER_WEIGHTS), width=1 / 16))
    keras.utils.set_random_seed(seed)
    g = model.build_model("rrdbnet", 4, num_filters=4, num_res_blocks=1, growth_channels=4)
    d = model.build_discriminator(discriminator, num_feat=4)
    return GANTask(g, d, adam(1e-3), adam(1e-3), perceptual=vgg, perceptual_weight=1.0, usm_target=True,
                   ema_decay=0.9)


def trainer(task, run_dir, epochs):
    hr = data.open_hr_images(sample, subset="train", images="1-3")
    ds = data.HRPatches(hr, 4, RealESRGANTransform(scale=4, gt_size=32), batch_size=2, lr_patch=8, seed=0, steps=2)
    return GANTrainer(task, ds, run_dir, epochs, 2, validation=None, jit_compile=keras.backend.backend() == "jax",
                      tensorboard=False, progress=False)


def values(net):
    return [keras.ops.convert_to_numpy(w).copy() for w in net.weights]


def steps():
    task = make()
    t = trainer(task, os.path.join(run_dir, "steps"), 2)
    t.build()
    before = {k: values(n) for k, n in task.networks.items()}
    history = t.fit()
    after = {k: values(n) for k, n in task.networks.items()}
    ema = t.ema["generator"].averages
    diff = lambda a, b: float(max(np.abs(x - y).max() for x, y in zip(a, b)))
    sn = [l for l in task.networks["discriminator"].layers if isinstance(l, SpectralConv2D)]
    return {"backend": keras.backend.backend(), "history": history,
            "g_changed": diff(after["generator"], before["generator"]),
            "d_changed": diff(after["discriminator"], before["discriminator"]),
            "ema_vs_raw": diff(after["generator"], ema),
            "sigma": [float(np.linalg.svd(keras.ops.convert_to_numpy(l.effective_kernel()).reshape(-1, l.filters),
                                          compute_uv=False)[0]) for l in sn],
            "d_checkpoints": sorted(os.listdir(os.path.join(run_dir, "steps", "models", "discriminator")))}


def resume():
    ref = trainer(make(), os.path.join(run_dir, "ref"), 2)
    ref.fit()
    os.environ["SISR_TEST_KILL"] = "step:3:INT"  # the trainer's hook: Ctrl-C after the 3rd step
    run = trainer(make(), os.path.join(run_dir, "run"), 2)
    try:
        run.fit()
        raise AssertionError("not interrupted")
    except KeyboardInterrupt:
        pass
    del os.environ["SISR_TEST_KILL"]
    resumed = trainer(make(seed=1), os.path.join(run_dir, "run"), 2)  # other initial weights: all must be restored
    resumed.load_state()
    position = [resumed.epoch, resumed.step, resumed.global_step]
    resumed.fit()
    a, b = ref._arrays(), resumed._arrays()
    return {"backend": keras.backend.backend(), "position": position, "keys": sorted(a) == sorted(b),
            "opt_d": any(k.startswith("opt/discriminator/") for k in a),
            "bn": any("moving_mean" in w.path for w in resumed.task.networks["discriminator"].weights),
            "mismatch": [k for k in a if not np.array_equal(a[k], b[k])]}


print(json.dumps({m: (steps if m == "steps" else resume)() for m in mode.split(",")}))
"""


def check_run(out, backend):
    assert out["backend"] == backend
    assert len(out["history"]) == 2
    terms = {"generator_loss", "l1", "perceptual", "gan", "p_fake_g", "discriminator_loss", "d_loss_real",
             "d_loss_fake", "d_real", "d_fake"}
    for record in out["history"]:
        assert terms <= set(record), sorted(record)
        assert all(np.isfinite(record[k]) for k in terms)
        assert 0 < record["d_real"] < 1 and 0 < record["d_fake"] < 1
        np.testing.assert_allclose(record["discriminator_loss"], record["d_loss_real"] + record["d_loss_fake"],
                                   rtol=1e-4)
    assert out["g_changed"] > 0 and out["d_changed"] > 0  # both networks trained
    assert out["ema_vs_raw"] > 0  # the EMA (what is saved) is not the raw generator
    # spectral norm holds through the GAN steps: W / sigma has largest singular value ~1 (one power iteration per
    # D pass lags a little behind the moving kernels, from below, as in PyTorch)
    assert 0.99 < min(out["sigma"]) and max(out["sigma"]) < 1.15, out["sigma"]
    assert out["d_checkpoints"] == ["epoch-001.keras", "epoch-002.keras"]


def run_script(backend, discriminator, run_dir, mode, sample):
    env = jax_env() if backend == "jax" else {**os.environ, "KERAS_BACKEND": backend}
    r = subprocess.run([sys.executable, "-c", GAN_SCRIPT, str(ROOT), discriminator, str(run_dir), mode, str(sample)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_gan_steps_tensorflow(tmp_path, capsys, sample_dataset):
    # unet-sn here (the smallest graph to trace); the attention U-Nets train on JAX and PyTorch below, the multi-scale
    # model's training-mode forward is checked against PyTorch in test_discriminators, its summed loss in
    # test_perceptual
    script = GAN_SCRIPT.replace("root, discriminator, run_dir, mode, sample = sys.argv[1:6]",
                                f"root, discriminator, run_dir, mode, sample = {str(ROOT)!r}, 'unet-sn', "
                                f"{str(tmp_path)!r}, 'steps', {str(sample_dataset)!r}")
    exec(compile(script, "gan_script", "exec"), {"__name__": "gan_script"})
    check_run(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"], "tensorflow")


def test_gan_steps_jax(tmp_path, sample_dataset):
    """JAX: the trainer's jitted stateless step threads BatchNorm statistics and the SN vectors (non-trainable)."""
    check_run(run_script("jax", "attention-unet", tmp_path, "steps", sample_dataset)["steps"], "jax")


def test_gan_steps_and_exact_resume_torch(tmp_path, sample_dataset):
    """PyTorch: GAN steps, then Ctrl-C (the trainer's test hook) after 3 of 4 steps and a restart with networks
    built from another seed and the state restored from the run directory: G, EMA, D (SN u/v, BatchNorm
    statistics) and both Adam states end bit-identical to the uninterrupted run (eager steps: no tracing cost
    for the three runs)."""
    out = run_script("torch", "attention-unet", tmp_path, "steps,resume", sample_dataset)
    check_run(out["steps"], "torch")
    resume = out["resume"]
    assert resume["position"] == [1, 1, 3]
    assert resume["keys"] and resume["opt_d"] and resume["bn"]
    assert resume["mismatch"] == []


def test_perceptual_loss_without_vgg_weights_is_one_line_error(tmp_path, capsys, sample_dataset):
    argv = ["--profile", "aesrgan-x4", "--num-res-blocks", "1", "--dataset", str(sample_dataset),
            "--outdir", str(tmp_path), "--epochs", "1", "--steps-per-epoch", "1", "--validation-steps", "1"]
    with pytest.raises(SystemExit) as e:
        from utils import run_cli

        run_cli(train.main, argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the perceptual loss needs ImageNet VGG19 weights") and "vgg19-dcbb9e9d.pth" in err[-1]
    assert not list(tmp_path.iterdir())  # no run directory


def test_task_defaults_are_the_option_schema_defaults():
    import inspect

    from training import config as schema
    from training.gan import GANTask

    params = inspect.signature(GANTask).parameters
    for name in ("pixel_weight", "perceptual_weight", "gan_weight", "usm_target"):
        assert params[name].default == schema.OPTIONS[name].default, name
    # the Real-ESRGAN profiles: BasicSR's weights (train_realesrgan_x4plus.yml) and Adam (0.9, 0.99) eps 1e-8
    gan, net = schema.resolve({"profile": "realesrgan-x4"}), schema.resolve({"profile": "realesrnet-x4"})
    assert (gan["pixel_weight"], gan["perceptual_weight"], gan["gan_weight"], gan["usm_target"]) == (1.0, 1.0, 0.1, True)
    assert (net["pixel_weight"], net["perceptual_weight"]) == (1.0, 0.0)
    assert (gan["beta_1"], gan["beta_2"], gan["epsilon"], gan["learning_rate"]) == (0.9, 0.99, 1e-8, 1e-4)


def test_usm_target_matches_the_pipeline_and_basicsr():
    """losses.usm.usm_sharp (the step's, for paired batches) = degradations' numpy usm_sharp (the loader's) and,
    when installed, BasicSR's USMSharp; the sharpening changes the image (the test can fail)."""
    from degradations.pipeline import usm_sharp as numpy_usm
    from losses.usm import usm_sharp
    from testing.reference import import_reference

    rng = np.random.default_rng(0)
    hr = np.repeat(np.repeat(rng.integers(0, 256, (2, 12, 10, 3)), 4, axis=1), 4, axis=2).astype(np.float32)
    ours = np.asarray(usm_sharp(hr))
    assert np.abs(ours - hr).max() > 10
    for k in range(2):
        np.testing.assert_allclose(ours[k], numpy_usm(hr[k] / 255.0) * 255.0, atol=2e-3)
    utils = import_reference("basicsr.utils")
    if utils is not None:
        import torch

        x = torch.from_numpy(hr / np.float32(255)).permute(0, 3, 1, 2).contiguous()
        ref = utils.USMSharp()(x).permute(0, 2, 3, 1).numpy() * 255
        np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_one_generator_forward_and_d_sees_the_pre_update_sr():
    """The D phase takes the G phase's SR (before G's update, gradient stopped), as BasicSR's output.detach():
    D's update is the same whether G's learning rate is 1e-2 or 0, and the step calls G once. Paired batches
    (no hr_usm) get the sharpened GT as the L1 target."""
    import keras

    import model
    from losses.usm import usm_sharp
    from optimizer import make_optimizer
    from training.backend import make_train_step
    from training.gan import GANTask

    rng = np.random.default_rng(1)
    batch = {"lr": rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32),
             "hr": rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)}

    def run(g_lr):
        keras.utils.set_random_seed(0)
        g = model.build_model("rrdbnet", 4, num_filters=4, num_res_blocks=1, growth_channels=4)
        d = model.build_discriminator("unet-sn", num_feat=4)
        calls = []
        call = g.call
        g.call = lambda *a, **k: calls.append(1) or call(*a, **k)
        task = GANTask(g, d, make_optimizer("adam", learning_rate=g_lr), make_optimizer("adam", learning_rate=1e-2),
                       usm_target=True)
        task.build(batch)
        sr0 = keras.ops.convert_to_numpy(g(batch["lr"]))
        d0 = [keras.ops.convert_to_numpy(w).copy() for w in d.weights]
        calls.clear()
        logs = make_train_step(task, eager_steps=0)(batch)  # the graph (the eager first steps: one call too)
        n_calls = len(calls)
        dw = [keras.ops.convert_to_numpy(w) - w0 for w, w0 in zip(d.weights, d0)]
        return logs, n_calls, dw, sr0, g

    logs, n_calls, dw, sr0, g = run(1e-2)
    assert n_calls == 1  # traced once on TensorFlow: one generator forward in the step's graph
    l1 = np.abs(sr0 - np.asarray(usm_sharp(batch["hr"]))).mean() / 255
    np.testing.assert_allclose(float(logs["l1"]), l1, rtol=1e-5)
    logs_frozen, _, dw_frozen, _, _ = run(0.0)
    np.testing.assert_allclose(float(logs_frozen["discriminator_loss"]), float(logs["discriminator_loss"]), rtol=1e-6)
    assert max(np.abs(a).max() for a in dw) > 1e-4
    for a, b in zip(dw, dw_frozen):
        np.testing.assert_allclose(a, b, atol=1e-7)


def test_first_tensorflow_steps_run_eagerly_and_match_the_graph():
    """TensorFlow: a GAN task's first eager_first_steps steps run eagerly while the graph is traced beside them; the
    choice follows the optimizer's iteration count (a resumed run makes the same one), and both ways compute the
    same step. A pixel task runs in the graph from its first step (make train's numbers do not move)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow only")
    import tensorflow as tf

    import model
    from optimizer import make_optimizer
    from training.backend import make_train_step
    from training.task import PixelTask

    rng = np.random.default_rng(2)
    batches = [{"lr": rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32),
                "hr": rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)} for _ in range(3)]

    def run(eager_steps):
        keras.utils.set_random_seed(0)
        g = model.build_model("edsr", 2, num_filters=8, num_res_blocks=1)
        calls = []
        call = g.call
        g.call = lambda *a, **k: calls.append(tf.executing_eagerly()) or call(*a, **k)
        task = PixelTask(g, make_optimizer("adam", learning_rate=1e-3), keras.losses.MeanAbsoluteError())
        task.build(batches[0])
        step = make_train_step(task, eager_steps=eager_steps)
        losses = [float(step(b)["loss"]) for b in batches]
        return losses, [keras.ops.convert_to_numpy(w) for w in g.weights], calls, step

    eager_losses, eager_weights, calls, step = run(2)
    graph_losses, graph_weights, _, _ = run(0)
    np.testing.assert_allclose(eager_losses, graph_losses, rtol=1e-5)
    for a, b in zip(eager_weights, graph_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert calls.count(True) == 2  # two eager forwards; the graph traced once (beside them), then ran step 3
    assert step.graph.experimental_get_tracing_count() == 1
    _, _, default_calls, default_step = run(None)  # PixelTask's own setting
    assert not hasattr(default_step, "graph") and True not in default_calls
