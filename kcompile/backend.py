"""`kcompile.backend` (Keras 2's `K`): the backend function names, mapped onto kcompile.ops."""
from __future__ import annotations

import numpy as np

from . import ops
from .naming import reset_names

_EPSILON = 1e-7


def epsilon():
    return _EPSILON


def set_epsilon(value):
    global _EPSILON
    _EPSILON = float(value)


def floatx():
    return "float32"


def set_floatx(value):
    if value != "float32":
        raise ValueError(f"kcompile computes in float32; set_floatx({value!r}) is not supported")


def backend():
    return "kcompile"


def clear_session():
    reset_names()


def image_data_format():
    return "channels_last"


def mean(x, axis=None, keepdims=False):
    return ops.mean(x, axis=axis, keepdims=keepdims)


def sum(x, axis=None, keepdims=False):
    return ops.sum(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    return ops.max(x, axis=axis, keepdims=keepdims)


def min(x, axis=None, keepdims=False):
    return ops.min(x, axis=axis, keepdims=keepdims)


def dot(x, y):
    return ops.dot(x, y)


def batch_dot(x, y, axes=None):
    """Keras 2's K.batch_dot: per-sample contraction of x's axes[0] with y's axes[1]."""
    rx, ry = len(x.shape), len(y.shape)
    if axes is None:
        axes = (rx - 1, ry - 2 if ry > 2 else ry - 1)
    if isinstance(axes, int):
        axes = (axes, axes)
    ax, ay = axes[0] % rx, axes[1] % ry
    if 0 in (ax, ay):
        raise ValueError("batch_dot: cannot contract the batch axis")
    letters = "abcdefghijklmnopqrstuvwxyz"
    xs = "z" + letters[:rx - 1]
    ys = "z" + letters[rx - 1:rx + ry - 2]
    ys = ys[:ay] + xs[ax] + ys[ay + 1:]
    out = "z" + "".join(c for c in xs[1:] if c != xs[ax]) + "".join(c for c in ys[1:] if c != xs[ax])
    result = ops.einsum(f"{xs},{ys}->{out}", x, y)
    return ops.expand_dims(result, 1) if len(out) == 1 else result


def constant(value, dtype=None, shape=None, name=None):
    arr = np.asarray(value, dtype=dtype or "float32")
    if shape is not None:
        arr = np.broadcast_to(arr, shape).copy()
    return ops.convert_to_tensor(arr)


def square(x):
    return ops.square(x)


def sqrt(x):
    return ops.sqrt(x)


def abs(x):
    return ops.abs(x)


def exp(x):
    return ops.exp(x)


def log(x):
    return ops.log(x)


def clip(x, min_value, max_value):
    return ops.clip(x, min_value, max_value)


def maximum(x, y):
    return ops.maximum(x, y)


def minimum(x, y):
    return ops.minimum(x, y)


def cast(x, dtype):
    return ops.cast(x, dtype)


def round(x):
    return ops.round(x)


def argmax(x, axis=-1):
    return ops.argmax(x, axis=axis)


def equal(x, y):
    return ops.equal(x, y)


def greater(x, y):
    return ops.greater(x, y)


def concatenate(tensors, axis=-1):
    return ops.concatenate(tensors, axis=axis)


def reshape(x, shape):
    return ops.reshape(x, shape)


def sigmoid(x):
    return ops.sigmoid(x)


def tanh(x):
    return ops.tanh(x)


def relu(x):
    return ops.relu(x)


def softmax(x, axis=-1):
    return ops.softmax(x, axis=axis)


def binary_crossentropy(target, output, from_logits=False):
    if from_logits:
        return ops.subtract(ops.softplus(output), ops.multiply(target, output))
    out = ops.clip(output, epsilon(), 1.0 - epsilon())
    return ops.negative(ops.add(ops.multiply(target, ops.log(out)),
                                ops.multiply(ops.subtract(1.0, target), ops.log(ops.subtract(1.0, out)))))


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    from .losses import categorical_crossentropy as cce
    return cce(target, output, from_logits=from_logits, axis=axis)


def int_shape(x):
    return tuple(ops.shape(x))


def shape(x):
    return ops.shape(x)


def ndim(x):
    return len(ops.shape(x))


def get_value(x):
    return ops.convert_to_numpy(x)


def set_value(x, value):
    x.assign(np.asarray(value))


def variable(value, dtype=None, name=None):
    from .variables import Variable
    return Variable(np.asarray(value, dtype=dtype or "float32"), name=name or "variable")


def ones_like(x):
    return ops.ones_like(x)


def zeros_like(x):
    return ops.zeros_like(x)


def expand_dims(x, axis=-1):
    return ops.expand_dims(x, axis)


def squeeze(x, axis):
    return ops.squeeze(x, axis)


def transpose(x):
    return ops.transpose(x)


def pow(x, a):
    return ops.power(x, a)


def l2_normalize(x, axis=None):
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return ops.divide(x, ops.sqrt(ops.maximum(sq, 1e-12)))


def stack(x, axis=0):
    return ops.stack(x, axis=axis)
