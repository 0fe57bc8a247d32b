"""Layer zoo on drawn configurations: merges with Keras's rank alignment and broadcasting, Dot axes,
3-D padding/cropping/upsampling and bilinear UpSampling2D in both data formats, ReLU/Softmax
parameters, against numpy references (batch 1 and odd sizes included); then, per stack of layers
with weights or a nontrivial backward, the compiled train step's gradient against the
interpreter's and against central finite differences, and a short training run."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kcompile as keras
from kcompile import layers
from kcompile.layers.preprocessing.image import interpolation_matrix

RNG = np.random.default_rng(3)


def _x(*shape):
    return RNG.normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- merging

@settings(deadline=None, max_examples=12)
@given(batch=st.sampled_from([1, 3]), base=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       data=st.data())
def test_elementwise_merges_broadcast_like_keras(batch, base, data):
    # each input: the base shape with some axes set to 1, possibly with leading axes dropped (lower rank)
    shapes = []
    for _ in range(data.draw(st.integers(2, 3))):
        ones = data.draw(st.lists(st.booleans(), min_size=len(base), max_size=len(base)))
        shape = [1 if o else d for o, d in zip(ones, base)]
        drop = data.draw(st.integers(0, len(base) - 1))
        shapes.append(tuple(shape[drop:]) if all(s == 1 for s in shape[:drop]) else tuple(shape))
    xs = [_x(batch, *s) for s in shapes]
    rank = 1 + max(len(s) for s in shapes)
    aligned = [x.reshape((batch,) + (1,) * (rank - x.ndim) + x.shape[1:]) for x in xs]   # axes after batch
    refs = {"Add": sum(aligned), "Multiply": np.prod(np.broadcast_arrays(*aligned), axis=0),
            "Average": sum(aligned) / len(aligned), "Maximum": np.maximum.reduce(np.broadcast_arrays(*aligned)),
            "Minimum": np.minimum.reduce(np.broadcast_arrays(*aligned))}
    for name, want in refs.items():
        np.testing.assert_allclose(getattr(layers, name)()(xs), want, rtol=1e-5, atol=1e-6, err_msg=name)
    # subtract takes the first two: their own rank (the third input may have had more axes)
    pair_rank = max(x.ndim for x in xs[:2])
    first, second = [x.reshape((batch,) + (1,) * (pair_rank - x.ndim) + x.shape[1:]) for x in xs[:2]]
    np.testing.assert_allclose(layers.subtract(xs[:2]), first - second, rtol=1e-6)


@settings(deadline=None, max_examples=10)
@given(batch=st.sampled_from([1, 2]), n=st.integers(1, 4), m=st.integers(1, 3), k=st.integers(1, 3),
       normalize=st.booleans(), swap=st.booleans())
def test_dot_axes_and_normalize(batch, n, m, k, normalize, swap):
    a, b = _x(batch, n, k), _x(batch, m, k)
    if swap:           # contract axis 1 of a (B, k, n) with axis 2 of b (B, m, k)
        a = a.transpose(0, 2, 1)
    axes = (1, 2) if swap else (-1, -1)
    out = layers.Dot(axes=axes, normalize=normalize)([a, b])
    aa = a.transpose(0, 2, 1) if swap else a
    if normalize:
        aa = aa / np.linalg.norm(aa, axis=-1, keepdims=True)
        b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bnk,bmk->bnm", aa, b), rtol=1e-4, atol=1e-5)
    assert layers.Dot.from_config(layers.Dot(axes=axes, normalize=normalize).get_config()).normalize == normalize


def test_concatenate_joins_masks_along_time_and_ands_them_along_features():
    a, b = keras.Input((3,), dtype="int32"), keras.Input((2, 4))
    ea = layers.Embedding(10, 4, mask_zero=True)(a)
    joined = layers.Concatenate(axis=1)([ea, b])
    assert joined._keras_mask.shape == (None, 5)
    assert layers.Concatenate()([ea, layers.Dense(2)(ea)])._keras_mask.shape == (None, 3)
    model = keras.Model([a, b], layers.GlobalAveragePooling1D()(joined))
    xa, xb = np.array([[1, 0, 0], [2, 3, 0]]), _x(2, 2, 4)
    table = [layer for layer in model.layers if isinstance(layer, layers.Embedding)][0].get_weights()[0]
    full = np.concatenate([table[xa], xb], 1)
    keep = np.concatenate([xa != 0, np.ones((2, 2), bool)], 1)[..., None]
    np.testing.assert_allclose(model.predict([xa, xb], verbose=0), (full * keep).sum(1) / keep.sum(1),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- reshaping

@settings(deadline=None, max_examples=10)
@given(dims=st.tuples(*[st.integers(1, 3)] * 3), pad=st.tuples(*[st.integers(0, 2)] * 3),
       size=st.tuples(*[st.integers(1, 2)] * 3), channels_first=st.booleans())
def test_3d_padding_cropping_upsampling(dims, pad, size, channels_first):
    fmt = "channels_first" if channels_first else "channels_last"
    x = _x(1, *dims, 2)
    xf = np.moveaxis(x, -1, 1) if channels_first else x

    def back(y):
        return np.moveaxis(y, 1, -1) if channels_first else y
    padded = back(layers.ZeroPadding3D(pad, data_format=fmt)(xf))
    want = np.pad(x, [(0, 0)] + [(p, p) for p in pad] + [(0, 0)])
    np.testing.assert_array_equal(padded, want)
    cropped = back(layers.Cropping3D(pad, data_format=fmt)(np.moveaxis(want, -1, 1) if channels_first else want))
    np.testing.assert_array_equal(cropped, x)
    up = back(layers.UpSampling3D(size, data_format=fmt)(xf))
    np.testing.assert_array_equal(up, x.repeat(size[0], 1).repeat(size[1], 2).repeat(size[2], 3))


@settings(deadline=None, max_examples=8)
@given(h=st.integers(1, 4), w=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       channels_first=st.booleans())
def test_bilinear_upsampling2d(h, w, sh, sw, channels_first):
    x = _x(2, h, w, 3)
    fmt = "channels_first" if channels_first else "channels_last"
    layer = layers.UpSampling2D((sh, sw), data_format=fmt, interpolation="bilinear")
    got = layer(x.transpose(0, 3, 1, 2) if channels_first else x)
    got = got.transpose(0, 2, 3, 1) if channels_first else got
    want = np.einsum("oh,bhwc,pw->bopc", interpolation_matrix(h * sh, h, "bilinear"), x,
                     interpolation_matrix(w * sw, w, "bilinear"))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if h > 1 and sh == 2 and sw == 1:     # output row 1 sits a quarter pixel below source row 0
        np.testing.assert_allclose(got[:, 1], 0.75 * x[:, 0] + 0.25 * x[:, 1], rtol=1e-5, atol=1e-6)


def test_reshaping_argument_errors():
    for bad in (lambda: layers.UpSampling2D(interpolation="bicubic"),
                lambda: layers.UpSampling3D(interpolation="bilinear"),
                lambda: layers.ZeroPadding1D(1, data_format="channels_middle"),
                lambda: layers.Cropping2D(((1, 2),)),
                lambda: layers.Permute((1, 1))):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="removes everything"):
        layers.Cropping1D((2, 2))(_x(1, 4, 2))


@settings(deadline=None, max_examples=10)
@given(max_value=st.one_of(st.none(), st.floats(0.1, 2)), slope=st.floats(0, 0.5), threshold=st.floats(0, 1),
       axis=st.sampled_from([-1, 1, (1, 2)]), masked=st.booleans())
def test_relu_and_softmax_parameters(max_value, slope, threshold, axis, masked):
    x = _x(2, 3, 5)
    got = layers.ReLU(max_value=max_value, negative_slope=slope, threshold=threshold)(x)
    want = np.where(x >= threshold, x, slope * (x - threshold))
    if max_value is not None:
        want = np.minimum(want, max_value)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    mask = RNG.random((2, 3, 5)) > 0.3
    mask[..., 0] = True
    soft = layers.Softmax(axis=axis)(x, mask=mask) if masked else layers.Softmax(axis=axis)(x)
    logits = np.where(mask, x, -1e9) if masked else x
    e = np.exp(logits - logits.max(axis, keepdims=True))
    np.testing.assert_allclose(soft, e / e.sum(axis, keepdims=True), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- gradients and training

def _stacks():
    return {
        "prelu_layernorm_unitnorm": lambda: keras.Sequential([
            keras.Input((3, 4)), layers.Dense(4), layers.PReLU(alpha_initializer="constant", shared_axes=[1]),
            layers.LayerNormalization(axis=[1, 2], gamma_initializer="random_normal"),
            layers.Dense(3), layers.UnitNormalization(), layers.Flatten()]),
        "batchnorm_groupnorm_softmax_elu": lambda: keras.Sequential([
            keras.Input((2, 2, 4)), layers.Dense(4), layers.BatchNormalization(beta_initializer="random_normal"),
            layers.GroupNormalization(groups=2, gamma_initializer="random_normal"), layers.ELU(0.7),
            layers.Dense(3), layers.Softmax(), layers.Flatten()]),
        "merges_and_dot": _merge_model,
        "padding_bilinear_timedistributed": lambda: keras.Sequential([
            keras.Input((3, 3, 2)), layers.Dense(2), layers.ZeroPadding2D(((1, 0), (0, 1))),
            layers.UpSampling2D(interpolation="bilinear"), layers.Cropping2D(((1, 2), (0, 3))),
            layers.LeakyReLU(0.2), layers.TimeDistributed(layers.Conv1D(2, 2)), layers.Permute((2, 1, 3)),
            layers.Flatten(), layers.RepeatVector(2), layers.Flatten()]),
    }


def _merge_model():
    a, b = keras.Input((3, 4)), keras.Input((4,))
    ha, hb = layers.Dense(4)(a), layers.Dense(4, activation="tanh")(b)
    x = layers.average([layers.maximum([ha, hb]), layers.multiply([ha, hb]), layers.subtract([ha, hb])])
    d = layers.dot([x, ha], axes=2, normalize=True)
    return keras.Model([a, b], layers.Flatten()(layers.concatenate([d, layers.minimum([x, ha])], axis=-1)))


@pytest.mark.parametrize("name", list(_stacks()))
def test_gradients_compiled_vs_interpreter_vs_finite_differences(name):
    keras.utils.set_random_seed(11)
    model = _stacks()[name]()
    # data of its own (not the module's RNG, whose state depends on how many examples the
    # hypothesis tests before drew): the finite differences must not land on a max/min kink by chance
    data_rng = np.random.default_rng(sum(map(ord, name)))
    xs = [data_rng.normal(size=(2,) + tuple(i.shape[1:])).astype(np.float32) for i in model.inputs]
    feed = xs if len(xs) > 1 else xs[0]
    y = data_rng.normal(size=(2, model.outputs[0].shape[-1])).astype(np.float32)
    w0 = model.get_weights()
    trainable = [i for i, w in enumerate(model.weights) if w.trainable]
    grads = []
    for eager in (False, True):
        model.set_weights(w0)
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse", run_eagerly=eager)
        model.train_on_batch(feed, y)
        grads.append([w0[i] - model.get_weights()[i] for i in trainable])      # lr 1: the gradient itself
    for gc, ge in zip(*grads):
        np.testing.assert_allclose(gc, ge, rtol=1e-3, atol=1e-5)

    def loss(weights):
        model.set_weights(weights)
        out = np.asarray(model(feed, training=True), np.float64)
        return float(((out - y) ** 2).mean())
    rng = np.random.default_rng(0)
    for slot, i in enumerate(trainable):
        for flat in rng.choice(w0[i].size, size=min(2, w0[i].size), replace=False):
            idx = np.unravel_index(flat, w0[i].shape)
            eps = 2e-3 * max(1.0, abs(float(w0[i][idx])))
            plus, minus = [w.copy() for w in w0], [w.copy() for w in w0]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            analytic = grads[0][slot][idx]
            assert abs(numeric - analytic) < 5e-3 * max(1.0, abs(numeric)), \
                f"{name}: weight {model.weights[i].name}{idx}: numeric {numeric} vs compiled {analytic}"


def test_short_training_run_lowers_the_loss():
    keras.utils.set_random_seed(5)
    model = _stacks()["batchnorm_groupnorm_softmax_elu"]()
    x = np.random.default_rng(5).normal(size=(32, 2, 2, 4)).astype(np.float32)   # not the module RNG (see above)
    y = np.eye(3, dtype=np.float32)[(x.sum((2, 3)) > 0).astype(int).sum(1)]      # class from the signs
    y = np.repeat(y[:, None], 4, 1).reshape(32, 12)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


@pytest.mark.parametrize("make", [layers.ReLU, layers.ELU, lambda: layers.LeakyReLU(0.2), layers.Softmax,
                                  lambda: layers.Softmax(axis=1), lambda: layers.Dropout(0.5)])
def test_time_distributed_equals_the_layer_on_each_step(make):
    layer = make()
    x = _x(2, 3, 4)
    np.testing.assert_allclose(layers.TimeDistributed(layer)(x), np.stack([layer(x[:, t]) for t in range(3)], 1),
                               rtol=1e-5, atol=1e-6)
