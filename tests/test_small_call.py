"""predict_on_batch's small-call path (issue #11): a float32 batch of the right shape goes to a
per-thread prebound native call (runtime/native.py run_one); anything else takes the general
path. These tests hold that path to the general one's results and Keras semantics: a fresh
array each call, weights changed between calls seen, the same values or errors for unusual
inputs, and correct results from many threads at once. No timing is asserted here.
"""
import threading

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers
from kcompile.ir.graph import Slot
from kcompile.runtime import native

from conftest import run_in_threads


def _guide_mlp(seed=0):
    keras.set_random_seed(seed)
    model = keras.Sequential([keras.Input((20,)), layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="sgd")
    return model


def _reference(weights, x):
    """The guide MLP in numpy (dropout is the identity at inference)."""
    h = np.asarray(x, np.float64)
    w0, b0, w1, b1, w2, b2 = weights
    h = np.maximum(h @ w0 + b0, 0)
    h = np.maximum(h @ w1 + b1, 0)
    z = h @ w2 + b2
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _check(model, x, got):
    np.testing.assert_allclose(got, _reference(model.get_weights(), x), rtol=1e-4, atol=1e-6)


def _rows(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 20)).astype(np.float32)


def test_fast_path_is_taken_and_matches_reference():
    model = _guide_mlp()
    x = _rows(1)
    model.predict_on_batch(x)                      # compiles (if needed) and binds batch 1
    got = model._predict_fast(x)
    assert got is not None, "a float32 (1, 20) batch should take the small-call path"
    assert isinstance(got, np.ndarray) and got.shape == (1, 10) and got.dtype == np.float32
    _check(model, x, got)
    np.testing.assert_array_equal(model.predict_on_batch(x), model.predict(x, verbose=0))


def test_each_call_returns_a_fresh_array():
    model = _guide_mlp()
    a, b = _rows(1, 1), _rows(1, 2)
    first = model.predict_on_batch(a)
    kept = first.copy()
    second = model.predict_on_batch(b)
    third = model.predict_on_batch(a)
    assert first is not second and first is not third
    assert not np.shares_memory(first, second) and not np.shares_memory(first, third)
    np.testing.assert_array_equal(first, kept)     # later calls did not write into an earlier result
    np.testing.assert_array_equal(first, third)
    first[...] = -1                                # nor does the caller's writing reach later calls
    np.testing.assert_array_equal(model.predict_on_batch(a), kept)
    assert first.flags.writeable and first.flags.owndata


def test_input_changed_after_a_call_does_not_change_the_result():
    model = _guide_mlp()
    x = _rows(1)
    got = model.predict_on_batch(x)
    want = got.copy()
    x[...] = 0
    np.testing.assert_array_equal(got, want)
    _check(model, x, model.predict_on_batch(x))


def test_set_weights_between_calls_is_seen():
    model = _guide_mlp()
    x = _rows(1)
    before = model.predict_on_batch(x)
    weights = [w * 1.5 + 0.01 for w in model.get_weights()]
    model.set_weights(weights)
    after = model.predict_on_batch(x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _reference(weights, x), rtol=1e-4, atol=1e-6)
    # one layer's weights, and a variable assigned directly
    dense = model.layers[-1]
    w, b = dense.get_weights()
    dense.set_weights([w, b + 1.0])
    _check(model, x, model.predict_on_batch(x))
    dense.kernel.assign(np.zeros_like(w))
    _check(model, x, model.predict_on_batch(x))


def test_training_between_calls_is_seen():
    model = _guide_mlp()
    x = _rows(1)
    data = _rows(64, 3)
    labels = np.eye(10, dtype=np.float32)[np.arange(64) % 10]
    before = model.predict_on_batch(x)
    model.train_on_batch(data, labels)
    after_step = model.predict_on_batch(x)
    assert not np.array_equal(before, after_step)
    _check(model, x, after_step)
    model.fit(data, labels, epochs=2, batch_size=16, verbose=0)
    _check(model, x, model.predict_on_batch(x))


@pytest.mark.parametrize("make", [
    lambda x: np.asfortranarray(x),                                   # not C-contiguous
    lambda x: np.repeat(x, 2, axis=1)[:, ::2],                        # strided
    lambda x: x.astype(np.float64),                                   # float64
    lambda x: x.astype(np.float16),
    lambda x: x.tolist(),                                             # nested lists
    lambda x: x.astype(np.float32).view(np.matrix),                   # an ndarray subclass
])
def test_unusual_inputs_give_the_same_values(make):
    model = _guide_mlp()
    x = _rows(3)
    plain = model.predict_on_batch(x)
    odd = make(x)
    got = model.predict_on_batch(odd)
    want = model.predict_on_batch(np.ascontiguousarray(np.asarray(odd), dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(got), want)
    if np.asarray(odd).dtype in (np.float32, np.float64):
        np.testing.assert_allclose(np.asarray(got), plain, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad, error, text", [
    (np.zeros((1, 21), np.float32), ValueError, r"expected shape=\(None, 20\), found shape=\(1, 21\)"),
    (np.zeros(20, np.float32), ValueError, r"expected shape=\(None, 20\), found shape=\(20,\)"),
    (np.zeros((1, 20, 1), np.float32), ValueError, r"found shape=\(1, 20, 1\)"),
    (np.zeros((0, 20), np.float32), ValueError, r"A batch of 0 samples is outside"),
    (np.array([["a"] * 20]), TypeError, r"must be numeric"),
    (np.zeros((1, 20), object), TypeError, r"must be numeric"),
    (np.float32(1.0), ValueError, r"must have a batch dimension"),
])
def test_wrong_inputs_raise_the_general_paths_errors(bad, error, text):
    model = _guide_mlp()
    model.predict_on_batch(_rows(1))               # the fast path is warm
    with pytest.raises(error, match=text):
        model.predict_on_batch(bad)
    _check(model, _rows(1), model.predict_on_batch(_rows(1)))   # and still works afterwards


def test_many_batch_sizes_and_large_batches():
    """More batch sizes than a thread keeps bound, and batches too large to bind (run())."""
    model = _guide_mlp()
    sizes = list(range(1, native.BINDINGS_PER_THREAD + 6)) + [1, 2, 3000, 1, 3000]
    for i, n in enumerate(sizes):
        x = _rows(n, i)
        _check(model, x, model.predict_on_batch(x))


def test_pool_that_grows_after_binding_is_followed():
    """The state buffer is reallocated when the pool grows: a bound call must use the new one."""
    model = _guide_mlp()
    x = _rows(1)
    model.predict_on_batch(x)
    pool = model._compiled_model.pool
    old = pool.buffer
    with pool.lock.write():
        pool.add(Slot("test_small_call_growth", (4 * old.size,), "float32"))
    assert pool.buffer is not old
    weights = [w - 0.02 for w in model.get_weights()]
    model.set_weights(weights)                      # written to the new buffer only
    np.testing.assert_allclose(model.predict_on_batch(x), _reference(weights, x), rtol=1e-4, atol=1e-6)


def test_layer_shared_with_another_model_is_taken_back():
    """Compiling a second model that shares a layer moves its weights into that model's pool;
    the first model's next small call must take them back (sync_state), and both stay right."""
    keras.set_random_seed(4)
    shared = layers.Dense(64, activation="relu")
    a = keras.Sequential([keras.Input((20,)), shared, layers.Dropout(0.5), layers.Dense(64, activation="relu"),
                          layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
    a.compile(loss="categorical_crossentropy", optimizer="sgd")
    x = _rows(2)
    _check(a, x, a.predict_on_batch(x))
    b = keras.Sequential([keras.Input((20,)), shared, layers.Dense(3)])
    b.compile(loss="mse", optimizer="sgd")
    b.predict_on_batch(x)                           # b's pool holds the shared kernel now
    shared.set_weights([w + 0.05 for w in shared.get_weights()])
    _check(a, x, a.predict_on_batch(x))            # a takes them back and sees the new values
    w0, b0, w1, b1 = b.get_weights()
    want_b = np.maximum(x.astype(np.float64) @ w0 + b0, 0) @ w1 + b1
    np.testing.assert_allclose(b.predict_on_batch(x), want_b, rtol=1e-4, atol=1e-5)
    _check(a, x, a.predict_on_batch(x))


def test_four_threads_at_once_get_their_own_results():
    model = _guide_mlp()
    inputs = [_rows(n, seed) for seed, n in enumerate((1, 1, 2, 5, 1, 17, 3, 1))]
    want = [_reference(model.get_weights(), x) for x in inputs]
    barrier = threading.Barrier(4)

    def worker(k):
        barrier.wait()
        kept = []
        for rep in range(400):
            i = (k * 3 + rep) % len(inputs)
            got = model.predict_on_batch(inputs[i])
            kept.append((i, got))
        for i, got in kept:                     # every result still holds its own call's values
            np.testing.assert_allclose(got, want[i], rtol=1e-4, atol=1e-6)

    run_in_threads(4, [lambda k=k: worker(k) for k in range(4)])


def test_readers_in_threads_while_weights_change_see_whole_weight_sets():
    """Threads predicting while the main thread sets whole new weight sets (under the write lock)
    each see one of the weight sets, never a mixture."""
    model = _guide_mlp()
    x = _rows(1)
    sets = [[w * (1 + 0.1 * k) for w in model.get_weights()] for k in range(4)]
    wants = [_reference(s, x) for s in sets]
    pool = model._compiled_model.pool
    stop = threading.Event()
    errors = []

    def reader():
        try:
            while not stop.is_set():
                got = model.predict_on_batch(x)
                if not any(np.allclose(got, w, rtol=1e-4, atol=1e-6) for w in wants):
                    raise AssertionError(f"a result from no single weight set: {got}")
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    model.set_weights(sets[0])
    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for rep in range(60):
            with pool.lock.write():                 # one whole weight set at a time
                model.set_weights(sets[rep % len(sets)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors


def test_run_eagerly_takes_the_same_path_to_the_interpreter():
    keras.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="sgd", run_eagerly=True)
    x = _rows(2)
    first = model.predict_on_batch(x)
    _check(model, x, first)
    kept = first.copy()
    model.set_weights([w + 0.01 for w in model.get_weights()])
    _check(model, x, model.predict_on_batch(x))
    np.testing.assert_array_equal(first, kept)
