"""Threads beyond the GEMM (issue #11): elementwise, reduction, layout (im2col windows) and col2im
nests split one dim among the pool's workers (codegen/lower.py `_parallel`, loops.split_dim).

Every written element is owned by one thread and computed in the serial order, so predictions and
training steps are bit-identical for 1, 2 or 3 threads; small work (batch-1 calls) never wakes the
pool. Most tests lower the cut-off to one element so that every splittable nest runs on the pool,
even at the small shapes a test can afford.
"""
import numpy as np
import pytest

import kcompile as keras
from kcompile import config, layers
from kcompile.codegen import jit, lower
from kcompile.codegen.loops import Access, Mono, split_dim

pytestmark = pytest.mark.skipif(jit.thread_pool() is None, reason="no C compiler: the thread pool is unavailable")

N = Mono(1, 1)


@pytest.fixture
def threads():
    before = config.get_num_threads()
    yield config.set_num_threads
    config.set_num_threads(before)


@pytest.fixture
def always_parallel(monkeypatch):
    """Every nest with a splittable dim of 2 or more runs through kc_parallel_for."""
    monkeypatch.setattr(lower, "PARALLEL_MIN_ELEMENTS", 1)


def _jobs():
    return jit.thread_pool().kc_parallel_jobs()


# --- which dim a nest may split ------------------------------------------------------------------

def test_split_dim_takes_the_outermost_dim_that_owns_every_written_element():
    # elementwise over (n*64): the flat dim
    assert split_dim([N * Mono(64)], [Access(None, [Mono(1)])]) == 0
    # a column sum over the batch (bias gradient): not the batch dim (every row adds into every
    # output), the columns
    assert split_dim([N, Mono(64)], [Access(None, [Mono(0), Mono(1)])]) == 1
    # a row sum: the batch dim
    assert split_dim([N, Mono(10)], [Access(None, [Mono(1), Mono(0)])]) == 0
    # a full reduction has no dim to split: serial, one fixed order
    assert split_dim([N * Mono(10)], [Access(None, [Mono(0)])]) is None
    # col2im of 3-wide windows at stride 1 over 8 positions (overlapping writes): the images only
    image = 10
    assert split_dim([N, Mono(8), Mono(3)], [Access(None, [Mono(image), Mono(1), Mono(1)])]) == 0
    assert split_dim([Mono(8), Mono(3)], [Access(None, [Mono(1), Mono(1)])]) is None
    # a dim of one element is never split
    assert split_dim([Mono(1), Mono(8)], [Access(None, [Mono(8), Mono(1)])]) == 1


# --- whole models: the same bits for any thread count -------------------------------------------

def _mlp():
    keras.set_random_seed(1)
    model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)), layers.Dropout(0.5),
                              layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                  optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True))
    return model


def _vgg():
    """The guide's VGG-like convnet on 20x20 images (the same layer stack, smaller)."""
    keras.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((20, 20, 3)),
        layers.Conv2D(8, (3, 3), activation="relu"), layers.Conv2D(8, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25),
        layers.Conv2D(16, (3, 3), activation="relu"), layers.Conv2D(16, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25),
        layers.Flatten(), layers.Dense(32, activation="relu"), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    return model


def _lstm():
    keras.set_random_seed(3)
    model = keras.Sequential([keras.Input((6, 5)), layers.LSTM(16), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _run(model, start, x, y):
    model.set_training_state(start)          # weights, optimizer slots, counters, the RNG state
    out = [model.predict_on_batch(x)]
    for _ in range(3):
        out.append(np.asarray(model.train_on_batch(x, y), dtype=np.float64))
    return out + model.get_weights() + [model.predict_on_batch(x)]


@pytest.mark.parametrize("make,shape", [(_mlp, (67, 20)), (_vgg, (5, 20, 20, 3)), (_lstm, (9, 6, 5))],
                         ids=["mlp", "vgg_like", "lstm"])
def test_models_are_bit_identical_with_1_2_and_3_threads(threads, always_parallel, make, shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, shape[0])]
    model = make()                            # the thread count is read at run time: one compile
    model.train_on_batch(x, y)                # builds the train entry, so the state has every slot
    start = model.get_training_state()
    results = []
    for count in (1, 2, 3):
        threads(count)
        before = _jobs()
        results.append(_run(model, start, x, y))
        if count > 1:
            assert _jobs() > before          # the nests did run on the pool
    assert np.isfinite(results[0][0]).all()
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# --- the kernels against the interpreter on drawn shapes ----------------------------------------

def _conv_case(rng):
    size = int(rng.integers(5, 12))
    kernel = int(rng.integers(1, 4))
    stride = int(rng.integers(1, 3))
    padding = ["valid", "same"][int(rng.integers(0, 2))]
    channels = int(rng.integers(1, 5))
    filters = int(rng.integers(1, 7))
    batch = int(rng.integers(2, 6))
    return (batch, size, size, channels), [
        keras.Input((size, size, channels)),
        layers.Conv2D(filters, kernel, strides=stride, padding=padding, activation="tanh"),
        layers.Permute((3, 1, 2)),
        layers.Flatten(),
        layers.Softmax(),
    ]


@pytest.mark.parametrize("seed", range(3))
def test_threaded_kernels_match_the_interpreter_on_drawn_shapes(threads, always_parallel, seed):
    rng = np.random.default_rng(100 + seed)
    shape, stack = _conv_case(rng)
    x = rng.standard_normal(shape).astype(np.float32)
    threads(2)
    keras.set_random_seed(seed)
    native = keras.Sequential(stack)
    native.compile(optimizer="sgd", loss="mse")
    eager = keras.Sequential.from_config(native.get_config())
    eager.build(shape)
    eager.set_weights(native.get_weights())
    eager.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    np.testing.assert_allclose(native.predict_on_batch(x), eager.predict_on_batch(x), rtol=2e-5, atol=2e-6)
    # one training step: the window gradient (col2im), the bias column sums and the weight update
    y = rng.random(native.predict_on_batch(x).shape).astype(np.float32)
    native.train_on_batch(x, y)
    eager.train_on_batch(x, y)
    for a, b in zip(native.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --- the serial cut-off ----------------------------------------------------------------------------

def test_batch_1_calls_never_wake_the_pool_and_big_elementwise_work_does(threads):
    threads(2)
    keras.set_random_seed(4)
    model = keras.Sequential([keras.Input((2000,)), layers.Activation("tanh"), layers.Softmax()])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).standard_normal((40, 2000)).astype(np.float32)
    model.predict_on_batch(x[:1])
    before = _jobs()
    for _ in range(5):
        model.predict_on_batch(x[:1])
    assert _jobs() == before
    big = model.predict_on_batch(x)        # 80,000 elements: above the cut-off, no GEMM involved
    assert _jobs() > before
    threads(1)
    np.testing.assert_array_equal(big, model.predict_on_batch(x))
