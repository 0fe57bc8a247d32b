"""Activation functions by Keras name; each emits IR through `kcompile.ops`."""
from __future__ import annotations

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


ALL = {
    "linear": linear, "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax,
    "log_softmax": log_softmax, "elu": elu, "selu": selu, "softplus": softplus, "softsign": softsign,
    "swish": silu, "silu": silu, "gelu": gelu, "hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu,
    "hard_swish": hard_silu, "exponential": exponential, "relu6": relu6, "leaky_relu": leaky_relu,
}


def get(identifier):
    """An activation function from a name, a function, a serialized dict or None (linear)."""
    if identifier is None:
        return linear
    if isinstance(identifier, dict):
        identifier = identifier.get("config", {}).get("name", identifier.get("class_name"))
        if isinstance(identifier, dict):
            identifier = identifier.get("name")
    if isinstance(identifier, str):
        fn = ALL.get(identifier)
        if fn is None:
            raise ValueError(f"Unknown activation function: '{identifier}'. "
                             f"Valid names are: {sorted(ALL)}")
        return fn
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}")


def serialize(fn):
    for name, f in ALL.items():
        if f is fn:
            return name
    # a registered custom function is written by its registered name ("package>name"), as Keras does
    name = getattr(fn, "_keras_registered_name", None) or getattr(fn, "__name__", None)
    if name is None:
        raise ValueError(f"Cannot serialize activation {fn!r}")
    return name
