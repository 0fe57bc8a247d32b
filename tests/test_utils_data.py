"""kcompile.utils data helpers: PyDataset, pad_sequences, timeseries/image/text datasets, image I/O,
plot_model, and kcompile.distribute."""
import threading
import time

import numpy as np
import pytest
from hypothesis import example, given
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
    got = model.fit(ds, epochs=2, shuffle=False, verbose=0).history
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

    class Counting(Endless):
        def __getitem__(self, i):
            seen.append(i)
            return super().__getitem__(i)
    model.fit(Counting(), epochs=2, steps_per_epoch=5, verbose=0)
    assert seen == list(range(10))   # the second epoch goes on where the first stopped, as in Keras


def test_py_dataset_shuffle_visits_every_batch_and_batch_forms(sgd_model):
    model, _ = sgd_model
    order = []

    class Logged(Batches):
        def __getitem__(self, i):
            order.append(i)
            out = super().__getitem__(i)
            return list(out) if self.with_y else out   # a list [x, y] means (x, y); an array is x
    keras.set_random_seed(11)
    model.fit(Logged(), epochs=1, verbose=0, shuffle=True)
    shuffled = list(order)
    order.clear()
    keras.set_random_seed(11)
    model.fit(Logged(), epochs=1, verbose=0, shuffle=True)
    assert sorted(shuffled) == [0, 1, 2, 3] and order == shuffled   # seeded by set_random_seed
    order.clear()
    model.predict(Logged(with_y=False), verbose=0)
    assert order == [0, 1, 2, 3]   # predict never shuffles


def test_py_dataset_bad_structures(sgd_model):
    model, _ = sgd_model

    class Four(Batches):
        def __getitem__(self, i):
            return X[:8], Y[:8], np.ones(8), np.ones(8)
    with pytest.raises(ValueError, match=r"Batch 0 from PyDataset Four: __getitem__ must return.*4 elements"):
        model.fit(Four(), shuffle=False, verbose=0)

    class Drifting(Batches):
        def __getitem__(self, i):
            return (X[:8], Y[:8]) if i < 2 else X[:8]
    with pytest.raises(ValueError, match=r"Batch 2 from PyDataset Drifting has the structure \(array,\).*\(array, array\)"):
        model.fit(Drifting(workers=2), shuffle=False, verbose=0)

    class Nothing(Batches):
        def __getitem__(self, i):
            return None
    with pytest.raises(ValueError, match="Batch 0 from PyDataset Nothing is None"):
        model.fit(Nothing(), shuffle=False, verbose=0)

    class Broken(Batches):
        def __getitem__(self, i):
            if i == 2:
                raise KeyError("no such file")
            return super().__getitem__(i)
    with pytest.raises(KeyError) as info:
        model.fit(Broken(workers=2), shuffle=False, verbose=0)
    assert "while reading batch 2 of Broken" in "".join(getattr(info.value, "__notes__", []))
    h = model.fit(X, Y, batch_size=4, validation_data=Batches(), epochs=1, verbose=0)
    assert "val_loss" in h.history   # a PyDataset as validation data next to array training data
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
@example(n=6, length=1, stride=1, rate=1, batch=None, start=3, cut=3, with_targets=False)
def test_timeseries_windows_match_reference(n, length, stride, rate, batch, start, cut, with_targets):
    data = np.arange(n * 2).reshape(n, 2)
    targets = np.arange(n) * 10 if with_targets else None
    end = n - cut if cut else None
    if start and end is not None and end <= start:
        # Keras refuses an empty [start_index, end_index) range rather than yielding no windows
        with pytest.raises(ValueError, match="`end_index` must be higher than `start_index`"):
            keras.utils.timeseries_dataset_from_array(data, targets, length, start_index=start, end_index=end)
        return
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


# ------------------------------------------------------------------ directory datasets and images
try:
    import PIL  # noqa: F401
    HAVE_PIL = True
except ImportError:
    HAVE_PIL = False
needs_pil = pytest.mark.skipif(not HAVE_PIL, reason="Pillow is not installed (pip install kcompile[images])")


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """cats: 3 images, dogs: 2 (one in a nested folder), plus a non-image file that must be ignored."""
    root = tmp_path_factory.mktemp("images")
    if not HAVE_PIL:
        return root
    rng = np.random.default_rng(1)
    for cls, count in (("dogs", 2), ("cats", 3)):
        (root / cls / "nested").mkdir(parents=True)
        for i in range(count):
            where = root / cls / ("nested" if cls == "dogs" and i == 1 else "") / f"{i}.png"
            keras.utils.save_img(str(where), rng.integers(0, 256, size=(6 + i, 8, 3)).astype("float32"), scale=False)
        (root / cls / "notes.md").write_text("not an image")
    return root


@needs_pil
def test_image_dataset_labels_batches_and_message(image_tree, capsys):
    ds = keras.utils.image_dataset_from_directory(str(image_tree), image_size=(4, 5), batch_size=2, shuffle=False)
    assert "Found 5 files belonging to 2 classes." in capsys.readouterr().out
    assert ds.class_names == ["cats", "dogs"]
    batches = list(ds)
    assert [b[0].shape for b in batches] == [(2, 4, 5, 3), (2, 4, 5, 3), (1, 4, 5, 3)]
    labels = np.concatenate([b[1] for b in batches])
    assert labels.tolist() == [0, 0, 0, 1, 1] and labels.dtype == np.int32
    first = keras.utils.img_to_array(keras.utils.load_img(str(image_tree / "cats" / "0.png")))
    np.testing.assert_allclose(batches[0][0][0], keras.utils.image_utils.resize_image(first, (4, 5)), rtol=1e-6)
    gray = keras.utils.image_dataset_from_directory(str(image_tree), image_size=(3, 3), color_mode="grayscale",
                                                    label_mode="binary", batch_size=None, shuffle=False,
                                                    verbose=False)
    x, y = next(iter(gray))
    assert x.shape == (3, 3, 1) and y.shape == (1,) and y.dtype == np.float32


@needs_pil
def test_image_dataset_splits_and_label_options(image_tree):
    kw = dict(image_size=(4, 4), batch_size=8, seed=3, verbose=False)
    train, val = keras.utils.image_dataset_from_directory(str(image_tree), validation_split=0.4, subset="both",
                                                          label_mode="categorical", **kw)
    assert len(train.file_paths) == 3 and len(val.file_paths) == 2
    assert not set(train.file_paths) & set(val.file_paths)
    only_val = keras.utils.image_dataset_from_directory(str(image_tree), validation_split=0.4, subset="validation",
                                                        **kw)
    assert only_val.file_paths == val.file_paths   # the same seeded split
    (x, y), = list(val)
    assert y.shape == (2, 2) and y.sum() == 2
    explicit = keras.utils.image_dataset_from_directory(str(image_tree), labels=[5, 5, 7, 9, 9], shuffle=False, **kw)
    assert explicit.class_names == ["5", "7", "9"]
    assert next(iter(explicit))[1].tolist() == [5, 5, 7, 9, 9]
    picked = keras.utils.image_dataset_from_directory(str(image_tree), class_names=["dogs"], shuffle=False, **kw)
    assert len(picked.file_paths) == 2 and next(iter(picked))[1].tolist() == [0, 0]
    images_only = keras.utils.image_dataset_from_directory(str(image_tree), labels=None, **kw)
    assert next(iter(images_only)).shape == (5, 4, 4, 3)


@needs_pil
def test_image_dataset_argument_errors(image_tree, tmp_path):
    f = keras.utils.image_dataset_from_directory
    with pytest.raises(FileNotFoundError, match="nowhere"):
        f(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="provide a `seed`"):
        f(str(image_tree), validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="inversely"):
        f(str(image_tree), validation_split=0.2, seed=1)
    with pytest.raises(ValueError, match="label_mode"):
        f(str(image_tree), label_mode="sparse")
    with pytest.raises(ValueError, match="color_mode"):
        f(str(image_tree), color_mode="cmyk")
    with pytest.raises(ValueError, match="did not match"):
        f(str(image_tree), class_names=["birds"])
    with pytest.raises(ValueError, match="lengths of `labels`"):
        f(str(image_tree), labels=[0, 1])
    with pytest.raises(ValueError, match="Only one of"):
        f(str(image_tree), crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images found"):
        f(str(tmp_path / "empty"), verbose=False)
    bad = tmp_path / "bad" / "x"
    bad.mkdir(parents=True)
    (bad / "broken.png").write_bytes(b"\x89PNG not really")
    ds = f(str(tmp_path / "bad"), verbose=False)
    with pytest.raises(ValueError, match="broken.png"):
        list(ds)


@needs_pil
def test_image_io_round_trip(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, size=(5, 6, 4)).astype("float32")
    keras.utils.save_img(str(tmp_path / "a.png"), rgba, scale=False)
    back = keras.utils.img_to_array(keras.utils.load_img(str(tmp_path / "a.png"), color_mode="rgba"))
    np.testing.assert_array_equal(back, rgba)
    chw = keras.utils.img_to_array(keras.utils.load_img(str(tmp_path / "a.png")), data_format="channels_first")
    assert chw.shape == (3, 5, 6)
    small = keras.utils.load_img(str(tmp_path / "a.png"), target_size=(2, 3), interpolation="bilinear")
    assert small.size == (3, 2)
    scaled = keras.utils.img_to_array(keras.utils.array_to_img(np.linspace(0, 1, 12).reshape(2, 2, 3)))
    assert scaled.min() == 0 and scaled.max() == 255
    with pytest.warns(UserWarning, match="RGBA"):
        keras.utils.save_img(str(tmp_path / "b.jpg"), rgba)
    with pytest.raises(ValueError, match="rank 3"):
        keras.utils.array_to_img(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="Invalid interpolation"):
        keras.utils.load_img(str(tmp_path / "a.png"), target_size=(2, 2), interpolation="magic")


def test_resize_follows_tf_image_resize():
    ramp = np.array([0.0, 1.0], np.float32).reshape(1, 2, 1)
    up = keras.utils.image_utils.resize_image(ramp, (1, 4), "bilinear")
    np.testing.assert_allclose(up.ravel(), [0, 0.25, 0.75, 1])   # half-pixel centres, clamped edges
    row = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    np.testing.assert_allclose(keras.utils.image_utils.resize_image(row, (1, 2), "area").ravel(), [0.5, 2.5])
    np.testing.assert_allclose(keras.utils.image_utils.resize_image(row, (1, 2), "nearest").ravel(), [1, 3])
    flat = np.full((3, 5, 2), 7.0, np.float32)
    np.testing.assert_allclose(keras.utils.image_utils.resize_image(flat, (4, 2), "bicubic"), 7.0, rtol=1e-6)
    with pytest.raises(ValueError, match="not supported"):
        keras.utils.image_utils.resize_image(flat, (2, 2), "lanczos7")


def test_text_dataset_from_directory(tmp_path, capsys):
    for cls, texts in (("pos", ["good", "great film"]), ("neg", ["bad", "awful", "très mauvais"])):
        (tmp_path / cls).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / cls / f"{i}.txt").write_text(t, encoding="utf-8")
    (tmp_path / "neg" / "skip.csv").write_text("ignored")
    ds = keras.utils.text_dataset_from_directory(str(tmp_path), batch_size=10, shuffle=False, max_length=7)
    assert "Found 5 files belonging to 2 classes." in capsys.readouterr().out
    (texts, labels), = list(ds)
    assert ds.class_names == ["neg", "pos"]
    assert texts.tolist() == ["bad", "awful", "très m", "good", "great f"]   # max_length counts UTF-8 bytes
    assert labels.tolist() == [0, 0, 0, 1, 1]
    shuffled = keras.utils.text_dataset_from_directory(str(tmp_path), batch_size=None, seed=4, verbose=False)
    assert sorted(str(t) for t, _ in shuffled) == sorted(["good", "great film", "bad", "awful", "très mauvais"])
    with pytest.raises(FileNotFoundError):
        keras.utils.text_dataset_from_directory(str(tmp_path / "missing"))


def test_images_need_pillow_message(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(ImportError, match=r"pip install kcompile\[images\]"):
        keras.utils.load_img("x.png")


# ------------------------------------------------------------------ plot_model
def test_plot_model_dot_for_sequential_and_functional(tmp_path, sgd_model):
    model, _ = sgd_model
    path = tmp_path / "m.dot"
    keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True,
                           show_layer_activations=True)
    text = path.read_text()
    assert text.startswith("digraph") and "dense" in text and "Activation: tanh" in text
    assert "Output shape: (None, 4)" in text and text.count("->") == 2
    a = keras.Input((3,), name="left")
    b = keras.Input((3,), name="right")
    s = keras.layers.Dense(2, name="shared")
    out = keras.layers.Dense(1, name="head")(keras.ops.add(s(a), s(b)))
    fm = keras.Model([a, b], out)
    keras.utils.plot_model(fm, to_file=str(path), rankdir="LR")
    text = path.read_text()
    assert "rankdir=LR" in text and 'label="Dense"' in text and "shared" not in text   # no names by default
    from kcompile.utils.model_visualization import layer_edges
    names, edges, _ = layer_edges(fm)
    assert set(edges) == {("left", "shared"), ("right", "shared"), ("shared", "add"), ("add", "head")}
    with pytest.raises(ValueError, match="rankdir"):
        keras.utils.plot_model(fm, to_file=str(path), rankdir="XY")


def test_plot_model_image_formats(tmp_path, sgd_model):
    import shutil
    model, _ = sgd_model
    if shutil.which("dot") is None:
        with pytest.raises(ImportError, match="Graphviz"):
            keras.utils.plot_model(model, to_file=str(tmp_path / "m.png"))
    else:
        keras.utils.plot_model(model, to_file=str(tmp_path / "m.svg"))
        assert "<svg" in (tmp_path / "m.svg").read_text()


# ------------------------------------------------------------------ distribute
def test_mirrored_strategy_single_replica(sgd_model):
    strategy = keras.distribute.MirroredStrategy()
    assert strategy.num_replicas_in_sync == 1
    assert keras.distribute.get_strategy() is not strategy
    with strategy.scope():
        assert keras.distribute.get_strategy() is strategy
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    assert keras.distribute.get_strategy().num_replicas_in_sync == 1
    assert np.isfinite(model.fit(X, Y, epochs=1, verbose=0).history["loss"][0])
    assert "MirroredStrategy" in (keras.distribute.MirroredStrategy.__doc__ or "") + repr(strategy)
    with pytest.raises(ValueError, match="devices"):
        keras.distribute.MirroredStrategy(devices=[0, 1])


# ------------------------------------------------------------------ split_dataset, pack/unpack
def test_split_dataset_sizes_shuffle_and_errors():
    x, y = np.arange(10).reshape(10, 1), np.arange(10) * 2
    left, right = keras.utils.split_dataset((x, y), left_size=0.8)
    assert len(left) == 8 and len(right) == 2
    assert [int(b) for _, b in right] == [16, 18]
    left, right = keras.utils.split_dataset(np.arange(10), left_size=3, right_size=4)
    assert [int(v) for v in left] == [0, 1, 2] and [int(v) for v in right] == [6, 7, 8, 9]
    a, b = keras.utils.split_dataset(np.arange(10), right_size=0.5, shuffle=True, seed=5)
    a2, _ = keras.utils.split_dataset(np.arange(10), right_size=0.5, shuffle=True, seed=5)
    got = [int(v) for v in a] + [int(v) for v in b]
    assert sorted(got) == list(range(10)) and [int(v) for v in a] == [int(v) for v in a2]
    ds = keras.data.Dataset.from_tensor_slices({"f": np.arange(6.0)})
    left, right = keras.utils.split_dataset(ds, left_size=2)
    assert [float(e["f"]) for e in right] == [2.0, 3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match="At least one"):
        keras.utils.split_dataset(np.arange(4))
    with pytest.raises(ValueError, match="sum of `left_size` and `right_size`"):
        keras.utils.split_dataset(np.arange(4), left_size=3, right_size=2)
    with pytest.raises(ValueError, match="left_size"):
        keras.utils.split_dataset(np.arange(4), left_size=1.5)
    with pytest.raises(TypeError, match="Types"):
        keras.utils.split_dataset(np.arange(4), left_size="half")


def test_pack_and_unpack_x_y_sample_weight():
    x, y, w = np.zeros(2), np.ones(2), np.full(2, 3.0)
    assert keras.utils.unpack_x_y_sample_weight(keras.utils.pack_x_y_sample_weight(x, y, w))[2] is w
    assert keras.utils.unpack_x_y_sample_weight(keras.utils.pack_x_y_sample_weight(x)) == (x, None, None)
    assert keras.utils.pack_x_y_sample_weight((x, x)) == ((x, x),)
    with pytest.raises(ValueError, match="format"):
        keras.utils.unpack_x_y_sample_weight((x, y, w, w))
