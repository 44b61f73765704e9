"""Weight normalization: folding equivalence, data-dependent init, gradients to g and v, save/load."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import model
from model import WeightNormConv2D, fold_weightnorm, to_plain_conv, weightnorm_data_init, weightnorm_layers
from optimizer import make_optimizer


def batch(seed=0, n=2, h=12, w=14, c=3, scale=255.0):
    return (np.random.default_rng(seed).uniform(0, 1, size=(n, h, w, c)) * scale).astype("float32")


def tiny_wdsr(block="b", **params):
    return model.build_model(f"wdsr-{block}", 2, num_filters=8, num_res_blocks=2, **params)


@pytest.mark.parametrize("kernel_size, activation", [(3, None), (5, "relu"), (1, None)])
def test_folded_kernel_equals_plain_conv(kernel_size, activation):
    layer = WeightNormConv2D(6, kernel_size, activation=activation)
    x = batch(c=4, scale=1.0)
    layer(x)
    rng = np.random.default_rng(1)
    layer.g.assign(rng.uniform(0.5, 2.0, size=6).astype("float32"))
    layer.bias.assign(rng.standard_normal(6).astype("float32"))
    kernel, bias = fold_weightnorm(layer)
    # the folded kernel has per-output-channel norm g
    np.testing.assert_allclose(np.sqrt((kernel ** 2).sum(axis=(0, 1, 2))), layer.g.numpy(), rtol=1e-5)
    plain = to_plain_conv(layer)
    np.testing.assert_allclose(plain(x).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-5)
    conv = keras.layers.Conv2D(6, kernel_size, padding="same", activation=activation)
    conv.build(x.shape)
    conv.set_weights([kernel, bias])
    np.testing.assert_allclose(conv(x).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-5)


def test_default_init_starts_as_plain_conv_with_v():
    layer = WeightNormConv2D(5, 3)
    layer.build((None, None, None, 4))
    np.testing.assert_allclose(fold_weightnorm(layer)[0], layer.v.numpy(), rtol=1e-5, atol=1e-7)
    assert abs(layer.v.numpy().std() - 0.05) < 0.01  # N(0, 0.05) directions, as in the paper


def _preactivation(layer, x):
    kernel, bias = fold_weightnorm(layer)
    y = keras.ops.conv(x, kernel, padding="same")
    return keras.ops.convert_to_numpy(y) + bias


@pytest.mark.parametrize("block", ["a", "b"])
def test_data_init_gives_zero_mean_unit_variance(block):
    m = tiny_wdsr(block)
    x = batch(3, n=4)
    names = weightnorm_data_init(m, [x], num_init_batches=1)
    layers = weightnorm_layers(m)
    assert names == [layer.name for layer in layers] and len(names) >= 6
    for layer in layers:
        inputs = keras.Model(m.input, layer.input)(x)
        pre = _preactivation(layer, inputs)
        np.testing.assert_allclose(pre.mean(axis=(0, 1, 2)), 0.0, atol=1e-3, err_msg=layer.name)
        np.testing.assert_allclose(pre.var(axis=(0, 1, 2)), 1.0, rtol=1e-3, err_msg=layer.name)
    assert np.isfinite(m(x).numpy()).all()


def test_data_init_pools_several_batches_and_accepts_pairs():
    m = tiny_wdsr("a")
    pairs = [(batch(i, n=2), None) for i in range(5)]
    weightnorm_data_init(m, pairs, num_init_batches=3)  # (lr, hr) pairs; only the first 3 are used
    head = m.get_layer("head")
    x = np.concatenate([p[0] for p in pairs[:3]])
    pre = _preactivation(head, keras.Model(m.input, head.input)(x))
    np.testing.assert_allclose(pre.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(pre.var(axis=(0, 1, 2)), 1.0, rtol=1e-3)
    assert weightnorm_data_init(model.build_model("edsr", 2, num_filters=8, num_res_blocks=1), [x]) == []


def test_gradients_reach_g_and_v():
    m = tiny_wdsr("b")
    x, y = batch(0), batch(1, h=24, w=28)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(m(x, training=True) - y))
    variables = [(layer.name, var) for layer in weightnorm_layers(m) for var in (layer.v, layer.g)]
    grads = tape.gradient(loss, [var for _, var in variables])
    for (name, var), grad in zip(variables, grads):
        assert grad is not None and np.abs(grad.numpy()).max() > 0, f"{name}/{var.name}"
    # and a stock Keras optimizer trains it (no special weight-norm optimizer needed)
    m.compile(optimizer=make_optimizer(learning_rate=1e-3), loss="mae")
    g0 = m.get_layer("head").g.numpy().copy()
    v0 = m.get_layer("head").v.numpy().copy()
    m.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert not np.allclose(m.get_layer("head").g.numpy(), g0)
    assert not np.allclose(m.get_layer("head").v.numpy(), v0)


def test_save_load_keeps_weights_and_outputs(tmp_path):
    m = tiny_wdsr("a")
    x = batch(2)
    weightnorm_data_init(m, [x])
    y = m(x).numpy()
    path = tmp_path / "wn.keras"
    m.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), y)
    # g is restored, not re-initialised to ||v||
    np.testing.assert_array_equal(loaded.get_layer("head").g.numpy(), m.get_layer("head").g.numpy())
    assert isinstance(loaded.get_layer("head"), WeightNormConv2D)
    assert loaded.get_layer("head").get_config() == m.get_layer("head").get_config()
