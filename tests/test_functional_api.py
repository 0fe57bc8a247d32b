"""The Functional API as the Keras guides use it: multi-input/multi-output models with list and
dict losses, per-output history keys, shared layers, nested models, layer nodes, custom layers
and subclassed models, compiled."""
import numpy as np
import pytest

import kcompile as keras
from kcompile import layers, ops


def _two_io_model():
    main_in = keras.Input((6,), name="main_input")
    aux_in = keras.Input((3,), name="aux_input")
    shared = layers.Dense(4, activation="relu", name="shared")
    h = shared(main_in)
    aux_out = layers.Dense(1, activation="sigmoid", name="aux_output")(h)
    merged = ops.concatenate([h, aux_in], axis=-1)
    main_out = layers.Dense(1, activation="sigmoid", name="main_output")(merged)
    return keras.Model(inputs=[main_in, aux_in], outputs=[main_out, aux_out])


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(n, 6)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)
    y1 = (x1[:, :1] + x2[:, :1] > 0).astype(np.float32)
    y2 = (x1[:, 1:2] > 0).astype(np.float32)
    return x1, x2, y1, y2


def test_list_and_dict_forms_train_identically():
    x1, x2, y1, y2 = _data()
    results = []
    for form in ("list", "dict"):
        keras.set_random_seed(3)
        model = _two_io_model()
        if form == "list":
            model.compile(optimizer="rmsprop", loss=["binary_crossentropy", "binary_crossentropy"],
                          loss_weights=[1.0, 0.2])
            h = model.fit([x1, x2], [y1, y2], epochs=2, batch_size=8, shuffle=False, verbose=0)
        else:
            model.compile(optimizer="rmsprop",
                          loss={"main_output": "binary_crossentropy", "aux_output": "binary_crossentropy"},
                          loss_weights={"main_output": 1.0, "aux_output": 0.2})
            h = model.fit({"main_input": x1, "aux_input": x2}, {"main_output": y1, "aux_output": y2},
                          epochs=2, batch_size=8, shuffle=False, verbose=0)
        results.append((h.history, model.get_weights()))
    (h_list, w_list), (h_dict, w_dict) = results
    assert set(h_list) == {"loss", "main_output_loss", "aux_output_loss"}
    np.testing.assert_allclose(h_list["loss"], h_dict["loss"], rtol=1e-6)
    for a, b in zip(w_list, w_dict):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # the total is the weighted sum of the per-output losses
    total = np.array(h_list["main_output_loss"]) + 0.2 * np.array(h_list["aux_output_loss"])
    np.testing.assert_allclose(h_list["loss"], total, rtol=1e-4)


def test_predict_returns_one_array_per_output_and_evaluate_lists_losses():
    x1, x2, y1, y2 = _data()
    model = _two_io_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    p_main, p_aux = model.predict([x1, x2], verbose=0)
    assert p_main.shape == (32, 1) and p_aux.shape == (32, 1)
    results = model.evaluate([x1, x2], [y1, y2], verbose=0, return_dict=True)
    assert {"loss", "main_output_loss", "aux_output_loss"} <= set(results)


def test_shared_layer_gradients_sum_over_uses():
    a_in, b_in = keras.Input((3,)), keras.Input((3,))
    shared = layers.Dense(2, use_bias=False)
    out = ops.add(shared(a_in), shared(b_in))
    model = keras.Model([a_in, b_in], out)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(1)
    a, b, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    (w,) = model.get_weights()
    model.train_on_batch([a, b], y)
    pred = a @ w + b @ w
    grad = (a + b).T @ (2 * (pred - y) / y.size)
    np.testing.assert_allclose(model.get_weights()[0], w - 0.1 * grad, rtol=1e-4, atol=1e-6)
    assert len(model.weights) == 1


def test_nested_models_and_layer_nodes():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, layers.Dense(3, name="inner_dense")(inner_in), name="inner")
    a_in, b_in = keras.Input((4,)), keras.Input((4,))
    ya, yb = inner(a_in), inner(b_in)
    model = keras.Model([a_in, b_in], layers.Dense(1)(ops.concatenate([ya, yb], axis=-1)))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(2)
    x = [rng.normal(size=(8, 4)).astype(np.float32) for _ in range(2)]
    before = model.evaluate(x, np.zeros((8, 1)), verbose=0)
    model.fit(x, np.zeros((8, 1)), epochs=20, verbose=0)
    assert model.evaluate(x, np.zeros((8, 1)), verbose=0) < before
    assert inner.get_output_at(0) is not None and inner.get_input_shape_at(1) == (None, 4)
    with pytest.raises(AttributeError, match="multiple inbound nodes|ambiguous"):
        inner.output


def test_custom_layer_with_add_weight_and_ops_matmul_is_compiled():
    class Linear(layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal",
                                     trainable=True, regularizer="l2")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True)

        def call(self, inputs):
            return ops.matmul(inputs, self.w) + self.b

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = x @ rng.normal(size=(5, 2)).astype(np.float32)
    model = keras.Sequential([keras.Input((5,)), Linear(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    h = model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < 0.1 * h.history["loss"][0]
    assert Linear.from_config(model.layers[0].get_config()).units == 2


def test_subclassed_model_with_training_flag():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(8, activation="relu")
            self.drop = layers.Dropout(0.5)
            self.out = layers.Dense(1)

        def call(self, inputs, training=False):
            return self.out(self.drop(self.hidden(inputs), training=training))

    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    model = Net()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    h = model.fit(x, y, epochs=40, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x, verbose=0))   # inference: no dropout


def test_bad_functional_input_is_a_clear_error_naming_the_layer_or_input():
    with pytest.raises(ValueError, match='layer "rnn".*expected ndim=3, found ndim=2'):
        layers.LSTM(3, name="rnn")(keras.Input((4,)))
    with pytest.raises(ValueError, match='layer "conv".*expected ndim=4'):
        layers.Conv2D(3, 3, name="conv")(keras.Input((4, 5)))
    with pytest.raises(ValueError, match=r"'plus' \(Add\).*incompatible shapes \[\(None, 3\), \(None, 4\)\]"):
        layers.Add(name="plus")([keras.Input((3,)), keras.Input((4,))])
    with pytest.raises(ValueError, match="'cat'.*matching shapes"):
        layers.Concatenate(name="cat")([keras.Input((3, 2)), keras.Input((4, 3))])
    with pytest.raises(ValueError, match=r"'dotted' \(Dot\).*axis values 3 .* 4"):
        layers.Dot(axes=1, name="dotted")([keras.Input((3,)), keras.Input((4,))])
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    with pytest.raises(ValueError, match="Graph disconnected.*'b'"):
        keras.Model(a, layers.Dense(2)(b))
    model = keras.Model([a, b], layers.Add()([a, b]))
    with pytest.raises(ValueError, match=r"Missing data for input 'b'.*\['a', 'c'\]"):
        model.predict({"a": np.zeros((2, 3)), "c": np.zeros((2, 3))}, verbose=0)
    with pytest.raises(ValueError, match=r"Input 1 .*expected shape=\(None, 3\), found shape=\(2, 4\)"):
        model.predict({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))}, verbose=0)
