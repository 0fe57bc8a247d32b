"""Functions that create IR nodes, inferring each node's shape and dtype from the rule table.

Operands may be nodes or Python/numpy scalars (which become `const` nodes). This module is what
layers, losses, optimizers and the autodiff use to emit IR; it computes nothing itself.
"""
from __future__ import annotations

import numpy as np

from .graph import BATCH, Node, static_size
from .primitives import PRIMITIVES, ShapeError, normalize_axes


def node(op, inputs, attrs=None, name=None):
    attrs = attrs or {}
    prim = PRIMITIVES[op]
    shape, dtype = prim.shape_rule(inputs, attrs)
    return Node(op, inputs, attrs, shape, dtype, name=name)


# ---------------------------------------------------------------- leaves

def input(name, shape, dtype="float32", index=0):
    return Node("input", (), {"name": name, "index": index}, shape, dtype, name=name)


def param(slot):
    return Node("param", (), {"slot": slot.name}, slot.shape, slot.dtype, name=slot.name)


def const(value, dtype="float32"):
    arr = np.asarray(value, dtype=dtype)
    return Node("const", (), {"value": arr}, arr.shape, dtype)


def batch_size():
    """The run-time batch size as a float32 scalar (for means over the batch)."""
    return Node("batch_size", (), {}, (), "float32")


def as_node(x, like=None):
    if isinstance(x, Node):
        return x
    return const(x, dtype=like.dtype if like is not None else "float32")


def _operands(*xs):
    like = next((x for x in xs if isinstance(x, Node)), None)
    return [as_node(x, like) for x in xs]


# ---------------------------------------------------------------- elementwise

def _unary(op):
    return lambda x: node(op, [as_node(x)])


neg, exp, log, log1p, expm1, tanh, sigmoid, sqrt, abs, sign, floor, ceil, round, erf, softplus = (
    _unary(op) for op in ("neg", "exp", "log", "log1p", "expm1", "tanh", "sigmoid", "sqrt", "abs",
                          "sign", "floor", "ceil", "round", "erf", "softplus"))
sin, cos = _unary("sin"), _unary("cos")


def copy(x):
    """An explicit copy (the memory planner needs one where a value lands in two places)."""
    return node("copy", [as_node(x)])


def _binary(op):
    return lambda x, y: node(op, _operands(x, y))


add, sub, mul, div, maximum, minimum, pow = (
    _binary(op) for op in ("add", "sub", "mul", "div", "maximum", "minimum", "pow"))
greater, greater_equal, less, less_equal, equal, not_equal = (
    _binary(op) for op in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"))


def where(cond, x, y):
    x, y = _operands(x, y)
    return node("where", [as_node(cond), x, y])


def cast(x, dtype):
    x = as_node(x)
    return x if x.dtype == dtype else node("cast", [x], {"dtype": dtype})


def square(x):
    return mul(x, x)


def relu(x):
    return maximum(x, 0.0)


def zeros_like(x):
    return broadcast_to(const(0.0, x.dtype), x.shape)


def clip(x, lo, hi):
    return minimum(maximum(x, lo), hi)


def random_uniform(shape, seed, step, row_offset=None):
    """Uniform [0, 1) numbers keyed by (seed, step, element index). `row_offset` (an int32 scalar
    node, data-parallel training) shifts the index by that many rows of a batched shape, so a
    replica holding rows [r, r + n) of the global batch draws the numbers those rows get in one process."""
    operands = [step] if row_offset is None or not shape or shape[0] is not BATCH else [step, row_offset]
    return node("random_uniform", operands, {"shape": tuple(shape), "seed": int(seed)})


def random_normal(shape, seed, step, row_offset=None):
    """Standard normal samples by Box-Muller from two counter-based uniform streams."""
    u1 = random_uniform(shape, seed, step, row_offset)
    u2 = random_uniform(shape, seed ^ 0x5BD1E995, step, row_offset)
    radius = sqrt(mul(log(sub(1.0, u1)), -2.0))          # 1 - u1 lies in (0, 1]
    return mul(radius, cos(mul(u2, 2.0 * np.pi)))


# ---------------------------------------------------------------- reductions

def _axes(x, axis):
    if axis is None:
        return tuple(range(len(x.shape)))
    if isinstance(axis, int):
        axis = (axis,)
    return normalize_axes(axis, len(x.shape))


def reduce_sum(x, axis=None, keepdims=False):
    x = as_node(x)
    axes = _axes(x, axis)
    if not axes:
        return x
    return node("reduce_sum", [x], {"axes": axes, "keepdims": bool(keepdims)})


def reduce_max(x, axis=None, keepdims=False):
    x = as_node(x)
    return node("reduce_max", [x], {"axes": _axes(x, axis), "keepdims": bool(keepdims)})


def reduce_min(x, axis=None, keepdims=False):
    x = as_node(x)
    return node("reduce_min", [x], {"axes": _axes(x, axis), "keepdims": bool(keepdims)})


def count(x, axes):
    """Number of elements over `axes` as a float32 node (run-time when the batch axis is included)."""
    n, symbolic = 1, False
    for a in axes:
        if x.shape[a] is BATCH:
            symbolic = True
        else:
            n *= x.shape[a]
    return mul(batch_size(), float(n)) if symbolic else const(float(n))


def reduce_mean(x, axis=None, keepdims=False):
    x = as_node(x)
    axes = _axes(x, axis)
    if not axes:
        return x
    return div(reduce_sum(x, axes, keepdims), count(x, axes))


def argmax(x, axis=-1):
    x = as_node(x)
    return node("argmax", [x], {"axis": axis % len(x.shape)})


# ---------------------------------------------------------------- layout

def reshape(x, shape, rebatch=False):
    x = as_node(x)
    shape = tuple(shape)
    if shape == x.shape:
        return x
    if rebatch:
        return node("reshape", [x], {"shape": shape, "rebatch": True})
    return node("reshape", [x], {"shape": _resolve_reshape(x.shape, shape)})


def rebatch(x, batch):
    """View a (batch, ...) tensor of static batch as (BATCH, ...), or a (BATCH, ...) one as
    (batch, ...): how stateful layers read and write their per-sample state. Valid only when the
    run-time batch equals `batch` (the runtime checks that before running)."""
    x = as_node(x)
    lead = BATCH if x.shape[0] is not BATCH else int(batch)
    return reshape(x, (lead,) + tuple(x.shape[1:]), rebatch=True)


def _resolve_reshape(old, new):
    """Fill one -1 in `new` from the static sizes, as numpy does."""
    if -1 not in new:
        return new
    known = static_size([d for d in new if d != -1])
    total = static_size(old)
    if known == 0 or total % known:
        raise ShapeError(f"cannot reshape a tensor of static size {total} into {new}")
    return tuple(total // known if d == -1 else d for d in new)


def transpose(x, perm):
    x = as_node(x)
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(len(perm))):
        return x
    return node("transpose", [x], {"perm": perm})


def broadcast_to(x, shape):
    x = as_node(x)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return node("broadcast_to", [x], {"shape": shape})


def slice(x, bounds):
    bounds = tuple((int(lo), None if hi is None else int(hi)) for lo, hi in bounds)
    if all((lo, hi) in ((0, None), (0, d)) for (lo, hi), d in zip(bounds, x.shape)):
        return x
    return node("slice", [x], {"bounds": bounds})


def pad(x, pads):
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if all(p == (0, 0) for p in pads):
        return x
    return node("pad", [x], {"pads": pads})


def concat(xs, axis):
    xs = [as_node(x) for x in xs]
    if len(xs) == 1:
        return xs[0]
    return node("concat", xs, {"axis": axis % len(xs[0].shape)})


def reverse(x, axis):
    """x with the order of `axis` reversed (go_backwards sequences)."""
    x = as_node(x)
    return node("reverse", [x], {"axis": axis % len(x.shape)})


def matmul(a, b, transpose_a=False, transpose_b=False):
    return node("matmul", [as_node(a), as_node(b)],
                {"transpose_a": bool(transpose_a), "transpose_b": bool(transpose_b)})


# ---------------------------------------------------------------- composites used across the frontend

def softmax(x, axis=-1):
    shifted = sub(x, reduce_max(x, axis, keepdims=True))
    e = exp(shifted)
    return div(e, reduce_sum(e, axis, keepdims=True))


def log_softmax(x, axis=-1):
    shifted = sub(x, reduce_max(x, axis, keepdims=True))
    return sub(shifted, log(reduce_sum(exp(shifted), axis, keepdims=True)))


def one_hot(indices, depth):
    """float32 one-hot of integer (or integral float) indices along a new last axis."""
    idx = cast(indices, "float32")
    return equal(reshape(idx, idx.shape + (1,)), const(np.arange(depth, dtype=np.float32)))


# ---------------------------------------------------------------- convolution / embedding primitives

def window(x, sizes, strides, dilations):
    """im2col view: (B, S.., C) -> (B, O.., W.., C); see primitives_spatial.py."""
    return node("window", [as_node(x)], {"sizes": tuple(int(v) for v in sizes),
                                         "strides": tuple(int(v) for v in strides),
                                         "dilations": tuple(int(v) for v in dilations)})


def window_grad(g, input_spatial, sizes, strides, dilations):
    return node("window_grad", [as_node(g)], {"sizes": tuple(sizes), "strides": tuple(strides),
                                              "dilations": tuple(dilations),
                                              "input_spatial": tuple(int(v) for v in input_spatial)})


def all_reduce_sum(x):
    return node("all_reduce_sum", [as_node(x)])


def gather_rows(table, indices):
    return node("gather_rows", [as_node(table), as_node(indices)])


def scatter_add_rows(values, indices, rows):
    return node("scatter_add_rows", [as_node(values), as_node(indices)], {"rows": int(rows)})
