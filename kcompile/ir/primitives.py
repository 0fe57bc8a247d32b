"""The primitive rule table: one entry per IR primitive, holding everything about it.

Each `Primitive` has
  * `fusion`: its fusion class (leaf, elementwise, reduction, contraction, layout, opaque),
  * `shape_rule(inputs, attrs) -> (shape, dtype)`,
  * `reference(args, attrs, shape) -> np.ndarray`: the numpy semantics (the interpreter's oracle),
    `shape` being the node's concrete output shape,
  * `vjp(b, node, g) -> [cotangent or None per input]`, written with the builder `b`, so the
    backward pass is itself a graph of primitives.
Adding a primitive is one `register(...)` call here (plus, for elementwise ones, a scalar emitter
in `codegen/elementwise.py`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .graph import BATCH, ShapeError, format_shape, static_size

FUSION_CLASSES = ("leaf", "elementwise", "reduction", "contraction", "layout", "opaque")


@dataclass(frozen=True)
class Primitive:
    name: str
    fusion: str
    shape_rule: Callable
    reference: Callable
    vjp: Callable | None


PRIMITIVES: dict[str, Primitive] = {}


def register(name, fusion, shape_rule, reference, vjp=None):
    assert fusion in FUSION_CLASSES
    PRIMITIVES[name] = Primitive(name, fusion, shape_rule, reference, vjp)


# ---------------------------------------------------------------- shape helpers

def broadcast_shapes(*shapes):
    rank = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (rank - len(s)) + tuple(s) for s in shapes]):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ShapeError("shapes " + " and ".join(format_shape(s) for s in shapes)
                             + " cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _same_dtype(inputs):
    dtypes = {i.dtype for i in inputs}
    if len(dtypes) != 1:
        raise ShapeError(f"mixed dtypes {sorted(dtypes)}; insert a cast")
    return dtypes.pop()


def _ew_rule(inputs, attrs):
    return broadcast_shapes(*[i.shape for i in inputs]), _same_dtype(inputs)


def _float_unary_rule(inputs, attrs):
    (x,) = inputs
    if x.dtype != "float32":
        raise ShapeError(f"expects float32, got {x.dtype}")
    return x.shape, "float32"


def _compare_rule(inputs, attrs):
    shape, _ = _ew_rule(inputs, attrs)
    return shape, "float32"


def normalize_axes(axes, rank):
    return tuple(sorted(a % rank for a in axes))


def _reduce_rule(inputs, attrs):
    (x,) = inputs
    axes = attrs["axes"]
    if attrs["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape)), x.dtype
    return tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype


def unbroadcast(b, g, shape):
    """Sum `g` down to `shape` (the VJP of numpy broadcasting)."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = len(g.shape) - len(shape)
    axes = list(range(lead))
    axes += [lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1]
    r = b.reduce_sum(g, axes, keepdims=False)
    return b.reshape(r, shape) if tuple(r.shape) != tuple(shape) else r


# ---------------------------------------------------------------- leaves

def _no_ref(args, attrs, shape):
    raise RuntimeError("leaf nodes are evaluated by the interpreter itself")


register("input", "leaf", None, _no_ref)
register("param", "leaf", None, _no_ref)
register("batch_size", "leaf", None, _no_ref)
register("const", "leaf", None, lambda args, attrs, shape: attrs["value"])

# ---------------------------------------------------------------- elementwise unary

_SQRT_2_OVER_PI = 2.0 / math.sqrt(math.pi)


def _np_erf(x):
    # Abramowitz-Stegun 7.1.26 is too coarse for an oracle; use a float64 series/continued fraction
    # via math.erf on each element (the interpreter is the slow path by design).
    return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(np.float32)


def _sigmoid(x):
    x = x.astype(np.float64)
    return (np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))),
                     np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))).astype(np.float32)


def _f32(fn):
    def ref(args, attrs, shape):
        with np.errstate(all="ignore"):
            return np.asarray(fn(*args), dtype=np.float32)
    return ref


_UNARY = {
    # name: (numpy reference, vjp(b, x, y, g))
    "copy": (np.copy, lambda b, x, y, g: g),
    "neg": (np.negative, lambda b, x, y, g: b.neg(g)),
    "exp": (np.exp, lambda b, x, y, g: b.mul(g, y)),
    "log": (np.log, lambda b, x, y, g: b.div(g, x)),
    "log1p": (np.log1p, lambda b, x, y, g: b.div(g, b.add(x, 1.0))),
    "expm1": (np.expm1, lambda b, x, y, g: b.mul(g, b.add(y, 1.0))),
    "tanh": (np.tanh, lambda b, x, y, g: b.mul(g, b.sub(1.0, b.mul(y, y)))),
    "sigmoid": (_sigmoid, lambda b, x, y, g: b.mul(g, b.mul(y, b.sub(1.0, y)))),
    "sqrt": (np.sqrt, lambda b, x, y, g: b.div(b.mul(g, 0.5), y)),
    "abs": (np.abs, lambda b, x, y, g: b.mul(g, b.sign(x))),
    "sign": (np.sign, None),
    "floor": (np.floor, None),
    "ceil": (np.ceil, None),
    "round": (np.round, None),  # numpy rounds half to even, as LLVM's rint does
    "erf": (_np_erf, lambda b, x, y, g: b.mul(g, b.mul(_SQRT_2_OVER_PI, b.exp(b.neg(b.mul(x, x)))))),
    "softplus": (lambda x: np.logaddexp(0.0, x.astype(np.float64)),
                 lambda b, x, y, g: b.mul(g, b.sigmoid(x))),
    "sin": (np.sin, lambda b, x, y, g: b.mul(g, b.cos(x))),
    "cos": (np.cos, lambda b, x, y, g: b.neg(b.mul(g, b.sin(x)))),
}


def _unary_vjp(fn):
    if fn is None:
        return lambda b, node, g: [None]
    return lambda b, node, g: [fn(b, node.inputs[0], node, g)]


for _name, (_ref, _vjp) in _UNARY.items():
    register(_name, "elementwise", _float_unary_rule, _f32(_ref), _unary_vjp(_vjp))


# ---------------------------------------------------------------- elementwise binary / ternary

def _binary(fn):
    def ref(args, attrs, shape):
        a, b_ = args
        with np.errstate(all="ignore"):
            out = fn(a, b_)
        return np.asarray(out, dtype=np.result_type(a.dtype, b_.dtype))
    return ref


def _vjp_binary(da, db):
    def vjp(b, node, g):
        x, y = node.inputs
        return [unbroadcast(b, da(b, x, y, node, g), x.shape) if da else None,
                unbroadcast(b, db(b, x, y, node, g), y.shape) if db else None]
    return vjp


register("add", "elementwise", _ew_rule, _binary(np.add),
         _vjp_binary(lambda b, x, y, z, g: g, lambda b, x, y, z, g: g))
register("sub", "elementwise", _ew_rule, _binary(np.subtract),
         _vjp_binary(lambda b, x, y, z, g: g, lambda b, x, y, z, g: b.neg(g)))
register("mul", "elementwise", _ew_rule, _binary(np.multiply),
         _vjp_binary(lambda b, x, y, z, g: b.mul(g, y), lambda b, x, y, z, g: b.mul(g, x)))
register("div", "elementwise", _ew_rule, _binary(np.divide),
         _vjp_binary(lambda b, x, y, z, g: b.div(g, y),
                     lambda b, x, y, z, g: b.neg(b.div(b.mul(g, z), y))))
# At ties the gradient goes to the second operand, so relu = maximum(x, 0) has gradient 0 at 0
# (Keras/TF/JAX all define relu'(0) = 0). The first operand's mask compares the output z with y
# (z > y exactly when x > y, NaN included): the backward pass then keeps relu's output, which the
# next layer needs anyway, instead of its input as well.
register("maximum", "elementwise", _ew_rule, _binary(np.maximum),
         _vjp_binary(lambda b, x, y, z, g: b.mul(g, b.greater(z, y)),
                     lambda b, x, y, z, g: b.mul(g, b.less_equal(x, y))))
register("minimum", "elementwise", _ew_rule, _binary(np.minimum),
         _vjp_binary(lambda b, x, y, z, g: b.mul(g, b.less(z, y)),
                     lambda b, x, y, z, g: b.mul(g, b.greater_equal(x, y))))
register("pow", "elementwise", _ew_rule, _binary(np.power),
         _vjp_binary(lambda b, x, y, z, g: b.mul(g, b.mul(y, b.pow(x, b.sub(y, 1.0)))),
                     lambda b, x, y, z, g: b.mul(g, b.mul(z, b.log(x)))))

_COMPARE = {"greater": np.greater, "greater_equal": np.greater_equal, "less": np.less,
            "less_equal": np.less_equal, "equal": np.equal, "not_equal": np.not_equal}
for _name, _fn in _COMPARE.items():
    # Comparisons produce float32 0/1 masks, so they compose with arithmetic without casts.
    register(_name, "elementwise", _compare_rule,
             (lambda fn: lambda args, attrs, shape: fn(*args).astype(np.float32))(_fn),
             lambda b, node, g: [None, None])


def _where_rule(inputs, attrs):
    c, x, y = inputs
    shape = broadcast_shapes(c.shape, x.shape, y.shape)
    return shape, _same_dtype([x, y])


def _where_vjp(b, node, g):
    c, x, y = node.inputs
    zero = b.zeros_like(g)
    return [None, unbroadcast(b, b.where(c, g, zero), x.shape),
            unbroadcast(b, b.where(c, zero, g), y.shape)]


register("where", "elementwise", _where_rule,
         lambda args, attrs, shape: np.where(args[0] != 0, args[1], args[2]), _where_vjp)


def _cast_rule(inputs, attrs):
    return inputs[0].shape, attrs["dtype"]


def _cast_ref(args, attrs, shape):
    x = args[0]
    if attrs["dtype"] == "int32" and x.dtype != np.int32:
        with np.errstate(all="ignore"):
            return np.trunc(x).astype(np.int32)
    return x.astype(attrs["dtype"])


register("cast", "elementwise", _cast_rule, _cast_ref,
         lambda b, node, g: [b.cast(g, "float32") if node.inputs[0].dtype == "float32"
                             and node.dtype == "float32" else None])


# Counter-based RNG: a uniform [0, 1) float from a hash of (seed, step, flat element index), so
# the same numbers come out of the interpreter, the CPU code and (later) the GPU code.
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)


def mix32(x):
    """lowbias32 integer hash on uint32 numpy arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        return _mix32(np.asarray(x, dtype=np.uint32))


def _mix32(x):
    x = x ^ (x >> np.uint32(16))
    x = (x * np.uint32(MIX_MULTIPLIERS[0])).astype(np.uint32)
    x = x ^ (x >> np.uint32(15))
    x = (x * np.uint32(MIX_MULTIPLIERS[1])).astype(np.uint32)
    return x ^ (x >> np.uint32(16))


def random_bits_reference(seed, step, size, first=0):
    """The bits of elements first .. first + size - 1 (indices wrap at 2^32, as in compiled code)."""
    key = mix32(np.uint32(step) ^ mix32(np.uint32(seed & 0xFFFFFFFF)))
    index = ((np.arange(size, dtype=np.int64) + first) & 0xFFFFFFFF).astype(np.uint32)
    return mix32(index ^ key)


def _random_uniform_ref(args, attrs, shape):
    step = args[0]
    size = int(np.prod(shape, dtype=np.int64))
    first = int(args[1]) * (size // shape[0]) if len(args) > 1 else 0    # row_offset rows of the batch
    bits = random_bits_reference(attrs["seed"], int(step), size, first)
    return ((bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)


register("random_uniform", "elementwise",
         lambda inputs, attrs: (attrs["shape"], "float32"), _random_uniform_ref,
         lambda b, node, g: [None])


# ---------------------------------------------------------------- reductions

def _reduce_vjp_sum(b, node, g):
    (x,) = node.inputs
    kept = tuple(1 if i in node.attrs["axes"] else d for i, d in enumerate(x.shape))
    return [b.broadcast_to(b.reshape(g, kept), x.shape)]


def _reduce_vjp_extremum(b, node, g):
    # Ties share the gradient equally, as TensorFlow's reduce_max gradient does.
    (x,) = node.inputs
    kept = tuple(1 if i in node.attrs["axes"] else d for i, d in enumerate(x.shape))
    y = b.reshape(node, kept)
    mask = b.equal(x, y)
    count = b.reduce_sum(mask, node.attrs["axes"], keepdims=True)
    return [b.mul(mask, b.div(b.reshape(g, kept), count))]


def _reduce_ref(fn):
    return lambda args, attrs, shape: np.asarray(
        fn(args[0], axis=attrs["axes"], keepdims=attrs["keepdims"]), dtype=args[0].dtype)


register("reduce_sum", "reduction", _reduce_rule, _reduce_ref(np.sum), _reduce_vjp_sum)
register("reduce_max", "reduction", _reduce_rule, _reduce_ref(np.max), _reduce_vjp_extremum)
register("reduce_min", "reduction", _reduce_rule, _reduce_ref(np.min), _reduce_vjp_extremum)


def _argmax_rule(inputs, attrs):
    (x,) = inputs
    return tuple(d for i, d in enumerate(x.shape) if i != attrs["axis"]), "int32"


register("argmax", "reduction", _argmax_rule,
         lambda args, attrs, shape: np.argmax(args[0], axis=attrs["axis"]).astype(np.int32),
         lambda b, node, g: [None])


# ---------------------------------------------------------------- layout

def _reshape_rule(inputs, attrs):
    (x,) = inputs
    new = attrs["shape"]
    if attrs.get("rebatch"):
        # a stateful layer's (batch, ...) state seen as the run-time batch, or back: same rows
        # when the run-time batch equals the static one, which the runtime checks before running
        ok = ((new[0] is BATCH) != (x.shape[0] is BATCH) and BATCH not in new[1:] + x.shape[1:]
              and static_size(new[1:]) == static_size(x.shape[1:]))
        if not ok:
            raise ShapeError(f"cannot rebatch {format_shape(x.shape)} to {format_shape(new)}")
        return new, x.dtype
    if new.count(BATCH) != x.shape.count(BATCH) or static_size(new) != static_size(x.shape):
        raise ShapeError(f"cannot reshape {format_shape(x.shape)} to {format_shape(new)}")
    return new, x.dtype


register("reshape", "layout", _reshape_rule,
         lambda args, attrs, shape: args[0].reshape(shape),
         lambda b, node, g: [b.reshape(g, node.inputs[0].shape, rebatch=node.attrs.get("rebatch", False))])


def _transpose_rule(inputs, attrs):
    (x,) = inputs
    return tuple(x.shape[p] for p in attrs["perm"]), x.dtype


register("transpose", "layout", _transpose_rule,
         lambda args, attrs, shape: np.ascontiguousarray(np.transpose(args[0], attrs["perm"])),
         lambda b, node, g: [b.transpose(g, tuple(np.argsort(node.attrs["perm"])))])


def _broadcast_to_rule(inputs, attrs):
    (x,) = inputs
    target = attrs["shape"]
    if broadcast_shapes(x.shape, target) != tuple(target):
        raise ShapeError(f"cannot broadcast {format_shape(x.shape)} to {format_shape(target)}")
    return target, x.dtype


register("broadcast_to", "elementwise", _broadcast_to_rule,
         lambda args, attrs, shape: np.ascontiguousarray(np.broadcast_to(args[0], shape)),
         lambda b, node, g: [unbroadcast(b, g, node.inputs[0].shape)])


def _slice_rule(inputs, attrs):
    (x,) = inputs
    out = []
    for d, (lo, hi) in zip(x.shape, attrs["bounds"]):
        if d is BATCH:
            if (lo, hi) != (0, None):
                raise ShapeError("slicing the batch dimension is not supported")
            out.append(BATCH)
        else:
            if not 0 <= lo <= hi <= d:
                raise ShapeError(f"slice [{lo}:{hi}] out of range for a dimension of size {d}")
            out.append(hi - lo)
    return tuple(out), x.dtype


def _slice_ref(args, attrs, shape):
    return np.ascontiguousarray(args[0][tuple(slice(lo, hi) for lo, hi in attrs["bounds"])])


def _slice_vjp(b, node, g):
    (x,) = node.inputs
    pads = tuple((0, 0) if d is BATCH else (lo, d - hi) for d, (lo, hi) in zip(x.shape, node.attrs["bounds"]))
    return [b.pad(g, pads)]


register("slice", "layout", _slice_rule, _slice_ref, _slice_vjp)


def _pad_rule(inputs, attrs):
    (x,) = inputs
    out = []
    for d, (lo, hi) in zip(x.shape, attrs["pads"]):
        if d is BATCH and (lo, hi) != (0, 0):
            raise ShapeError("padding the batch dimension is not supported")
        out.append(d if d is BATCH else d + lo + hi)
    return tuple(out), x.dtype


def _pad_vjp(b, node, g):
    (x,) = node.inputs
    bounds = tuple((0, None) if d is BATCH else (lo, lo + d) for d, (lo, hi) in zip(x.shape, node.attrs["pads"]))
    return [b.slice(g, bounds)]


register("pad", "layout", _pad_rule,
         lambda args, attrs, shape: np.pad(args[0], attrs["pads"]), _pad_vjp)


def _concat_rule(inputs, attrs):
    axis = attrs["axis"]
    first = inputs[0].shape
    for i in inputs:
        if len(i.shape) != len(first) or any(a != c for k, (a, c) in enumerate(zip(i.shape, first)) if k != axis):
            raise ShapeError("concatenate needs equal shapes except on the axis; got "
                             + ", ".join(format_shape(i.shape) for i in inputs))
    if first[axis] is BATCH:
        raise ShapeError("concatenating along the batch dimension is not supported")
    out = list(first)
    out[axis] = sum(i.shape[axis] for i in inputs)
    return tuple(out), _same_dtype(inputs)


def _concat_vjp(b, node, g):
    axis, grads, start = node.attrs["axis"], [], 0
    for x in node.inputs:
        bounds = [(0, None) if d is BATCH else (0, d) for d in g.shape]
        bounds[axis] = (start, start + x.shape[axis])
        grads.append(b.slice(g, tuple(bounds)))
        start += x.shape[axis]
    return grads


register("concat", "layout", _concat_rule,
         lambda args, attrs, shape: np.concatenate(args, axis=attrs["axis"]), _concat_vjp)


def _reverse_rule(inputs, attrs):
    (x,) = inputs
    if x.shape[attrs["axis"]] is BATCH:
        raise ShapeError("reversing the batch dimension is not supported")
    return x.shape, x.dtype


register("reverse", "layout", _reverse_rule,
         lambda args, attrs, shape: np.ascontiguousarray(np.flip(args[0], attrs["axis"])),
         lambda b, node, g: [b.reverse(g, node.attrs["axis"])])


# ---------------------------------------------------------------- contraction

def matmul_dims(a_shape, b_shape, ta, tb):
    """(M-shape, K, N) of op(a) @ op(b) where a transposed operand is first viewed as 2-D."""
    if ta:
        m_shape, k = (a_shape[-1],), _prod(a_shape[:-1])
    else:
        m_shape, k = tuple(a_shape[:-1]), a_shape[-1]
    if tb:
        kb, n = b_shape[-1], _prod(b_shape[:-1])
    else:
        kb, n = _prod(b_shape[:-1]), b_shape[-1]
    return m_shape, k, kb, n


def _prod(dims):
    if any(d is BATCH for d in dims):
        return BATCH if len(dims) == 1 else ("batch-product", tuple(dims))
    return static_size(dims)


def _matmul_rule(inputs, attrs):
    a, b_ = inputs
    m_shape, k, kb, n = matmul_dims(a.shape, b_.shape, attrs["transpose_a"], attrs["transpose_b"])
    if k != kb or n is BATCH or isinstance(n, tuple):
        raise ShapeError(f"matmul of {format_shape(a.shape)} and {format_shape(b_.shape)} "
                         f"(transpose_a={attrs['transpose_a']}, transpose_b={attrs['transpose_b']}) "
                         "has mismatched inner dimensions")
    if a.dtype != "float32" or b_.dtype != "float32":
        raise ShapeError("matmul needs float32 operands")
    return m_shape + (n,), "float32"


def _as2d(x, transpose):
    x2 = x.reshape(-1, x.shape[-1])
    return x2.T if transpose else x2


def _matmul_ref(args, attrs, shape):
    a, b_ = args
    out = _as2d(a, attrs["transpose_a"]).astype(np.float64) @ _as2d(b_, attrs["transpose_b"]).astype(np.float64)
    return out.astype(np.float32).reshape(shape)


def _matmul_vjp(b, node, g):
    a, w = node.inputs
    ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
    da = b.matmul(w, g, transpose_a=tb, transpose_b=True) if ta else b.matmul(g, w, transpose_b=not tb)
    dw = b.matmul(g, a, transpose_a=True, transpose_b=ta) if tb else b.matmul(a, g, transpose_a=not ta)
    return [b.reshape(da, a.shape) if da.shape != a.shape else da,
            b.reshape(dw, w.shape) if dw.shape != w.shape else dw]


register("matmul", "contraction", _matmul_rule, _matmul_ref, _matmul_vjp)
