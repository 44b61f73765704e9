"""The trainer core (training/): a toy two-network GAN-like task on the one loop, EMA, state round trip, and
two-step training + cross-backend checkpoints on TensorFlow, JAX and PyTorch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import jax_env

HERE = Path(__file__).resolve().parent


class ToyData:
    """batch(epoch, index): a function of (epoch, index) only, like data.Patches."""

    def batch(self, epoch, index):
        rng = np.random.default_rng([epoch, index])
        hr = rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
        return {"lr": hr[:, ::2, ::2].copy(), "hr": hr}


def toy_gan(g_lr=1e-2, d_lr=1e-2, seed=0):
    """A tiny G (edsr 4 filters) and a tiny D with two optimizers, updated in the order G then D."""
    import keras
    from keras import ops

    from model import build_model
    from training import Task

    class ToyGAN(Task):
        def compute_losses(self, phase, batch, training=True):
            G, D = self.networks["generator"], self.networks["discriminator"]
            if phase == "generator":  # G's phase calls D (D's weights get no update from it)
                sr = G(batch["lr"], training=training)
                pix = ops.mean(ops.abs(sr - batch["hr"]))
                adv = ops.mean(ops.softplus(-D(sr / 255.0, training=training)))
                return pix + 0.1 * adv, {"pixel": pix, "adv_g": adv}
            sr = ops.stop_gradient(G(batch["lr"], training=False))
            d = ops.mean(ops.softplus(-D(batch["hr"] / 255.0, training=training))) + ops.mean(
                ops.softplus(D(sr / 255.0, training=training)))
            return d, {"adv_d": d}

    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    y = keras.layers.BatchNormalization()(y)  # non-trainable state threaded through the step
    y = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(y))
    D = keras.Model(x, y, name="toy_d")
    G = build_model("edsr", 2, num_filters=4, num_res_blocks=1)
    return ToyGAN({"generator": G, "discriminator": D},
                  {"generator": keras.optimizers.Adam(g_lr), "discriminator": keras.optimizers.Adam(d_lr)},
                  ("generator", "discriminator"), ema={"generator": 0.5})


def weights(net):
    import keras

    return [keras.ops.convert_to_numpy(v).copy() for v in net.trainable_variables]


def run_toy(run_dir, steps=2, **kw):
    from training import Trainer

    task = toy_gan(**kw)
    trainer = Trainer(task, ToyData(), run_dir, epochs=1, steps_per_epoch=steps, progress=False, tensorboard=False)
    trainer.build()
    before = {k: weights(n) for k, n in task.networks.items()}
    trainer.fit()
    return task, trainer, before


def changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_two_network_task_trains_on_the_one_loop_and_resumes_both(tmp_path):
    import keras

    from training import Trainer

    task, trainer, before = run_toy(tmp_path / "both", steps=3)
    assert [int(keras.ops.convert_to_numpy(o.iterations)) for o in task.optimizers.values()] == [3, 3]
    assert changed(before["generator"], weights(task.networks["generator"]))
    assert changed(before["discriminator"], weights(task.networks["discriminator"]))
    assert set(trainer.history[0]) >= {"generator_loss", "discriminator_loss", "pixel", "adv_g", "adv_d"}
    # the state holds both networks, both optimizers and the EMA: a fresh task restores all of it
    saved = trainer._arrays()
    other = toy_gan(seed=1)  # different initial weights
    restored = Trainer(other, ToyData(), tmp_path / "both", epochs=1, steps_per_epoch=3, progress=False,
                       tensorboard=False)
    restored.load_state()
    assert (restored.epoch, restored.step, restored.global_step) == (1, 0, 3)
    again = restored._arrays()
    assert sorted(saved) == sorted(again) and any(k.startswith("opt/discriminator/") for k in saved)
    for k in saved:
        np.testing.assert_array_equal(saved[k], again[k], err_msg=k)
    # G's optimizer moves G only, although G's phase backpropagates through D
    task, _, before = run_toy(tmp_path / "g_only", d_lr=0.0)
    assert changed(before["generator"], weights(task.networks["generator"]))
    assert not changed(before["discriminator"], weights(task.networks["discriminator"]))


def test_ema_is_the_exponential_average_and_swap_restores_on_error():
    import keras

    from training import EMA

    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    ema = EMA(net, 0.75)
    w0 = [keras.ops.convert_to_numpy(v).copy() for v in net.weights]
    steps = []
    for k in range(3):
        for v in net.weights:
            v.assign(keras.ops.convert_to_numpy(v) + 1.0 + k)
        steps.append([keras.ops.convert_to_numpy(v).copy() for v in net.weights])
        ema.update()
    expected = [w0[i] for i in range(len(w0))]
    for ws in steps:
        expected = [0.75 * e + 0.25 * w for e, w in zip(expected, ws)]
    for e, a in zip(expected, ema.averages):
        np.testing.assert_allclose(a, e, rtol=1e-6)
    with pytest.raises(RuntimeError):
        with ema.swapped():
            np.testing.assert_allclose(keras.ops.convert_to_numpy(net.weights[0]), expected[0], rtol=1e-6)
            raise RuntimeError("interrupted inside the swap")
    for v, w in zip(net.weights, steps[-1]):  # trained weights back despite the error
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), w)


BACKEND_SCRIPT = r"""
import json, os, sys
import numpy as np
import keras
import train, test_trainer
out, tf_checkpoint, dataset = sys.argv[1:4]
run = train.main(["--profile", "edsr-16", "--num-filters", "4", "--num-res-blocks", "1", "--batch-size", "2",
                  "--lr-patch", "8", "--validation-steps", "2", "--epochs", "1", "--steps-per-epoch", "2",
                  "--dataset", dataset, "--outdir", out, "--ema"])
state = json.load(open(os.path.join(run, "state.json")))
x = np.random.default_rng(0).uniform(0, 255, (1, 6, 7, 3)).astype("float32")
ckpt = sorted(os.listdir(os.path.join(run, "models")))[0]
own = keras.models.load_model(os.path.join(run, "models", ckpt), compile=False)
foreign = keras.models.load_model(tf_checkpoint, compile=False)
task, trainer, _ = test_trainer.run_toy(os.path.join(out, "toy"))
np.savez(os.path.join(out, "result.npz"), own=keras.ops.convert_to_numpy(own(x)),
         foreign=keras.ops.convert_to_numpy(foreign(x)), x=x)
json.dump({"run": run, "checkpoint": os.path.join(run, "models", ckpt), "global_step": state["global_step"],
           "toy_steps": [int(keras.ops.convert_to_numpy(o.iterations)) for o in task.optimizers.values()],
           "toy_terms": sorted(trainer.history[0])}, open(os.path.join(out, "result.json"), "w"))
"""


@pytest.fixture(scope="module")
def tf_checkpoint(tmp_path_factory):
    import keras

    from model import build_model

    keras.utils.set_random_seed(3)
    m = build_model("wdsr-b", 2, num_filters=4, num_res_blocks=1, res_expansion=2)
    path = tmp_path_factory.mktemp("tf") / "tf.keras"
    m.save(path)
    return path


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_two_step_training_and_checkpoints_across_backends(backend, repo_root, tiny_div2k, tf_checkpoint, tmp_path):
    """train.py (2 steps, --ema) and the toy GAN on another backend; its checkpoint gives the same outputs under
    TensorFlow and the TensorFlow checkpoint the same outputs there (float32 tolerance: 1e-3 grey levels)."""
    import keras

    env = jax_env(repo_root, HERE) if backend == "jax" else dict(
        os.environ, KERAS_BACKEND="torch", PYTHONPATH=os.pathsep.join([str(repo_root), str(HERE)]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    r = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT, str(tmp_path), str(tf_checkpoint), str(tiny_div2k)],
                       cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((tmp_path / "result.json").read_text())
    assert info["global_step"] == 2 and info["toy_steps"] == [2, 2]
    assert {"pixel", "adv_g", "adv_d"} <= set(info["toy_terms"])
    res = np.load(tmp_path / "result.npz")
    own_tf = keras.models.load_model(info["checkpoint"], compile=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(own_tf(res["x"])), res["own"], atol=1e-3)
    foreign_tf = keras.models.load_model(tf_checkpoint, compile=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(foreign_tf(res["x"])), res["foreign"], atol=1e-3)


def test_nan_loss_stops_and_keeps_the_last_good_state(tmp_path):
    from training import Trainer
    from utils import UserError

    class NaNAt(ToyData):
        def batch(self, epoch, index):
            b = super().batch(epoch, index)
            if (epoch, index) == (1, 1):
                b["hr"][0, 0, 0, 0] = np.nan
            return b

    trainer = Trainer(toy_gan(), NaNAt(), tmp_path, epochs=3, steps_per_epoch=2, progress=False, tensorboard=False)
    with pytest.raises(UserError, match=r"nan.*epoch 2, step 2.*resume-001-000000\.npz"):
        trainer.fit()
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["epoch"], state["global_step"], state["checkpoint"]) == (1, 2, "resume-001-000000.npz")
