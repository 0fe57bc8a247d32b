"""Activation functions by Keras name; each emits IR through `kcompile.ops`."""
from __future__ import annotations

import numpy as np

from . import ops


def linear(x):
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return ops.relu(x)
    y = ops.where(ops.greater(x, threshold), x, ops.multiply(ops.subtract(x, threshold), negative_slope)
                  if negative_slope else ops.zeros_like(x))
    return ops.minimum(y, max_value) if max_value is not None else y


def sigmoid(x):
    return ops.sigmoid(x)


def tanh(x):
    return ops.tanh(x)


def softmax(x, axis=-1):
    return ops.softmax(x, axis)


def log_softmax(x, axis=-1):
    return ops.log_softmax(x, axis)


def elu(x, alpha=1.0):
    return ops.elu(x, alpha)


def selu(x):
    return ops.selu(x)


def softplus(x):
    return ops.softplus(x)


def softsign(x):
    return ops.softsign(x)


def silu(x):
    return ops.silu(x)


swish = silu


def gelu(x, approximate=False):
    return ops.gelu(x, approximate)


def hard_sigmoid(x):
    return ops.hard_sigmoid(x)


def hard_silu(x):
    return ops.multiply(x, ops.hard_sigmoid(x))


hard_swish = hard_silu


def exponential(x):
    return ops.exp(x)


def relu6(x):
    return ops.relu6(x)


def leaky_relu(x, negative_slope=0.2):
    return ops.leaky_relu(x, negative_slope)


def mish(x):
    return ops.multiply(x, ops.tanh(ops.softplus(x)))


def celu(x, alpha=1.0):
    return ops.add(ops.relu(x), ops.multiply(ops.expm1(ops.divide(ops.minimum(x, 0.0), alpha)), alpha))


def glu(x, axis=-1):
    a, b = ops.split(x, 2, axis=axis)
    return ops.multiply(a, ops.sigmoid(b))


def hard_tanh(x):
    return ops.clip(x, -1.0, 1.0)


def hard_shrink(x, threshold=0.5):
    return ops.where(ops.greater(ops.abs(x), threshold), x, ops.zeros_like(x))


def soft_shrink(x, threshold=0.5):
    return ops.where(ops.greater(x, threshold), ops.subtract(x, threshold),
                     ops.where(ops.less(x, -threshold), ops.add(x, threshold), ops.zeros_like(x)))


def tanh_shrink(x):
    return ops.subtract(x, ops.tanh(x))


def log_sigmoid(x):
    return ops.negative(ops.softplus(ops.negative(x)))


def sparse_plus(x):
    return ops.where(ops.less_equal(x, -1.0), ops.zeros_like(x),
                     ops.where(ops.less(x, 1.0), ops.multiply(ops.square(ops.add(x, 1.0)), 0.25), x))


def sparse_sigmoid(x):
    return ops.clip(ops.multiply(ops.add(x, 1.0), 0.5), 0.0, 1.0)


def squareplus(x, b=4):
    return ops.multiply(ops.add(x, ops.sqrt(ops.add(ops.square(x), float(b)))), 0.5)


def sparsemax(x, axis=-1):
    """Keras 3's sparsemax: max(x - tau, 0) over `axis`, computed as Keras computes it (its
    reference sorts x in descending order z, takes c = cumsum(z), the support 1 + r*z_r > c_r and
    tau = (sum of c over the support - 1) / |support|).

    Without a sort: element i's place in the descending order is the number of elements ahead of
    it (larger, or equal with a lower index), and its cumulative sum is their sum, from pairwise
    comparisons over the axis (n² work per row, fine for the widths activations take). The
    comparisons are constants to autodiff, as the sort's permutation is, so gradients match."""
    rank = len(x.shape)
    axis = axis % rank
    if axis != rank - 1:
        perm = [a for a in range(rank) if a != axis] + [axis]
        back = [perm.index(a) for a in range(rank)]
        return ops.transpose(sparsemax(ops.transpose(x, perm), -1), back)
    n = x.shape[-1]
    if n is None:
        raise ValueError("sparsemax: the size of the normalized axis must be known")
    xi, xj = ops.expand_dims(x, -1), ops.expand_dims(x, -2)            # (..., n, 1), (..., 1, n)
    earlier = (np.arange(n)[None, :] <= np.arange(n)[:, None]).astype("float32")   # [i, j] = j <= i
    ahead = ops.add(ops.greater(xj, xi), ops.multiply(ops.equal(xj, xi), earlier))
    place = ops.sum(ahead, axis=-1)                                     # 1-based position in the sort
    cumsum = ops.sum(ops.multiply(ahead, xj), axis=-1)
    support = ops.greater(ops.subtract(x, ops.divide(ops.subtract(cumsum, 1.0), place)), 0.0)
    k = ops.sum(support, axis=-1, keepdims=True)
    tau = ops.divide(ops.subtract(ops.sum(ops.multiply(support, cumsum), axis=-1, keepdims=True), 1.0), k)
    return ops.maximum(ops.subtract(x, tau), 0.0)


def hard_sigmoid_keras2(x):
    """tf-keras 2.x `hard_sigmoid`: clip(0.2 x + 0.5, 0, 1) (Keras 3's is relu6(x + 3) / 6).
    Configs read from Keras 2 files name it "hard_sigmoid"; the loader maps that name here."""
    return ops.clip(ops.add(ops.multiply(x, 0.2), 0.5), 0.0, 1.0)


ALL = {
    "linear": linear, "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax,
    "log_softmax": log_softmax, "elu": elu, "selu": selu, "softplus": softplus, "softsign": softsign,
    "swish": silu, "silu": silu, "gelu": gelu, "hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu,
    "hard_swish": hard_silu, "exponential": exponential, "relu6": relu6, "leaky_relu": leaky_relu,
    "mish": mish, "celu": celu, "glu": glu, "hard_tanh": hard_tanh, "hard_shrink": hard_shrink,
    "soft_shrink": soft_shrink, "tanh_shrink": tanh_shrink, "log_sigmoid": log_sigmoid,
    "sparse_plus": sparse_plus, "sparse_sigmoid": sparse_sigmoid, "squareplus": squareplus,
    "sparsemax": sparsemax, "hard_sigmoid_keras2": hard_sigmoid_keras2,
}

# Activation names whose meaning differs in tf-keras 2.x files: Keras 2 name -> the kcompile name
# with Keras 2's semantics (config_dialects rewrites them when reading a Keras 2 config and back
# when writing one).
KERAS2_NAMES = {"hard_sigmoid": "hard_sigmoid_keras2"}


def get(identifier):
    """An activation function from a name, a function, a serialized dict or None (linear)."""
    if identifier is None:
        return linear
    if isinstance(identifier, dict):
        identifier = _name_in_config(identifier)
    if isinstance(identifier, str):
        fn = ALL.get(identifier)
        if fn is None:
            raise ValueError(f"Unknown activation function: '{identifier}'. "
                             f"Valid names are: {sorted(ALL)}")
        return fn
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}")


def _name_in_config(config):
    """The activation name in a serialized dict: Keras 3 writes a function as {"class_name":
    "function", "config": "relu"} and Keras 2 as {"class_name": "relu", "config": {"name": ...}}."""
    inner = config.get("config")
    inner = {} if inner is None else inner
    if isinstance(inner, str) and config.get("class_name") == "function":
        return inner
    name = inner.get("name", config.get("class_name")) if isinstance(inner, dict) else None
    if isinstance(name, dict):
        name = name.get("name")
    if not isinstance(name, str):
        raise ValueError(f"Could not interpret activation function identifier: {config!r}")
    return name


def serialize(fn):
    for name, f in ALL.items():
        if f is fn:
            return name
    # a registered custom function is written by its registered name ("package>name"), as Keras does
    name = getattr(fn, "_keras_registered_name", None) or getattr(fn, "__name__", None)
    if name is None:
        raise ValueError(f"Cannot serialize activation {fn!r}")
    return name
