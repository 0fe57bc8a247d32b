"""Dataset transformations against numpy references, and fit on datasets/generators equals fit on arrays."""
import threading

import numpy as np
from hypothesis import given, strategies as st

import kcompile as keras
from kcompile.data import INFINITE_CARDINALITY, Dataset


@given(n=st.integers(0, 40), batch=st.integers(1, 9), drop=st.booleans())
def test_batch_matches_numpy(n, batch, drop):
    x = np.arange(n * 2).reshape(n, 2)
    got = list(Dataset.from_tensor_slices(x).batch(batch, drop_remainder=drop))
    stop = (n // batch) * batch if drop else n
    want = [x[i:min(i + batch, stop)] for i in range(0, stop, batch)]
    assert len(got) == len(want) == Dataset.from_tensor_slices(x).batch(batch, drop).cardinality()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@given(n=st.integers(1, 50), buffer=st.integers(1, 60), seed=st.integers(0, 100))
def test_shuffle_is_a_seeded_permutation(n, buffer, seed):
    ds = Dataset.range(n).shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
    a, b = [int(v) for v in ds], [int(v) for v in ds]
    assert sorted(a) == list(range(n)) and a == b
    if buffer == 1:
        assert a == list(range(n))


def test_map_filter_take_skip_zip_concatenate_repeat():
    ds = Dataset.from_tensor_slices((np.arange(10), np.arange(10) * 2))
    mapped = ds.map(lambda a, b: a + b).filter(lambda v: v % 2 == 0)
    assert [int(v) for v in mapped] == [0, 6, 12, 18, 24]
    assert [int(v) for v in Dataset.range(10).skip(3).take(4)] == [3, 4, 5, 6]
    z = Dataset.zip((Dataset.range(3), Dataset.range(5)))
    assert z.cardinality() == 3 and [tuple(map(int, e)) for e in z] == [(0, 0), (1, 1), (2, 2)]
    assert [int(v) for v in Dataset.range(2).concatenate(Dataset.range(3))] == [0, 1, 0, 1, 2]
    assert Dataset.range(2).repeat().cardinality() == INFINITE_CARDINALITY
    assert [int(v) for v in Dataset.range(2).repeat(3)] == [0, 1] * 3
    d = Dataset.from_tensor_slices({"a": np.ones((4, 2)), "b": np.zeros(4)}).batch(3)
    assert [e["a"].shape for e in d] == [(3, 2), (1, 2)]


def test_prefetch_thread_stops_cleanly_and_propagates_errors():
    before = threading.active_count()
    it = iter(Dataset.range(1000).prefetch(4))
    next(it)
    it.close()
    assert list(Dataset.range(5).prefetch(2)) == list(range(5))

    def bad():
        yield 1
        raise RuntimeError("broken generator")
    try:
        list(Dataset.from_generator(bad).prefetch(2))
        raise AssertionError("expected the generator's error")
    except RuntimeError as exc:
        assert "broken generator" in str(exc)
    assert threading.active_count() <= before + 1


def test_fit_on_dataset_and_generator_equals_fit_on_arrays():
    r = np.random.default_rng(0)
    x, y = r.standard_normal((48, 3)).astype("f"), r.standard_normal((48, 1)).astype("f")

    def train(data, **kwargs):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(*data, epochs=2, verbose=0, **kwargs)
        return model.get_weights()

    def gen():
        while True:
            for i in range(0, 48, 16):
                yield x[i:i + 16], y[i:i + 16]
    want = train((x, y), batch_size=16, shuffle=False)
    for got in (train((Dataset.from_tensor_slices((x, y)).batch(16),)),
                train((gen(),), steps_per_epoch=3)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-6)


def test_bad_dataset_structure_and_inconsistent_generators():
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")

    def ragged():
        yield np.zeros((4, 3), "f"), np.zeros((4, 1), "f")
        yield np.zeros((4, 5), "f"), np.zeros((4, 1), "f")
    try:
        model.fit(ragged(), steps_per_epoch=2, verbose=0)
        raise AssertionError("expected a shape error")
    except ValueError as exc:
        assert "Batch 1" in str(exc) or "incompatible" in str(exc)
