"""Preprocessing layers: image resizing/cropping against numpy references (both data formats),
Normalization / Discretization adapt, CategoryEncoding modes (eager, interpreter and compiled),
the eager string layers (StringLookup, IntegerLookup, TextVectorization) against Keras's
documented examples and round-trip properties, and small models that train on their outputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kcompile as keras
from kcompile import layers
from kcompile.data import Dataset

RNG = np.random.default_rng(1)


# ---------------------------------------------------------------- image layers

def _bilinear_reference(img, height, width):
    """Half-pixel-centre bilinear resize of (B, H, W, C), written pixel by pixel."""
    b, h, w, c = img.shape
    out = np.zeros((b, height, width, c), np.float64)
    for i in range(height):
        y = min(max((i + 0.5) * h / height - 0.5, 0), h - 1)
        y0, wy = int(np.floor(y)), y - np.floor(y)
        y1 = min(y0 + 1, h - 1)
        for j in range(width):
            x = min(max((j + 0.5) * w / width - 0.5, 0), w - 1)
            x0, wx = int(np.floor(x)), x - np.floor(x)
            x1 = min(x0 + 1, w - 1)
            out[:, i, j] = ((1 - wy) * ((1 - wx) * img[:, y0, x0] + wx * img[:, y0, x1])
                            + wy * ((1 - wx) * img[:, y1, x0] + wx * img[:, y1, x1]))
    return out


@settings(deadline=None, max_examples=10)
@given(h=st.integers(1, 6), w=st.integers(1, 6), th=st.integers(1, 7), tw=st.integers(1, 7),
       nearest=st.booleans(), channels_first=st.booleans(), crop=st.booleans())
def test_resizing_matches_reference(h, w, th, tw, nearest, channels_first, crop):
    img = RNG.normal(size=(1, h, w, 2)).astype(np.float32)
    layer = layers.Resizing(th, tw, interpolation="nearest" if nearest else "bilinear", crop_to_aspect_ratio=crop,
                            data_format="channels_first" if channels_first else "channels_last")
    got = layer(img.transpose(0, 3, 1, 2) if channels_first else img)
    if channels_first:
        got = got.transpose(0, 2, 3, 1)
    src = img
    if crop:
        ch, cw = (h, int(round(h * tw / th))) if w / h > tw / th else (int(round(w * th / tw)), w)
        ch, cw = max(1, min(ch, h)), max(1, min(cw, w))
        src = img[:, (h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    if nearest:
        rows = np.minimum(np.floor((np.arange(th) + 0.5) * src.shape[1] / th).astype(int), src.shape[1] - 1)
        cols = np.minimum(np.floor((np.arange(tw) + 0.5) * src.shape[2] / tw).astype(int), src.shape[2] - 1)
        want = src[:, rows][:, :, cols]
    else:
        want = _bilinear_reference(src.astype(np.float64), th, tw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_image_layers_compiled_vs_interpreter_and_errors():
    inp = keras.Input((5, 7, 3))
    x = layers.Rescaling(0.5, offset=1.0)(inp)
    x = layers.CenterCrop(4, 4)(x)
    out = layers.Resizing(6, 3)(x)
    model = keras.Model(inp, out)
    img = RNG.normal(size=(2, 5, 7, 3)).astype(np.float32)
    want = layers.Resizing(6, 3)(layers.CenterCrop(4, 4)(img * 0.5 + 1.0))
    np.testing.assert_allclose(model.predict(img, verbose=0), want, rtol=1e-5, atol=1e-5)
    model.compile(loss="mse", run_eagerly=True)
    np.testing.assert_allclose(model.predict(img, verbose=0), want, rtol=1e-5, atol=1e-5)
    small = layers.CenterCrop(8, 6)(img)       # larger than the input: crop to aspect ratio, then resize
    assert small.shape == (2, 8, 6, 3)
    with pytest.raises(ValueError, match="interpolation"):
        layers.Resizing(2, 2, interpolation="bicubic")
    with pytest.raises(ValueError, match="antialias"):
        layers.Resizing(2, 2, antialias=True)


# ---------------------------------------------------------------- numeric layers

def test_normalization_adapt_sources_axes_and_invert():
    data = (RNG.normal(size=(40, 3, 4)) * [1, 2, 3, 4] + [0, 1, 2, 3]).astype(np.float32)
    for source in (data, Dataset.from_tensor_slices(data).batch(7), [data[:20], data[20:]]):
        norm = layers.Normalization(axis=-1)
        norm.adapt(source)
        mean, var = data.mean((0, 1)), data.var((0, 1))
        np.testing.assert_allclose(norm(data), (data - mean) / np.sqrt(var), rtol=1e-4, atol=1e-4)
    both = layers.Normalization(axis=(1, 2))
    both.adapt(data)
    np.testing.assert_allclose(both(data), (data - data.mean(0)) / data.std(0), rtol=1e-4, atol=1e-4)
    scalar = layers.Normalization(axis=None)
    scalar.adapt(data)
    np.testing.assert_allclose(scalar(data), (data - data.mean()) / data.std(), rtol=1e-4, atol=1e-4)
    inv = layers.Normalization(axis=-1, invert=True)
    inv.adapt(data)
    np.testing.assert_allclose(inv(norm(data)), data, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="mean.*variance"):
        layers.Normalization(mean=1.0)


@settings(deadline=None, max_examples=10)
@given(bounds=st.lists(st.floats(-3, 3, width=32), min_size=1, max_size=5).map(sorted),
       mode=st.sampled_from(["int", "one_hot", "multi_hot", "count"]))
def test_discretization_boundaries(bounds, mode):
    x = RNG.normal(size=(3, 4)).astype(np.float32) * 2
    x[0, 0] = bounds[0]                      # a value exactly on a boundary goes to the upper bucket
    got = layers.Discretization(bin_boundaries=bounds, output_mode=mode)(x)
    index = np.digitize(x, np.asarray(bounds, np.float32))
    depth = len(bounds) + 1
    if mode == "int":
        np.testing.assert_array_equal(got, index)
    elif mode == "one_hot":
        np.testing.assert_array_equal(got, np.eye(depth)[index])
    else:
        counts = np.stack([np.bincount(r, minlength=depth) for r in index])
        np.testing.assert_array_equal(got, counts if mode == "count" else counts > 0)


def test_discretization_adapt_and_errors():
    data = RNG.normal(size=(1000,)).astype(np.float32)
    disc = layers.Discretization(num_bins=4)
    disc.adapt(data)
    np.testing.assert_allclose(disc.bin_boundaries, np.quantile(data, [0.25, 0.5, 0.75]), rtol=1e-5)
    np.testing.assert_array_equal(np.bincount(disc(data[:, None])[:, 0]), [250, 250, 250, 250])
    doc = layers.Discretization(bin_boundaries=[0.0, 1.0, 2.0])
    np.testing.assert_array_equal(doc(np.array([[-1.5, 1.0, 3.4, 0.5], [0.0, 3.0, 1.3, 0.0]], np.float32)),
                                  [[0, 2, 3, 1], [1, 3, 2, 1]])
    with pytest.raises(ValueError, match="num_bins"):
        layers.Discretization(bin_boundaries=[1.0], num_bins=3)
    with pytest.raises(ValueError, match="sparse"):
        layers.Discretization(bin_boundaries=[1.0], sparse=True)
    with pytest.raises(ValueError, match="output_mode"):
        layers.Discretization(bin_boundaries=[1.0], output_mode="tf_idf")


# ---------------------------------------------------------------- CategoryEncoding

@settings(deadline=None, max_examples=10)
@given(n=st.integers(1, 4), width=st.integers(1, 3), tokens=st.integers(1, 6),
       mode=st.sampled_from(["one_hot", "multi_hot", "count"]))
def test_category_encoding_reference(n, width, tokens, mode):
    idx = RNG.integers(0, tokens, size=(n, width))
    got = layers.CategoryEncoding(tokens, output_mode=mode)(idx)
    hot = np.eye(tokens)[idx]
    if mode == "one_hot":
        want = hot[:, 0] if width == 1 else hot
    else:
        want = hot.sum(1) if mode == "count" else hot.max(1)
    np.testing.assert_array_equal(got, want)


def test_category_encoding_keras_examples_compiled_and_weights():
    enc = layers.CategoryEncoding(num_tokens=4, output_mode="one_hot")
    np.testing.assert_array_equal(enc(np.array([3, 2, 0, 1])), np.eye(4)[[3, 2, 0, 1]])
    multi = layers.CategoryEncoding(num_tokens=4, output_mode="multi_hot")
    np.testing.assert_array_equal(multi(np.array([[0, 1], [0, 0], [1, 2], [3, 1]])),
                                  [[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]])
    np.testing.assert_array_equal(multi(np.array([0, 3, 3])), [1, 0, 0, 1])     # rank 1: one sample
    count = layers.CategoryEncoding(num_tokens=4, output_mode="count")
    weights = np.array([[.1, .2], [.1, .1], [.2, .3], [.4, .2]], np.float32)
    np.testing.assert_allclose(count(np.array([[0, 1], [0, 0], [1, 2], [3, 1]]), count_weights=weights),
                               [[.1, .2, 0, 0], [.2, 0, 0, 0], [0, .2, .3, 0], [0, .2, 0, .4]], rtol=1e-6)
    # in a model with count weights as a second input; compiled equals the interpreter
    ids, w = keras.Input((3,), dtype="int32"), keras.Input((3,))
    out = layers.CategoryEncoding(5, output_mode="count")(ids, count_weights=w)
    model = keras.Model([ids, w], out)
    xi, xw = RNG.integers(0, 5, size=(4, 3)), RNG.random((4, 3)).astype(np.float32)
    want = np.stack([np.bincount(r, weights=ww, minlength=5) for r, ww in zip(xi, xw)])
    np.testing.assert_allclose(model.predict([xi, xw], verbose=0), want, rtol=1e-6)
    with pytest.raises(ValueError, match="count_weights"):
        multi(np.array([[0, 1]]), count_weights=np.ones((1, 2)))
    as_int = layers.CategoryEncoding(3, output_mode="count", dtype="int64")
    assert as_int(np.array([[0, 2, 2]])).tolist() == [[1, 0, 2]]
    assert layers.CategoryEncoding.from_config(as_int.get_config()).out_dtype == "int64"
    with pytest.raises(ValueError, match="dtype"):
        layers.StringLookup(dtype="bool")
    with pytest.raises(ValueError, match="sparse"):
        layers.CategoryEncoding(3, sparse=True)
    with pytest.raises(ValueError, match="num_tokens"):
        layers.CategoryEncoding()


# ---------------------------------------------------------------- lookups

VOCAB = ["a", "b", "c", "d"]
DATA = np.array([["a", "c", "d"], ["d", "z", "b"]])


def test_string_lookup_keras_examples():
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB)(DATA), [[1, 3, 4], [4, 0, 2]])
    adapted = layers.StringLookup()
    adapted.adapt(DATA)
    assert adapted.get_vocabulary() == ["[UNK]", "d", "z", "c", "b", "a"]
    two_oov = layers.StringLookup(vocabulary=VOCAB, num_oov_indices=2)(DATA)
    # "z" is unknown: bucket Fingerprint64("z") % 2, Keras's tf.strings.to_hash_bucket_fast
    np.testing.assert_array_equal(two_oov, [[2, 4, 5], [5, 1, 3]])
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB, output_mode="one_hot")(
        np.array(["a", "b", "c", "d", "z"])), np.eye(5)[[1, 2, 3, 4, 0]])
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB, output_mode="multi_hot")(DATA),
                                  [[0, 1, 0, 1, 1], [1, 0, 1, 0, 1]])
    np.testing.assert_array_equal(layers.StringLookup(vocabulary=VOCAB, output_mode="count")(
        np.array([["a", "c", "d", "d"], ["d", "z", "b", "z"]])), [[0, 1, 0, 1, 2], [2, 0, 1, 0, 1]])
    tfidf = layers.StringLookup(output_mode="tf_idf", vocabulary=VOCAB, idf_weights=[0.25, 0.75, 0.6, 0.4])
    np.testing.assert_allclose(tfidf(DATA), [[0, 0.25, 0, 0.6, 0.4], [0.5, 0, 0.75, 0, 0.4]], rtol=1e-6)
    masked = layers.StringLookup(vocabulary=VOCAB, mask_token="[MASK]")
    np.testing.assert_array_equal(masked(np.array([["a", "c", "d"], ["d", "[MASK]", "b"]])), [[2, 4, 5], [5, 0, 3]])
    inverse = layers.StringLookup(vocabulary=VOCAB, invert=True)
    np.testing.assert_array_equal(inverse(np.array([[1, 3, 4], [4, 0, 2]])), [["a", "c", "d"], ["d", "[UNK]", "b"]])
    # outside "int" mode the mask token has no index and is dropped
    dropped = layers.StringLookup(vocabulary=VOCAB, mask_token="", output_mode="multi_hot")
    assert dropped.get_vocabulary() == ["[UNK]"] + VOCAB
    np.testing.assert_array_equal(dropped(np.array([["a", "", "z"]])), [[1, 1, 0, 0, 0]])
    assert layers.StringLookup(max_tokens=3).get_config()["max_tokens"] == 3


def test_integer_lookup_keras_examples(tmp_path):
    vocab = [12, 36, 1138, 42]
    data = np.array([[12, 1138, 42], [42, 1000, 36]])
    np.testing.assert_array_equal(layers.IntegerLookup(vocabulary=vocab)(data), [[1, 3, 4], [4, 0, 2]])
    adapted = layers.IntegerLookup()
    adapted.adapt(data)
    assert adapted.get_vocabulary() == [-1, 42, 1138, 1000, 36, 12]
    inverse = layers.IntegerLookup(vocabulary=vocab, invert=True)
    np.testing.assert_array_equal(inverse(np.array([[1, 3, 4], [4, 0, 2]])), [[12, 1138, 42], [42, -1, 36]])
    path = tmp_path / "vocab.txt"
    path.write_text("12\n36\n1138\n42\n")
    np.testing.assert_array_equal(layers.IntegerLookup(vocabulary=str(path))(data), [[1, 3, 4], [4, 0, 2]])
    capped = layers.IntegerLookup(max_tokens=3, num_oov_indices=1)
    capped.adapt(np.array([5, 5, 5, 7, 7, 9]))
    assert capped.get_vocabulary() == [-1, 5, 7] and capped.vocabulary_size() == 3
    strict = layers.IntegerLookup(vocabulary=vocab, num_oov_indices=0)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        strict(np.array([99]))


@pytest.mark.parametrize("kwargs", [{}, {"mask_token": 0}, {"num_oov_indices": 0}, {"output_mode": "one_hot"},
                                    {"output_mode": "multi_hot"},
                                    {"output_mode": "count", "max_tokens": 8, "pad_to_max_tokens": True},
                                    {"output_mode": "tf_idf", "idf_weights": [0.1, 0.2, 0.3, 0.4]},
                                    {"invert": True}])
def test_integer_lookup_inside_a_compiled_model_matches_numpy(kwargs):
    layer = layers.IntegerLookup(vocabulary=[12, 36, 1138, 42], **kwargs)
    inp = keras.Input((3,), dtype="int32")
    model = keras.Model(inp, layer(inp))
    data = np.array([[0, 1138, 42], [42, 1000, 36]]) if not kwargs.get("invert") else np.array([[1, 3, 4], [4, 0, 2]])
    if kwargs.get("num_oov_indices") == 0:
        data[0, 0], data[1, 1] = 12, 36              # every value known: numpy refuses unknown ones
    np.testing.assert_allclose(model.predict(data, verbose=0), layer(data), rtol=1e-6)


def test_integer_lookup_feeds_an_embedding_model_that_trains():
    ids = RNG.choice([7, 70, 700, 7000], size=(32, 4))
    labels = (ids == 700).any(1, keepdims=True).astype(np.float32)
    lookup = layers.IntegerLookup()
    lookup.adapt(ids)
    inp = keras.Input((4,), dtype="int32")
    x = layers.Embedding(lookup.vocabulary_size(), 3)(lookup(inp))
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(layers.GlobalMaxPooling1D()(x)))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    history = model.fit(ids, labels, epochs=20, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    # with hashed OOV buckets it runs on the host, so it must take a model input directly
    with pytest.raises(ValueError, match="directly"):
        layers.IntegerLookup(vocabulary=[1], num_oov_indices=2)(layers.Dense(2)(keras.Input((2,))))


@settings(deadline=None, max_examples=10)
@given(vocab=st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=1, max_size=6, unique=True),
       queries=st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=1, max_size=8),
       mask=st.booleans(), oov=st.integers(1, 3))
def test_string_lookup_round_trip(vocab, queries, mask, oov):
    kwargs = dict(vocabulary=vocab, num_oov_indices=oov, mask_token="[M]" if mask else None)
    lookup, inverse = layers.StringLookup(**kwargs), layers.StringLookup(invert=True, **kwargs)
    ids = lookup(np.array(queries))
    back = inverse(ids)
    for q, i, t in zip(queries, ids, back):
        if q in vocab:
            assert t == q and i == vocab.index(q) + oov + mask
        else:
            assert t == "[UNK]" and mask <= i < mask + oov
    assert lookup.vocabulary_size() == len(vocab) + oov + mask


def test_string_layers_refuse_numeric_inputs_and_bad_arguments():
    with pytest.raises(ValueError, match="takes strings"):
        layers.StringLookup(vocabulary=VOCAB)(keras.Input((2,)))
    with pytest.raises(ValueError, match="takes strings"):
        layers.TextVectorization(output_sequence_length=3)(keras.Input((1,)))
    with pytest.raises(ValueError, match="output_sequence_length"):
        layers.TextVectorization()(keras.Input((1,)))
    with pytest.raises(ValueError, match="invert"):
        layers.StringLookup(invert=True, output_mode="multi_hot")
    with pytest.raises(ValueError, match="sparse"):
        layers.IntegerLookup(sparse=True)
    with pytest.raises(ValueError, match="ragged"):
        layers.TextVectorization(ragged=True)
    with pytest.raises(ValueError, match="output_sequence_length"):
        layers.TextVectorization(output_mode="multi_hot", output_sequence_length=3)
    with pytest.raises(ValueError, match="standardize"):
        layers.TextVectorization(standardize="upper")


# ---------------------------------------------------------------- TextVectorization

TEXTS = np.array(["The Brain is wider than the sky", "For put them side by side",
                  "The one the other will contain", "With ease and You beside"])


def test_text_vectorization_keras_examples():
    vec = layers.TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4)
    vec.adapt(Dataset.from_tensor_slices(TEXTS).batch(2))
    assert vec.get_vocabulary()[:3] == ["", "[UNK]", "the"]
    np.testing.assert_array_equal(vec(np.array([["The Brain is deeper than the sea"],
                                                ["for if they are held blue to blue"]])),
                                  [[2, 19, 14, 1], [15, 1, 1, 1]])
    fixed = layers.TextVectorization(output_mode="int", vocabulary=["earth", "wind", "and", "fire"])
    np.testing.assert_array_equal(fixed(["earth wind and fire", "fire and earth"]), [[2, 3, 4, 5], [5, 4, 2, 0]])


def test_text_vectorization_modes_ngrams_and_splits():
    grams = layers.TextVectorization(output_mode="multi_hot", ngrams=2)
    grams.adapt(["a b c", "a b"])
    assert grams.get_vocabulary() == ["[UNK]", "b", "a b", "a", "c", "b c"]
    np.testing.assert_array_equal(grams(["a b d"]), [[1, 1, 1, 1, 0, 0]])   # "d" and "b d" are unknown
    tfidf = layers.TextVectorization(output_mode="tf_idf", max_tokens=4, pad_to_max_tokens=True)
    tfidf.adapt(["x y y", "x z"])
    idf_y, idf_x = np.log1p(2 / 2), np.log1p(2 / 3)
    np.testing.assert_allclose(tfidf(["x y y q"]), [[np.mean([idf_y, idf_x, idf_y]), 2 * idf_y, idf_x, 0]],
                               rtol=1e-5)
    count = layers.TextVectorization(output_mode="count", vocabulary=["x", "y"], max_tokens=5, pad_to_max_tokens=True)
    np.testing.assert_array_equal(count(["x x Y!", "w"]), [[0, 2, 1, 0, 0], [1, 0, 0, 0, 0]])
    chars = layers.TextVectorization(split="character", standardize="lower", output_sequence_length=5)
    chars.adapt(["abba"])
    assert chars.get_vocabulary() == ["", "[UNK]", "b", "a"]        # equal counts: later token first
    np.testing.assert_array_equal(chars(["Abc"]), [[3, 2, 1, 0, 0]])
    custom = layers.TextVectorization(standardize=lambda s: s.replace("-", " "), split=lambda s: s.split(" "),
                                      ngrams=(2,), vocabulary=["p q"])
    np.testing.assert_array_equal(custom(["p-q-r"]), [[2, 1]])
    truncated = layers.TextVectorization(vocabulary=["a"], output_sequence_length=2)
    np.testing.assert_array_equal(truncated(["a a a", "b"]), [[2, 2], [1, 0]])
    restored = layers.TextVectorization.from_config(tfidf.get_config())
    np.testing.assert_allclose(restored(["x y y q"]), tfidf(["x y y q"]), rtol=1e-6)


def test_text_classifier_trains_on_vectorized_strings():
    """Strings -> TextVectorization (eager, numpy) -> compiled Embedding model whose loss drops."""
    positive = ["good great fine", "great good", "fine good nice", "nice great"]
    negative = ["bad awful poor", "poor bad", "awful terrible", "terrible bad poor"]
    texts = np.array(positive + negative)
    labels = np.array([1] * 4 + [0] * 4, np.float32)[:, None]
    vec = layers.TextVectorization(max_tokens=20, output_sequence_length=3)
    vec.adapt(texts)
    ids = vec(texts)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,), dtype="int32"), layers.Embedding(vec.vocabulary_size(), 4),
                              layers.GlobalAveragePooling1D(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    history = model.fit(ids, labels, epochs=30, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert (model.predict(vec(np.array(["good nice", "bad awful"])), verbose=0)[:, 0] > 0.5).tolist() == [True, False]


def test_numeric_preprocessing_model_trains():
    """Normalization (adapted) + Discretization -> CategoryEncoding inside one compiled model."""
    x = (RNG.normal(size=(64, 2)) * [10, 0.1] + [50, -3]).astype(np.float32)
    y = (x[:, :1] > 50).astype(np.float32)
    norm = layers.Normalization()
    norm.adapt(x)
    disc = layers.Discretization(num_bins=4)
    disc.adapt(x[:, 0])
    inp = keras.Input((2,))
    binned = layers.CategoryEncoding(4, output_mode="one_hot")(disc(layers.Lambda(lambda t: t[:, :1])(inp)))
    h = layers.concatenate([norm(inp), binned])
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    weights = model.get_weights()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy", run_eagerly=True)
    eager = model.predict(x[:5], verbose=0)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    model.set_weights(weights)
    np.testing.assert_allclose(model.predict(x[:5], verbose=0), eager, rtol=1e-5, atol=1e-6)
