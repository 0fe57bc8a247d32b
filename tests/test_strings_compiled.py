"""Strings inside compiled models (issue #15 part 3): the Hashing layer and TensorFlow's hashes,
hashed OOV buckets of the lookup layers, and StringLookup / TextVectorization / Hashing as host
stages of a model input (layers/preprocessing/host_stage.py)."""
import io
import json
import zipfile
from contextlib import redirect_stderr
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kcompile as keras
from kcompile import layers
from kcompile.layers.preprocessing.farmhash import fingerprint64, hash_buckets, siphash64

FIXTURES = Path(__file__).parent / "fixtures" / "version_semantics" / "k2"
M64 = (1 << 64) - 1


def _string_inputs_available():
    """String Inputs and string data need two hooks outside the preprocessing package: InputLayer
    accepting dtype="string" (layers/core.py) and the data adapters letting string x through
    (data/adapters.py). Until both are in, the string-model tests below are skipped."""
    try:
        keras.Input(shape=(1,), dtype="string")
        from kcompile.data.adapters import make_adapter
        make_adapter(np.array([["a"]]), np.zeros(1, np.float32))
    except (TypeError, ValueError):
        return False
    return True


needs_strings = pytest.mark.skipif(not _string_inputs_available(),
                                   reason="needs string Inputs (layers/core.py) and string x in data/adapters.py")


# ---------------------------------------------------------------------------- published hash values
WIRE = [["omar"], ["stringer"], ["marlo"], ["wire"], ["skywalker"]]
ABCDE = [["A"], ["B"], ["C"], ["D"], ["E"]]


@pytest.mark.parametrize("kwargs,data,want", [
    # keras/src/layers/preprocessing/hashing_test.py (Keras 3, TensorFlow's hashes)
    (dict(num_bins=3), ABCDE, [[1], [0], [1], [1], [2]]),
    (dict(num_bins=3, mask_value=""), [["A"], ["B"], [""], ["C"], ["D"]], [[1], [1], [0], [2], [2]]),
    (dict(num_bins=3, salt=[133, 137]), ABCDE, [[1], [2], [1], [0], [2]]),
    (dict(num_bins=3, salt=133), ABCDE, [[0], [0], [2], [1], [0]]),
    (dict(num_bins=1), ABCDE, [[0]] * 5),
    (dict(num_bins=2), WIRE, [[0], [0], [1], [0], [0]]),
    (dict(num_bins=2), ["omar", "stringer", "marlo", "wire", "skywalker"], [0, 0, 1, 0, 0]),
    (dict(num_bins=3, mask_value=""), WIRE, [[1], [1], [2], [1], [1]]),
    (dict(num_bins=3, mask_value="omar"), WIRE, [[0], [1], [2], [1], [1]]),
    (dict(num_bins=3), [[0], [1], [2], [3], [4]], [[1], [0], [1], [0], [2]]),
    (dict(num_bins=3), [0, 1, 2, 3, 4], [1, 0, 1, 0, 2]),
    (dict(num_bins=2, salt=[133, 137]), WIRE, [[0], [1], [0], [1], [0]]),
    (dict(num_bins=2, salt=[211, 137]), WIRE, [[1], [0], [1], [0], [1]]),
    (dict(num_bins=3, salt=[133, 137]), [[0], [1], [2], [3], [4]], [[1], [1], [2], [0], [1]]),
    (dict(num_bins=2), [[1, 2], [2, 3], [3, 4]], [[1, 1], [1, 1], [1, 1]]),
    (dict(num_bins=3, output_mode="one_hot"), [0, 1, 2, 3, 4],
     [[0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]),
    (dict(num_bins=3, output_mode="multi_hot"), [[0, 1, 2, 3, 4]], [[1, 1, 1]]),
    (dict(num_bins=3, output_mode="count"), [0, 1, 2, 3, 4], [2, 2, 1]),
    (dict(num_bins=3, output_mode="count"), [[0, 1, 2, 3, 4]], [[2, 2, 1]]),
])
def test_hashing_gives_keras_values(kwargs, data, want):
    out = layers.Hashing(**kwargs)(data)
    np.testing.assert_array_equal(out, want)
    assert out.dtype == (np.int64 if kwargs.get("output_mode", "int") == "int" else np.float32)


def test_tensorflow_hash_bucket_documented_values():
    # tf.strings.to_hash_bucket_fast / to_hash_bucket_strong documentation examples
    np.testing.assert_array_equal(hash_buckets(["Hello", "TensorFlow", "2.x"], 3), [0, 2, 2])
    np.testing.assert_array_equal(hash_buckets(["Hello", "TF"], 3, key=[1, 2]), [2, 0])


def _farmhash_test_data(size):
    """The pseudo-random bytes farmhash's self-test hashes (its Setup())."""
    k0 = 0xC3A5C85C97CB3127
    a, b, out = 9, 777, bytearray(size)
    for i in range(size):
        a = (a + b) & M64
        b = (b + a) & M64
        a = ((a ^ (a >> 41)) * k0) & M64
        b = (((b ^ (b >> 41)) * k0) + i) & M64
        out[i] = (b >> 37) & 0xFF
    return bytes(out)


# farmhashna::Hash64(data + i*i, i) from farmhash's self-test table (farmhashnaTest::expected)
FARMHASH_SELF_TEST = {
    0: 0x9AE16A3B2F90404F, 1: 0x541150E87F415E96, 3: 0xEF923A7A1AF78EAB, 4: 0x11DF592596F41D88,
    7: 0x1B5A063FB4C7F9F1, 8: 0xA0F10149A0E538D6, 15: 0x44473E03BE306C88, 16: 0x03EAD5F21D344056,
    17: 0x6ABBFDE37EE03B5B, 31: 0x55BDB0E71E3EDEBD, 32: 0x0782FA1B08B475E7, 33: 0x09DEB3DA5E16B5B8,
    63: 0xA8EDBFF858475437, 64: 0xDEF74BF4C9F1BC1B, 65: 0x3CCEAB392BC39B3F, 127: 0x99096F55F2E75EB0,
    128: 0xF4A9A248B462909D, 129: 0xD4F7C858D78153B6, 200: 0x40F32EB90E5CAA01, 298: 0x2031C84BC57A1A9F,
}


def test_fingerprint64_matches_farmhash_self_test():
    data = _farmhash_test_data(298 * 298 + 298)
    lengths = sorted(FARMHASH_SELF_TEST)
    got = fingerprint64([data[i * i:i * i + i] for i in lengths])
    assert [int(h) for h in got] == [FARMHASH_SELF_TEST[i] for i in lengths]


def test_siphash_reference_vectors():
    # SipHash-2-4 paper, appendix A: key 00..0f, messages 00..(n-1)
    key = [int.from_bytes(bytes(range(8)), "little"), int.from_bytes(bytes(range(8, 16)), "little")]
    got = siphash64([b"", bytes(range(15))], key)
    assert [int(h) for h in got] == [0x726FDB47DD0E0E31, 0xA129CA6149BE45E5]


# ---------------------------------------------------------------------------- scalar references
def _rot(v, s):
    return v if s == 0 else ((v >> s) | (v << (64 - s))) & M64


def _f64(s, i):
    return int.from_bytes(s[i:i + 8], "little")


def _h16(u, v, mul):
    a = ((u ^ v) * mul) & M64
    a ^= a >> 47
    b = ((v ^ a) * mul) & M64
    b ^= b >> 47
    return (b * mul) & M64


def _weak(s, i, a, b):
    w, x, y, z = (_f64(s, i + k) for k in (0, 8, 16, 24))
    a = (a + w) & M64
    b = _rot((b + a + z) & M64, 21)
    c = a
    a = (a + x + y) & M64
    b = (b + _rot(a, 44)) & M64
    return (a + z) & M64, (b + c) & M64


def _reference_fingerprint64(s):
    """farmhashna::Hash64, one string at a time in Python integers."""
    k0, k1, k2 = 0xC3A5C85C97CB3127, 0xB492B66FBE98F273, 0x9AE16A3B2F90404F
    n = len(s)
    mul = (k2 + n * 2) & M64
    if n <= 16:
        if n >= 8:
            a = (_f64(s, 0) + k2) & M64
            b = _f64(s, n - 8)
            c = (_rot(b, 37) * mul + a) & M64
            d = ((_rot(a, 25) + b) * mul) & M64
            return _h16(c, d, mul)
        if n >= 4:
            a = int.from_bytes(s[:4], "little")
            return _h16(n + (a << 3), int.from_bytes(s[n - 4:], "little"), mul)
        if n:
            y = s[0] + (s[n >> 1] << 8)
            z = n + (s[n - 1] << 2)
            v = ((y * k2) ^ (z * k0)) & M64
            return ((v ^ (v >> 47)) * k2) & M64
        return k2
    if n <= 32:
        a = (_f64(s, 0) * k1) & M64
        b = _f64(s, 8)
        c = (_f64(s, n - 8) * mul) & M64
        d = (_f64(s, n - 16) * k2) & M64
        return _h16((_rot((a + b) & M64, 43) + _rot(c, 30) + d) & M64, (a + _rot((b + k2) & M64, 18) + c) & M64, mul)
    if n <= 64:
        a = (_f64(s, 0) * k2) & M64
        b = _f64(s, 8)
        c = (_f64(s, n - 8) * mul) & M64
        d = (_f64(s, n - 16) * k2) & M64
        y = (_rot((a + b) & M64, 43) + _rot(c, 30) + d) & M64
        z = _h16(y, (a + _rot((b + k2) & M64, 18) + c) & M64, mul)
        e = (_f64(s, 16) * mul) & M64
        f = _f64(s, 24)
        g = ((y + _f64(s, n - 32)) * mul) & M64
        h = ((z + _f64(s, n - 24)) * mul) & M64
        return _h16((_rot((e + f) & M64, 43) + _rot(g, 30) + h) & M64, (e + _rot((f + a) & M64, 18) + g) & M64, mul)
    x, y = 81, (81 * k1 + 113) & M64
    z = (((y * k2 + 113) & M64) ^ (((y * k2 + 113) & M64) >> 47)) * k2 & M64
    v, w = (0, 0), (0, 0)
    x = (x * k2 + _f64(s, 0)) & M64
    pos, end = 0, ((n - 1) // 64) * 64
    while True:
        x = (_rot((x + y + v[0] + _f64(s, pos + 8)) & M64, 37) * k1) & M64
        y = (_rot((y + v[1] + _f64(s, pos + 48)) & M64, 42) * k1) & M64
        x ^= w[1]
        y = (y + v[0] + _f64(s, pos + 40)) & M64
        z = (_rot((z + w[0]) & M64, 33) * k1) & M64
        v = _weak(s, pos, (v[1] * k1) & M64, (x + w[0]) & M64)
        w = _weak(s, pos + 32, (z + w[1]) & M64, (y + _f64(s, pos + 16)) & M64)
        x, z = z, x
        pos += 64
        if pos == end:
            break
    mul = (k1 + ((z & 0xFF) << 1)) & M64
    pos = n - 64
    w = ((w[0] + ((n - 1) & 63)) & M64, w[1])
    v = ((v[0] + w[0]) & M64, v[1])
    w = ((w[0] + v[0]) & M64, w[1])
    x = (_rot((x + y + v[0] + _f64(s, pos + 8)) & M64, 37) * mul) & M64
    y = (_rot((y + v[1] + _f64(s, pos + 48)) & M64, 42) * mul) & M64
    x ^= (w[1] * 9) & M64
    y = (y + v[0] * 9 + _f64(s, pos + 40)) & M64
    z = (_rot((z + w[0]) & M64, 33) * mul) & M64
    v = _weak(s, pos, (v[1] * mul) & M64, (x + w[0]) & M64)
    w = _weak(s, pos + 32, (z + w[1]) & M64, (y + _f64(s, pos + 16)) & M64)
    x, z = z, x
    return _h16((_h16(v[0], w[0], mul) + (y ^ (y >> 47)) * k0 + z) & M64, (_h16(v[1], w[1], mul) + x) & M64, mul)


def _reference_siphash(s, key):
    k0, k1 = key
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(count):
        for _ in range(count):
            v[0] = (v[0] + v[1]) & M64
            v[2] = (v[2] + v[3]) & M64
            v[1] = _rot(v[1], 64 - 13) ^ v[0]
            v[3] = _rot(v[3], 64 - 16) ^ v[2]
            v[0] = _rot(v[0], 32)
            v[2] = (v[2] + v[1]) & M64
            v[0] = (v[0] + v[3]) & M64
            v[1] = _rot(v[1], 64 - 17) ^ v[2]
            v[3] = _rot(v[3], 64 - 21) ^ v[0]
            v[2] = _rot(v[2], 32)
    padded = s + bytes((8 - len(s) % 8) % 8)
    words = [_f64(padded, i) for i in range(0, len(padded), 8)]
    if len(s) % 8 == 0:
        words.append(0)
    words[-1] |= (len(s) & 0xFF) << 56
    for m in words:
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


# lengths 0..80 cover every farmhash length class (0-16, 17-32, 33-64, >64); a few reach the
# second 64-byte block of the long-string loop
_STRINGS = st.lists(st.one_of(st.binary(max_size=80), st.binary(min_size=129, max_size=200)), max_size=24)


@settings(deadline=None, max_examples=40)
@given(strings=_STRINGS)
def test_vectorized_fingerprint64_equals_scalar_reference(strings):
    assert [int(h) for h in fingerprint64(strings)] == [_reference_fingerprint64(s) for s in strings]


@settings(deadline=None, max_examples=25)
@given(strings=_STRINGS, key=st.tuples(st.integers(0, M64), st.integers(0, M64)))
def test_vectorized_siphash_equals_scalar_reference(strings, key):
    assert [int(h) for h in siphash64(strings, key)] == [_reference_siphash(s, key) for s in strings]


# ---------------------------------------------------------------------------- lookups' OOV buckets
def test_lookup_oov_buckets_follow_keras():
    words = ["a", "b", "omar", "stringer", "marlo", "wire", "skywalker"]
    lookup = layers.StringLookup(vocabulary=["a", "b"], num_oov_indices=3, mask_token="")
    want = [4, 5] + [1 + _reference_fingerprint64(w.encode()) % 3 for w in words[2:]]
    np.testing.assert_array_equal(lookup(words + [""]), want + [0])
    ints = layers.IntegerLookup(vocabulary=[1, 3], num_oov_indices=4)      # Keras: floor mod for integers
    np.testing.assert_array_equal(ints([1, 3, 6, -3, 7]), [4, 5, 2, 1, 3])
    # Keras 3's oov_method="farmhash": the integers' decimal text hashed, as Hashing does
    unknown = np.array([0, 2, 4, 11, -7, 123456789])
    for salt in (None, [7, 9]):
        hashed = layers.IntegerLookup(vocabulary=[1, 3], num_oov_indices=3, oov_method="farmhash", salt=salt)
        np.testing.assert_array_equal(hashed(unknown), layers.Hashing(num_bins=3, salt=salt)(unknown))
    with pytest.raises(ValueError, match="salt"):
        layers.IntegerLookup(num_oov_indices=2, salt=[1, 2])


def _load_fixture(name):
    with zipfile.ZipFile(FIXTURES / "fixtures.zip") as zf:
        data = zf.read(f"{name}.h5")
        z = np.load(io.BytesIO(zf.read(f"{name}.npz")))
    return data, z


@pytest.mark.parametrize("name", ["Hashing", "IntegerLookup"])
def test_keras_files_with_host_stages_compile_and_match_keras(name, tmp_path):
    """Keras 2 models (Hashing with salt [1, 2]; IntegerLookup with 2 OOV buckets) on int inputs:
    compiled natively they predict and take a training step as Keras did."""
    raw, z = _load_fixture(name)
    path = tmp_path / f"{name}.h5"
    path.write_bytes(raw)
    keras.utils.set_random_seed(0)
    model = keras.models.load_model(path, compile=False)
    with h5py.File(path, "r") as f:
        tc = json.loads(f.attrs["training_config"])
    opt = tc["optimizer_config"]
    model.compile(optimizer=keras.optimizers.get({"class_name": opt["class_name"], "config": opt["config"]}),
                  loss=tc["loss"])
    np.testing.assert_allclose(model.predict(z["x0"], verbose=0), z["y0"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(model.train_on_batch(z["x0"], z["ty"]), z["loss_step"], atol=1e-6, rtol=1e-4)
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, z[f"w_after_{i}"], atol=1e-5, rtol=1e-3)


# ---------------------------------------------------------------------------- models with host stages
def _twin_train(staged, raw_x, ids_input_shape, y, epochs=2):
    """Train `staged` on raw inputs and its twin (same layers after the stage, same weights) on the
    stage's numpy output; both must end with the same weights and losses. (No predict here: its
    graph is compiled separately, which costs seconds per model.)"""
    stage = staged.layers[1]
    ids = stage(raw_x)
    inp = keras.Input(shape=ids_input_shape, dtype="int32" if np.asarray(ids).dtype.kind in "iu" else "float32")
    x = inp
    for layer in staged.layers[2:]:
        x = type(layer).from_config(layer.get_config())(x)
    twin = keras.Model(inp, x)
    twin.set_weights(staged.get_weights())
    for m in (staged, twin):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    staged.fit(raw_x, y, epochs=epochs, batch_size=4, shuffle=False, verbose=0)
    twin.fit(ids, y, epochs=epochs, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(staged.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(staged.evaluate(raw_x, y, verbose=0), twin.evaluate(ids, y, verbose=0), rtol=1e-6)
    return ids, twin


def test_int_hashing_model_trains_like_prehashed_ids():
    keras.utils.set_random_seed(3)
    inp = keras.Input(shape=(3,), dtype="int32")
    x = layers.Hashing(num_bins=11, mask_value=0)(inp)
    x = layers.GlobalAveragePooling1D()(layers.Embedding(11, 4)(x))
    model = keras.Model(inp, layers.Dense(1)(x))
    raw = np.random.randint(0, 1000, (12, 3))
    _twin_train(model, raw, (3,), np.random.rand(12, 1).astype("float32"))


def test_model_ending_in_a_host_stage():
    # the stage's output is the model's output; a float32 batch must not take predict's
    # one-array fast path around the host stage
    inp = keras.Input(shape=(1,))
    model = keras.Model(inp, layers.Hashing(num_bins=5)(inp))
    x = np.array([[1.0], [2.0], [3.0]], np.float32)
    want = layers.Hashing(num_bins=5)(x)
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)
    np.testing.assert_array_equal(model.predict_on_batch(x), want)


def test_host_stage_misuse_is_refused_by_name():
    inp = keras.Input(shape=(2,), dtype="int32")
    with pytest.raises(ValueError, match="Hashing 'late'.*directly"):
        layers.Hashing(5, name="late")(layers.Dense(2)(inp))
    shared = keras.Model(inp, layers.Add()([layers.Hashing(5, name="h")(inp), layers.Dense(2)(inp)]))
    with pytest.raises(ValueError, match="Input 'input_layer.*' feeds Hashing 'h'.*other"):
        shared.compile(loss="mse")           # compiling traces the model: the stages are checked there
    inner_in = keras.Input(shape=(2,), dtype="int32")
    inner = keras.Model(inner_in, layers.Hashing(5, name="nested")(inner_in))
    outer_in = keras.Input(shape=(2,), dtype="int32")
    outer = keras.Model(outer_in, layers.Dense(1)(inner(outer_in)))
    with pytest.raises(ValueError, match="Hashing 'nested'.*nested"):
        outer.predict(np.zeros((2, 2), np.int32), verbose=0)


def test_build_refuses_a_model_with_a_host_stage(tmp_path):
    from kcompile import aot
    from kcompile.cli import main
    inp = keras.Input(shape=(2,), dtype="int32")
    model = keras.Model(inp, layers.Dense(1)(layers.Hashing(7, name="bins")(inp)))
    with pytest.raises(ValueError, match="Hashing 'bins'.*kcompile build"):
        aot.build(model, tmp_path / "out")
    model.save(tmp_path / "m.keras")
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["build", str(tmp_path / "m.keras"), "-o", str(tmp_path / "cli")]) == 1
    assert "Hashing 'bins'" in err.getvalue()


# ---------------------------------------------------------------------------- string models
TEXTS = np.array(["the cat sat", "a dog ran fast", "The dog sat!", "cats and dogs", "a fast cat", "dogs ran",
                  "the end", "cat"])


def _text_model(**vectorize):
    vec = layers.TextVectorization(max_tokens=16, name="vec", **vectorize)
    vec.adapt(TEXTS)
    inp = keras.Input(shape=(1,), dtype="string")
    x = vec(inp)
    if vec.output_mode == "int":
        x = layers.GlobalAveragePooling1D()(layers.Embedding(16, 4)(x))
    return keras.Model(inp, layers.Dense(1)(x))


@needs_strings
def test_text_model_trains_like_prevectorized_ids():
    keras.utils.set_random_seed(1)
    model = _text_model(output_sequence_length=5)
    y = np.arange(len(TEXTS), dtype="float32")[:, None] / len(TEXTS)
    ids, twin = _twin_train(model, TEXTS[:, None], (5,), y)
    want = model.predict(TEXTS[:, None], verbose=0)
    # predict on raw strings equals the twin's predict on the ids
    np.testing.assert_allclose(want, twin.predict(ids, verbose=0), rtol=1e-6, atol=1e-7)
    # raw Python lists and (batch,) arrays too: the trailing axis of size 1 is added as in Keras 3
    np.testing.assert_allclose(model.predict(list(TEXTS), verbose=0), want)


@needs_strings
def test_string_lookup_and_hashing_model_and_save_round_trip(tmp_path):
    keras.utils.set_random_seed(2)
    words = keras.Input(shape=(3,), dtype="string", name="words")
    tags = keras.Input(shape=(1,), dtype="string", name="tags")
    a = layers.StringLookup(vocabulary=["x", "y", "z"], num_oov_indices=2, output_mode="multi_hot")(words)
    b = layers.Hashing(num_bins=4, salt=[5, 9], output_mode="one_hot")(tags)
    model = keras.Model([words, tags], layers.Dense(2)(layers.Concatenate()([a, b])))
    model.compile(optimizer="adam", loss="mse")
    xw = np.array([["x", "q", "z"], ["y", "y", "w"], ["z", "x", "x"], ["k", "l", "m"]])
    xt = np.array([["red"], ["green"], ["blue"], ["red"]])
    model.fit({"words": xw, "tags": xt}, np.ones((4, 2), np.float32), epochs=2, verbose=0)
    want = model.predict([xw, xt], verbose=0)
    path = tmp_path / "strings.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict([xw, xt], verbose=0), want, rtol=1e-6)
    assert loaded.get_layer(model.layers[2].name).get_vocabulary() == ["[UNK]", "[UNK]", "x", "y", "z"]


@needs_strings
def test_seed_002_text_pipeline_in_a_model():
    # the guide's data and vectorizer, then a model that takes the raw strings
    training_data = np.array([["This is the 1st sample"], ["Here is the 2nd sample"]])
    vectorizer = layers.TextVectorization(output_mode="int")
    vectorizer.adapt(training_data)
    integer_data = vectorizer(training_data)
    assert integer_data.shape == (2, 5)
    in_model = layers.TextVectorization(output_mode="int", output_sequence_length=5,
                                        vocabulary=vectorizer.get_vocabulary(include_special_tokens=False))
    inputs = keras.Input(shape=(1,), dtype="string")
    outputs = layers.Dense(2, activation="softmax")(
        layers.GlobalAveragePooling1D()(layers.Embedding(in_model.vocabulary_size(), 4)(in_model(inputs))))
    model = keras.Model(inputs, outputs)
    np.testing.assert_array_equal(in_model(training_data), integer_data)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(training_data, np.array([0, 1]), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert model.predict(training_data, verbose=0).shape == (2, 2)


@needs_strings
def test_string_inputs_misuse_is_refused(tmp_path):
    from kcompile import aot
    text = keras.Input(shape=(1,), dtype="string")
    with pytest.raises(ValueError, match="Input '.*' has dtype string"):
        keras.Model(text, layers.Dense(1)(text)).compile(loss="mse")
    model = _text_model(output_mode="tf_idf")          # not compiled: predict checks the data first
    with pytest.raises(TypeError, match="dtype string"):
        model.predict(np.zeros((2, 1)), verbose=0)
    with pytest.raises(ValueError, match="TextVectorization 'vec'.*kcompile build"):
        aot.build(model, tmp_path / "out")
