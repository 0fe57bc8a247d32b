"""Shared drawing of primitive test cases: for each primitive, a builder of (inputs, node) from a
hypothesis data object. Used by the interpreter VJP tests and the compiled-vs-reference tests."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from kcompile.ir import builder as b
from kcompile.ir.graph import BATCH

UNARY = ["neg", "exp", "log", "log1p", "expm1", "tanh", "sigmoid", "sqrt", "abs", "sign", "floor", "ceil",
         "round", "erf", "softplus", "sin", "cos", "copy"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "pow", "greater", "greater_equal", "less",
          "less_equal", "equal", "not_equal"]
POSITIVE_DOMAIN = {"log", "log1p", "sqrt", "pow", "div"}
NONSMOOTH = {"sign", "floor", "ceil", "round", "abs", "maximum", "minimum", "greater", "greater_equal", "less",
             "less_equal", "equal", "not_equal"}

INDEXED = {"gather_rows", "scatter_add_rows"}   # cases whose index input is cast to int32 in the graph

dims = st.integers(1, 9)


@st.composite
def shapes(draw, min_rank=1, max_rank=3):
    rank = draw(st.integers(min_rank, max_rank))
    return tuple(draw(dims) for _ in range(rank))


def values(rng, shape, op=None):
    if op in INDEXED:
        # every input of a row gather/scatter case holds k + 0.5: cast to int32 it is a valid row index,
        # and a finite-difference step never moves it to another row
        return (rng.integers(0, 4, shape) + 0.5).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    if op in POSITIVE_DOMAIN:
        x = np.abs(x) + 0.5
    return x


def feed_shape(shape, batch):
    return tuple(batch if d is BATCH else d for d in shape)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast, the first one with the batch dimension leading."""
    base = draw(shapes(1, 3))
    other = list(base)
    for i in range(len(other)):
        if draw(st.booleans()):
            other[i] = 1
    drop = draw(st.integers(0, len(other) - 1))
    return base, tuple(other[drop:])


def make_case(data, op):
    """(inputs as list of (name, ir shape), node builder fn(*input_nodes))."""
    if op in UNARY:
        shape = data.draw(shapes())
        return [("x", (BATCH,) + shape)], lambda x: b.node(op, [x])
    if op in BINARY:
        s1, s2 = data.draw(broadcast_pair())
        return [("x", (BATCH,) + s1), ("y", s2)], lambda x, y: b.node(op, [x, y])
    if op == "where":
        s = data.draw(shapes())
        return [("c", (BATCH,) + s), ("x", (BATCH,) + s), ("y", s)], \
            lambda c, x, y: b.where(b.greater(c, 0.0), x, y)
    if op in ("reduce_sum", "reduce_max", "reduce_min"):
        shape = (BATCH,) + data.draw(shapes())
        axes = tuple(sorted(set(data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=3)))))
        keep = data.draw(st.booleans())
        return [("x", shape)], lambda x: b.node(op, [x], {"axes": axes, "keepdims": keep})
    if op == "argmax":
        shape = (BATCH,) + data.draw(shapes())
        axis = data.draw(st.integers(1, len(shape) - 1))
        return [("x", shape)], lambda x: b.argmax(x, axis)
    if op == "matmul":
        m_extra = data.draw(st.sampled_from([(), (3,)]))
        k, n = data.draw(dims), data.draw(dims)
        ta, tb = data.draw(st.booleans()), data.draw(st.booleans())
        a_shape = (BATCH,) + m_extra + (k,)
        if ta:   # contract over the batch: a is (N, ..., K) viewed as 2-D and transposed
            return [("x", a_shape), ("y", (BATCH,) + m_extra + (n,))], \
                lambda x, y: b.matmul(x, y, transpose_a=True, transpose_b=tb) if not tb else \
                b.matmul(x, b.transpose(y, tuple(range(len(a_shape)))), transpose_a=True)
        w_shape = (n, k) if tb else (k, n)
        return [("x", a_shape), ("y", w_shape)], lambda x, y: b.matmul(x, y, transpose_b=tb)
    if op == "transpose":
        shape = (BATCH,) + data.draw(shapes(1, 3))
        perm = (0,) + tuple(data.draw(st.permutations(range(1, len(shape)))))
        return [("x", shape)], lambda x: b.transpose(x, perm)
    if op == "slice":
        shape = (BATCH,) + data.draw(shapes(1, 3))
        bounds = [(0, None)]
        for d in shape[1:]:
            lo = data.draw(st.integers(0, d - 1))
            hi = data.draw(st.integers(lo + 1, d))
            bounds.append((lo, hi))
        return [("x", shape)], lambda x: b.slice(x, bounds)
    if op == "reverse":
        shape = (BATCH,) + data.draw(shapes(1, 3))
        axis = data.draw(st.integers(1, len(shape) - 1))     # the batch axis is never reversed
        return [("x", shape)], lambda x: b.reverse(x, axis)
    if op == "pad":
        shape = (BATCH,) + data.draw(shapes(1, 3))
        pads = [(0, 0)] + [(data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape[1:]]
        return [("x", shape)], lambda x: b.pad(x, pads)
    if op == "concat":
        shape = (BATCH,) + data.draw(shapes(1, 3))
        axis = data.draw(st.integers(1, len(shape) - 1))
        other = list(shape)
        other[axis] = data.draw(dims)
        return [("x", shape), ("y", tuple(other))], lambda x, y: b.concat([x, y], axis)
    if op == "reshape":
        shape = (BATCH,) + data.draw(shapes(1, 3))
        return [("x", shape)], lambda x: b.mul(b.reshape(x, (BATCH, -1)), 2.0)
    if op == "broadcast_to":
        s1, s2 = data.draw(broadcast_pair())
        return [("y", s2)], lambda y: b.broadcast_to(y, (BATCH,) + s1)
    if op == "cast":
        shape = (BATCH,) + data.draw(shapes())
        return [("x", shape)], lambda x: b.cast(b.cast(b.mul(x, 3.0), "int32"), "float32")
    if op == "random_uniform":
        shape = (BATCH,) + data.draw(shapes())
        seed = data.draw(st.integers(0, 2 ** 31 - 1))
        return [], lambda: b.random_uniform(shape, seed, b.const(7, "int32"))
    if op in ("window", "window_grad"):
        k = data.draw(st.integers(1, 3))
        sizes = tuple(data.draw(st.integers(1, 3)) for _ in range(k))
        strides = tuple(data.draw(st.integers(1, 3)) for _ in range(k))
        dilations = tuple(data.draw(st.integers(1, 2)) for _ in range(k))
        spatial = tuple((w - 1) * d + 1 + data.draw(st.integers(0, 3)) for w, d in zip(sizes, dilations))
        channels = data.draw(st.integers(1, 3))
        if op == "window":
            return [("x", (BATCH,) + spatial + (channels,))], lambda x: b.window(x, sizes, strides, dilations)
        outs = tuple((s - (w - 1) * d - 1) // st + 1 for s, w, st, d in zip(spatial, sizes, strides, dilations))
        return [("g", (BATCH,) + outs + sizes + (channels,))], \
            lambda g: b.window_grad(g, spatial, sizes, strides, dilations)
    if op in INDEXED:
        rows, width = data.draw(st.integers(4, 9)), data.draw(dims)
        idx_shape = (BATCH,) + data.draw(shapes(0, 2))
        if op == "gather_rows":
            return [("t", (rows, width)), ("i", idx_shape)], lambda t, i: b.gather_rows(t, b.cast(i, "int32"))
        return [("g", idx_shape + (width,)), ("i", idx_shape)], \
            lambda g, i: b.scatter_add_rows(g, b.cast(i, "int32"), rows)
    raise KeyError(op)


ALL_OPS = UNARY + BINARY + ["where", "reduce_sum", "reduce_max", "reduce_min", "argmax", "matmul", "transpose",
                            "slice", "pad", "concat", "reshape", "broadcast_to", "cast", "random_uniform",
                            "window", "window_grad", "gather_rows", "scatter_add_rows", "reverse"]
# Registered primitives without a case here, and where they are tested instead.
NOT_CASES = {"input": "graph leaf", "param": "graph leaf", "const": "graph leaf", "batch_size": "graph leaf",
             "scan": "a loop with a body graph: tests/test_recurrent.py",
             "all_reduce_sum": "a collective over replicas: tests/test_distributed.py"}
