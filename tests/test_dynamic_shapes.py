"""Inputs of unknown spatial size: traced at a probe size, compiled per concrete input shape."""
import numpy as np
import pytest

import kcompile as keras
from kcompile import layers, ops


def _pooled_model():
    inp = keras.Input((None, None, 3))
    pooled = ops.mean(inp, axis=(1, 2))
    return keras.Model(inp, layers.Dense(2)(pooled)), inp, pooled


def test_shapes_show_none_where_sizes_are_unknown():
    model, inp, pooled = _pooled_model()
    assert inp.shape == (None, None, None, 3)
    assert pooled.shape == (None, 3)
    assert model.outputs[0].shape == (None, 2)


def test_compiled_per_input_shape_and_cached():
    model, _, _ = _pooled_model()
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    for h, w in [(5, 7), (9, 4), (5, 7), (1, 1)]:
        x = rng.random((3, h, w, 3)).astype(np.float32)
        kernel, bias = model.get_weights()
        np.testing.assert_allclose(model.predict(x, verbose=0), x.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-5,
                                   atol=1e-6)
        model.train_on_batch(x, np.zeros((3, 2), np.float32))
    assert len(model._compiled_model._variants) == 2 * 3     # predict and train variants per distinct shape


def test_fit_on_fixed_size_arrays_of_an_unknown_size_model():
    model, _, _ = _pooled_model()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    rng = np.random.default_rng(1)
    x = rng.random((32, 6, 6, 3)).astype(np.float32)
    y = x.mean(axis=(1, 2))[:, :2] * 2.0
    history = model.fit(x, y, epochs=40, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_a_layer_needing_fixed_sizes_is_named():
    inp = keras.Input((None, 3))
    flat = layers.Flatten()(inp)
    with pytest.raises(ValueError, match="unknown sizes"):
        keras.Model(inp, layers.Dense(2)(flat))


def test_wrong_channel_count_is_rejected():
    model, _, _ = _pooled_model()
    with pytest.raises(ValueError, match="incompatible"):
        model.predict(np.zeros((2, 4, 4, 5), np.float32), verbose=0)
