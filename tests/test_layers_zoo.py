"""Merging, reshaping, activation, normalization, preprocessing layers and TimeDistributed:
numpy references, compiled vs interpreter, BatchNormalization's moving statistics updated inside
the compiled step, the guide's image model on (None, None, 3) uint8 inputs, and real-Keras
goldens (CNN with BatchNormalization, TimeDistributed + SimpleRNN, the two-input two-output
model)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kcompile as keras
from kcompile import layers

from conftest import CONFORMANCE
from golden_helpers import close as _close, weights_from_h5 as _weights_from_h5
from model_suites import INTERPRETER_SUITE

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- merging

def test_merge_layers_and_helpers():
    a, b, c = _x(2, 3), _x(2, 3), _x(2, 3)
    cases = [(layers.Add(), a + b + c), (layers.Multiply(), a * b * c), (layers.Average(), (a + b + c) / 3),
             (layers.Maximum(), np.maximum(np.maximum(a, b), c)), (layers.Minimum(), np.minimum(np.minimum(a, b), c))]
    for layer, want in cases:
        np.testing.assert_allclose(layer([a, b, c]), want, rtol=1e-6)
    np.testing.assert_allclose(layers.Subtract()([a, b]), a - b)
    np.testing.assert_allclose(layers.Concatenate(axis=1)([a, b]), np.concatenate([a, b], 1))
    np.testing.assert_allclose(layers.Dot(axes=1)([a, b]), (a * b).sum(1, keepdims=True), rtol=1e-5)
    na, nb = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(layers.Dot(axes=1, normalize=True)([a, b]), (na * nb).sum(1, keepdims=True), rtol=1e-5)
    x3, y3 = _x(2, 4, 3), _x(2, 5, 3)
    np.testing.assert_allclose(layers.Dot(axes=(2, 2))([x3, y3]), np.einsum("bic,bjc->bij", x3, y3), rtol=1e-5)
    i1, i2 = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([i1, i2], layers.concatenate([layers.add([i1, i2]), layers.subtract([i1, i2])]))
    np.testing.assert_allclose(model.predict([a, b], verbose=0), np.concatenate([a + b, a - b], 1), rtol=1e-6)
    with pytest.raises(ValueError, match="list"):
        layers.Add()(a)
    with pytest.raises(ValueError, match="matching shapes"):
        layers.Concatenate()([_x(2, 3, 4), _x(2, 2, 5)])


# ---------------------------------------------------------------- reshaping and activations

@settings(deadline=None, max_examples=8)
@given(h=st.integers(1, 5), w=st.integers(1, 5), pads=st.tuples(*[st.integers(0, 2)] * 4), size=st.integers(1, 3))
def test_padding_cropping_upsampling(h, w, pads, size):
    x = _x(2, h, w, 3)
    t, b_, l_, r = pads
    np.testing.assert_allclose(layers.ZeroPadding2D(((t, b_), (l_, r)))(x), np.pad(x, ((0, 0), (t, b_), (l_, r), (0, 0))))
    padded = np.pad(x, ((0, 0), (t, b_), (l_, r), (0, 0)))
    np.testing.assert_allclose(layers.Cropping2D(((t, b_), (l_, r)))(padded), x)
    np.testing.assert_allclose(layers.UpSampling2D(size)(x), x.repeat(size, 1).repeat(size, 2))
    np.testing.assert_allclose(layers.UpSampling1D(size)(x[:, 0]), x[:, 0].repeat(size, 1))
    np.testing.assert_allclose(layers.Cropping1D((0, 0))(x[:, 0]), x[:, 0])


def test_permute_repeat_and_activation_layers():
    x = _x(2, 3, 4)
    np.testing.assert_allclose(layers.Permute((2, 1))(x), x.transpose(0, 2, 1))
    v = _x(2, 3)
    np.testing.assert_allclose(layers.RepeatVector(4)(v), np.repeat(v[:, None], 4, 1))
    np.testing.assert_allclose(layers.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2)(x),
                               np.minimum(np.where(x >= 0.2, x, 0.1 * (x - 0.2)), 0.5), rtol=1e-6)
    np.testing.assert_allclose(layers.LeakyReLU(alpha=0.2)(x), np.where(x > 0, x, 0.2 * x), rtol=1e-6)
    np.testing.assert_allclose(layers.ELU(0.5)(x), np.where(x > 0, x, 0.5 * np.expm1(x)), rtol=1e-5, atol=1e-6)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(layers.Softmax(axis=1)(x), e / e.sum(1, keepdims=True), rtol=1e-5)
    prelu = layers.PReLU(alpha_initializer="ones", shared_axes=[1])
    np.testing.assert_allclose(prelu(x), x, rtol=1e-6)
    assert prelu.get_weights()[0].shape == (1, 4)


# ---------------------------------------------------------------- normalization

def test_batch_normalization_train_and_inference_and_moving_stats():
    x = _x(16, 5) * 3 + 1
    model = keras.Sequential([keras.Input((5,)), layers.BatchNormalization(momentum=0.9)])
    model.compile(optimizer="sgd", loss="mse")
    bn = model.layers[0]
    gamma, beta, mm, mv = bn.get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), (x - mm) / np.sqrt(mv + 1e-3) * gamma + beta, rtol=1e-5)
    model.train_on_batch(x, np.zeros_like(x))
    _, _, mm2, mv2 = bn.get_weights()
    np.testing.assert_allclose(mm2, 0.9 * mm + 0.1 * x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mv2, 0.9 * mv + 0.1 * x.var(0), rtol=1e-4, atol=1e-6)
    training_out = bn(x, training=True)
    np.testing.assert_allclose(training_out, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3) * bn.get_weights()[0]
                               + bn.get_weights()[1], rtol=1e-4, atol=1e-5)
    bn.trainable = False          # Keras 3: a frozen BatchNormalization runs in inference mode
    np.testing.assert_allclose(bn(x, training=True), bn(x, training=False), rtol=1e-6)


def test_layer_normalization_and_unit_normalization():
    x = _x(3, 4, 6)
    ln = layers.LayerNormalization(axis=-1, epsilon=1e-3)
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(ln(x), want, rtol=1e-4, atol=1e-5)
    ln2 = layers.LayerNormalization(axis=[1, 2])
    want2 = (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True) + 1e-3)
    np.testing.assert_allclose(ln2(x), want2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layers.UnitNormalization()(x), x / np.linalg.norm(x, axis=-1, keepdims=True), rtol=1e-5)


@settings(deadline=None, max_examples=6)
@given(groups=st.sampled_from([1, 2, -1]), spatial=st.integers(1, 3), channels_first=st.booleans())
def test_group_normalization(groups, spatial, channels_first):
    x = _x(2, spatial, 3, 4)
    axis = 1 if channels_first else -1
    if channels_first:
        x = x.transpose(0, 3, 1, 2)
    gn = layers.GroupNormalization(groups=groups, axis=axis, epsilon=1e-3, gamma_initializer="ones")
    got = gn(x)
    cl = x.transpose(0, 2, 3, 1) if channels_first else x
    g = 4 if groups == -1 else groups
    grouped = cl.reshape(2, spatial, 3, g, 4 // g)
    want = ((grouped - grouped.mean((1, 2, 4), keepdims=True))
            / np.sqrt(grouped.var((1, 2, 4), keepdims=True) + 1e-3)).reshape(cl.shape)
    if channels_first:
        want = want.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of groups"):
        layers.GroupNormalization(groups=3)(_x(1, 2, 4))


# ---------------------------------------------------------------- noise and regularization

def test_noise_layers_statistics_and_inference_identity():
    x = _x(4, 6, 5)
    noise = [layers.GaussianNoise(0.5, seed=1), layers.GaussianDropout(0.3, seed=2), layers.AlphaDropout(0.2, seed=3),
             layers.SpatialDropout1D(0.5, seed=4), layers.ActivityRegularization(l1=0.1)]
    for layer in noise:
        np.testing.assert_array_equal(layer(x), x)           # identity outside training
    zeros, ones = np.zeros((300, 100), np.float32), np.ones((300, 100), np.float32)
    n = layers.GaussianNoise(0.5, seed=7)(zeros, training=True)
    assert abs(n.mean()) < 0.01 and abs(n.std() - 0.5) < 0.01
    # Box-Muller samples are normal: about 68.3% within one standard deviation
    assert abs(np.mean(np.abs(n) < 0.5) - 0.6827) < 0.01
    m = layers.GaussianDropout(0.3, seed=7)(ones, training=True)
    assert abs(m.mean() - 1) < 0.01 and abs(m.std() - np.sqrt(0.3 / 0.7)) < 0.01
    z = RNG.normal(size=(300, 100)).astype(np.float32)
    a = layers.AlphaDropout(0.2, seed=7)(z, training=True)   # keeps zero mean and unit variance
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    assert np.isclose(a, 1.0507009873554805 * -1.6732632423543772 * 0.0 + a).all()
    for layer, shape, channel in [(layers.SpatialDropout1D(0.5, seed=1), (8, 5, 6), 2),
                                  (layers.SpatialDropout2D(0.5, seed=1), (8, 3, 4, 6), 3),
                                  (layers.SpatialDropout2D(0.5, seed=1, data_format="channels_first"), (8, 6, 3, 4), 1),
                                  (layers.SpatialDropout3D(0.5, seed=1), (8, 2, 3, 2, 6), 4)]:
        out = layer(np.ones(shape, np.float32), training=True)
        per_map = np.moveaxis(out, channel, 1).reshape(8, 6, -1)
        assert np.all(per_map.min(-1) == per_map.max(-1))      # whole feature maps kept or dropped
        assert set(np.unique(out)) <= {0.0, 2.0} and 0 < (out == 0).mean() < 1
    with pytest.raises(ValueError, match="rate"):
        layers.GaussianDropout(1.5)
    with pytest.raises(ValueError, match="ndim|rank|dimension"):
        layers.SpatialDropout2D(0.5)(np.ones((2, 3, 4), np.float32))


def test_noise_layers_in_compiled_training():
    """Compiled train steps draw the same noise as the interpreter, the regularizer adds l1/l2 of its
    input to the loss, and predict is deterministic."""
    def build():
        keras.utils.set_random_seed(3)
        return keras.Sequential([keras.Input((6, 4)), layers.GaussianNoise(0.3, seed=5), layers.Dense(4),
                                 layers.SpatialDropout1D(0.25, seed=6), layers.GaussianDropout(0.2, seed=8),
                                 layers.AlphaDropout(0.1, seed=9), layers.ActivityRegularization(l1=0.01, l2=0.02),
                                 layers.Flatten(), layers.Dense(1)])
    x, y = _x(8, 6, 4), _x(8, 1)
    results = []
    for eager in (False, True):
        model = build()
        model.compile(optimizer="sgd", loss="mse", run_eagerly=eager)
        results.append(([model.train_on_batch(x, y) for _ in range(3)], model.get_weights()))
        np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))
    (lc, wc), (le, we) = results
    np.testing.assert_allclose(lc, le, rtol=1e-4, atol=1e-6)
    for a, b in zip(wc, we):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # the activity loss is part of evaluate's loss: (l1*sum|h| + l2*sum h^2) / batch size, as Keras 3
    # normalises it (keras/src/layers/layer.py)
    model = keras.Sequential([keras.Input((3,)), layers.ActivityRegularization(l1=0.5, l2=0.25)])
    model.compile(optimizer="sgd", loss="mse")
    xs = _x(4, 3)
    want = (0.5 * np.abs(xs).sum() + 0.25 * (xs ** 2).sum()) / 4
    np.testing.assert_allclose(model.evaluate(xs, xs, verbose=0), want, rtol=1e-5)


def test_sin_cos_ops_compiled_and_gradient():
    inp = keras.Input((5,))
    model = keras.Model(inp, keras.ops.add(keras.ops.sin(inp), keras.ops.cos(keras.ops.multiply(inp, 3.0))))
    x = np.linspace(-40, 40, 20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.sin(x) + np.cos(3 * x), atol=2e-6)


# ---------------------------------------------------------------- preprocessing

def test_rescaling_centercrop_resizing_normalization():
    img = RNG.integers(0, 255, size=(2, 7, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(layers.Rescaling(1 / 255, offset=-1)(img), img / 255 - 1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layers.CenterCrop(3, 4)(img), img[:, 2:5, 2:6])
    same = layers.Resizing(7, 9)(img)
    np.testing.assert_allclose(same, img)
    up = layers.Resizing(14, 18)(img)
    assert up.shape == (2, 14, 18, 3)
    np.testing.assert_allclose(up[:, 1, 1], 0.75 * (0.75 * img[:, 0, 0] + 0.25 * img[:, 0, 1])
                               + 0.25 * (0.75 * img[:, 1, 0] + 0.25 * img[:, 1, 1]), rtol=1e-4)
    np.testing.assert_allclose(layers.Resizing(7, 3, interpolation="nearest")(img), img[:, :, 1::3], rtol=1e-6)
    data = _x(50, 4) * 2 + 3
    norm = layers.Normalization()
    norm.adapt(data)
    np.testing.assert_allclose(norm(data), (data - data.mean(0)) / data.std(0), rtol=1e-4, atol=1e-4)
    inv = layers.Normalization(mean=2.0, variance=4.0, invert=True)
    np.testing.assert_allclose(inv(np.ones((1, 3), np.float32)), np.full((1, 3), 4.0))


def test_guide_image_model_on_any_size_uint8_images():
    inputs = keras.Input(shape=(None, None, 3), dtype="uint8")
    x = layers.CenterCrop(height=6, width=6)(inputs)
    x = layers.Rescaling(scale=1.0 / 255)(x)
    x = layers.Conv2D(filters=4, kernel_size=(3, 3), activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    assert model.outputs[0].shape == (None, 3)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    for h, w in [(8, 9), (12, 6)]:
        data = RNG.integers(0, 255, size=(4, h, w, 3)).astype(np.uint8)
        preds = model.predict(data, verbose=0)
        assert preds.shape == (4, 3)
        np.testing.assert_allclose(preds.sum(1), 1.0, rtol=1e-5)
        model.fit(data, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], verbose=0)


# ---------------------------------------------------------------- TimeDistributed and training

def test_time_distributed_dense_and_per_step_layer():
    x = _x(2, 4, 3)
    td = layers.TimeDistributed(layers.Dense(2))
    kernel_out = td(x)
    k, b = td.get_weights()
    np.testing.assert_allclose(kernel_out, x @ k + b, rtol=1e-5, atol=1e-6)
    conv = layers.TimeDistributed(layers.Conv1D(2, 2, use_bias=False))
    seq = _x(2, 3, 5, 1)
    out = conv(seq)
    (ck,) = conv.get_weights()
    want = np.stack([np.stack([seq[:, t, i:i + 2, 0] @ ck[:, 0, :] for i in range(4)], 1) for t in range(3)], 1)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build", list(INTERPRETER_SUITE.values()), ids=list(INTERPRETER_SUITE))
def test_compiled_step_matches_interpreter(build):
    model = keras.Sequential(build())
    x = _x(*((6,) + model.inputs[0].shape[1:]))
    y = _x(6, 1)
    start = model.get_weights()
    results = []
    for eager in (False, True):
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=eager)
        results.append(([model.train_on_batch(x, y) for _ in range(2)], model.get_weights()))
    (lc, wc), (le, we) = results
    np.testing.assert_allclose(lc, le, rtol=1e-4, atol=1e-6)
    for a, b in zip(wc, we):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- real-Keras goldens

def _cnn_bn_gap():
    return keras.Sequential([keras.Input((20, 20, 3)), layers.Rescaling(1 / 255), layers.Conv2D(16, 3, strides=2, activation="relu"),
                             layers.BatchNormalization(), layers.Conv2D(16, 3, padding="same"), layers.Activation("relu"),
                             layers.GlobalAveragePooling2D(), layers.Dense(5, activation="softmax")])


def _td_simplernn():
    return keras.Sequential([keras.Input((9, 4)), layers.TimeDistributed(layers.Dense(6, activation="tanh")),
                             layers.SimpleRNN(5, return_sequences=True),
                             layers.TimeDistributed(layers.Dense(2, activation="softmax"))])


def _multi_io():
    main = keras.Input((12,), name="main_input")
    aux = keras.Input((5,), name="aux_input")
    h = layers.LSTM(6)(layers.Embedding(50, 8)(main))
    x = layers.Dense(16, activation="relu")(layers.concatenate([h, aux]))
    return keras.Model([main, aux], [layers.Dense(1, activation="sigmoid", name="main_output")(x),
                                     layers.Dense(1, activation="sigmoid", name="aux_output")(h)])


@pytest.mark.parametrize("name,build,n_in,n_out", [("cnn_bn_gap", _cnn_bn_gap, 1, 1),
                                                   ("timedistributed_simplernn", _td_simplernn, 1, 1),
                                                   ("functional_multi_io", _multi_io, 2, 2)])
@pytest.mark.parametrize("dialect", ["keras3", "keras2"])
def test_conformance_goldens(name, build, n_in, n_out, dialect):
    base = CONFORMANCE / dialect
    model = build()
    weights, training = _weights_from_h5(base / f"{name}.h5")
    model.set_weights(weights)
    z = np.load(base / f"{name}.npz")
    xs = [z[f"x{i}"] for i in range(n_in)]
    preds = model.predict(xs if n_in > 1 else xs[0], verbose=0)
    for i, p in enumerate(preds if n_out > 1 else [preds]):
        _close(p, z[f"y{i}"], 1e-5, 1e-4)
    model.compile(optimizer=keras.optimizers.get(training["optimizer_config"]), loss=training["loss"],
                  loss_weights=training.get("loss_weights"))
    txs = [z[f"tx{i}"] for i in range(n_in)]
    tys = [z[f"ty{i}"] for i in range(n_out)]
    before = model.evaluate(txs if n_in > 1 else txs[0], tys if n_out > 1 else tys[0], verbose=0)
    before = before[0] if isinstance(before, list) else before
    _close(before, z["loss_before"], 0, 1e-4 * abs(float(z["loss_before"])) + 1e-6)
    loss = model.train_on_batch(txs if n_in > 1 else txs[0], tys if n_out > 1 else tys[0])
    loss = loss[0] if isinstance(loss, list) else loss
    _close(loss, z["loss_step"], 0, 1e-4 * abs(float(z["loss_step"])) + 1e-6)
    for i, w in enumerate(model.get_weights()):
        _close(w, z[f"w_after_{i}"], 1e-5, 1e-3)


# ---------------------------------------------------------------- noise

def test_noise_layers_only_when_training_with_the_right_statistics():
    x = np.ones((64, 32, 4), np.float32)
    for layer in (layers.GaussianNoise(0.5, seed=1), layers.GaussianDropout(0.3, seed=2), layers.SpatialDropout1D(0.5),
                  layers.AlphaDropout(0.2, seed=3)):
        np.testing.assert_array_equal(layer(x, training=False), x)
    noisy = np.asarray(layers.GaussianNoise(0.5, seed=1)(x, training=True)) - 1.0
    assert abs(noisy.mean()) < 0.02 and abs(noisy.std() - 0.5) < 0.02
    gd = np.asarray(layers.GaussianDropout(0.3, seed=2)(x, training=True))
    assert abs(gd.mean() - 1.0) < 0.02 and abs(gd.std() - np.sqrt(0.3 / 0.7)) < 0.03
    sd = np.asarray(layers.SpatialDropout1D(0.5, seed=4)(x, training=True))
    per_channel = sd.std(axis=1)                     # a whole channel is kept or dropped
    assert np.all(per_channel < 1e-6) and set(np.unique(sd)) <= {0.0, 2.0}
    img = np.ones((8, 5, 5, 6), np.float32)
    sd2 = np.asarray(layers.SpatialDropout2D(0.5, seed=5)(img, training=True))
    assert np.all(sd2.std(axis=(1, 2)) < 1e-6)


def test_activity_regularization_adds_its_loss():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2, kernel_initializer="ones"),
                              layers.ActivityRegularization(l1=0.1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 3), np.float32)
    y = np.full((4, 2), 3.0, np.float32)
    # predictions are exactly 3 (mse 0); the penalty is 0.1 * sum|y| / batch = 0.1 * 24 / 4, as in Keras 3
    assert abs(model.evaluate(x, y, verbose=0) - 0.6) < 1e-5
