"""kcompile.utils data helpers: PyDataset, pad_sequences, timeseries/image/text datasets, image I/O,
plot_model, and kcompile.distribute."""
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kcompile as keras

RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 3)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype("float32")


@pytest.fixture(scope="module")
def sgd_model():
    keras.set_random_seed(3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.05), "mse", metrics=["mae"])
    return model, model.get_weights()


class Batches(keras.utils.PyDataset):
    """X, Y cut into batches of 8; optional slow, shuffled-by-epoch reading to exercise the pool."""

    def __init__(self, with_y=True, delay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.with_y, self.delay = with_y, delay
        self.threads, self.begins, self.ends = set(), 0, 0

    def __len__(self):
        return -(-len(X) // 8)

    def __getitem__(self, i):
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay * ((5 * i) % 3))   # later batches may finish first
        sl = slice(i * 8, (i + 1) * 8)
        return (X[sl], Y[sl]) if self.with_y else X[sl]

    def on_epoch_begin(self):
        self.begins += 1

    def on_epoch_end(self):
        self.ends += 1


@pytest.mark.parametrize("kwargs", [{}, dict(workers=3, delay=0.01), dict(workers=2, use_multiprocessing=True)])
def test_py_dataset_fit_matches_arrays(sgd_model, kwargs):
    model, initial = sgd_model
    model.set_weights(initial)
    ref = model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    ref_w = model.get_weights()
    model.set_weights(initial)
    ds = Batches(**kwargs)
    got = model.fit(ds, epochs=2, verbose=0).history
    for a, b in zip(ref_w, model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    if not kwargs.get("use_multiprocessing"):
        assert ds.begins == 2 and ds.ends == 2
    if kwargs.get("workers", 1) > 1 and not kwargs.get("use_multiprocessing"):
        assert len(ds.threads) > 1 and threading.current_thread().name not in ds.threads


def test_py_dataset_predict_and_evaluate_keep_order(sgd_model):
    model, _ = sgd_model
    want = model.predict(X, batch_size=8, verbose=0)
    got = model.predict(Batches(with_y=False, workers=4, delay=0.01, max_queue_size=2), verbose=0)
    np.testing.assert_array_equal(got, want)
    assert model.evaluate(Batches(workers=2), verbose=0, return_dict=True)["loss"] == pytest.approx(
        model.evaluate(X, Y, batch_size=8, verbose=0, return_dict=True)["loss"], rel=1e-6)


def test_sequence_alias_and_plain_sequence_objects(sgd_model):
    assert keras.utils.Sequence is keras.utils.PyDataset
    model, _ = sgd_model

    class Plain:   # Keras 2 code often passes any object with __len__/__getitem__
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return X[i * 4:(i + 1) * 4], Y[i * 4:(i + 1) * 4]
    h = model.fit(Plain(), epochs=1, verbose=0)
    assert len(h.history["loss"]) == 1


def test_infinite_py_dataset_needs_steps(sgd_model):
    model, _ = sgd_model

    class Endless(keras.utils.PyDataset):
        @property
        def num_batches(self):
            return None

        def __getitem__(self, i):
            j = i % 3
            return X[j * 8:(j + 1) * 8], Y[j * 8:(j + 1) * 8]
    with pytest.raises(ValueError, match="infinite PyDataset"):
        model.fit(Endless(), epochs=1, verbose=0)
    seen = []
    model.fit(Endless(), epochs=2, steps_per_epoch=5, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))])
    assert seen == [0, 1, 2, 3, 4] * 2


def test_py_dataset_bad_structures(sgd_model):
    model, _ = sgd_model

    class Four(Batches):
        def __getitem__(self, i):
            return X[:8], Y[:8], np.ones(8), np.ones(8)
    with pytest.raises(ValueError, match=r"Batch 0 from PyDataset Four.*4 elements"):
        model.fit(Four(), verbose=0)

    class Drifting(Batches):
        def __getitem__(self, i):
            return (X[:8], Y[:8]) if i < 2 else X[:8]
    with pytest.raises(ValueError, match=r"Batch 2 from PyDataset Drifting has the structure array.*\(array, array\)"):
        model.fit(Drifting(workers=2), verbose=0)

    class Nothing(Batches):
        def __getitem__(self, i):
            return None
    with pytest.raises(ValueError, match="Batch 0 from PyDataset Nothing is None"):
        model.fit(Nothing(), verbose=0)

    class Broken(Batches):
        def __getitem__(self, i):
            if i == 2:
                raise KeyError("no such file")
            return super().__getitem__(i)
    with pytest.raises(KeyError) as info:
        model.fit(Broken(workers=2), verbose=0)
    assert "while reading batch 2 of Broken" in "".join(getattr(info.value, "__notes__", []))
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(Batches(), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="workers"):
        Batches(workers=-1)


def test_generator_inconsistent_shapes_names_batch(sgd_model):
    model, _ = sgd_model

    def gen():
        yield X[:8], Y[:8]
        yield X[:8, :2], Y[:8]
    with pytest.raises(ValueError, match=r"Batch 1 from the generator given as data has shapes \[\(2,\), \(1,\)\]"):
        model.fit(gen(), steps_per_epoch=2, verbose=0)


# ------------------------------------------------------------------ pad_sequences
def reference_pad(seqs, maxlen, padding, truncating, value):
    out = []
    for s in seqs:
        s = list(s)
        if len(s) > maxlen:
            s = s[len(s) - maxlen:] if truncating == "pre" else s[:maxlen]
        fill = [value] * (maxlen - len(s))
        out.append(fill + s if padding == "pre" else s + fill)
    return out


@given(seqs=st.lists(st.lists(st.integers(-50, 50), max_size=8), min_size=1, max_size=6),
       maxlen=st.one_of(st.none(), st.integers(0, 10)), padding=st.sampled_from(["pre", "post"]),
       truncating=st.sampled_from(["pre", "post"]), value=st.integers(-3, 3))
def test_pad_sequences_matches_reference(seqs, maxlen, padding, truncating, value):
    got = keras.utils.pad_sequences(seqs, maxlen=maxlen, padding=padding, truncating=truncating, value=value)
    n = max(len(s) for s in seqs) if maxlen is None else maxlen
    assert got.dtype == np.int32 and got.shape == (len(seqs), n)
    assert got.tolist() == reference_pad(seqs, n, padding, truncating, value)


def test_pad_sequences_sample_shape_dtype_and_errors():
    seqs = [np.ones((2, 3)), np.zeros((0, 3)), 2 * np.ones((4, 3))]
    got = keras.utils.pad_sequences(seqs, maxlen=3, dtype="float32", padding="post", value=-1.0)
    assert got.shape == (3, 3, 3) and got.dtype == np.float32
    assert (got[0, 2] == -1).all() and (got[1] == -1).all() and (got[2] == 2).all()
    strings = keras.utils.pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")
    assert strings.tolist() == [["a", "b"], ["<pad>", "c"]]
    with pytest.raises(ValueError, match="not compatible with `value`"):
        keras.utils.pad_sequences([[1]], value="x")
    with pytest.raises(ValueError, match='Padding type "middle"'):
        keras.utils.pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="non-iterable"):
        keras.utils.pad_sequences([[1], 5])
    with pytest.raises(ValueError, match="position 1"):
        keras.utils.pad_sequences([np.ones((2, 3)), np.ones((2, 4))])


# ------------------------------------------------------------------ timeseries_dataset_from_array
@given(n=st.integers(6, 40), length=st.integers(1, 5), stride=st.integers(1, 4), rate=st.integers(1, 3),
       batch=st.one_of(st.none(), st.integers(1, 7)), start=st.integers(0, 3), cut=st.integers(0, 3),
       with_targets=st.booleans())
def test_timeseries_windows_match_reference(n, length, stride, rate, batch, start, cut, with_targets):
    data = np.arange(n * 2).reshape(n, 2)
    targets = np.arange(n) * 10 if with_targets else None
    end = n - cut if cut else None
    ds = keras.utils.timeseries_dataset_from_array(data, targets, length, sequence_stride=stride, sampling_rate=rate,
                                                   batch_size=batch, start_index=start or None, end_index=end)
    stop = end or n
    want_x, want_y = [], []
    p = 0
    while start + p + (length - 1) * rate < stop and (targets is None or p < len(targets)):
        want_x.append(data[[start + p + k * rate for k in range(length)]])
        want_y.append(start + p)
        p += stride
    elements = list(ds) if batch is None else [e for b in ds for e in
                                               (zip(*b) if with_targets else b)]
    got_x = [e[0] if with_targets else e for e in elements]
    assert len(got_x) == len(want_x)
    for g, w in zip(got_x, want_x):
        np.testing.assert_array_equal(g, w)
    if with_targets:
        assert [int(e[1]) for e in elements] == [10 * i for i in want_y]
    if batch is not None:
        assert all(len(b[0] if with_targets else b) <= batch for b in ds)


def test_timeseries_shuffle_and_errors():
    data = np.arange(50)
    kw = dict(sequence_length=4, batch_size=5, shuffle=True, seed=7)
    a = [x.tolist() for x in keras.utils.timeseries_dataset_from_array(data, None, **kw)]
    b = [x.tolist() for x in keras.utils.timeseries_dataset_from_array(data, None, **kw)]
    assert a == b
    windows = sorted(w for batch in a for w in batch)
    assert windows == [list(range(i, i + 4)) for i in range(47)]
    assert sum(a, []) != windows   # actually shuffled
    with pytest.raises(ValueError, match="`sampling_rate` must be higher than 0"):
        keras.utils.timeseries_dataset_from_array(data, None, 3, sampling_rate=0)
    with pytest.raises(ValueError, match="`start_index` must be lower than the length"):
        keras.utils.timeseries_dataset_from_array(data, None, 3, start_index=50)
    with pytest.raises(ValueError, match="`end_index` must be higher than `start_index`"):
        keras.utils.timeseries_dataset_from_array(data, None, 3, start_index=10, end_index=5)


def test_timeseries_dataset_trains_a_model(sgd_model):
    model, _ = sgd_model
    series = RNG.normal(size=(60, 3)).astype("float32")
    ds = keras.utils.timeseries_dataset_from_array(series, series[:, :1], sequence_length=1, batch_size=16)
    flat = ds.map(lambda x, y: (x[:, 0], y))
    h = model.fit(flat, epochs=1, verbose=0)
    assert np.isfinite(h.history["loss"][0])
