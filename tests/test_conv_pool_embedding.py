"""Convolution, pooling and Embedding: numpy references over drawn configurations, compiled vs
interpreter training steps, real-Keras goldens (small VGG, dilated Conv1D, embedding + pooling),
and a short training run of the guide's VGG-like convnet."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kcompile as keras
from kcompile import layers

from conftest import CONFORMANCE
from golden_helpers import close as _close, weights_from_h5 as _weights_from_h5


# ---------------------------------------------------------------- numpy references

def ref_conv(x, kernel, bias, strides, padding, dilation):
    """Direct N-D convolution, channels_last, (k.., Cin, F) kernel, TensorFlow 'same' padding."""
    r = kernel.ndim - 2
    spatial = x.shape[1:-1]
    pads = []
    for s, k, st, d in zip(spatial, kernel.shape[:r], strides, dilation):
        span = (k - 1) * d + 1
        if padding == "same":
            total = max((-(-s // st) - 1) * st + span - s, 0)
            pads.append((total // 2, total - total // 2))
        elif padding == "causal":
            pads.append((span - 1, 0))
        else:
            pads.append((0, 0))
    xp = np.pad(x.astype(np.float64), [(0, 0)] + pads + [(0, 0)])
    out_sizes = [(xp.shape[1 + i] - ((kernel.shape[i] - 1) * dilation[i] + 1)) // strides[i] + 1 for i in range(r)]
    out = np.zeros((x.shape[0],) + tuple(out_sizes) + (kernel.shape[-1],))
    for o in np.ndindex(*out_sizes):
        for w in np.ndindex(*kernel.shape[:r]):
            pos = tuple(oi * st + wi * d for oi, st, wi, d in zip(o, strides, w, dilation))
            out[(slice(None),) + o] += xp[(slice(None),) + pos] @ kernel[w]
    return out + (bias if bias is not None else 0)


def ref_pool(x, size, strides, padding, mode):
    r = len(size)
    spatial = x.shape[1:-1]
    out_sizes, pads = [], []
    for s, k, st in zip(spatial, size, strides):
        if padding == "same":
            o = -(-s // st)
            total = max((o - 1) * st + k - s, 0)
            pads.append(total // 2)
        else:
            o = (s - k) // st + 1
            pads.append(0)
        out_sizes.append(o)
    out = np.zeros((x.shape[0],) + tuple(out_sizes) + (x.shape[-1],))
    for o in np.ndindex(*out_sizes):
        sl = []
        for oi, st, k, p, s in zip(o, strides, size, pads, spatial):
            lo = oi * st - p
            sl.append(slice(max(lo, 0), min(lo + k, s)))
        patch = x[(slice(None),) + tuple(sl)].reshape(x.shape[0], -1, x.shape[-1])
        out[(slice(None),) + o] = patch.max(1) if mode == "max" else patch.mean(1)
    return out


# ---------------------------------------------------------------- layers vs references

@settings(deadline=None, max_examples=12)
@given(rank=st.sampled_from([1, 2, 3]), size=st.integers(1, 7), k=st.integers(1, 3), stride=st.integers(1, 3),
       dil=st.integers(1, 2), padding=st.sampled_from(["valid", "same", "causal"]), cin=st.integers(1, 3),
       filters=st.integers(1, 4), batch=st.integers(1, 2), seed=st.integers(0, 99))
def test_conv_forward_matches_numpy(rank, size, k, stride, dil, padding, cin, filters, batch, seed):
    if rank != 1 and padding == "causal":
        padding = "same"
    if stride > 1 and dil > 1:
        dil = 1
    span = (k - 1) * dil + 1
    if padding == "valid" and size < span:
        size = span
    cls = {1: layers.Conv1D, 2: layers.Conv2D, 3: layers.Conv3D}[rank]
    layer = cls(filters, k, strides=stride, padding=padding, dilation_rate=dil, use_bias=True,
                bias_initializer="random_normal")
    x = np.random.default_rng(seed).normal(size=(batch,) + (size,) * rank + (cin,)).astype(np.float32)
    got = layer(x)
    kernel, bias = layer.get_weights()
    want = ref_conv(x, kernel, bias, (stride,) * rank, padding, (dil,) * rank)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(deadline=None, max_examples=10)
@given(rank=st.sampled_from([1, 2, 3]), size=st.integers(1, 7), pool=st.integers(1, 3), stride=st.integers(1, 3),
       padding=st.sampled_from(["valid", "same"]), mode=st.sampled_from(["max", "average"]), seed=st.integers(0, 99))
def test_pooling_matches_numpy(rank, size, pool, stride, padding, mode, seed):
    if padding == "valid" and size < pool:
        size = pool
    cls = getattr(layers, f"{'Max' if mode == 'max' else 'Average'}Pooling{rank}D")
    x = np.random.default_rng(seed).normal(size=(2,) + (size,) * rank + (3,)).astype(np.float32)
    got = cls(pool_size=pool, strides=stride, padding=padding)(x)
    np.testing.assert_allclose(got, ref_pool(x, (pool,) * rank, (stride,) * rank, padding, mode), rtol=1e-5, atol=1e-5)


def test_global_pooling_keepdims_and_channels_first():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(layers.GlobalAveragePooling2D()(x), x.mean((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(layers.GlobalMaxPooling2D(keepdims=True)(x), x.max((1, 2), keepdims=True))
    np.testing.assert_allclose(layers.GlobalAveragePooling2D(data_format="channels_first")(x), x.mean((2, 3)),
                               rtol=1e-5)


def test_channels_first_conv_equals_transposed_channels_last():
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 5)).astype(np.float32)
    cf = layers.Conv2D(4, 3, padding="same", data_format="channels_first")
    got = cf(x)
    cl = layers.Conv2D(4, 3, padding="same")
    cl.build((None, 6, 5, 3))
    cl.set_weights(cf.get_weights())
    np.testing.assert_allclose(got, np.transpose(cl(np.transpose(x, (0, 2, 3, 1))), (0, 3, 1, 2)), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("strides,padding", [(1, "valid"), (2, "same"), (2, "valid"), (3, "same"), (3, "valid")])
def test_conv_transpose_is_the_adjoint_of_conv(strides, padding):
    """<conv(p), x> = <p, conv_transpose(x)> with the same kernel and padding."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 5, 4, 3)).astype(np.float32)
    t = layers.Conv2DTranspose(2, 3, strides=strides, padding=padding, use_bias=False)
    y = t(x)
    assert y.shape == (1, t.output_length(5, 0), t.output_length(4, 1), 2)
    (kernel,) = t.get_weights()                      # (kh, kw, filters, in_channels)
    probe = rng.normal(size=y.shape)
    forward = ref_conv(probe, kernel, None, (strides, strides), padding, (1, 1))
    assert forward.shape == x.shape
    np.testing.assert_allclose((forward * x).sum(), (probe * y).sum(), rtol=1e-4)


def test_conv_transpose_output_padding_sizes():
    x = np.zeros((1, 5, 1), np.float32)
    for strides, padding, op, size in [(2, "valid", 1, 12), (3, "same", 1, 14), (2, "same", 0, 9)]:
        assert layers.Conv1DTranspose(1, 3, strides=strides, padding=padding, output_padding=op)(x).shape[1] == size


def test_depthwise_and_separable_match_references():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    dw = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", bias_initializer="random_normal")
    got = dw(x)
    kernel, bias = dw.get_weights()
    want = np.concatenate([ref_conv(x[..., c:c + 1], kernel[:, :, c:c + 1, :], None, (1, 1), "same", (1, 1))
                           for c in range(3)], axis=-1) + bias
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    sep = layers.SeparableConv2D(4, 3, strides=2, use_bias=False)
    got = sep(x)
    d, p = sep.get_weights()
    mid = np.concatenate([ref_conv(x[..., c:c + 1], d[:, :, c:c + 1, :], None, (2, 2), "valid", (1, 1))
                          for c in range(3)], axis=-1)
    np.testing.assert_allclose(got, mid @ p[0, 0], rtol=1e-4, atol=1e-5)


def test_grouped_conv_splits_channels():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 5, 4)).astype(np.float32)
    layer = layers.Conv1D(6, 2, groups=2, use_bias=False)
    got = layer(x)
    (kernel,) = layer.get_weights()
    want = np.concatenate([ref_conv(x[..., :2], kernel[..., :3], None, (1,), "valid", (1,)),
                           ref_conv(x[..., 2:], kernel[..., 3:], None, (1,), "valid", (1,))], axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_embedding_lookup_mask_and_out_of_range():
    layer = layers.Embedding(10, 3, mask_zero=True)
    idx = np.array([[1, 0, 9], [11, 2, -1]])
    out = layer(idx)
    (table,) = layer.get_weights()
    np.testing.assert_allclose(out[0], table[[1, 0, 9]])
    assert np.isnan(out[1, 0]).all() and np.isnan(out[1, 2]).all()
    np.testing.assert_allclose(out[1, 1], table[2])


# ---------------------------------------------------------------- compiled training == interpreter

@pytest.mark.parametrize("build", [
    lambda: [keras.Input((7, 6, 2)), layers.Conv2D(3, 3, strides=2, padding="same", activation="relu"),
             layers.MaxPooling2D(2, padding="same"), layers.Flatten(), layers.Dense(1)],
    lambda: [keras.Input((9, 2)), layers.Conv1D(3, 3, padding="causal", dilation_rate=2),
             layers.AveragePooling1D(2, padding="same"), layers.Conv1DTranspose(2, 3, strides=2),
             layers.GlobalMaxPooling1D(), layers.Dense(1)],
    lambda: [keras.Input((6, 6, 2)), layers.DepthwiseConv2D(3), layers.SeparableConv2D(2, 2),
             layers.Conv2DTranspose(2, 2, strides=2, padding="same"), layers.GlobalAveragePooling2D(),
             layers.Dense(1)],
    lambda: [keras.Input((5,), dtype="int32"), layers.Embedding(7, 4), layers.GlobalAveragePooling1D(),
             layers.Dense(1)],
], ids=["conv2d_pool", "conv1d_transpose", "depthwise_separable", "embedding"])
def test_compiled_step_matches_interpreter(build):
    rng = np.random.default_rng(5)
    model = keras.Sequential(build())
    shape = model.inputs[0].shape[1:]
    x = rng.integers(0, 7, size=(4,) + shape) if model.inputs[0].dtype == "int32" else \
        rng.normal(size=(4,) + shape).astype(np.float32)
    y = rng.normal(size=(4, 1)).astype(np.float32)
    start = model.get_weights()
    results = []
    for eager in (False, True):
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=eager)
        losses = [model.train_on_batch(x, y) for _ in range(2)]
        results.append((losses, model.get_weights()))
    (lc, wc), (le, we) = results
    np.testing.assert_allclose(lc, le, rtol=1e-4, atol=1e-6)
    for a, b in zip(wc, we):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 5, 5, 2)).astype(np.float64)
    model = keras.Sequential([keras.Input((5, 5, 2)), layers.Conv2D(2, 2, strides=2, padding="same"),
                              layers.AveragePooling2D(2, strides=1), layers.Flatten()])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    y = np.zeros((2, model.outputs[0].shape[-1]), np.float32)
    w0 = model.get_weights()

    def loss(weights):
        model.set_weights(weights)
        return float(((model.predict(x.astype(np.float32), verbose=0).astype(np.float64) - y) ** 2).mean())
    model.set_weights(w0)
    model.train_on_batch(x.astype(np.float32), y)
    analytic = [a - b for a, b in zip(w0, model.get_weights())]       # lr 1: the gradient itself
    eps = 1e-2
    for wi, idx in [(0, (0, 1, 1, 0)), (0, (1, 0, 0, 1)), (1, (1,))]:
        plus = [w.copy() for w in w0]
        minus = [w.copy() for w in w0]
        plus[wi][idx] += eps
        minus[wi][idx] -= eps
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(numeric - analytic[wi][idx]) < 2e-3 * max(1.0, abs(numeric))


# ---------------------------------------------------------------- real-Keras goldens

def _golden_model(name, dialect):
    base = CONFORMANCE / dialect
    if name == "vgg_small":
        return [keras.Input((24, 24, 3)), layers.Conv2D(8, 3, activation="relu"), layers.Conv2D(8, 3, activation="relu"),
                layers.MaxPooling2D(2), layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
                layers.Flatten(), layers.Dense(32, activation="relu"), None], base
    if name == "conv1d_seq":
        return [keras.Input((30, 4)), layers.Conv1D(8, 3, activation="relu"), layers.MaxPooling1D(2),
                layers.Conv1D(8, 3, dilation_rate=2), layers.Flatten(), layers.Dense(1)], base
    return [keras.Input((15,)), layers.Embedding(100, 8), layers.GlobalAveragePooling1D(),
            layers.Dense(4, activation="softmax")], base


@pytest.mark.parametrize("name", ["vgg_small", "conv1d_seq", "text_embed_pool"])
@pytest.mark.parametrize("dialect", ["keras3", "keras2"])
def test_conformance_goldens(name, dialect):
    import json
    stack, base = _golden_model(name, dialect)
    if stack[-1] is None:     # the last Dense of vgg_small: read its size and activation from the config
        last = json.loads((base / f"{name}.json").read_text())["config"]["layers"][-1]["config"]
        stack[-1] = layers.Dense(last["units"], activation=last["activation"])
    model = keras.Sequential(stack)
    weights, training = _weights_from_h5(base / f"{name}.h5")
    model.set_weights(weights)
    z = np.load(base / f"{name}.npz")
    _close(model.predict(z["x0"], verbose=0), z["y0"], 1e-5, 1e-4)
    if "loss_step" not in z:
        return
    model.compile(optimizer=keras.optimizers.get(training["optimizer_config"]), loss=training["loss"])
    loss = model.train_on_batch(z["tx0"], z["ty0"])
    _close(loss, z["loss_step"], 0, 1e-4 * abs(float(z["loss_step"])) + 1e-7)
    for i, w in enumerate(model.get_weights()):
        _close(w, z[f"w_after_{i}"], 1e-5, 1e-3)


def test_guide_vgg_convnet_trains():
    """The Keras guide's VGG-like convnet on 100x100x3 inputs (a few steps: it must learn)."""
    rng = np.random.default_rng(7)
    x = rng.random((16, 100, 100, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
    keras.set_random_seed(0)        # initial weights and dropout masks: a fixed, reproducible run
    model = keras.Sequential([
        keras.Input((100, 100, 3)),
        layers.Conv2D(32, (3, 3), activation="relu"), layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25),
        layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    history = model.fit(x, y, batch_size=8, epochs=5, verbose=0).history["loss"]   # one compile: no evaluate
    assert history[-1] < history[0]


# ---------------------------------------------------------------- compiled code over drawn configurations

@st.composite
def spatial_layers(draw):
    """A conv/pool layer with a drawn configuration, and an input shape it accepts."""
    kind = draw(st.sampled_from(["conv", "transpose", "depthwise", "separable", "max", "average"]))
    rank = draw(st.sampled_from([1, 2] if kind in ("depthwise", "separable") else [1, 2, 3]))
    k, stride, dil = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if stride > 1 or kind in ("max", "average"):
        dil = 1
    padding = draw(st.sampled_from(["valid", "same", "causal"] if kind == "conv" and rank == 1 else ["valid", "same"]))
    fmt = draw(st.sampled_from(["channels_last", "channels_first"]))
    size = max(draw(st.integers(1, 6)), (k - 1) * dil + 1)
    channels = draw(st.integers(1, 3))
    common = dict(strides=stride, padding=padding, data_format=fmt)
    if kind in ("max", "average"):
        layer = getattr(layers, f"{kind.capitalize()}Pooling{rank}D")(pool_size=k, **common)
    elif kind == "conv":
        layer = getattr(layers, f"Conv{rank}D")(2, k, dilation_rate=dil, activation="tanh", **common)
    elif kind == "transpose":
        layer = getattr(layers, f"Conv{rank}DTranspose")(2, k, dilation_rate=dil, **common)
    elif kind == "depthwise":
        layer = getattr(layers, f"DepthwiseConv{rank}D")(k, depth_multiplier=2, dilation_rate=dil, **common)
    else:
        layer = getattr(layers, f"SeparableConv{rank}D")(3, k, dilation_rate=dil, **common)
    shape = ((channels,) + (size,) * rank) if fmt == "channels_first" else ((size,) * rank + (channels,))
    return layer, shape


@settings(deadline=None, max_examples=9)      # each example compiles two programs
@given(case=spatial_layers(), batch=st.integers(1, 3), seed=st.integers(0, 99))
def test_compiled_layers_match_interpreter_on_drawn_configs(case, batch, seed):
    """Forward pass and one training step of the native code equal the reference interpreter's
    (which the tests above check against numpy) for strides, padding, dilation, both data formats."""
    layer, shape = case
    # a Dense in front gives weightless pooling layers something upstream to train through
    model = keras.Sequential([keras.Input(shape), layers.Dense(shape[-1]), layer])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch,) + shape).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x), rtol=1e-4, atol=1e-5)
    y = rng.normal(size=(batch,) + model.outputs[0].shape[1:]).astype(np.float32)
    start = model.get_weights()
    results = []
    for eager in (False, True):
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", run_eagerly=eager)
        results.append((model.train_on_batch(x, y), model.get_weights()))
    (lc, wc), (le, we) = results
    np.testing.assert_allclose(lc, le, rtol=1e-4, atol=1e-6)
    for a, b in zip(wc, we):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- arguments and configs

CONFIGURABLE = [
    lambda: layers.Conv1D(4, 3, padding="causal", dilation_rate=2, groups=2, activation="relu"),
    lambda: layers.Conv2D(4, (3, 2), strides=(2, 1), data_format="channels_first", use_bias=False,
                          kernel_regularizer="l2"),
    lambda: layers.Conv3D(2, 2, bias_initializer="ones"),
    lambda: layers.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1),
    lambda: layers.Conv1DTranspose(3, 2), lambda: layers.Conv3DTranspose(2, 2, dilation_rate=2),
    lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, depthwise_regularizer="l1"),
    lambda: layers.DepthwiseConv1D(2, strides=2, padding="same"),
    lambda: layers.SeparableConv2D(5, 3, depth_multiplier=2, pointwise_initializer="zeros"),
    lambda: layers.SeparableConv1D(5, 3),
    lambda: layers.MaxPooling2D((2, 3), strides=1, padding="same"), lambda: layers.AveragePooling3D(2),
    lambda: layers.GlobalAveragePooling1D(keepdims=True), lambda: layers.GlobalMaxPooling3D(data_format="channels_first"),
    lambda: layers.Embedding(10, 4, mask_zero=True, embeddings_initializer="random_normal"),
]


@pytest.mark.parametrize("make", CONFIGURABLE)
def test_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config


@pytest.mark.parametrize("make,error,words", [
    (lambda: layers.Conv2DTranspose(2, 3, groups=2), TypeError, "groups"),
    (lambda: layers.Conv2D(2, 3, output_padding=1), TypeError, "output_padding"),
    (lambda: layers.DepthwiseConv2D(3, groups=2), TypeError, "groups"),
    (lambda: layers.SeparableConv2D(2, 3, kernel_initializer="zeros"), TypeError, "kernel_initializer"),
    (lambda: layers.Conv2D(2, 3, kernel_constraint="non_neg"), ValueError, "kernel_constraint"),
    (lambda: layers.DepthwiseConv2D(3, depthwise_constraint="non_neg"), ValueError, "depthwise_constraint"),
    (lambda: layers.SeparableConv1D(2, 3, pointwise_constraint="non_neg"), ValueError, "pointwise_constraint"),
    (lambda: layers.Embedding(5, 2, embeddings_constraint="non_neg"), ValueError, "embeddings_constraint"),
    (lambda: layers.Conv2D(2, 3, padding="causal"), ValueError, "padding"),
    (lambda: layers.Conv2D(2, 3, strides=2, dilation_rate=2), ValueError, "dilation_rate"),
    (lambda: layers.Conv1D(3, 3, groups=2), ValueError, "groups"),
    (lambda: layers.Conv2D(0, 3), ValueError, "filters"),
    (lambda: layers.MaxPooling2D((2, 2, 2)), ValueError, "pool_size"),
    (lambda: layers.AveragePooling1D(2, data_format="nchw"), ValueError, "data_format"),
    (lambda: layers.Embedding(0, 3), ValueError, "input_dim"),
])
def test_bad_arguments_are_named(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_channels_must_divide_into_groups_at_build():
    with pytest.raises(ValueError, match="groups"):
        layers.Conv1D(4, 2, groups=2)(np.zeros((1, 5, 3), np.float32))


# ---------------------------------------------------------------- Embedding, compiled

@pytest.fixture(scope="module")
def masked_text_model():
    """Embedding(mask_zero) → GlobalAveragePooling1D (which averages unmasked steps only) → Dense."""
    keras.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,), dtype="int32"), layers.Embedding(12, 5, mask_zero=True),
                              layers.GlobalAveragePooling1D(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return model


def test_embedding_mask_reaches_global_average_pooling(masked_text_model):
    model = masked_text_model
    idx = np.array([[3, 4, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 7, 0, 0, 0]], np.int32)
    emb = model.layers[0].get_weights()[0]
    mask = (idx != 0)[..., None]
    pooled = (emb[idx] * mask).sum(1) / mask.sum(1)
    kernel, bias = model.layers[2].get_weights()
    logits = pooled @ kernel + bias
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(idx, verbose=0), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(idx), want, rtol=1e-5, atol=1e-6)
    mask_tensor = model.layers[0].compute_mask(keras.Input((6,), dtype="int32"))
    assert mask_tensor.dtype == "float32" and mask_tensor.shape == (None, 6)


def test_embedding_text_model_learns(masked_text_model):
    """Classify a sequence by which of three token ranges dominates it; padding (0) varies."""
    model = masked_text_model
    rng = np.random.default_rng(8)
    y = rng.integers(0, 3, 96)
    idx = (1 + 4 * y[:, None] + rng.integers(0, 3, (96, 6))).astype(np.int32)
    lengths = rng.integers(2, 7, 96)
    idx[np.arange(6)[None, :] >= lengths[:, None]] = 0
    first = model.evaluate(idx, y, verbose=0)
    model.fit(idx, y, batch_size=16, epochs=8, verbose=0)
    assert model.evaluate(idx, y, verbose=0) < 0.5 * first


def test_compiled_embedding_nan_rows_and_index_shapes():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    for shape in [(5,), (2, 3), (2, 2, 2)]:
        layer = layers.Embedding(4, 3, weights=[table], input_length=shape[-1])
        model = keras.Sequential([keras.Input(shape[1:], dtype="int32"), layer])
        idx = np.arange(-2, -2 + np.prod(shape)).reshape(shape).astype(np.int32) % 7 - 1  # some out of range
        got = model.predict(idx, verbose=0)
        ok = (idx >= 0) & (idx < 4)
        np.testing.assert_array_equal(got[ok], table[idx[ok]])
        assert np.isnan(got[~ok]).all() and (~ok).any()


def test_embedding_gradient_adds_repeated_rows():
    """Rows looked up twice get both gradients; rows never used keep their values."""
    table = np.zeros((5, 2), np.float32)
    model = keras.Sequential([keras.Input((3,), dtype="int32"), layers.Embedding(5, 2, weights=[table]),
                              layers.Flatten()])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    idx = np.array([[1, 1, 3]], np.int32)
    target = np.ones((1, 6), np.float32)
    model.train_on_batch(idx, target)
    (new,) = model.get_weights()
    step = 2.0 / 6                 # d mse / d output = 2 (0 - 1) / 6 per element, lr 1
    np.testing.assert_allclose(new[1], [2 * step] * 2, rtol=1e-6)
    np.testing.assert_allclose(new[3], [step] * 2, rtol=1e-6)
    np.testing.assert_array_equal(new[[0, 2, 4]], 0)


# ---------------------------------------------------------------- kcompile.ops

def test_ops_match_the_layers_eagerly():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 6, 5, 4)).astype(np.float32)
    conv = layers.Conv2D(3, 3, strides=2, padding="same", use_bias=False)
    want = conv(x)
    np.testing.assert_allclose(keras.ops.conv(x, conv.get_weights()[0], 2, "same"), want, rtol=1e-5, atol=1e-6)
    xf = np.transpose(x, (0, 3, 1, 2))
    np.testing.assert_allclose(keras.ops.conv(xf, conv.get_weights()[0], 2, "same", data_format="channels_first"),
                               np.transpose(want, (0, 3, 1, 2)), rtol=1e-5, atol=1e-6)
    grouped = layers.Conv2D(4, 2, groups=2, use_bias=False)      # kernel (2, 2, 2, 4): two groups
    want = grouped(x)
    np.testing.assert_allclose(keras.ops.conv(x, grouped.get_weights()[0]), want, rtol=1e-5, atol=1e-6)
    t = layers.Conv2DTranspose(2, 3, strides=2, output_padding=1, use_bias=False)
    want = t(x)
    np.testing.assert_allclose(keras.ops.conv_transpose(x, t.get_weights()[0], 2, output_padding=1), want,
                               rtol=1e-5, atol=1e-6)
    sep = layers.SeparableConv2D(3, 2, depth_multiplier=2, use_bias=False)
    want = sep(x)
    np.testing.assert_allclose(keras.ops.separable_conv(x, *sep.get_weights()), want, rtol=1e-5, atol=1e-6)
    dw = layers.DepthwiseConv2D(2, strides=2, use_bias=False)
    want = dw(x)
    np.testing.assert_allclose(keras.ops.depthwise_conv(x, dw.get_weights()[0], 2), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.max_pool(x, 2, padding="same"), layers.MaxPooling2D(padding="same")(x))
    np.testing.assert_allclose(keras.ops.average_pool(x, (3, 2), 1), layers.AveragePooling2D((3, 2), 1)(x),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="kernel"):
        keras.ops.conv(x, np.zeros((3, 3, 3, 2), np.float32))


class _OpsBlock(layers.Layer):
    """A custom layer written with kcompile.ops: depthwise conv, conv, max pool."""

    def build(self, input_shape):
        self.dk = self.add_weight(shape=(3, 3, input_shape[-1], 2), initializer="glorot_uniform")
        self.k = self.add_weight(shape=(1, 1, 2 * input_shape[-1], 3), initializer="glorot_uniform")

    def call(self, x):
        y = keras.ops.depthwise_conv(x, self.dk, padding="same")
        return keras.ops.max_pool(keras.ops.relu(keras.ops.conv(y, self.k)), 2)


def test_ops_in_a_custom_layer_compile_and_train_like_the_interpreter():
    rng = np.random.default_rng(10)
    model = keras.Sequential([keras.Input((6, 6, 2)), _OpsBlock(), layers.Flatten(), layers.Dense(1)])
    x = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
    y = rng.normal(size=(3, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x), rtol=1e-5, atol=1e-6)
    start, results = model.get_weights(), []
    for eager in (False, True):
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", run_eagerly=eager)
        results.append(([model.train_on_batch(x, y) for _ in range(2)], model.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_conv_lowers_to_one_implicit_gemm_with_fused_epilogue():
    from kcompile.convolution import conv
    from kcompile.ir import builder as b
    from kcompile.ir.graph import BATCH, Graph
    from kcompile.ir.passes.pipeline import lower_to_kernels
    x = b.input("x", (BATCH, 6, 6, 2))
    w = b.input("w", (3, 3, 2, 4), index=1)
    for padding, layout in (("valid", []), ("same", ["pad"])):
        y = b.relu(b.add(conv(x, w, (1, 1), padding, (1, 1)), b.const(np.ones(4, np.float32))))
        kernels = lower_to_kernels(Graph([x, w], {"y": y}, [])).kernels
        # the window is not a kernel: the matmul reads its A through it from the (padded) input
        assert [k.root.op for k in kernels] == layout + ["matmul"]
        assert kernels[-1].a_window.op == "window"
        assert kernels[-1].external_inputs()[0] is kernels[-1].a_window.inputs[0]
        assert [m.op for m in kernels[-1].members] == ["add", "maximum"]
