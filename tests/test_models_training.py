"""Whole models: compiled training steps against the reference interpreter (every optimizer,
every loss), closed-form optimizer updates, learnable tasks, and the Keras API surface."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kcompile as keras
from kcompile import layers

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(0.05),
    "sgd_nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adam_amsgrad": lambda: keras.optimizers.Adam(0.01, amsgrad=True),
    "adamw": lambda: keras.optimizers.AdamW(0.01),
    "rmsprop": lambda: keras.optimizers.RMSprop(0.01),
    "rmsprop_centered_momentum": lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: keras.optimizers.Adagrad(0.05),
    "adadelta": lambda: keras.optimizers.Adadelta(1.0),
    "adamax": lambda: keras.optimizers.Adamax(0.01),
    "nadam": lambda: keras.optimizers.Nadam(0.01),
    "sgd_clipnorm": lambda: keras.optimizers.SGD(0.05, clipnorm=0.1),
    "sgd_clipvalue": lambda: keras.optimizers.SGD(0.05, clipvalue=0.01),
    "adam_global_clipnorm": lambda: keras.optimizers.Adam(0.01, global_clipnorm=0.2),
    "sgd_keras2_lr_decay": lambda: keras.optimizers.SGD(lr=0.05, decay=0.1),
}

LOSSES = {  # loss -> (final activation, target maker)
    "mse": ("linear", lambda r, n, k: r.standard_normal((n, k))),
    "mae": ("linear", lambda r, n, k: r.standard_normal((n, k))),
    "mape": ("linear", lambda r, n, k: r.standard_normal((n, k)) + 3),
    "msle": ("softplus", lambda r, n, k: r.random((n, k))),
    "binary_crossentropy": ("sigmoid", lambda r, n, k: r.integers(0, 2, (n, k))),
    "categorical_crossentropy": ("softmax", lambda r, n, k: np.eye(k)[r.integers(0, k, n)]),
    "sparse_categorical_crossentropy": ("softmax", lambda r, n, k: r.integers(0, k, n)),
    "hinge": ("tanh", lambda r, n, k: r.integers(0, 2, (n, k))),
    "squared_hinge": ("tanh", lambda r, n, k: r.integers(0, 2, (n, k)) * 2 - 1),
    "categorical_hinge": ("linear", lambda r, n, k: np.eye(k)[r.integers(0, k, n)]),
    "kl_divergence": ("softmax", lambda r, n, k: np.eye(k)[r.integers(0, k, n)] * 0.8 + 0.2 / k),
    "poisson": ("softplus", lambda r, n, k: r.poisson(1.0, (n, k))),
    "huber": ("linear", lambda r, n, k: r.standard_normal((n, k)) * 2),
    "log_cosh": ("linear", lambda r, n, k: r.standard_normal((n, k))),
    "cosine_similarity": ("linear", lambda r, n, k: r.standard_normal((n, k))),
}


def mlp(widths, activations, input_dim, seed=0, **dense_kwargs):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape=(input_dim,))])
    for w, a in zip(widths, activations):
        model.add(layers.Dense(w, activation=a, **dense_kwargs))
    return model


def twin_steps(make_model, optimizer, loss, x, y, steps=2, metrics=None):
    """Train two identical models, one native and one on the interpreter; return both."""
    results = []
    for eager in (False, True):
        model = make_model()
        model.compile(optimizer=optimizer(), loss=loss, metrics=metrics, run_eagerly=eager)
        losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(steps)]
        results.append((model, losses))
    return results


def assert_same(native, eager, rtol=2e-4, atol=2e-5):
    (m1, l1), (m2, l2) = native, eager
    np.testing.assert_allclose(l1, l2, rtol=rtol, atol=atol)
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_every_optimizer_step_matches_interpreter(opt):
    r = np.random.default_rng(1)
    x, y = r.standard_normal((13, 5)).astype("f"), r.standard_normal((13, 3)).astype("f")
    assert_same(*twin_steps(lambda: mlp([7, 3], ["tanh", "linear"], 5), OPTIMIZERS[opt], "mse", x, y, steps=3))


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_step_matches_interpreter(loss):
    act, make_y = LOSSES[loss]
    r = np.random.default_rng(2)
    x = r.standard_normal((11, 4)).astype("f")
    y = make_y(r, 11, 3).astype("f")
    assert_same(*twin_steps(lambda: mlp([6, 3], ["relu", act], 4), lambda: keras.optimizers.Adam(0.01), loss, x, y))


@given(widths=st.lists(st.integers(1, 33), min_size=1, max_size=3),
       acts=st.lists(st.sampled_from(["relu", "tanh", "sigmoid", "elu", "selu", "softplus", "softsign", "swish",
                                      "gelu", "hard_sigmoid", "relu6", "leaky_relu", "linear", "exponential"]),
                     min_size=3, max_size=3),
       batch=st.integers(1, 40), input_dim=st.integers(1, 17))
@settings(max_examples=8, deadline=None)
def test_random_mlps_predict_and_train_like_interpreter(widths, acts, batch, input_dim):
    r = np.random.default_rng(batch)
    x = r.standard_normal((batch, input_dim)).astype("f") * 0.5
    y = r.standard_normal((batch, widths[-1])).astype("f")
    make = lambda: mlp(widths, acts[:len(widths)], input_dim, kernel_initializer="glorot_uniform")  # noqa: E731
    native, eager = twin_steps(make, lambda: keras.optimizers.SGD(0.01), "mse", x, y, steps=2)
    np.testing.assert_allclose(native[0].predict(x, verbose=0), eager[0].predict(x, verbose=0), rtol=2e-4, atol=2e-5)
    assert_same(native, eager, rtol=5e-4, atol=5e-5)


def test_optimizer_closed_form_sgd_momentum_and_adam():
    # one weight, gradient known in closed form: loss = mean((w*x - y)^2) with x=1, y=0 -> g = 2w
    for opt, expected in [
        (keras.optimizers.SGD(0.1), lambda w: w - 0.1 * 2 * w),
        (keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), lambda w: w + 0.9 * (-0.1 * 2 * w) - 0.1 * 2 * w),
        (keras.optimizers.Adam(0.1), lambda w: w - 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9) * (0.1 * 2 * w) /
         (np.sqrt(0.001 * (2 * w) ** 2) + 1e-7)),
    ]:
        model = keras.Sequential([keras.Input(shape=(1,)), layers.Dense(1, use_bias=False, kernel_initializer="ones")])
        model.compile(optimizer=opt, loss="mse")
        model.train_on_batch(np.ones((1, 1), "f"), np.zeros((1, 1), "f"))
        np.testing.assert_allclose(model.get_weights()[0], [[expected(1.0)]], rtol=1e-5)


def test_learnable_classification_reaches_high_accuracy():
    from kcompile.demo import synthetic_task
    keras.utils.set_random_seed(3)
    x, labels = synthetic_task(3000, 3)
    y = keras.utils.to_categorical(labels, 10)
    model = mlp([64, 64, 10], ["relu", "relu", "softmax"], 20, seed=3)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:2500], y[:2500], epochs=30, batch_size=64, verbose=0)
    assert model.evaluate(x[2500:], y[2500:], verbose=0)[1] > 0.9


def test_regression_reaches_low_mse():
    r = np.random.default_rng(4)
    x = r.standard_normal((2000, 8)).astype("f")
    y = np.stack([np.sin(x[:, 0]) + x[:, 1] * x[:, 2], x[:, 3] ** 2], axis=1).astype("f")
    model = mlp([64, 64, 2], ["tanh", "tanh", "linear"], 8, seed=4)
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="mse")
    model.fit(x, y, epochs=60, batch_size=64, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.05


def test_dropout_is_bit_reproducible_under_set_random_seed():
    def run():
        keras.utils.set_random_seed(7)
        model = keras.Sequential([keras.Input(shape=(6,)), layers.Dense(16, activation="relu"), layers.Dropout(0.5),
                                  layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        x = np.linspace(-1, 1, 60, dtype="f").reshape(10, 6)
        model.fit(x, x[:, :1], epochs=3, batch_size=4, verbose=0, shuffle=True)
        return model.get_weights()
    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_regularizers_add_penalties_and_gradients():
    r = np.random.default_rng(5)
    x, y = r.standard_normal((9, 4)).astype("f"), r.standard_normal((9, 2)).astype("f")
    make = lambda: mlp([5, 2], ["relu", "linear"], 4, kernel_regularizer=keras.regularizers.l1_l2(0.01, 0.02),  # noqa
                       bias_regularizer="l2", activity_regularizer=keras.regularizers.L1(0.01))
    native, eager = twin_steps(make, lambda: keras.optimizers.SGD(0.1), "mse", x, y)
    assert_same(native, eager)
    plain = mlp([5, 2], ["relu", "linear"], 4)
    plain.compile(optimizer="sgd", loss="mse")
    plain.set_weights(make().get_weights())
    regularized = make()
    regularized.compile(optimizer="sgd", loss="mse")
    assert regularized.evaluate(x, y, verbose=0) > plain.evaluate(x, y, verbose=0)


def test_metrics_and_history():
    r = np.random.default_rng(6)
    x = r.standard_normal((64, 4)).astype("f")
    y = (x[:, :1] > 0).astype("f")
    model = mlp([8, 1], ["relu", "sigmoid"], 4)

    def my_metric(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=["accuracy", keras.metrics.Precision(), keras.metrics.Recall(), keras.metrics.AUC(),
                           "mae", "mse", keras.metrics.RootMeanSquaredError(), my_metric])
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x, y))
    assert set(history.history) == {"loss", "accuracy", "precision", "recall", "auc", "mae", "mse",
                                    "root_mean_squared_error", "my_metric", "val_loss", "val_accuracy",
                                    "val_precision", "val_recall", "val_auc", "val_mae", "val_mse",
                                    "val_root_mean_squared_error", "val_my_metric"}
    assert history.epoch == [0, 1]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)
    pred = (p > 0.5).astype("f")
    np.testing.assert_allclose(logs["accuracy"], np.mean(pred == y), rtol=1e-6)
    np.testing.assert_allclose(logs["mae"], np.mean(np.abs(p - y)), rtol=1e-4)
    tp = np.sum(pred * y)
    np.testing.assert_allclose(logs["precision"], tp / max(pred.sum(), 1), rtol=1e-5)
    np.testing.assert_allclose(logs["recall"], tp / y.sum(), rtol=1e-5)


def test_predict_any_batch_size_and_call():
    model = mlp([3], ["tanh"], 2)
    x = np.random.default_rng(0).standard_normal((37, 2)).astype("f")
    full = model.predict(x, batch_size=10, verbose=0)
    np.testing.assert_allclose(full, model.predict_on_batch(x), rtol=1e-6)
    np.testing.assert_allclose(model(x), full, rtol=1e-6)
    k, b = model.get_weights()
    np.testing.assert_allclose(full, np.tanh(x @ k + b), rtol=1e-5, atol=1e-6)
