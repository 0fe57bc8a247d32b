"""Identity, ZeroPadding1D(data_format), RMSNormalization, the sparsemax activation, EinsumDense,
Attention, AdditiveAttention, MultiHeadAttention and the adaptive pooling layers against numpy
references written from Keras's formulas: drawn configurations on the reference interpreter (a
layer called on arrays), then all of them compiled to native code in one model, and the train
step's gradients (autodiff of the same IR) against central finite differences for one model
holding every layer."""
import pathlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

import kcompile as keras
from kcompile import activations, layers

RNG = np.random.default_rng(7)


def _x(*shape):
    return RNG.normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- numpy references

def sparsemax_ref(z):
    """Keras 3's sparsemax (every backend): sort descending, support 1 + r z_r > cumsum_r, and
    tau = (sum of the cumulative sums over the support - 1) / |support|."""
    zs = -np.sort(-z, axis=-1)
    cs = np.cumsum(zs, axis=-1)
    r = np.arange(1, z.shape[-1] + 1)
    support = zs - (cs - 1) / r > 0
    k = support.sum(-1, keepdims=True)
    tau = (np.where(support, cs, 0).sum(-1, keepdims=True) - 1) / k
    return np.maximum(z - tau, 0)


def softmax_ref(s, axis=-1):
    e = np.exp(s - s.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def attention_ref(q, v, k, scores_fn, v_mask=None, causal=False, q_mask=None):
    s = scores_fn(q, k)                                          # (B, Tq, Tv)
    keep = np.ones_like(s, bool)
    if v_mask is not None:
        keep &= v_mask[:, None, :].astype(bool)
    if causal:
        keep &= np.tril(np.ones(s.shape[1:], bool))[None]
    s = np.where(keep, s, s - 1e9)
    out = softmax_ref(s) @ v
    return out if q_mask is None else out * q_mask[..., None]


def mha_ref(q, v, ws, heads, key_dim, mask=None):
    """Per-head attention of Keras's MultiHeadAttention (rank-3 inputs, default attention axes)."""
    wq, bq, wk, bk, wv, bv, wo, bo = ws
    qp = np.einsum("btd,dnh->btnh", q, wq) + bq
    kp = np.einsum("bsd,dnh->bsnh", v, wk) + bk
    vp = np.einsum("bsd,dnh->bsnh", v, wv) + bv
    s = np.einsum("bsnh,btnh->bnts", kp, qp / np.sqrt(key_dim))
    if mask is not None:
        s = s + (1.0 - mask[:, None]) * -1e9
    o = np.einsum("bnts,bsnh->btnh", softmax_ref(s), vp)
    return np.einsum("btnh,nho->bto", o, wo) + bo


def adaptive_ref(x, out_sizes, mode, channels_first):
    """PyTorch/Keras adaptive pooling: window i of n over L is [floor(iL/n), ceil((i+1)L/n))."""
    if channels_first:
        x = np.moveaxis(x, 1, -1)
    reduce = np.max if mode == "max" else np.mean
    for axis, n in enumerate(out_sizes, start=1):
        size = x.shape[axis]
        parts = [reduce(np.take(x, range(i * size // n, -(-(i + 1) * size // n)), axis=axis), axis=axis, keepdims=True)
                 for i in range(n)]
        x = np.concatenate(parts, axis=axis)
    return np.moveaxis(x, -1, 1) if channels_first else x


# ---------------------------------------------------------------- drawn cases (reference interpreter)

@given(batch=st.sampled_from([1, 3]), steps=st.integers(1, 4), channels=st.integers(1, 3),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)), first=st.booleans())
def test_identity_and_zero_padding1d_data_format(batch, steps, channels, pad, first):
    x = _x(batch, channels, steps) if first else _x(batch, steps, channels)
    np.testing.assert_array_equal(layers.Identity()(x), x)
    layer = layers.ZeroPadding1D(pad, data_format="channels_first" if first else None)
    want = np.pad(x, ((0, 0), (0, 0), pad) if first else ((0, 0), pad, (0, 0)))
    np.testing.assert_array_equal(layer(x), want)
    assert layers.ZeroPadding1D.from_config(layer.get_config()).data_format == layer.data_format


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), eps=st.sampled_from([1e-6, 1e-2, 0.5]),
       data=st.data())
def test_rms_normalization(shape, eps, data):
    rank = len(shape) + 1
    axes = data.draw(st.sampled_from([-1, [rank - 2, rank - 1]] if rank > 2 else [-1]))
    layer = layers.RMSNormalization(axis=axes, epsilon=eps)
    x = _x(2, *shape)
    layer.build(x.shape)
    scale = _x(*layer.scale.shape)
    layer.set_weights([scale])
    red = tuple(a % rank for a in np.atleast_1d(axes))
    want = x / np.sqrt((x ** 2).mean(red, keepdims=True) + eps) * scale
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-6)
    assert layers.RMSNormalization.from_config(layer.get_config()).epsilon == eps


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), ties=st.booleans(), scale=st.sampled_from([0.3, 3.0]))
def test_sparsemax_matches_the_sorted_formula(shape, ties, scale):
    z = (_x(*shape) * scale).astype(np.float32)
    if ties:                                  # repeated values: the sort order within a tie must not matter
        z = np.round(z)
    got = layers.Activation("sparsemax")(z[None] if z.ndim == 1 else z)
    np.testing.assert_allclose(got, sparsemax_ref(z[None] if z.ndim == 1 else z), rtol=1e-5, atol=1e-5)
    if z.ndim >= 2:                           # another axis
        got = keras.ops.convert_to_numpy(activations.sparsemax(keras.ops.convert_to_tensor(z), axis=0))
        np.testing.assert_allclose(got, np.moveaxis(sparsemax_ref(np.moveaxis(z, 0, -1)), -1, 0), rtol=1e-5, atol=1e-5)


_EQUATIONS = [("ab,bc->ac", (4,), (3,), "c"), ("abc,cd->abd", (2, 4), (None, 3), "d"),
              ("abc,cde->abde", (2, 4), (None, 2, 3), "de"), ("...b,bc->...c", (2, 2, 4), (3,), "c"),
              ("ab...,bc->ac...", (4, 2), (3,), "c"), ("abc,dc->adb", (2, 4), (3, None), "d"),
              ("abc,bcd->abd", (2, 4), (None, 3), "bd"), ("abcd,ce->aeb", (2, 3, 2), (5, None), None)]


@given(case=st.sampled_from(_EQUATIONS), batch=st.sampled_from([1, 3]), bias=st.booleans(),
       activation=st.sampled_from([None, "relu", "tanh"]))
def test_einsum_dense(case, batch, bias, activation):
    equation, in_shape, out_shape, bias_axes = case
    layer = layers.EinsumDense(equation, out_shape, bias_axes=bias_axes if bias else None, activation=activation,
                               bias_initializer="random_normal")
    x = _x(batch, *in_shape)
    y = layer(x)
    weights = layer.get_weights()
    want = np.einsum(equation, x, weights[0]) + (weights[1] if len(weights) > 1 else 0)
    want = {None: want, "relu": np.maximum(want, 0), "tanh": np.tanh(want)}[activation]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert layers.EinsumDense.from_config(layer.get_config()).equation == equation


def test_einsum_dense_errors_name_the_problem():
    with pytest.raises(ValueError, match="Invalid einsum equation"):
        layers.EinsumDense("ab->b", 3)
    with pytest.raises(ValueError, match="Bias dimension 'z'"):
        layers.EinsumDense("ab,bc->ac", 3, bias_axes="z")(_x(2, 4))
    with pytest.raises(ValueError, match="kernel_constraint"):
        layers.EinsumDense("ab,bc->ac", 3, kernel_constraint="non_neg")


@given(tq=st.integers(1, 4), tv=st.integers(1, 4), dim=st.integers(1, 3), mode=st.sampled_from(["dot", "concat"]),
       use_scale=st.booleans(), causal=st.booleans(), with_key=st.booleans(), masked=st.booleans())
def test_attention(tq, tv, dim, mode, use_scale, causal, with_key, masked):
    q, v, k = _x(2, tq, dim), _x(2, tv, dim), _x(2, tv, dim)
    layer = layers.Attention(use_scale=use_scale, score_mode=mode)
    inputs = [q, v, k] if with_key else [q, v]
    layer.build([i.shape for i in inputs])
    weights = [np.float32(RNG.uniform(0.5, 2)) * np.ones(w.shape, np.float32) for w in layer.get_weights()]
    layer.set_weights(weights)
    scale = weights[0] if use_scale else 1.0
    if mode == "dot":
        scores = lambda a, b: np.einsum("btd,bsd->bts", a, b) * scale                    # noqa: E731
    else:
        scores = lambda a, b: weights[-1] * np.tanh(scale * (a[:, :, None] + b[:, None])).sum(-1)  # noqa: E731
    v_mask = (RNG.uniform(size=(2, tv)) > 0.3).astype(np.float32) if masked else None
    if v_mask is not None:
        v_mask[:, 0] = 1
    q_mask = (RNG.uniform(size=(2, tq)) > 0.3).astype(np.float32) if masked else None
    kwargs = {"mask": [q_mask, v_mask]} if masked else {}
    got = layer(inputs, use_causal_mask=causal, **kwargs)
    want = attention_ref(q, v, k if with_key else v, scores, v_mask, causal, q_mask)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@given(tq=st.integers(1, 4), tv=st.integers(1, 4), dim=st.integers(1, 3), use_scale=st.booleans())
def test_additive_attention(tq, tv, dim, use_scale):
    q, v = _x(2, tq, dim), _x(2, tv, dim)
    layer = layers.AdditiveAttention(use_scale=use_scale)
    got = layer([q, v])
    scale = layer.get_weights()[0] if use_scale else 1.0
    want = attention_ref(q, v, v, lambda a, b: (scale * np.tanh(a[:, :, None] + b[:, None])).sum(-1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert layers.AdditiveAttention.from_config(layer.get_config()).use_scale == use_scale


@given(t=st.integers(1, 4), s=st.integers(1, 4), dim=st.integers(1, 4), heads=st.integers(1, 3),
       key_dim=st.integers(1, 3), out=st.sampled_from([None, 2]), masked=st.sampled_from(["none", "causal", "mask"]))
def test_multi_head_attention(t, s, dim, heads, key_dim, out, masked):
    q, v = _x(2, t, dim), _x(2, s, dim)
    layer = layers.MultiHeadAttention(heads, key_dim, output_shape=out, bias_initializer="random_normal")
    mask = None
    if masked == "mask":
        mask = (RNG.uniform(size=(2, t, s)) > 0.3).astype(np.float32)
        mask[..., 0] = 1
        got = layer(q, v, attention_mask=mask)
    else:
        got = layer(q, v, use_causal_mask=masked == "causal")
        if masked == "causal":
            mask = np.broadcast_to(np.tril(np.ones((t, s), np.float32)), (2, t, s))
    names = [w.path for w in layer.weights]
    assert names[0].endswith("query/kernel") and names[-1].endswith("attention_output/bias")
    np.testing.assert_allclose(got, mha_ref(q, v, layer.get_weights(), heads, key_dim, mask), rtol=1e-4, atol=1e-5)
    assert got.shape == (2, t, out or dim)


@given(rank=st.integers(1, 3), data=st.data(), mode=st.sampled_from(["max", "average"]), first=st.booleans())
def test_adaptive_pooling(rank, data, mode, first):
    sizes = data.draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank))
    outs = data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    x = _x(2, 2, *sizes) if first else _x(2, *sizes, 2)
    cls = getattr(layers, f"Adaptive{'Max' if mode == 'max' else 'Average'}Pooling{rank}D")
    layer = cls(tuple(outs), data_format="channels_first" if first else "channels_last")
    np.testing.assert_allclose(layer(x), adaptive_ref(x, outs, mode, first), rtol=1e-5, atol=1e-6)
    assert cls.from_config(layer.get_config()).output_size == tuple(outs)


# ---------------------------------------------------------------- compiled (native code)

def test_compiled_models_match_the_references():
    keras.utils.set_random_seed(3)
    q_in, v_in = keras.Input((3, 4)), keras.Input((5, 4))
    mha = layers.MultiHeadAttention(2, 3, value_dim=2, bias_initializer="random_normal")
    att = layers.Attention(use_scale=True, score_mode="concat")
    add = layers.AdditiveAttention()
    ein = layers.EinsumDense("abc,cde->abde", (3, 2, 2), bias_axes="de", bias_initializer="random_normal")
    rms = layers.RMSNormalization(epsilon=0.1)
    pool = layers.AdaptiveAveragePooling1D(2)
    mpool = layers.AdaptiveMaxPooling2D((2, 3), data_format="channels_first")
    outs = [mha(q_in, v_in, use_causal_mask=True), att([q_in, v_in]), add([q_in, v_in]),
            layers.Identity()(ein(q_in)), rms(q_in), layers.Activation("sparsemax")(q_in),
            pool(layers.ZeroPadding1D((1, 2), data_format="channels_first")(q_in)), mpool(ein(q_in))]
    model = keras.Model([q_in, v_in], outs)
    q, v = _x(2, 3, 4), _x(2, 5, 4)
    got = model.predict([q, v], verbose=0)
    causal = np.broadcast_to(np.tril(np.ones((3, 5), np.float32)), (2, 3, 5))
    aw = att.get_weights()
    e = np.einsum("abc,cde->abde", q, ein.get_weights()[0]) + ein.get_weights()[1]
    wants = [mha_ref(q, v, mha.get_weights(), 2, 3, causal),
             attention_ref(q, v, v, lambda a, b: aw[1] * np.tanh(aw[0] * (a[:, :, None] + b[:, None])).sum(-1)),
             attention_ref(q, v, v, lambda a, b: (add.get_weights()[0] * np.tanh(a[:, :, None] + b[:, None])).sum(-1)),
             e, q / np.sqrt((q ** 2).mean(-1, keepdims=True) + 0.1) * rms.get_weights()[0], sparsemax_ref(q),
             adaptive_ref(np.pad(q, ((0, 0), (0, 0), (1, 2))), [2], "average", False),
             adaptive_ref(e, [2, 3], "max", True)]
    for i, (g, w) in enumerate(zip(got, wants)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"output {i}")


def _gradient_model():
    keras.utils.set_random_seed(11)
    q_in, v_in = keras.Input((3, 4)), keras.Input((4, 4))
    q = layers.Dense(4)(q_in)
    h = layers.MultiHeadAttention(2, 2, bias_initializer="random_normal")(q, v_in, use_causal_mask=True)
    h = layers.RMSNormalization(epsilon=0.1)(layers.Identity()(h))
    h = layers.Attention(use_scale=True, score_mode="concat")([h, v_in])
    h = layers.AdditiveAttention()([h, layers.EinsumDense("abc,cd->abd", (None, 4), bias_axes="d")(v_in)])
    h = layers.Activation("sparsemax")(layers.Dense(3)(h))
    h = layers.AdaptiveAveragePooling1D(2)(h)
    h = layers.AdaptiveMaxPooling1D(2, data_format="channels_first")(h)
    return keras.Model([q_in, v_in], layers.Flatten()(h))


def test_gradients_vs_finite_differences():
    # the train step's graph (autodiff included) on the reference interpreter: compiling this
    # graph to native code costs more than the whole module's budget; the native forward code of
    # these layers is checked above, and the backward primitives' code by the primitive tests
    model = _gradient_model()
    feed = [_x(2, 3, 4), _x(2, 4, 4)]
    y = _x(2, model.outputs[0].shape[-1])
    w0 = model.get_weights()
    trainable = [i for i, w in enumerate(model.weights) if w.trainable]
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse", run_eagerly=True)
    model.train_on_batch(feed, y)
    grads = [w0[i] - model.get_weights()[i] for i in trainable]           # lr 1: the gradient itself

    def loss(weights):
        model.set_weights(weights)
        out = np.asarray(model(feed, training=True), np.float64)
        return float(((out - y) ** 2).mean())
    rng = np.random.default_rng(0)
    for slot, i in enumerate(trainable):
        flat = rng.choice(w0[i].size)
        idx = np.unravel_index(flat, w0[i].shape)
        eps = 1e-3 * max(1.0, abs(float(w0[i][idx])))
        plus, minus = [w.copy() for w in w0], [w.copy() for w in w0]
        plus[i][idx] += eps
        minus[i][idx] -= eps
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(numeric - grads[slot][idx]) < 5e-3 * max(1.0, abs(numeric)), \
            f"weight {model.weights[i].path}{idx}: numeric {numeric} vs autodiff {grads[slot][idx]}"


def test_compiled_train_step_gradients_match_the_interpreter():
    keras.utils.set_random_seed(1)
    q_in, v_in = keras.Input((3, 4)), keras.Input((4, 4))
    h = layers.MultiHeadAttention(2, 2, bias_initializer="random_normal")(q_in, v_in, use_causal_mask=True)
    h = layers.Activation("sparsemax")(h)
    h = layers.AdaptiveMaxPooling1D(2)(layers.EinsumDense("abc,cd->abd", (None, 3), bias_axes="d")(h))
    model = keras.Model([q_in, v_in], layers.Flatten()(h))
    feed, y = [_x(2, 3, 4), _x(2, 4, 4)], _x(2, 6)
    w0 = model.get_weights()
    grads = []
    for eager in (False, True):
        model.set_weights(w0)
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse", run_eagerly=eager)
        model.train_on_batch(feed, y)
        grads.append([a - b for a, b in zip(w0, model.get_weights())])
    assert any(np.abs(g).max() > 0 for g in grads[1])
    for name, gc, ge in zip([w.path for w in model.weights], *grads):
        np.testing.assert_allclose(gc, ge, rtol=1e-3, atol=1e-5, err_msg=name)


def test_multi_head_attention_from_a_keras3_file_and_back(tmp_path):
    """Keras 3 keeps the projections in EinsumDense sublayers (query_dense/vars ...) and builds the
    layer from shapes_dict: a real Keras 3 file loads with Keras's outputs, and kcompile writes the
    same layout back (Keras 3 reloads it: checked when the fixture was made)."""
    import json
    import zipfile
    folder = pathlib.Path(__file__).parent / "fixtures" / "keras3_attention"
    data = np.load(folder / "mha_io.npz")
    model = keras.models.load_model(folder / "mha.keras")
    np.testing.assert_allclose(model.predict([data["q"], data["v"]], verbose=0), data["y"], rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "back.keras")
    with zipfile.ZipFile(folder / "mha.keras") as a, zipfile.ZipFile(tmp_path / "back.keras") as b:
        ours = json.loads(b.read("config.json"))["config"]["layers"]
        theirs = json.loads(a.read("config.json"))["config"]["layers"]
    build = [[e.get("build_config") for e in layers_ if e["class_name"] == "MultiHeadAttention"]
             for layers_ in (ours, theirs)]
    assert build[0] == build[1]
    again = keras.models.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(again.predict([data["q"], data["v"]], verbose=0), data["y"], rtol=1e-5, atol=1e-6)
