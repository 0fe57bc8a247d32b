"""The Keras API surface of issue 2 and Keras-style errors on bad input."""
import gc
import resource

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers
from kcompile.layers import Dense
from kcompile.models import Sequential


def small_model(**compile_kwargs):
    model = Sequential([layers.Dense(4, activation="relu", input_dim=3), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", **compile_kwargs)
    return model


def test_namespace():
    for name in ["Sequential", "Model", "Input", "layers", "models", "optimizers", "losses", "metrics",
                 "activations", "initializers", "regularizers", "callbacks", "utils", "backend", "ops"]:
        assert hasattr(keras, name), name
    assert Sequential is keras.Sequential and Dense is keras.layers.Dense
    assert keras.backend.epsilon() == 1e-7


def test_first_layer_shape_arguments_and_deferred_build():
    for kwargs in ({"input_shape": (3,)}, {"input_dim": 3}, {"batch_input_shape": (None, 3)},
                   {"input_shape": (3,), "batch_size": 8}):
        model = Sequential([layers.Dense(2, **kwargs)])
        assert model.built and model.input_shape[1:] == (3,) and model.output_shape == (None, 2)
    model = Sequential()
    model.add(layers.Dense(2))
    assert not model.built
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((4, 5), "f"), np.zeros((4, 2), "f"), verbose=0)
    assert model.built and model.layers[0].kernel.shape == (5, 2)


def test_weights_api_and_trainable():
    model = small_model()
    assert [w.shape for w in model.weights] == [(3, 4), (4,), (4, 2), (2,)]
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
    new = [np.full(w.shape, i, "f") for i, w in enumerate(model.get_weights())]
    model.set_weights(new)
    assert all((a == b).all() for a, b in zip(model.get_weights(), new))
    model.layers[0].set_weights([np.ones((3, 4), "f"), np.zeros(4, "f")])
    assert (model.layers[0].get_weights()[0] == 1).all()
    model.layers[0].trainable = False
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 2
    model.compile(optimizer="sgd", loss="mse")
    before = model.layers[0].get_weights()[0].copy()
    model.train_on_batch(np.ones((2, 3), "f"), np.ones((2, 2), "f"))
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], before)
    with pytest.raises(ValueError, match="expecting 4 weights"):
        model.set_weights(new[:3])


def test_summary_and_config(capsys):
    model = small_model()
    model.summary()
    out = capsys.readouterr().out
    assert 'Model: "' in out and "Total params: 26" in out and "(None, 4)" in out
    config = model.layers[0].get_config()
    assert config["units"] == 4 and config["activation"] == "relu"
    clone = Dense.from_config({k: v for k, v in config.items() if k != "batch_shape"})
    assert clone.units == 4


def test_activations_initializers_by_name_and_object():
    for name in ["linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus", "softsign", "swish",
                 "silu", "gelu", "hard_sigmoid", "exponential", "relu6", "leaky_relu"]:
        assert callable(keras.activations.get(name))
    for name in ["glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
                 "zeros", "ones", "uniform", "orthogonal", "identity"]:
        w = keras.initializers.get(name)((6, 6))
        assert w.shape == (6, 6) and w.dtype == np.float32
    q = keras.initializers.Orthogonal()((5, 5))
    np.testing.assert_allclose(q @ q.T, np.eye(5), atol=1e-5)
    lim = np.sqrt(6 / (200 + 300))
    w = keras.initializers.GlorotUniform(seed=1)((200, 300))
    assert np.abs(w).max() <= lim and abs(w.std() - lim / np.sqrt(3)) < 0.01 * lim
    assert np.allclose(keras.initializers.Constant(3)((2,)), 3)


@pytest.mark.parametrize("kind,call", [
    ("optimizer", lambda: keras.optimizers.get("adamz")),
    ("loss", lambda: keras.losses.get("msee")),
    ("metric", lambda: keras.metrics.get("acuracy")),
    ("activation", lambda: keras.activations.get("rellu")),
    ("initializer", lambda: keras.initializers.get("glorot")),
])
def test_unknown_names_list_valid_ones(kind, call):
    with pytest.raises(ValueError, match="Valid names"):
        call()


def test_wrong_input_width_names_layer_and_shapes():
    model = small_model()
    with pytest.raises(ValueError, match=r'layer "dense.*expected shape=\(None, 3\).*found shape=\(5, 7\)'):
        model.predict(np.zeros((5, 7), "f"), verbose=0)
    with pytest.raises(ValueError, match="incompatible"):
        model.fit(np.zeros((5, 7), "f"), np.zeros((5, 2), "f"), verbose=0)


def test_targets_that_do_not_fit_the_loss():
    model = small_model()
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        model.fit(np.zeros((5, 3), "f"), np.zeros((5, 7), "f"), verbose=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        model.fit(np.zeros((5, 3), "f"), np.zeros((5, 4, 2), "f"), verbose=0)


def test_strings_and_objects_are_type_errors():
    model = small_model()
    with pytest.raises(TypeError):
        model.predict(np.array([["a", "b", "c"]]), verbose=0)
    with pytest.raises(TypeError):
        model.fit(np.array([[object()] * 3]), np.zeros((1, 2)), verbose=0)


def test_nan_inputs_give_nan_loss_and_terminate_on_nan_stops():
    model = small_model()
    x = np.full((8, 3), np.nan, "f")
    y = np.tile(np.eye(2, dtype="f"), (4, 1))
    assert np.isnan(model.evaluate(x, y, verbose=0))
    seen = []
    model.fit(x, y, epochs=5, batch_size=2, verbose=0,
              callbacks=[keras.callbacks.TerminateOnNaN(),
                         keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))])
    assert seen == [0] and model.stop_training


def test_callbacks_early_stopping_and_lr_scheduler():
    model = small_model()
    x, y = np.zeros((8, 3), "f"), np.tile(np.eye(2, dtype="f"), (4, 1))
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=2, min_delta=10.0)
    history = model.fit(x, y, epochs=20, verbose=0, callbacks=[stop])
    assert len(history.epoch) == 3 and stop.stopped_epoch == 2
    lrs = []
    sched = keras.callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    model.fit(x, y, epochs=3, verbose=0,
              callbacks=[sched, keras.callbacks.LambdaCallback(
                  on_epoch_end=lambda e, logs: lrs.append(model.optimizer.learning_rate))])
    np.testing.assert_allclose(lrs, [0.1, 0.05, 0.1 / 3], rtol=1e-6)


def test_every_callback_hook_is_called():
    calls = []

    class Recorder(keras.callbacks.Callback):
        pass
    for hook in ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
                 "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
                 "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end"]:
        setattr(Recorder, hook, (lambda h: lambda self, *a, **k: calls.append(h))(hook))
    model = small_model()
    x, y = np.zeros((4, 3), "f"), np.zeros((4, 2), "f")
    model.fit(x, y, epochs=1, batch_size=2, verbose=0, callbacks=[Recorder()])
    model.evaluate(x, y, verbose=0, callbacks=[Recorder()])
    model.predict(x, verbose=0, callbacks=[Recorder()])
    assert calls.count("on_train_batch_end") == 2 and "on_test_batch_end" in calls and "on_predict_end" in calls


def test_progress_bar_output_is_clean_without_a_terminal(capsys):
    model = small_model(metrics=["accuracy"])
    model.fit(np.zeros((64, 3), "f"), np.zeros((64, 2), "f"), epochs=2, batch_size=16)
    out = capsys.readouterr().out
    assert "\r" not in out and out.count("Epoch ") == 2 and "4/4" in out and "loss:" in out and "accuracy:" in out
    model.fit(np.zeros((64, 3), "f"), np.zeros((64, 2), "f"), epochs=2, batch_size=16, verbose=2)
    assert capsys.readouterr().out.count("\n") == 4


def test_recompile_frees_native_module_and_memory_stays_bounded():
    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = Sequential([layers.Dense(2, input_dim=2)])
    for _ in range(20):
        model.compile(optimizer="sgd", loss="mse")
    gc.collect()
    start = rss()
    for _ in range(200):
        model.compile(optimizer="sgd", loss="mse")
    gc.collect()
    assert rss() - start < 64 * 1024   # KB; LLVM's pass pipeline alone leaks ~100 KB a run (llvm_codegen.md)


def test_sequential_get_config_is_keras3_shaped():
    model = small_model()
    config = model.get_config()
    assert [l["class_name"] for l in config["layers"]] == ["InputLayer", "Dense", "Dense"]
    assert config["layers"][0]["config"]["batch_shape"] == [None, 3]
    assert config["layers"][1]["build_config"] == {"input_shape": [None, 3]}


def test_functional_and_subclassed_models_train():
    inputs = keras.Input(shape=(5,))
    h = layers.Dense(3, activation="tanh")(inputs)
    outputs = layers.Dense(1)(h) * 2.0 + 1.0      # raw ops on symbolic tensors are recorded too
    functional = keras.Model(inputs, outputs)

    class TwoLayer(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(3, activation="tanh")
            self.out = layers.Dense(1)

        def call(self, x, training=None):
            return self.out(self.hidden(x)) * 2.0 + 1.0
    subclassed = TwoLayer()
    x = np.random.default_rng(0).standard_normal((16, 5)).astype("f")
    for model in (functional, subclassed):
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, x[:, :1], epochs=1, verbose=0)
        w = model.get_weights()
        want = (np.tanh(x @ w[0] + w[1]) @ w[2] + w[3]) * 2 + 1
        np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
