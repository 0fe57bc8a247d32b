"""Every primitive compiled to native code against the numpy reference interpreter, on
hypothesis-drawn shapes (batch 1 and odd sizes included), alone and fused into chains."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from kcompile.codegen.elementwise import EMITTERS
from kcompile.ir import builder as b
from kcompile.ir.graph import BATCH, Graph
from kcompile.ir.interpreter import evaluate
from kcompile.ir.passes.pipeline import lower_to_kernels
from kcompile.ir.primitives import PRIMITIVES
from kcompile.runtime.native import jit_executable
from kcompile.runtime.state import StatePool

from primitive_cases import ALL_OPS, NOT_CASES, feed_shape, make_case, values


def run_both(graph, feeds, batch):
    expected, _ = evaluate(graph, feeds, {}, batch=batch)
    module = jit_executable({"f": lower_to_kernels(graph)}, StatePool())
    try:
        got = module.run("f", batch, [np.ascontiguousarray(feeds[i.attrs["name"]]) for i in graph.inputs])
    finally:
        module.close()
    return expected, dict(zip(graph.outputs, got))


def assert_close(got, want, op):
    if want.dtype.kind == "i":
        np.testing.assert_array_equal(got, want, err_msg=op)
        return
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * max(1.0, float(np.nanmax(np.abs(want), initial=1))),
                               equal_nan=True, err_msg=op)


@pytest.mark.parametrize("op", ALL_OPS)
@given(data=st.data())
def test_compiled_matches_reference(op, data):
    spec, build = make_case(data, op)
    inputs = [b.input(name, shape, index=i) for i, (name, shape) in enumerate(spec)]
    out = build(*inputs)
    batch = data.draw(st.sampled_from([1, 2, 3, 7]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    feeds = {name: values(rng, feed_shape(shape, batch), op) for name, shape in spec}
    graph = Graph(inputs, {"y": out}, [])
    want, got = run_both(graph, feeds, batch)
    assert_close(got["y"], want["y"], op)


@given(data=st.data())
def test_fused_chains_match_reference(data):
    """Random chains of elementwise ops after a matmul (epilogue fusion) and into a reduction."""
    k, n = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))
    x = b.input("x", (BATCH, k))
    w = b.input("w", (k, n), index=1)
    bias = b.input("bias", (n,), index=2)
    h = b.add(b.matmul(x, w), bias)
    for op in data.draw(st.lists(st.sampled_from(["tanh", "sigmoid", "relu", "exp_neg", "square"]), max_size=4)):
        h = {"tanh": b.tanh, "sigmoid": b.sigmoid, "relu": b.relu, "square": b.square,
             "exp_neg": lambda v: b.exp(b.neg(b.abs(v)))}[op](h)
    s = b.softmax(h, axis=-1)
    total = b.reduce_sum(b.mul(s, h), axis=None)
    batch = data.draw(st.sampled_from([1, 5, 33]))
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((batch, k)).astype(np.float32),
             "w": rng.standard_normal((k, n)).astype(np.float32) * 0.3,
             "bias": rng.standard_normal(n).astype(np.float32)}
    graph = Graph([x, w, bias], {"h": h, "s": s, "t": total}, [])
    want, got = run_both(graph, feeds, batch)
    for key in ("h", "s", "t"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_every_elementwise_primitive_has_an_emitter():
    missing = [name for name, p in PRIMITIVES.items() if p.fusion == "elementwise" and name not in EMITTERS]
    assert missing == []


def test_fusion_puts_bias_and_activation_in_the_matmul_epilogue():
    x = b.input("x", (BATCH, 8))
    w = b.input("w", (8, 4), index=1)
    y = b.tanh(b.add(b.matmul(x, w), b.const(np.ones(4, np.float32))))
    program = lower_to_kernels(Graph([x, w], {"y": y}, []))
    assert len(program.kernels) == 1
    kernel = program.kernels[0]
    assert kernel.kind == "matmul" and [m.op for m in kernel.members] == ["add", "tanh"]


def test_the_cases_cover_every_registered_primitive():
    """ALL_OPS is kept by hand: a new primitive must get a case (or a reason in NOT_CASES)."""
    from kcompile.ir.primitives import PRIMITIVES
    assert set(PRIMITIVES) - set(ALL_OPS) == set(NOT_CASES)


@given(data=st.data())
def test_slices_read_in_place_match_reference(data):
    """Slices read by elementwise, reduce and matmul kernels are not copied (Kernel.views): the
    readers index the sliced input directly — a matmul's A or B, transposed or not, also through
    a reshape that keeps the last axis (a weight gradient over the pieces of a scan's rows), and
    a concat's operand.
    Values against the interpreter."""
    width, n = data.draw(st.integers(2, 24)), data.draw(st.integers(1, 9))
    lo = data.draw(st.integers(0, width - 1))
    hi = data.draw(st.integers(lo + 1, width))
    x = b.input("x", (BATCH, width))
    w = b.input("w", (hi - lo, n), index=1)
    v = b.input("v", (n, width), index=2)
    part = b.slice(x, ((0, None), (lo, hi)))
    other = b.slice(x, ((0, None), (0, hi - lo)))
    outputs = {"gate": b.mul(b.sigmoid(part), b.tanh(other)),        # elementwise over two slices
               "sum": b.reduce_sum(part, axis=1),                      # a reduction over one
               "mm": b.matmul(part, w),                                # a matmul's A with a longer row stride
               "wg": b.matmul(part, other, transpose_a=True),           # A and B in place, A transposed
               "r3": b.matmul(b.reshape(part, (BATCH, 1, hi - lo)), w),  # A through a reshape
               "cat": b.concat([x, part], 1),                          # a concat copies from x
               "bt": b.matmul(part, b.slice(v, ((0, n), (lo, hi))), transpose_b=True)}  # B: a slice, transposed
    graph = Graph([x, w, v], outputs, [])
    program = lower_to_kernels(graph)
    assert [k.root.op for k in program.kernels if k.kind == "layout"] == ["concat"]   # no slice copied
    batch = data.draw(st.sampled_from([1, 3, 8]))
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    feeds = {"x": rng.standard_normal((batch, width)).astype(np.float32),
             "w": rng.standard_normal((hi - lo, n)).astype(np.float32),
             "v": rng.standard_normal((n, width)).astype(np.float32)}
    want, got = run_both(graph, feeds, batch)
    for key in outputs:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)


@given(data=st.data())
def test_concat_operands_written_in_place_match_reference(data):
    """Elementwise values an output concat reads are stored straight into its columns
    (codegen/placement.py), also when other elementwise, reduce and concat kernels read them
    there; a value read by a matmul or through a reshape keeps its own buffer. Values against
    the interpreter."""
    from kcompile.codegen.placement import place_operands
    width, extra = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 5))
    x = b.input("x", (BATCH, width))
    w = b.input("w", (width, extra), index=1)
    gate = b.sigmoid(x)                                       # read by another elementwise kernel
    cell = b.mul(b.tanh(x), 2.0)                              # read by a reduction and a concat
    mm_read = b.exp(x)                                        # read by a matmul: not placed
    mm = b.matmul(mm_read, w)
    row = b.concat([b.mul(gate, b.cos(mm_read)), cell, gate, mm, mm_read], 1)
    outputs = {"row": row, "sum": b.reduce_sum(cell, axis=1), "other": b.concat([cell, x], 1),
               "mix": b.add(b.reduce_sum(gate, axis=1, keepdims=True), x)}
    graph = Graph([x, w], outputs, [])
    program = lower_to_kernels(graph)
    _, placed = place_operands(program)
    assert {"sigmoid", "mul"} <= {n.op for nid in placed for n in program.graph.nodes() if n.id == nid}
    assert not any(n.op in ("exp", "matmul") for n in program.graph.nodes() if n.id in placed)
    batch = data.draw(st.sampled_from([1, 3, 8]))
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    feeds = {"x": rng.standard_normal((batch, width)).astype(np.float32),
             "w": rng.standard_normal((width, extra)).astype(np.float32)}
    want, got = run_both(graph, feeds, batch)
    for key in outputs:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("width", [1, 3, 10, 32, 33])
@pytest.mark.parametrize("batch", [1, 7, 100])
def test_short_last_axis_reductions_add_in_index_order(width, batch):
    """A reduced innermost axis of at most SHORT_REDUCTION runs outside the rows' loop (the rows
    vectorize: a softmax over 10 classes): each row still adds its values in index order, so sum
    and max equal a float32 loop over the columns exactly; longer axes keep their own loop."""
    x = b.input("x", (BATCH, width))
    graph = Graph([x], {"sum": b.reduce_sum(x, axis=1), "max": b.reduce_max(x, axis=1)}, [])
    rng = np.random.default_rng(width * 1000 + batch)
    data = (rng.standard_normal((batch, width)) * 10.0 ** rng.integers(-3, 4, (batch, width))).astype(np.float32)
    _, got = run_both(graph, {"x": data}, batch)
    total, top = np.zeros(batch, np.float32), np.full(batch, -np.inf, np.float32)
    for c in range(width):
        total = total + data[:, c]
        top = np.maximum(top, data[:, c])
    if width <= 32:
        np.testing.assert_array_equal(got["sum"], total)
    np.testing.assert_allclose(got["sum"], total, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(got["max"], top)
