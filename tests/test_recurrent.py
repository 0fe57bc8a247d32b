"""The scan primitive and the recurrent layers: numpy references, finite differences, compiled vs
interpreter, real-Keras goldens (GRU stack, shared-LSTM twin), and training runs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kcompile as keras
from kcompile import layers
from kcompile.ir import builder as b
from kcompile.ir.autodiff import grad
from kcompile.ir.graph import BATCH, Graph
from kcompile.ir.interpreter import evaluate
from kcompile.ir.passes.pipeline import lower_to_kernels
from kcompile.ir.scan import scan
from kcompile.runtime.native import jit_executable
from kcompile.runtime.state import StatePool

from conftest import CONFORMANCE, assert_trains_like
from golden_helpers import close as _close, weights_from_h5 as _weights_from_h5
from rnn_reference import REFS, ref_gru, ref_lstm, ref_simple_rnn  # noqa: F401


# ---------------------------------------------------------------- the scan primitive

def _rnn_graph(T, F, U):
    x = b.input("x", (BATCH, T, F))
    h0 = b.input("h0", (BATCH, U))
    W, Uw, bias = b.input("W", (F, U)), b.input("U", (U, U)), b.input("bias", (U,))
    xw = b.matmul(b.transpose(x, (1, 0, 2)), W)
    seq = scan(lambda prev, xt, cs: b.tanh(b.add(b.add(xt, b.matmul(prev, Uw)), bias)), h0, xw)
    loss = b.reduce_sum(b.mul(seq, b.reverse(seq, 0)))
    wrt = [x, h0, W, Uw, bias]
    grads = grad(loss, wrt)
    outputs = {"loss": loss, "seq": seq, **{f"d{n.attrs['name']}": g for n, g in zip(wrt, grads)}}
    return Graph(wrt, outputs), ["x", "h0", "W", "U", "bias"]


def _feeds(rng, N, T, F, U):
    return {"x": rng.normal(size=(N, T, F)), "h0": rng.normal(size=(N, U)), "W": 0.5 * rng.normal(size=(F, U)),
            "U": 0.5 * rng.normal(size=(U, U)), "bias": rng.normal(size=(U,))}


def _np_loss(f):
    seq, _ = ref_simple_rnn(f["x"], (f["W"], f["U"], f["bias"]), [f["h0"]])
    seq = seq.transpose(1, 0, 2)
    return float((seq * seq[::-1]).sum())


def test_scan_gradients_match_finite_differences():
    T, N, F, U = 4, 2, 3, 3
    graph, names = _rnn_graph(T, F, U)
    feeds = _feeds(np.random.default_rng(1), N, T, F, U)
    out, _ = evaluate(graph, {k: v.astype(np.float32) for k, v in feeds.items()}, {}, batch=N)
    assert abs(out["loss"] - _np_loss(feeds)) < 1e-4 * max(1, abs(_np_loss(feeds)))
    eps = 1e-5
    for name in names:
        num = np.zeros_like(feeds[name])
        for idx in np.ndindex(num.shape):
            plus, minus = dict(feeds), dict(feeds)
            plus[name] = feeds[name].copy()
            plus[name][idx] += eps
            minus[name] = feeds[name].copy()
            minus[name][idx] -= eps
            num[idx] = (_np_loss(plus) - _np_loss(minus)) / (2 * eps)
        np.testing.assert_allclose(out["d" + name], num, rtol=2e-3, atol=2e-4, err_msg=name)


@settings(deadline=None, max_examples=6)
@given(T=st.integers(1, 5), N=st.integers(1, 4), F=st.integers(1, 4), U=st.integers(1, 5), seed=st.integers(0, 99))
def test_scan_compiled_matches_interpreter(T, N, F, U, seed):
    graph, names = _rnn_graph(T, F, U)
    feeds = {k: v.astype(np.float32) for k, v in _feeds(np.random.default_rng(seed), N, T, F, U).items()}
    want, _ = evaluate(graph, feeds, {}, batch=N)
    native = jit_executable({"f": lower_to_kernels(graph)}, StatePool())
    got = native.run("f", N, [feeds[n] for n in names])
    for name, value in zip(graph.outputs, got):
        np.testing.assert_allclose(value, want[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_scan_is_one_node_not_unrolled():
    graph, _ = _rnn_graph(100, 3, 4)
    ops = [n.op for n in graph.nodes()]
    assert ops.count("scan") == 2           # forward and its reversed gradient scan
    assert len(ops) < 80


# ---------------------------------------------------------------- layers vs numpy references

@settings(deadline=None, max_examples=5)
@given(kind=st.sampled_from(["SimpleRNN", "LSTM", "GRU", "GRU_reset_before"]), T=st.integers(1, 6),
       N=st.integers(1, 3), F=st.integers(1, 4), U=st.integers(1, 5), backwards=st.booleans(),
       seed=st.integers(0, 999))
def test_layer_forward_matches_numpy(kind, T, N, F, U, backwards, seed):
    rng = np.random.default_rng(seed)
    cls = getattr(layers, kind.split("_")[0])
    kwargs = {"reset_after": False} if kind == "GRU_reset_before" else {}
    layer = cls(U, return_sequences=True, return_state=True, go_backwards=backwards, **kwargs)
    x = rng.normal(size=(N, T, F)).astype(np.float32)
    seq, *states = layer(x)
    w = layer.get_weights()
    ref = (lambda x, w: ref_gru(x, w, reset_after=False)) if kind == "GRU_reset_before" else REFS[cls.__name__]
    want_seq, want_states = ref(x[:, ::-1] if backwards else x, [v.astype(np.float64) for v in w])
    np.testing.assert_allclose(seq, want_seq, rtol=1e-4, atol=1e-5)
    for got, want in zip(states, want_states):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_initial_state_and_states_out():
    rng = np.random.default_rng(3)
    x_in, h_in, c_in = keras.Input((5, 3)), keras.Input((4,)), keras.Input((4,))
    out, h, c = layers.LSTM(4, return_state=True)(x_in, initial_state=[h_in, c_in])
    model = keras.Model([x_in, h_in, c_in], [out, h, c])
    x, h0, c0 = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    got = model.predict([x, h0, c0], verbose=0)
    _, (wh, wc) = ref_lstm(x, model.get_weights(), [h0, c0])
    np.testing.assert_allclose(got[0], wh, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], wh, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[2], wc, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_merge_modes(merge_mode):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 4, 3)).astype(np.float32)
    layer = layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode=merge_mode)
    got = layer(x)
    w = [v.astype(np.float64) for v in layer.get_weights()]
    fw, _ = ref_gru(x, w[:3])
    bw, _ = ref_gru(x[:, ::-1], w[3:])
    bw = bw[:, ::-1]     # Keras aligns the backward sequence with the input order
    want = {"concat": lambda: np.concatenate([fw, bw], -1), "sum": lambda: fw + bw, "mul": lambda: fw * bw,
            "ave": lambda: (fw + bw) / 2, None: lambda: [fw, bw]}[merge_mode]()
    if merge_mode is None:
        for g, w_ in zip(got, want):
            np.testing.assert_allclose(g, w_, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert layer.forward_layer.name.startswith("forward_gru") and layer.backward_layer.name.startswith("backward_gru")


# ---------------------------------------------------------------- compiled training == interpreter

@pytest.mark.parametrize("layer_fn", [
    lambda: layers.LSTM(4, dropout=0.3, recurrent_dropout=0.3),
    lambda: layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True)),
    lambda: layers.GRU(4, reset_after=False, go_backwards=True),
], ids=["lstm_dropout", "bidirectional_simplernn", "gru_backwards"])
def test_compiled_step_matches_interpreter(layer_fn):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 5, 3)).astype(np.float32), rng.normal(size=(6, 1)).astype(np.float32)

    def make(eager):
        keras.set_random_seed(7)
        m = keras.Sequential([keras.Input((5, 3)), layer_fn(), layers.Flatten(), layers.Dense(1)])
        m.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=eager)
        return m
    compiled, eager = make(False), make(True)
    assert_trains_like(compiled, eager, x, y, steps=3)


def test_lstm_learns_a_sequence_task():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 12, 2)).astype(np.float32)
    y = x[:, :, 0].sum(axis=1, keepdims=True).astype(np.float32)
    model = keras.Sequential([keras.Input((12, 2)), layers.LSTM(8), layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]


def test_masking_carries_state_over_masked_steps():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 6, 2)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0]], np.float32)
    layer = layers.SimpleRNN(3, return_sequences=True)
    seq = layer(x, mask=mask)
    w = [v.astype(np.float64) for v in layer.get_weights()]
    h = np.zeros((3, 3))
    for t in range(6):
        new = np.tanh(x[:, t] @ w[0] + h @ w[1] + w[2])
        h = np.where(mask[:, t:t + 1] > 0, new, h)
        np.testing.assert_allclose(seq[:, t], h, rtol=1e-4, atol=1e-5)


def test_unsupported_arguments_are_named():
    with pytest.raises(ValueError, match="recurrent_constraint"):
        layers.GRU(3, recurrent_constraint="non_neg")


# ---------------------------------------------------------------- real-Keras goldens

@pytest.mark.parametrize("dialect", ["keras3", "keras2"])
def test_gru_stack_golden(dialect):
    base = CONFORMANCE / dialect
    model = keras.Sequential([keras.Input((7, 3)), layers.GRU(12, return_sequences=True), layers.GRU(6),
                              layers.Dense(2)])
    weights, training = _weights_from_h5(base / "gru_stack.h5")
    _check_golden(model, weights, training, np.load(base / "gru_stack.npz"), 1)


@pytest.mark.parametrize("dialect", ["keras3", "keras2"])
def test_siamese_shared_lstm_golden(dialect):
    base = CONFORMANCE / dialect
    a, c = keras.Input((10, 16)), keras.Input((10, 16))
    shared = layers.LSTM(8)
    merged = keras.ops.concatenate([shared(a), shared(c)], axis=-1)
    model = keras.Model([a, c], layers.Dense(1, activation="sigmoid")(merged))
    weights, training = _weights_from_h5(base / "siamese_shared_lstm.h5")
    _check_golden(model, weights, training, np.load(base / "siamese_shared_lstm.npz"), 2)


def _check_golden(model, weights, training, z, n_inputs):
    """The corpus README's checks: predict, then one train_on_batch's loss and every weight."""
    model.set_weights(weights)
    xs = [z[f"x{i}"] for i in range(n_inputs)]
    _close(model.predict(xs if n_inputs > 1 else xs[0], verbose=0), z["y0"], 1e-5, 1e-4)
    model.compile(optimizer=keras.optimizers.get(training["optimizer_config"]), loss=training["loss"])
    txs = [z[f"tx{i}"] for i in range(n_inputs)]
    loss = model.train_on_batch(txs if n_inputs > 1 else txs[0], z["ty0"])
    _close(loss, z["loss_step"], 0, 1e-4 * abs(float(z["loss_step"])) + 1e-7)
    for i, w in enumerate(model.get_weights()):
        _close(w, z[f"w_after_{i}"], 1e-5, 1e-3)


def test_masking_layer_feeds_the_rnn_compiled():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 5, 2)).astype(np.float32)
    x[0, 3:] = 0.0
    x[2, 1] = 0.0
    model = keras.Sequential([keras.Input((5, 2)), layers.Masking(0.0), layers.SimpleRNN(3)])
    got = model.predict(x, verbose=0)
    w = [v.astype(np.float64) for v in model.get_weights()]
    h = np.zeros((4, 3))
    for t in range(5):
        keep = np.any(x[:, t] != 0, axis=-1, keepdims=True)
        h = np.where(keep, np.tanh(x[:, t] @ w[0] + h @ w[1] + w[2]), h)
    np.testing.assert_allclose(got, h, rtol=1e-4, atol=1e-5)


def test_lambda_layer_compiles_and_trains():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = (x ** 2).sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), layers.Lambda(lambda t: keras.ops.square(t)),
                              layers.Dense(1)])
    np.testing.assert_allclose(model.layers[0](x), x ** 2, rtol=1e-6)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    history = model.fit(x, y, epochs=40, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    assert model.layers[0].get_config()["function"]["class_name"] == "__lambda__"


def test_masked_sequence_loss_averages_unmasked_steps_only():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 4, 2)).astype(np.float32)
    x[0, 2:] = 0.0
    x[1, 3] = 0.0
    y = rng.normal(size=(3, 4, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((4, 2)), layers.Masking(), layers.SimpleRNN(3, return_sequences=True),
                              layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    pred = model.predict(x, verbose=0)
    keep = np.any(x != 0, axis=-1)
    want = ((pred[..., 0] - y[..., 0]) ** 2)[keep].mean()
    assert abs(model.evaluate(x, y, verbose=0) - want) < 1e-5
