"""The built-in recurrent layers' compiled loop: the input projection x·W + b of every step is one
matmul before the scan, the gates share one recurrent matmul per step, and the backward step is
kept small (scan.tidy: no zero pads summed into the gate gradient; no value stored twice per
step; a SimpleRNN's stored state read back instead of recomputing its matmul). Values and
gradients are checked against numpy (float64 finite differences), the reference interpreter and
the compiled code."""
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
from kcompile.ir.scan import scan, tidy
from kcompile.runtime.native import jit_executable
from kcompile.runtime.state import StatePool

from conftest import assert_trains_like
from rnn_reference import ref_gru, ref_lstm, ref_simple_rnn

KINDS = ["SimpleRNN", "LSTM", "GRU", "GRU_reset_before"]


def _layer(kind, units, **kwargs):
    cls = getattr(layers, kind.split("_")[0])
    if kind == "GRU_reset_before":
        kwargs["reset_after"] = False
    return cls(units, **kwargs)


def _ref(kind):
    return {"SimpleRNN": ref_simple_rnn, "LSTM": ref_lstm, "GRU": ref_gru,
            "GRU_reset_before": lambda x, w, h0=None: ref_gru(x, w, h0, reset_after=False)}[kind]


def _model(kind, T, F, U, backwards, eager, optimizer=None):
    m = keras.Sequential([keras.Input((T, F)), _layer(kind, U, return_sequences=True, go_backwards=backwards),
                          layers.Flatten()])
    m.compile(optimizer=optimizer or keras.optimizers.SGD(1.0), loss="mse", run_eagerly=eager)
    return m


def _np_loss(kind, x, y, w, backwards):
    seq, _ = _ref(kind)(x[:, ::-1] if backwards else x, w)
    return float(np.mean((seq.reshape(len(x), -1) - y) ** 2))


def _fd_grads(kind, x, y, w, backwards, eps=1e-6):
    grads = []
    for j, v in enumerate(w):
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            plus, minus = [a.copy() for a in w], [a.copy() for a in w]
            plus[j][idx] += eps
            minus[j][idx] -= eps
            g[idx] = (_np_loss(kind, x, y, plus, backwards) - _np_loss(kind, x, y, minus, backwards)) / (2 * eps)
        grads.append(g)
    return grads


# ---------------------------------------------------------------- gradients vs numpy

@settings(deadline=None, max_examples=4)
@given(kind=st.sampled_from(KINDS), T=st.integers(1, 4), N=st.integers(1, 3), F=st.integers(1, 3),
       U=st.integers(1, 3), backwards=st.booleans(), seed=st.integers(0, 999))
def test_weight_gradients_match_finite_differences(kind, T, N, F, U, backwards, seed):
    """One SGD(1.0) step moves each weight by -dL/dw: compiled and interpreted both match numpy."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, T, F)).astype(np.float32)
    y = rng.normal(size=(N, T * U)).astype(np.float32)
    compiled, eager = _model(kind, T, F, U, backwards, False), _model(kind, T, F, U, backwards, True)
    w0 = [0.7 * rng.normal(size=v.shape).astype(np.float32) for v in compiled.get_weights()]
    want = _fd_grads(kind, x.astype(np.float64), y.astype(np.float64), [v.astype(np.float64) for v in w0], backwards)
    for model in (compiled, eager):
        model.set_weights(w0)
        loss = model.train_on_batch(x, y)
        assert abs(loss - _np_loss(kind, x, y, [v.astype(np.float64) for v in w0], backwards)) < 1e-4
        for name, before, after, g in zip(("kernel", "recurrent", "bias"), w0, model.get_weights(), want):
            np.testing.assert_allclose(before - after, g, rtol=2e-3, atol=2e-4, err_msg=f"{kind} {name}")


@settings(deadline=None, max_examples=4)
@given(kind=st.sampled_from(KINDS), T=st.integers(1, 5), N=st.integers(1, 4), F=st.integers(1, 4),
       U=st.integers(1, 5), seed=st.integers(0, 999))
def test_compiled_training_matches_interpreter(kind, T, N, F, U, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, T, F)).astype(np.float32)
    y = rng.normal(size=(N, T * U)).astype(np.float32)
    backwards = bool(seed % 2)
    compiled = _model(kind, T, F, U, backwards, False, keras.optimizers.Adam(0.01))
    eager = _model(kind, T, F, U, backwards, True, keras.optimizers.Adam(0.01))
    assert_trains_like(compiled, eager, x, y, steps=2)
    np.testing.assert_allclose(compiled.predict(x, verbose=0), eager.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- the kernels of the loop

def _programs(monkeypatch, model, x, y):
    """The kernel programs lowered while the model compiles and takes a training step."""
    import kcompile.models.compiled as compiled
    from kcompile.ir.passes import pipeline
    seen = []
    lower = pipeline.lower_to_kernels

    def record(graph, *args, **kwargs):
        program = lower(graph, *args, **kwargs)
        seen.append(program)
        return program
    monkeypatch.setattr(pipeline, "lower_to_kernels", record)
    if hasattr(compiled, "lower_to_kernels"):
        monkeypatch.setattr(compiled, "lower_to_kernels", record)
    monkeypatch.setenv("KCOMPILE_CACHE", "0")
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(x, y)
    assert seen, "no kernel program was lowered"
    return seen


def _scans(program):
    return [k for k in program.kernels if k.kind == "scan"]


def _producer(program, node):
    while node.op == "reshape":
        node = node.inputs[0]
    return next(k for k in program.kernels if any(o.id == node.id for o in k.computed()))


@pytest.mark.parametrize("kind,gates", [("SimpleRNN", 1), ("LSTM", 4), ("GRU", 3)])
def test_projection_outside_the_loop_and_one_gate_matmul_per_step(monkeypatch, kind, gates):
    T, F, U = 6, 5, 8
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, T, F)).astype(np.float32), rng.normal(size=(4, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((T, F)), _layer(kind, U), layers.Dense(1)])
    programs = _programs(monkeypatch, model, x, y)
    train = next(p for p in programs if len(_scans(p)) == 2)
    forward, backward = _scans(train)
    # the per-step inputs are the output of one (time*batch, F) x (F, gates*U) matmul before the loop
    xs = forward.root.inputs[1]
    assert xs.shape == (T, BATCH, gates * U)
    assert _producer(train, xs).kind == "matmul"
    # one matmul per step, h x (U, gates*U): the gates' recurrent products are fused
    body_mm = [k for k in forward.body.kernels if k.kind == "matmul"]
    assert [k.root.inputs[1].shape for k in body_mm] == [(U, gates * U)]
    # the backward step: no zero pads summed into the gates' gradient
    assert not [k for k in backward.body.kernels if k.kind == "layout" and k.root.op == "pad"]
    # its one matmul, dz·Uᵀ: the forward one is not recomputed, the values its VJP reads are stored
    # (SimpleRNN: the tanh output, the state itself; LSTM, GRU: the gates, saved after the state)
    assert len([k for k in backward.body.kernels if k.kind == "matmul"]) == 1
    # (the fewest: a GRU's gate block, not also its slices and 1 - z, which are recomputed)
    assert forward.root.attrs["saved"] == {"SimpleRNN": 0, "LSTM": 5 * U, "GRU": 4 * U}[kind]
    # the last output alone is read: its cotangent starts the backward carry, no per-step zeros
    assert not any(i.op == "pad" for i in backward.root.inputs)
    assert backward.root.attrs["xs"] == 3               # the starting states, the rows, the inputs
    # predict writes the state only: nothing reads the saved columns there
    predict = next(p for p in programs if p.graph.name == "predict")
    (scan,) = _scans(predict)
    assert scan.root.attrs["saved"] == 0 and scan.root.shape[2] == (2 * U if kind == "LSTM" else U)
    if kind == "LSTM":
        # d prev (2U), d x = the gate matmul's cotangent (4U, stored once), h for dU (U)
        assert backward.root.inputs[0].shape == (BATCH, 7 * U)
        assert len(backward.body.kernels) <= 27          # was 35 before scan.tidy
        assert len(forward.body.kernels) <= 10


def test_tidy_pads_to_concat_keeps_values():
    x = b.input("x", (BATCH, 6))
    a, c = b.slice(x, ((0, None), (0, 2))), b.slice(x, ((0, None), (2, 6)))
    summed = b.add(b.pad(b.mul(a, 2.0), ((0, 0), (0, 4))), b.pad(b.tanh(c), ((0, 0), (2, 0))))
    gap = b.add(b.pad(a, ((0, 0), (0, 4))), b.pad(b.slice(c, ((0, None), (2, 4))), ((0, 0), (4, 0))))
    nested = b.slice(b.slice(x, ((0, None), (1, 6))), ((0, None), (2, 4)))
    (t_sum, t_gap, t_nested) = tidy([summed, gap, nested])
    assert t_sum.op == "concat" and t_gap.op == "add" and t_nested.op == "slice"
    assert t_nested.inputs[0] is x and t_nested.attrs["bounds"] == ((0, None), (3, 5))
    feeds = {"x": np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)}
    want, _ = evaluate(Graph([x], {"s": summed, "g": gap, "n": nested}), feeds, {}, batch=3)
    got, _ = evaluate(Graph([x], {"s": t_sum, "g": t_gap, "n": t_nested}), feeds, {}, batch=3)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@settings(deadline=None, max_examples=5)
@given(T=st.integers(1, 5), N=st.integers(1, 4), U=st.integers(1, 4), seed=st.integers(0, 99))
def test_gate_style_scan_gradients_compiled_vs_interpreter(T, N, U, seed):
    """A two-gate cell written with slices of one fused matmul (the shape tidy rewrites)."""
    x, h0 = b.input("x", (T, BATCH, 2 * U)), b.input("h0", (BATCH, U))
    Uw = b.input("U", (U, 2 * U))

    def step(prev, xt, cs):
        z = b.add(xt, b.matmul(prev, Uw))
        g1, g2 = b.slice(z, ((0, None), (0, U))), b.slice(z, ((0, None), (U, 2 * U)))
        return b.add(b.mul(b.sigmoid(g1), prev), b.tanh(g2))
    seq = scan(step, h0, x)
    loss = b.reduce_sum(b.mul(seq, b.sin(seq)))
    grads = grad(loss, [x, h0, Uw])
    graph = Graph([x, h0, Uw], {"loss": loss, "dx": grads[0], "dh0": grads[1], "dU": grads[2]})
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.normal(size=(T, N, 2 * U)).astype(np.float32),
             "h0": rng.normal(size=(N, U)).astype(np.float32),
             "U": (0.5 * rng.normal(size=(U, 2 * U))).astype(np.float32)}
    want, _ = evaluate(graph, feeds, {}, batch=N)
    native = jit_executable({"f": lower_to_kernels(graph)}, StatePool())
    got = native.run("f", N, [feeds[n] for n in ("x", "h0", "U")])
    for name, value in zip(graph.outputs, got):
        np.testing.assert_allclose(value, want[name], rtol=1e-4, atol=1e-4, err_msg=name)

    # and the interpreter's gradient matches numpy finite differences of the same loop
    def np_loss(f):
        h = f["h0"].astype(np.float64)
        total = 0.0
        for t in range(T):
            z = f["x"][t] + h @ f["U"]
            h = 1 / (1 + np.exp(-z[:, :U])) * h + np.tanh(z[:, U:])
            total += float((h * np.sin(h)).sum())
        return total
    _assert_finite_differences(np_loss, feeds, want, ("x", "h0", "U"))


def test_tidy_slices_of_a_concat_keep_values():
    x, y, z = (b.input(n, (BATCH, w), index=i) for i, (n, w) in enumerate((("x", 3), ("y", 2), ("z", 4))))
    row = b.concat([x, b.tanh(y), z], 1)
    inside = b.slice(row, ((0, None), (6, 9)))           # within z (columns 5..9)
    spanning = b.slice(row, ((0, None), (3, 9)))         # tanh(y) and z whole
    cut = b.slice(row, ((0, None), (2, 4)))              # x and y cut: left alone
    deep = b.slice(b.slice(row, ((0, None), (3, 9))), ((0, None), (3, 5)))
    t_inside, t_spanning, t_cut, t_deep = tidy([inside, spanning, cut, deep])
    assert t_inside.op == "slice" and t_inside.inputs[0] is z and t_inside.attrs["bounds"] == ((0, None), (1, 4))
    assert t_spanning.op == "concat" and t_spanning.inputs[1] is z
    assert t_cut.op == "slice" and t_cut.inputs[0].op == "concat"
    assert t_deep.op == "slice" and t_deep.inputs[0] is z
    rng = np.random.default_rng(2)
    feeds = {n: rng.normal(size=(3, w)).astype(np.float32) for n, w in (("x", 3), ("y", 2), ("z", 4))}
    names = ("inside", "spanning", "cut", "deep")
    want, _ = evaluate(Graph([x, y, z], dict(zip(names, (inside, spanning, cut, deep)))), feeds, {}, batch=3)
    got, _ = evaluate(Graph([x, y, z], dict(zip(names, (t_inside, t_spanning, t_cut, t_deep)))), feeds, {}, batch=3)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@settings(deadline=None, max_examples=5)
@given(T=st.integers(1, 5), N=st.integers(1, 4), U=st.integers(1, 4), reverse=st.booleans(), seed=st.integers(0, 99))
def test_scan_over_several_inputs(T, N, U, reverse, seed):
    """A scan may take several per-step inputs (its backward scan does: the output cotangent, the
    rows each step started from and the forward inputs, with no per-step array concatenated from
    them). Values and gradients of every input: compiled vs interpreter vs finite differences."""
    x, m, h0 = b.input("x", (T, BATCH, U)), b.input("m", (T, BATCH, 1), index=1), b.input("h0", (BATCH, U), index=2)
    Uw = b.input("U", (U, U), index=3)

    def step(prev, inputs, cs):
        xt, mt = inputs
        return b.add(b.mul(mt, b.tanh(b.add(xt, b.matmul(prev, Uw)))), b.mul(b.sub(1.0, mt), prev))
    seq = scan(step, h0, [x, m], reverse=reverse)
    # the rows: the state, after it the tanh output its gradient reads (saved, sliced off here)
    node = seq.inputs[0]
    assert seq.op == "slice" and node.op == "scan" and node.attrs["xs"] == 2 and node.attrs["saved"] == U
    loss = b.reduce_sum(b.mul(seq, b.cos(seq)))
    names = ("x", "m", "h0", "U")
    grads = grad(loss, [x, m, h0, Uw])
    graph = Graph([x, m, h0, Uw], {"loss": loss, **{f"d{k}": g for k, g in zip(names, grads)}})
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.normal(size=(T, N, U)).astype(np.float32),
             "m": rng.uniform(size=(T, N, 1)).astype(np.float32),
             "h0": rng.normal(size=(N, U)).astype(np.float32),
             "U": (0.5 * rng.normal(size=(U, U))).astype(np.float32)}
    want, _ = evaluate(graph, feeds, {}, batch=N)
    native = jit_executable({"f": lower_to_kernels(graph)}, StatePool())
    got = native.run("f", N, [feeds[k] for k in names])
    native.close()
    for name, value in zip(graph.outputs, got):
        np.testing.assert_allclose(value, want[name], rtol=1e-4, atol=1e-4, err_msg=name)

    def np_loss(f):
        h, total = f["h0"], 0.0
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            h = f["m"][t] * np.tanh(f["x"][t] + h @ f["U"]) + (1 - f["m"][t]) * h
            total += float((h * np.cos(h)).sum())
        return total
    _assert_finite_differences(np_loss, feeds, want, names)


def _assert_finite_differences(np_loss, feeds, want, names):
    """want["d" + name] against central differences of np_loss (float64 feeds) for each name."""
    f64 = {k: v.astype(np.float64) for k, v in feeds.items()}
    for name in names:
        num = np.zeros_like(f64[name])
        for idx in np.ndindex(num.shape):
            plus, minus = dict(f64), dict(f64)
            plus[name], minus[name] = f64[name].copy(), f64[name].copy()
            plus[name][idx] += 1e-6
            minus[name][idx] -= 1e-6
            num[idx] = (np_loss(plus) - np_loss(minus)) / 2e-6
        np.testing.assert_allclose(want["d" + name], num, rtol=2e-3, atol=2e-3, err_msg=name)
