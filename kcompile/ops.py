"""`kcompile.ops`: the NumPy-like op set for custom layers, losses and metrics.

On symbolic tensors (inside a layer's `call`, a loss, a metric, or while defining a functional
model) each op emits IR; on concrete values (numpy arrays, Python numbers) it evaluates at once
with the reference interpreter and returns a numpy array, as Keras ops do eagerly.
"""
from __future__ import annotations

import builtins
import functools
import operator

import numpy as np

from .ir import builder as irb
from .ir.graph import BATCH, Graph, static_size
from .ir.interpreter import evaluate
from .ir.primitives import ShapeError
from .tree import flatten as _flatten
from .tracing import CallRecord, KerasTensor, current_trace, in_definition
from .variables import Variable


# ---------------------------------------------------------------- conversion

def _to_node(x, dtype=None):
    if isinstance(x, KerasTensor):
        return x.node
    if isinstance(x, Variable):
        return x.node()
    if isinstance(x, (bool, np.bool_)):
        return irb.const(float(x))
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"ops expects numeric tensors, got {type(x).__name__} of dtype {arr.dtype}")
    if dtype is None:
        dtype = "int32" if arr.dtype.kind in "iu" and arr.ndim > 0 else "float32"
    return irb.const(arr.astype(dtype), dtype)


def _symbolic_inputs(args, kwargs):
    """Symbolic when a KerasTensor is involved, or a variable while a model is being traced."""
    flat = _flatten(list(args) + list(kwargs.values()))
    if builtins.any(isinstance(a, KerasTensor) for a in flat):
        return True
    return builtins.any(isinstance(a, Variable) for a in flat) and not in_definition()


def _finish(node, symbolic):
    if symbolic:
        return KerasTensor(node)
    outputs, _ = evaluate(Graph([], {"y": node}, []), {}, {}, batch=1)
    return outputs["y"]


def _concrete(x):
    if isinstance(x, Variable):
        return x.numpy()
    if isinstance(x, list):
        return [_concrete(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_concrete(v) for v in x)
    return x


def keras_op(fn, name=None):
    """Wrap an op: nodes in, KerasTensor or numpy out; record the call while defining a model.
    `name` names an op made by a helper as Keras names it (summaries and saved files use it)."""
    if name is not None:
        fn.__name__ = fn.__qualname__ = name
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        symbolic = _symbolic_inputs(args, kwargs)
        if not symbolic:   # eager: variables contribute their current values
            args = tuple(_concrete(a) for a in args)
            kwargs = {k: _concrete(v) for k, v in kwargs.items()}
        try:
            out = fn(*args, **kwargs)
        except ShapeError as exc:
            raise ValueError(f"{fn.__name__}: {exc}") from None
        if isinstance(out, (list, tuple)):
            result = type(out)(_finish(o, symbolic) for o in out)
        else:
            result = _finish(out, symbolic)
        if symbolic and in_definition() and builtins.any(isinstance(a, KerasTensor) and a._history
                                                for a in _flatten(list(args) + list(kwargs.values()))):
            outs = _flatten(result)
            record = CallRecord(wrapper, args, kwargs, outs)
            record.structure = result
            for i, t in enumerate(outs):
                t._history = (record, i)
        return result
    return wrapper


def _n(x):
    return _to_node(x)


def _pair(x, y):
    """Nodes for a binary op; Python scalars take the other operand's dtype."""
    xs, ys = isinstance(x, (KerasTensor, Variable)), isinstance(y, (KerasTensor, Variable))
    if xs and not ys and np.ndim(y) == 0:
        a = _n(x)
        return a, irb.const(y, a.dtype)
    if ys and not xs and np.ndim(x) == 0:
        b = _n(y)
        return irb.const(x, b.dtype), b
    a, b = _n(x), _n(y)
    if a.dtype != b.dtype:
        a, b = irb.cast(a, "float32"), irb.cast(b, "float32")
    return a, b


# ---------------------------------------------------------------- elementwise

def _binary(builder_fn, name):
    def op(x1, x2):
        return builder_fn(*_pair(x1, x2))
    return keras_op(op, name)


add = _binary(irb.add, "add")
subtract = _binary(irb.sub, "subtract")
multiply = _binary(irb.mul, "multiply")
maximum = _binary(irb.maximum, "maximum")
minimum = _binary(irb.minimum, "minimum")
greater = _binary(irb.greater, "greater")
greater_equal = _binary(irb.greater_equal, "greater_equal")
less = _binary(irb.less, "less")
less_equal = _binary(irb.less_equal, "less_equal")
equal = _binary(irb.equal, "equal")
not_equal = _binary(irb.not_equal, "not_equal")


def _divide(x1, x2):
    a, b = _pair(x1, x2)
    return irb.div(irb.cast(a, "float32"), irb.cast(b, "float32"))


# the same op under Keras's two names: `x / y` is true_divide (TrueDivide) in Keras 3
divide = keras_op(lambda x1, x2: _divide(x1, x2), "divide")
true_divide = keras_op(lambda x1, x2: _divide(x1, x2), "true_divide")


@keras_op
def power(x1, x2):
    a, b = _pair(x1, x2)
    if b.op == "const" and b.attrs["value"].size == 1 and float(b.attrs["value"]) == 2.0:
        return irb.mul(a, a)
    return irb.pow(irb.cast(a, "float32"), irb.cast(b, "float32"))


def _radd(x, y):
    return add(y, x)


def _rsub(x, y):
    return subtract(y, x)


def _rmul(x, y):
    return multiply(y, x)


def _rdiv(x, y):
    return true_divide(y, x)


def _rmatmul(x, y):
    return matmul(y, x)


def _unary(builder_fn, name, float_only=True):
    def op(x):
        node = _n(x)
        return builder_fn(irb.cast(node, "float32") if float_only else node)
    return keras_op(op, name)


negative = _unary(irb.neg, "negative", float_only=False)
exp = _unary(irb.exp, "exp")
log = _unary(irb.log, "log")
log1p = _unary(irb.log1p, "log1p")
expm1 = _unary(irb.expm1, "expm1")
sqrt = _unary(irb.sqrt, "sqrt")
tanh = _unary(irb.tanh, "tanh")
sigmoid = _unary(irb.sigmoid, "sigmoid")
softplus = _unary(irb.softplus, "softplus")
erf = _unary(irb.erf, "erf")
sin = _unary(irb.sin, "sin")
cos = _unary(irb.cos, "cos")
sign = _unary(irb.sign, "sign")
floor = _unary(irb.floor, "floor")
ceil = _unary(irb.ceil, "ceil")
round = _unary(irb.round, "round")
absolute = _unary(irb.abs, "absolute")    # Keras's ops.abs and `abs(x)` make an Absolute operation
abs = absolute
square = _unary(lambda x: irb.mul(x, x), "square", float_only=False)
relu = _unary(irb.relu, "relu")


@keras_op
def rsqrt(x):
    return irb.div(1.0, irb.sqrt(_n(x)))


@keras_op
def reciprocal(x):
    return irb.div(1.0, _n(x))


@keras_op
def clip(x, x_min, x_max):
    return irb.clip(_n(x), x_min, x_max)


@keras_op
def where(condition, x1=None, x2=None):
    if x1 is None or x2 is None:
        raise ValueError("kcompile.ops.where needs x1 and x2 (the one-argument form has a data-dependent shape)")
    a, b = _pair(x1, x2)
    return irb.where(_n(condition), a, b)


@keras_op
def cast(x, dtype):
    dtype = str(np.dtype(dtype))
    if dtype in ("float64", "float16", "bfloat16"):
        dtype = "float32"
    elif dtype in ("int64", "int16", "int8", "uint8", "bool"):
        if dtype == "bool":
            return irb.not_equal(_n(x), 0.0) if _n(x).dtype == "float32" else irb.cast(_n(x), "float32")
        dtype = "int32"
    if dtype not in ("float32", "int32"):
        raise TypeError(f"kcompile.ops.cast: unsupported dtype {dtype!r} (float32 and int32 are)")
    return irb.cast(_n(x), dtype)


@keras_op
def logical_and(x1, x2):
    return irb.mul(irb.not_equal(_n(x1), 0.0), irb.not_equal(_n(x2), 0.0))


@keras_op
def logical_or(x1, x2):
    return irb.maximum(irb.not_equal(_n(x1), 0.0), irb.not_equal(_n(x2), 0.0))


@keras_op
def logical_not(x):
    return irb.equal(_n(x), 0.0)


@keras_op
def any(x, axis=None, keepdims=False):
    """True (1.0) where any element along `axis` is nonzero; booleans are float32 0/1 masks here."""
    x = irb.cast(_n(x), "float32")
    return irb.reduce_max(irb.not_equal(x, 0.0), axis, keepdims)


@keras_op
def all(x, axis=None, keepdims=False):
    x = irb.cast(_n(x), "float32")
    return irb.reduce_min(irb.not_equal(x, 0.0), axis, keepdims)


# ---------------------------------------------------------------- activations used by layers

@keras_op
def softmax(x, axis=-1):
    return irb.softmax(irb.cast(_n(x), "float32"), axis)


@keras_op
def log_softmax(x, axis=-1):
    return irb.log_softmax(irb.cast(_n(x), "float32"), axis)


@keras_op
def relu6(x):
    return irb.clip(_n(x), 0.0, 6.0)


@keras_op
def leaky_relu(x, negative_slope=0.2):
    x = _n(x)
    return irb.where(irb.greater(x, 0.0), x, irb.mul(x, float(negative_slope)))


@keras_op
def elu(x, alpha=1.0):
    x = _n(x)
    return irb.where(irb.greater(x, 0.0), x, irb.mul(irb.expm1(irb.minimum(x, 0.0)), float(alpha)))


@keras_op
def selu(x):
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    x = _n(x)
    return irb.mul(irb.where(irb.greater(x, 0.0), x, irb.mul(irb.expm1(irb.minimum(x, 0.0)), alpha)), scale)


@keras_op
def softsign(x):
    x = _n(x)
    return irb.div(x, irb.add(irb.abs(x), 1.0))


@keras_op
def silu(x):
    x = _n(x)
    return irb.mul(x, irb.sigmoid(x))


swish = silu


@keras_op
def gelu(x, approximate=True):
    x = _n(x)
    if approximate:
        inner = irb.mul(irb.add(x, irb.mul(irb.mul(irb.mul(x, x), x), 0.044715)), 0.7978845608028654)
        return irb.mul(irb.mul(x, 0.5), irb.add(irb.tanh(inner), 1.0))
    return irb.mul(irb.mul(x, 0.5), irb.add(irb.erf(irb.mul(x, 0.7071067811865476)), 1.0))


@keras_op
def hard_sigmoid(x):
    return irb.clip(irb.add(irb.mul(_n(x), 1.0 / 6.0), 0.5), 0.0, 1.0)


# ---------------------------------------------------------------- reductions

def _reduction(builder_fn, name):
    def op(x, axis=None, keepdims=False):
        return builder_fn(_n(x), axis, keepdims)
    return keras_op(op, name)


sum = _reduction(irb.reduce_sum, "sum")
mean = _reduction(lambda x, axis, keepdims: irb.reduce_mean(irb.cast(x, "float32"), axis, keepdims), "mean")
max = _reduction(irb.reduce_max, "max")
min = _reduction(irb.reduce_min, "min")
amax = _reduction(irb.reduce_max, "amax")
amin = _reduction(irb.reduce_min, "amin")


@keras_op
def prod(x, axis=None, keepdims=False):
    x = _n(x)
    return irb.exp(irb.reduce_sum(irb.log(x), axis, keepdims))  # positive inputs only


@keras_op
def var(x, axis=None, keepdims=False):
    x = irb.cast(_n(x), "float32")
    m = irb.reduce_mean(x, axis, keepdims=True)
    return irb.reduce_mean(irb.square(irb.sub(x, m)), axis, keepdims)


@keras_op
def std(x, axis=None, keepdims=False):
    x = irb.cast(_n(x), "float32")
    m = irb.reduce_mean(x, axis, keepdims=True)
    return irb.sqrt(irb.reduce_mean(irb.square(irb.sub(x, m)), axis, keepdims))


@keras_op
def argmax(x, axis=-1):
    return irb.argmax(_n(x), axis)


@keras_op
def argmin(x, axis=-1):
    return irb.argmax(irb.neg(irb.cast(_n(x), "float32")), axis)


@keras_op
def logsumexp(x, axis=None, keepdims=False):
    x = _n(x)
    m = irb.reduce_max(x, axis, keepdims=True)
    s = irb.log(irb.reduce_sum(irb.exp(irb.sub(x, m)), axis, keepdims=True))
    out = irb.add(s, m)
    if not keepdims:
        axes = irb._axes(x, axis)
        out = irb.reshape(out, tuple(d for i, d in enumerate(x.shape) if i not in axes))
    return out


# ---------------------------------------------------------------- linear algebra

@keras_op
def matmul(x1, x2):
    """numpy.matmul semantics: vectors, (..., M, K) @ (K, N) on the GEMM kernels, batched stacks."""
    a, b = irb.cast(_n(x1), "float32"), irb.cast(_n(x2), "float32")
    if not a.shape or not b.shape:
        raise ValueError("matmul: operands must be at least 1-D, got shapes "
                         f"{_public(a.shape)} and {_public(b.shape)}")
    if len(b.shape) == 1:
        return irb.reshape(_matmul_nodes(a, irb.reshape(b, b.shape + (1,))), a.shape[:-1])
    if len(a.shape) == 1:
        out = _matmul_nodes(irb.reshape(a, (1,) + a.shape), b)
        return irb.reshape(out, out.shape[:-2] + out.shape[-1:])
    return _matmul_nodes(a, b)


def _matmul_nodes(a, b):
    if a.shape[-1] != b.shape[-2 if len(b.shape) > 1 else 0]:
        raise ValueError(f"matmul: incompatible shapes {_public(a.shape)} and {_public(b.shape)}")
    if len(b.shape) == 2:
        return irb.matmul(a, b)
    # batched: broadcast the stacks and contract K; the product fuses into the reduction
    ea = irb.reshape(a, a.shape + (1,))                       # (..., M, K, 1)
    eb = irb.reshape(b, b.shape[:-2] + (1,) + b.shape[-2:])   # (..., 1, K, N)
    return irb.reduce_sum(irb.mul(ea, eb), -2)


def _public(shape):
    return tuple(None if d is BATCH else d for d in shape)


@keras_op
def dot(x1, x2):
    """numpy.dot: matmul for up to 2-D operands; for N-D, contracts x1's last and x2's second-to-last axis."""
    a, b = irb.cast(_n(x1), "float32"), irb.cast(_n(x2), "float32")
    if len(b.shape) <= 2:
        return matmul.__wrapped__(x1, x2)      # it converts its operands itself
    perm = tuple(i for i in range(len(b.shape)) if i != len(b.shape) - 2) + (len(b.shape) - 2,)
    bt = irb.transpose(b, perm)                                  # (..., N, K) with K last
    flat = irb.reshape(bt, (static_size(bt.shape[:-1]), bt.shape[-1]))
    out = irb.matmul(a, flat, transpose_b=True)
    return irb.reshape(out, a.shape[:-1] + bt.shape[:-1])


@keras_op
def einsum(subscripts, *operands):
    """Einstein summation over explicit subscripts (e.g. 'bij,bjk->bik', '...d,de->...e').

    The common dense contraction (x[..., j] with a 2-D w[j, k]) runs on the GEMM kernels; every
    other form is a broadcast product summed over the contracted indices, which the fusion pass
    turns into one reduction kernel.
    """
    nodes = [irb.cast(_n(x), "float32") for x in operands]
    inputs, output = _parse_einsum(subscripts, nodes)
    if len(nodes) == 2 and len(inputs[1]) == 2 and inputs[0] and inputs[0][-1] == inputs[1][0] \
            and output == inputs[0][:-1] + inputs[1][1] and inputs[1][1] not in inputs[0]:
        return irb.matmul(nodes[0], nodes[1])
    letters = []
    for spec in inputs:
        for ch in spec:
            if ch not in letters:
                letters.append(ch)
    sizes = {}
    for spec, node in zip(inputs, nodes):
        for ch, d in zip(spec, node.shape):
            if ch in sizes and sizes[ch] != d and 1 not in (d, sizes[ch]):
                raise ValueError(f"einsum '{subscripts}': index {ch!r} has sizes {sizes[ch]} and {d}")
            sizes[ch] = d if ch not in sizes or sizes[ch] == 1 else sizes[ch]
    product = None
    for spec, node in zip(inputs, nodes):
        node = _diagonal_free(spec, node, subscripts)
        order = [c for c in letters if c in spec]
        node = irb.transpose(node, [spec.index(c) for c in order])
        node = irb.reshape(node, tuple(node.shape[order.index(c)] if c in spec else 1 for c in letters))
        product = node if product is None else irb.mul(product, node)
    summed = [i for i, c in enumerate(letters) if c not in output]
    if summed:
        product = irb.reduce_sum(product, summed)
    kept = [c for c in letters if c in output]
    product = irb.transpose(product, [kept.index(c) for c in output])
    target = tuple(sizes[c] for c in output)
    return irb.broadcast_to(product, target) if product.shape != target else product


def _parse_einsum(subscripts, nodes):
    spec = subscripts.replace(" ", "")
    if "->" not in spec:
        raise ValueError(f"einsum: give the output explicitly ('...->...'), got {subscripts!r}")
    lhs, output = spec.split("->")
    inputs = lhs.split(",")
    if len(inputs) != len(nodes):
        raise ValueError(f"einsum '{subscripts}': {len(inputs)} operand specs for {len(nodes)} operands")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in spec]
    ellipsis_rank = builtins.max((len(n.shape) - len(s.replace("...", "")) for s, n in zip(inputs, nodes) if "..." in s),
                        default=0)
    dots = "".join(spare[:ellipsis_rank])
    expanded = []
    for s, n in zip(inputs, nodes):
        if "..." in s:
            own = len(n.shape) - len(s.replace("...", ""))
            s = s.replace("...", dots[ellipsis_rank - own:])
        if len(s) != len(n.shape) or not s.isalpha():
            raise ValueError(f"einsum '{subscripts}': spec {s!r} does not match an operand of rank {len(n.shape)}")
        expanded.append(s)
    return expanded, output.replace("...", dots)


def _diagonal_free(spec, node, subscripts):
    if len(set(spec)) != len(spec):
        raise ValueError(f"einsum '{subscripts}': repeated indices within one operand (diagonals) are not supported")
    return node


# ---------------------------------------------------------------- shapes

def _shape_arg(shape):
    return tuple(BATCH if d is None else (-1 if d == -1 else int(d)) for d in shape)


@keras_op
def reshape(x, newshape):
    x = _n(x)
    newshape = _shape_arg(newshape)
    if BATCH in x.shape and BATCH not in newshape and newshape and newshape[0] == -1:
        newshape = (BATCH,) + newshape[1:]
    return irb.reshape(x, newshape)


@keras_op
def transpose(x, axes=None):
    x = _n(x)
    axes = tuple(reversed(range(len(x.shape)))) if axes is None else tuple(a % len(x.shape) for a in axes)
    return irb.transpose(x, axes)


@keras_op
def expand_dims(x, axis):
    x = _n(x)
    axis = axis % (len(x.shape) + 1)
    return irb.reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


@keras_op
def squeeze(x, axis=None):
    x = _n(x)
    if axis is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        axes = [a % len(x.shape) for a in ((axis,) if isinstance(axis, int) else axis)]
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"cannot squeeze axis {a} of size {x.shape[a]}")
    return irb.reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


@keras_op
def concatenate(xs, axis=0):
    nodes = [_n(x) for x in xs]
    if len({n.dtype for n in nodes}) > 1:
        nodes = [irb.cast(n, "float32") for n in nodes]
    return irb.concat(nodes, axis)


@keras_op
def stack(x, axis=0):
    nodes = [_n(t) for t in x]
    axis = axis % (len(nodes[0].shape) + 1)
    return irb.concat([irb.reshape(n, n.shape[:axis] + (1,) + n.shape[axis:]) for n in nodes], axis)


@keras_op
def split(x, indices_or_sections, axis=0):
    x = _n(x)
    axis = axis % len(x.shape)
    size = x.shape[axis]
    if isinstance(indices_or_sections, int):
        if size % indices_or_sections:
            raise ValueError(f"cannot split an axis of size {size} into {indices_or_sections} equal parts")
        step = size // indices_or_sections
        cuts = list(range(step, size, step))
    else:
        cuts = list(indices_or_sections)
    bounds = [0] + cuts + [size]
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        b = [(0, None) if d is BATCH else (0, d) for d in x.shape]
        b[axis] = (lo, hi)
        parts.append(irb.slice(x, b))
    return parts


@keras_op
def one_hot(x, num_classes):
    return irb.one_hot(_n(x), int(num_classes))


@keras_op
def zeros_like(x):
    return irb.zeros_like(_n(x))


@keras_op
def ones_like(x):
    n = _n(x)
    return irb.broadcast_to(irb.const(1.0, n.dtype), n.shape)


@keras_op
def broadcast_to(x, shape):
    return irb.broadcast_to(_n(x), _shape_arg(shape))


@keras_op
def _getitem(x, key):
    """Basic slicing as numpy does it: integers, slices with any step (negative too), None, Ellipsis."""
    x = _n(x)
    key = key if isinstance(key, tuple) else (key,)
    if builtins.sum(k is Ellipsis for k in key) > 1:
        raise IndexError("kcompile.ops: an index can only have a single ellipsis ('...')")
    indexed = builtins.sum(k is not None and k is not Ellipsis for k in key)
    if indexed > len(x.shape):
        raise IndexError(f"kcompile.ops: too many indices ({indexed}) for a tensor of rank {len(x.shape)}")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (builtins.slice(None),) * (len(x.shape) - indexed) + key[i + 1:]
    specs, out_shape, axis = [], [], 0     # specs: (first index, count, step) per axis of x
    for k in key:
        if k is None:
            out_shape.append(None)
            continue
        d = x.shape[axis]
        if isinstance(k, builtins.slice):
            step = 1 if k.step is None else _index(k.step, "slice step")
            if step == 0:
                raise ValueError("kcompile.ops: slice step cannot be zero")
            if d is BATCH:
                if step != 1:
                    raise ValueError(f"kcompile.ops: slicing the batch axis (axis 0) with step {step} is not "
                                     "supported: its size is known only at run time (slice the other axes)")
                if (k.start, k.stop) not in ((None, None), (0, None)):
                    raise ValueError("kcompile.ops: slicing the batch dimension is not supported")
                specs.append((0, BATCH, 1))
            else:
                first, stop, step = builtins.slice(_bound(k.start), _bound(k.stop), step).indices(d)
                specs.append((first, len(range(first, stop, step)), step))
            out_shape.append(axis)
        elif isinstance(k, (int, np.integer)):
            if d is BATCH:
                raise ValueError("kcompile.ops: indexing the batch dimension is not supported")
            if not -d <= int(k) < d:
                raise IndexError(f"kcompile.ops: index {int(k)} is out of bounds for axis {axis} with size {d}")
            specs.append((int(k) % d, 1, 1))
        else:
            raise TypeError(f"kcompile.ops: unsupported index {k!r} (integers, slices, None and ... are)")
        axis += 1
    specs += [(0, d, 1) for d in x.shape[axis:]]
    out_shape += list(range(axis, len(x.shape)))
    taken = _strided_take(x, specs)
    return irb.reshape(taken, tuple(1 if a is None else taken.shape[a] for a in out_shape))


def _index(value, what):
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"kcompile.ops: a {what} must be an integer or None, got {value!r}") from None


def _bound(value):
    return None if value is None else _index(value, "slice bound")


def _strided_take(x, specs):
    """x[first::step][:count] on every axis, from layout primitives only, so gradients and the
    compiled kernels come from slice/pad/reshape/reverse's rules.

    A step s > 1 over count n reads a window of n*s elements that starts j <= s-1 before the first
    one, views it as (n, s) and keeps column j; j is chosen to keep the window inside the axis,
    and where no j can, the window's tail is zero padding that is never kept. A negative step
    takes the same elements in ascending order and reverses them."""
    windows, pads, split, picks, counts, flips = [], [], [], [], [], []
    for axis, (d, (first, n, step)) in enumerate(zip(x.shape, specs)):
        s = 1 if d is BATCH else builtins.abs(step)
        lowest = 0 if n == 0 or d is BATCH else first if step > 0 else first - (n - 1) * s
        counts.append(n)
        if step < 0 and n > 1:
            flips.append(axis)
        if d is BATCH:                                    # kept whole (the callers check)
            window, pad, dims, pick = (0, None), 0, [BATCH], [(0, None)]
        elif n <= 1 or s == 1:
            window, pad, dims, pick = (lowest, lowest + n), 0, [n], [(0, n)]
        else:
            j = builtins.min(builtins.max(0, lowest + n * s - d), lowest, s - 1)
            lo = lowest - j
            pad = builtins.max(0, lo + n * s - d)
            window, dims, pick = (lo, lo + n * s - pad), [n, s], [(0, n), (j, j + 1)]
        windows.append(window)
        pads.append((0, pad))
        split += dims
        picks += pick
    y = irb.pad(irb.slice(x, windows), pads)
    y = irb.reshape(irb.slice(irb.reshape(y, tuple(split)), picks), tuple(counts))
    for axis in flips:
        y = irb.reverse(y, axis)
    return y


@keras_op
def slice(inputs, start_indices, shape):
    """Keras's `ops.slice`: inputs[start : start + size] on every axis, with constant start indices.
    The batch axis is taken whole: start 0 and size None or -1 (its size is known only at run time)."""
    x = _n(inputs)
    if isinstance(start_indices, (KerasTensor, Variable)):
        raise ValueError("kcompile.ops.slice: start_indices must be constants (tensor start indices, which Keras "
                         "allows, are not supported)")
    starts, sizes = [_index(v, "start index") for v in np.ravel(start_indices)], list(shape)
    if not len(starts) == len(sizes) == len(x.shape):
        raise ValueError(f"kcompile.ops.slice: start_indices {list(starts)} and shape {sizes} need one entry per "
                         f"dimension of inputs of shape {_public(x.shape)}")
    bounds = []
    for axis, (d, lo, n) in enumerate(zip(x.shape, starts, sizes)):
        if d is BATCH:
            if lo != 0 or n not in (None, -1):
                raise ValueError(f"kcompile.ops.slice: slicing the batch axis (axis 0) is not supported: give start "
                                 f"0 and size None there (got start {lo}, size {n})")
            bounds.append((0, None))
            continue
        n = _index(n, "slice size")
        if not (0 <= lo and 0 <= n and lo + n <= d):
            raise ValueError(f"kcompile.ops.slice: [{lo}:{lo + n}] is out of range for axis {axis} of size {d}")
        bounds.append((lo, lo + n))
    return irb.slice(x, bounds)


@keras_op
def take(x, indices, axis=None):
    x, idx = _n(x), _n(indices)
    if axis is None or (axis % len(x.shape)) != 0 or BATCH in x.shape:
        raise ValueError("kcompile.ops.take supports gathering rows (axis=0) of a weight-like tensor")
    # a row gather (as Embedding uses); out-of-range indices give NaN rows, like Keras's JAX backend
    rows = irb.reshape(irb.cast(x, "float32"), (x.shape[0], -1))
    idx = idx if idx.dtype == "int32" else irb.cast(idx, "int32")
    return irb.reshape(irb.gather_rows(rows, idx), idx.shape + x.shape[1:])


def shape(x):
    if isinstance(x, (KerasTensor, Variable)):
        return tuple(x.shape)
    return np.shape(x)


def convert_to_tensor(x, dtype=None):
    if isinstance(x, (KerasTensor, Variable)):
        return x if dtype is None else cast(x, dtype)
    return np.asarray(x, dtype=dtype or (np.float32 if np.asarray(x).dtype.kind == "f" else None))


def convert_to_numpy(x):
    if isinstance(x, Variable):
        return x.numpy()
    if isinstance(x, KerasTensor):
        raise ValueError("cannot convert a symbolic KerasTensor to numpy")
    return np.asarray(x)


def current_step():
    return current_trace().step_node()


# convolution and pooling ops live in their own module (they share the layers' implementation)
from .ops_convolution import average_pool, conv, conv_transpose, depthwise_conv, max_pool, separable_conv  # noqa: E402,F401
