"""Core layers against numpy, fit's weighting arguments, and the IR passes on their own."""
import os

import numpy as np
from hypothesis import given, settings, strategies as st

import kcompile as keras
from kcompile import layers
from kcompile.ir import builder as b
from kcompile.ir.autodiff import grad
from kcompile.ir.graph import BATCH, Graph, static_size
from kcompile.ir.passes import simplify
from kcompile.ir.passes.pipeline import lower_to_kernels


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), batch=st.integers(1, 4))
def test_flatten_reshape_activation_layers(shape, batch):
    x = np.random.default_rng(0).standard_normal([batch] + shape).astype("f")
    size = int(np.prod(shape))
    model = keras.Sequential([keras.Input(shape=tuple(shape)), layers.Flatten(), layers.Reshape((size, 1)),
                              layers.Activation("tanh"), layers.Reshape((-1,))])
    model.compile(optimizer="sgd", loss="mse")
    np.testing.assert_allclose(model.predict(x, verbose=0), np.tanh(x.reshape(batch, -1)), rtol=1e-6, atol=1e-7)
    assert model.output_shape == (None, size)


def test_dropout_training_flag_and_scaling():
    layer = layers.Dropout(0.5, seed=3)
    x = np.ones((200, 50), "f")
    np.testing.assert_array_equal(layer(x), x)                  # inference: identity
    y = layer(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    model = keras.Sequential([keras.Input(shape=(50,)), layers.Dropout(0.5, seed=3)])
    assert np.array_equal(model(x), x) and not np.array_equal(model(x, training=True), x)


def test_sample_weight_and_class_weight():
    r = np.random.default_rng(1)
    x = r.standard_normal((32, 4)).astype("f")
    y = (r.random((32, 1)) > 0.5).astype("f")
    sw = r.random(32).astype("f")

    def fitted(**kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="sgd", loss="binary_crossentropy")
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, **kwargs)
        return model.get_weights()
    plain, weighted = fitted(), fitted(sample_weight=sw)
    assert not np.allclose(plain[0], weighted[0])
    cw = {0: 1.0, 1: 3.0}
    by_class = fitted(class_weight=cw)
    by_sample = fitted(sample_weight=np.where(y[:, 0] > 0, 3.0, 1.0).astype("f"))
    for a, c in zip(by_class, by_sample):
        np.testing.assert_allclose(a, c, rtol=1e-6)


def test_initial_epoch_and_steps_per_epoch():
    model = keras.Sequential([keras.Input(shape=(2,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((64, 2), "f"), np.zeros((64, 1), "f")
    history = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert history.epoch == [3, 4]
    model.fit(x, y, epochs=1, batch_size=8, steps_per_epoch=3, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2 * 2 + 3


def test_cse_constant_folding_and_algebraic_rules():
    x = b.input("x", (BATCH, 3))
    two = b.add(b.const(1.0), b.const(1.0))
    y = b.add(b.mul(b.exp(x), two), b.mul(b.exp(x), two))
    z = b.mul(b.add(y, 0.0), 1.0)
    graph = Graph([x], {"z": z}, [])
    out = simplify.algebraic(simplify.cse(simplify.fold_constants(graph)))
    ops = [n.op for n in out.nodes()]
    assert ops.count("exp") == 1 and ops.count("mul") == 1 and "const" in ops
    folded = [n for n in out.nodes() if n.op == "const"]
    assert any(float(n.attrs["value"]) == 2.0 for n in folded)


@settings(deadline=None, max_examples=30)
@given(T=st.integers(1, 5), W=st.integers(1, 5), pads=st.lists(st.integers(0, 3), min_size=4, max_size=4),
       cut=st.lists(st.integers(0, 8), min_size=4, max_size=4), seed=st.integers(0, 99))
def test_layout_rules_keep_values(T, W, pads, cut, seed):
    """slice(pad), slice(slice), pad(pad) and slice(concat) as simpler nodes (ir/slices.py, used by
    the algebraic pass and scan's tidy): the same values, fewer layout kernels where they apply."""
    from kcompile.ir.interpreter import evaluate
    x = b.input("x", (T, BATCH, W))
    padded = b.pad(b.pad(x, ((pads[0], pads[1]), (0, 0), (0, 0))), ((0, 0), (0, 0), (pads[2], pads[3])))
    Tp, Wp = T + pads[0] + pads[1], W + pads[2] + pads[3]
    t0, t1 = sorted((cut[0] % (Tp + 1), cut[1] % (Tp + 1)))
    w0, w1 = sorted((cut[2] % (Wp + 1), cut[3] % (Wp + 1)))
    t1, w1 = max(t1, t0 + 1), max(w1, w0 + 1)
    if t1 > Tp or w1 > Wp:
        return
    sliced = b.slice(b.slice(padded, ((0, Tp), (0, None), (0, Wp))), ((t0, t1), (0, None), (w0, w1)))
    joined = b.slice(b.concat([x, b.tanh(x)], 2), ((0, T), (0, None), (W, 2 * W)))
    graph = Graph([x], {"p": padded, "s": sliced, "j": joined}, [])
    out = simplify.algebraic(graph)
    assert sum(n.op == "pad" for n in out.nodes()) <= 2 and out.outputs["j"].op == "tanh"
    feeds = {"x": np.random.default_rng(seed).normal(size=(T, 3, W)).astype(np.float32)}
    want, _ = evaluate(graph, feeds, {}, batch=3)
    got, _ = evaluate(out, feeds, {}, batch=3)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_log_softmax_rewrite_and_dump(tmp_path, monkeypatch):
    monkeypatch.setenv("KCOMPILE_DUMP_IR", str(tmp_path))
    x = b.input("x", (BATCH, 4))
    graph = Graph([x], {"y": b.log(b.softmax(x))}, [], name="probe")
    program = lower_to_kernels(graph)
    ops = [n.op for k in program.kernels for n in k.computed()]
    assert "div" not in ops                     # log(softmax) became shifted - log(sum(exp(shifted)))
    files = sorted(os.listdir(tmp_path))
    assert "probe.00_input.txt" in files and "probe.99_kernels.txt" in files
    assert "reduce_max" in (tmp_path / "probe.00_input.txt").read_text()


def test_memory_plan_reuses_dead_buffers():
    x = b.input("x", (BATCH, 64))
    h = x
    for _ in range(6):
        h = b.reduce_sum(b.exp(b.tanh(h)), axis=-1, keepdims=True)
        h = b.broadcast_to(h, (BATCH, 64))
        h = b.copy(h)
    program = lower_to_kernels(Graph([x], {"y": h}, []))
    stored = sum(4 * 64 for k in program.kernels for n in k.outputs if n.shape == (BATCH, 64))
    assert program.memory.row_bytes < stored      # lifetimes that do not overlap share bytes


def _lifetimes(program):
    first, last = {}, {}
    for t, k in enumerate(program.kernels):
        for n in k.outputs:
            first.setdefault(n.id, (t, n))
        for i in k.external_inputs():
            while i.op == "reshape":
                i = i.inputs[0]
            last[i.id] = t
    return {nid: (t, last.get(nid, t), n) for nid, (t, n) in first.items()}


@settings(max_examples=20, deadline=None)
@given(widths=st.lists(st.integers(1, 40), min_size=2, max_size=6), seed=st.integers(0, 9))
def test_memory_plan_never_overlaps_live_buffers(widths, seed):
    """Workspace buffers alive at the same time never share bytes; the one exception is a matmul
    result read only by its epilogue, which shares the buffer of that epilogue's output."""
    rng = np.random.default_rng(seed)
    x = b.input("x", (BATCH, widths[0]))
    h, weights = x, []
    for i, (m, n) in enumerate(zip(widths, widths[1:])):
        weights.append(b.input(f"w{i}", (m, n), index=i + 1))
        h = b.matmul(h, weights[-1])
        h = [b.relu, b.tanh, b.sigmoid][int(rng.integers(3))](b.add(h, b.const(np.ones(n, np.float32))))
    loss = b.reduce_sum(b.square(h), (0, 1))
    grads = grad(loss, [x] + weights)
    program = lower_to_kernels(Graph([x] + weights, {"loss": loss, **{f"g{i}": g for i, g in enumerate(grads)}}, []))
    spans = _lifetimes(program)
    placed = {nid: buf for nid, buf in program.memory.buffers.items() if buf.kind == "temp" and nid in spans}
    aliases = {(k.root.id, m.id) for k in program.kernels if k.kind == "matmul" for m in k.outputs}
    items = sorted(placed.items())
    for i, (a, ba) in enumerate(items):
        for c, bc in items[i + 1:]:
            (sa, ea, na), (sc, ec, nc) = spans[a], spans[c]
            if ba.batched != bc.batched or ea < sc or ec < sa or (a, c) in aliases or (c, a) in aliases:
                continue
            oa = ba.row_offset if ba.batched else ba.static_offset
            oc = bc.row_offset if bc.batched else bc.static_offset
            size_a, size_c = 4 * static_size(na.shape), 4 * static_size(nc.shape)
            assert oa + size_a <= oc or oc + size_c <= oa, (na, nc)


def test_relu_gradient_keeps_the_output_and_the_epilogue_writes_in_place():
    x = b.input("x", (BATCH, 8))
    w = b.input("w", (8, 16), index=1)
    pre = b.add(b.matmul(x, w), b.const(np.ones(16, np.float32)))
    y = b.relu(pre)
    loss = b.reduce_sum(b.square(y), (0, 1))
    (dw,) = grad(loss, [w])
    program = lower_to_kernels(Graph([x, w], {"loss": loss, "dw": dw}, []))
    forward = next(k for k in program.kernels if k.kind == "matmul" and k.root.inputs[1] is w)
    assert [m.op for m in forward.members] == ["add", "maximum"]       # bias and relu in one epilogue
    stored = [n for n in forward.outputs if n is not forward.root]
    assert [n.op for n in stored] == ["maximum"]                        # the pre-activation is not kept
    assert program.memory.buffers[forward.root.id] == program.memory.buffers[stored[0].id]
