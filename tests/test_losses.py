"""Losses: autodiff gradients equal the analytic formulas (TensorFlow in-process, JAX in a subprocess),
the unit convention of s, and a compiled GRAM model that trains, saves and loads."""
import json
import subprocess
import sys

import numpy as np
import pytest

import losses
from conftest import jax_env

C = losses.PIXEL_SCALE

# (name, make_loss kwargs); the four modes of the issue, in both loss modes where meaningful.
MODES = [
    ("plain_mse", dict(loss="mse")),
    ("plain_mae", dict(loss="mae")),
    ("nll_l2", dict(pred_logvar=True, loss_mode="l2")),
    ("nll_l1", dict(pred_logvar=True, loss_mode="l1")),
    ("att_l2", dict(pred_logvar=True, loss_mode="l2", attention=True)),
    ("att_l1", dict(pred_logvar=True, loss_mode="l1", attention=True)),
    ("gram_l2", dict(pred_logvar=True, loss_mode="l2", attention=True, block_attention_gradient=True)),
    ("gram_l1", dict(pred_logvar=True, loss_mode="l1", attention=True, block_attention_gradient=True)),
]


def fixed_inputs():
    """Small fixed batch: y, mu in [0, 255], s in [-4, 4] plus a few entries beyond the +-10 clip."""
    rng = np.random.default_rng(42)
    shape = (2, 3, 4, 3)
    y = rng.uniform(0, 255, shape)
    mu = rng.uniform(0, 255, shape)
    s = rng.uniform(-4, 4, shape)
    s[0, 0, 0] = [12.0, -12.0, 10.5]  # clipped: no gradient for s, loss uses +-10
    s[1, 2, 3] = [-11.0, 15.0, 9.5]
    y_pred = np.concatenate([mu, s], axis=-1)
    return y.astype(np.float32), y_pred.astype(np.float32)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def analytic(kwargs, y, y_pred):
    """Loss value and d loss / d y_pred (float64) for the mean over batch, pixels and channels."""
    y = y.astype(np.float64)
    mu, s_raw = y_pred[..., :3].astype(np.float64), y_pred[..., 3:].astype(np.float64)
    n = mu.size
    d = mu - y
    g_s = np.zeros_like(s_raw)
    if not kwargs.get("pred_logvar"):
        if kwargs["loss"] == "mse":
            per, g_mu = d**2, 2 * d
        else:
            per, g_mu = np.abs(d), np.sign(d)
        return per.mean(), np.concatenate([g_mu, g_s], -1) / n
    inside = np.abs(s_raw) <= losses.LOGVAR_CLIP
    s = np.clip(s_raw, -10, 10)
    if kwargs["loss_mode"] == "l2":
        per = np.exp(-s) * d**2 + C**2 * s  # = 127.5^2 (exp(-s) r^2 + s)
        g_mu = 2 * np.exp(-s) * d
        g_s = C**2 - np.exp(-s) * d**2
    else:
        per = np.exp(-s) * np.abs(d) + C * s  # = 127.5 (exp(-s) |r| + s)
        g_mu = np.exp(-s) * np.sign(d)
        g_s = C - np.exp(-s) * np.abs(d)
    if kwargs.get("attention"):
        m = sigmoid(s)
        g_mu = m * g_mu
        if kwargs.get("block_attention_gradient"):
            g_s = m * g_s  # GRAM: mask constant
        else:
            g_s = m * g_s + m * (1 - m) * per  # mask gradient flows into s
        per = m * per
    g_s = np.where(inside, g_s, 0.0)
    return per.mean(), np.concatenate([g_mu, g_s], -1) / n


def check(name, kwargs, value, grad, y, y_pred):
    want_value, want_grad = analytic(kwargs, y, y_pred)
    np.testing.assert_allclose(value, want_value, rtol=2e-5, err_msg=name)
    scale = np.abs(want_grad).max()
    np.testing.assert_allclose(grad, want_grad, rtol=2e-4, atol=1e-6 * scale, err_msg=name)
    if kwargs.get("pred_logvar"):
        # clipped entries get no gradient for s
        clipped = np.abs(y_pred[..., 3:]) > 10
        assert clipped.sum() == 5 and np.all(grad[..., 3:][clipped] == 0), name
    else:
        assert np.all(grad[..., 3:] == 0), name


@pytest.mark.parametrize("name,kwargs", MODES, ids=[m[0] for m in MODES])
def test_gradients_tensorflow(name, kwargs):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("in-process gradient test runs on the TensorFlow backend")
    import tensorflow as tf

    y, y_pred = fixed_inputs()
    loss = losses.make_loss(**kwargs)
    yp = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(y), yp)
    grad = tape.gradient(value, yp).numpy()
    check(name, kwargs, float(value), grad, y, y_pred)


JAX_SCRIPT = r"""
import json, sys
import numpy as np
import jax, keras
assert keras.backend.backend() == "jax"
import losses
data = json.loads(sys.stdin.read())
y, y_pred = np.asarray(data["y"], np.float32), np.asarray(data["y_pred"], np.float32)
out = {}
for name, kwargs in data["modes"]:
    loss = losses.make_loss(**kwargs)
    f = lambda yp: loss(y, yp)
    out[name] = {"value": float(f(y_pred)), "grad": np.asarray(jax.grad(f)(y_pred)).tolist()}
# a compiled GRAM model trains a step on JAX too
inp = keras.Input((8, 8, 3))
model = keras.Model(inp, keras.layers.Conv2D(6, 3, padding="same")(inp))
model.compile(optimizer="adam", loss=losses.make_loss("mse", True, "l2", True, True))
x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
out["fit_loss"] = model.fit(x, x, epochs=1, verbose=0).history["loss"][0]
print("RESULT" + json.dumps(out))
"""


def test_gradients_jax(repo_root):
    pytest.importorskip("jax")
    y, y_pred = fixed_inputs()
    env = jax_env(repo_root)
    payload = json.dumps({"y": y.tolist(), "y_pred": y_pred.tolist(), "modes": MODES})
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT], input=payload, capture_output=True, text=True,
                          env=env, cwd=repo_root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT"):])
    for name, kwargs in MODES:
        check(name, kwargs, out[name]["value"], np.asarray(out[name]["grad"]), y, y_pred)
    assert np.isfinite(out["fit_loss"])


@pytest.mark.parametrize("loss_mode", ["l2", "l1"])
def test_unit_convention_minimiser(loss_mode):
    """The s that minimises the loss for a residual e maps to the std of the implied distribution:
    L2 (Gaussian): sigma = |e|; L1 (Laplace, b = |e|): sigma = sqrt(2) |e|."""
    import keras

    e = np.array([0.9, 3.0, 17.0, 120.0, 900.0])
    s_star = np.log((e / C) ** 2) if loss_mode == "l2" else np.log(e / C)
    want = e if loss_mode == "l2" else np.sqrt(2) * e
    np.testing.assert_allclose(losses.sigma_from_logvar(s_star, loss_mode), want, rtol=1e-12)
    np.testing.assert_allclose(losses.logvar_from_sigma(want, loss_mode), s_star, rtol=1e-12)
    # and the analytic d loss / d s vanishes there
    y = np.zeros((1, 1, e.size, 3))
    mu = np.repeat(e[None, None, :, None], 3, -1)
    s = np.repeat(s_star[None, None, :, None], 3, -1)
    _, grad = analytic(dict(pred_logvar=True, loss_mode=loss_mode), y, np.concatenate([mu, s], -1))
    np.testing.assert_allclose(grad[..., 3:] * mu.size, 0, atol=1e-9 * C**2)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        yp = tf.Variable(np.concatenate([mu, s], -1).astype(np.float32))
        with tf.GradientTape() as tape:
            value = losses.make_loss(pred_logvar=True, loss_mode=loss_mode)(tf.constant(y, tf.float32), yp)
        g = tape.gradient(value, yp).numpy()[..., 3:] * mu.size
        assert np.abs(g).max() < 1e-3 * (C**2 if loss_mode == "l2" else C)
    # clipping bounds of sigma
    assert losses.sigma_from_logvar(-50.0) == pytest.approx(C * np.exp(-5))
    assert losses.sigma_from_logvar(50.0) == pytest.approx(C * np.exp(5))


def test_bad_flag_combinations():
    with pytest.raises(ValueError):
        losses.make_loss(attention=True)
    with pytest.raises(ValueError):
        losses.make_loss(pred_logvar=True, block_attention_gradient=True)
    with pytest.raises(ValueError):
        losses.make_loss(loss="huber")
    with pytest.raises(ValueError):
        losses.make_loss(pred_logvar=True, loss_mode="l3")


def test_plain_loss_matches_keras():
    import keras

    y, y_pred = fixed_inputs()
    np.testing.assert_allclose(float(losses.make_loss("mae")(y, y_pred)),
                               float(keras.losses.MeanAbsoluteError()(y, y_pred[..., :3])), rtol=1e-5)
    np.testing.assert_allclose(float(losses.make_loss("mse")(y, y_pred[..., :3])),
                               float(keras.losses.MeanSquaredError()(y, y_pred[..., :3])), rtol=1e-5)


def test_gram_model_trains_saves_loads(tmp_path):
    import keras

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(6, 3, padding="same")(inp))
    model.compile(optimizer="adam", loss=losses.make_loss("mse", pred_logvar=True, loss_mode="l2",
                                                           attention=True, block_attention_gradient=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    history = model.fit(x, x, batch_size=2, epochs=1, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    path = tmp_path / "gram.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, losses.SRLoss)
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(loaded.evaluate(x, x, verbose=0), model.evaluate(x, x, verbose=0), rtol=1e-5)
    assert losses.checkpoint_loss_mode(loaded) == "l2"
    # compile=False also fine (the loss mode is then unknown: the default)
    assert losses.checkpoint_loss_mode(keras.models.load_model(path, compile=False), default="l1") == "l1"
