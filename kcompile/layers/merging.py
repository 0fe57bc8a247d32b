"""Merge layers (Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot) and the
functional helpers of the same names in lower case."""
from __future__ import annotations

from functools import reduce

from .. import backend, ops
from .base import Layer


class _Merge(Layer):
    min_inputs = 2
    elementwise = True

    def _align(self, xs):
        """Keras's rule for inputs of different ranks: lower-rank inputs get size-1 axes inserted
        right after the batch axis; then shapes must broadcast."""
        rank = max(len(x.shape) for x in xs)
        out = []
        for x in xs:
            for _ in range(rank - len(x.shape)):
                x = ops.expand_dims(x, 1)
            out.append(x)
        for axis in range(1, rank):
            sizes = {x.shape[axis] for x in out} - {1}
            if len(sizes) > 1:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): inputs have incompatible shapes "
                                 f"{[x.shape for x in xs]}")
        return out

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _check(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < self.min_inputs \
                or not all(hasattr(x, "shape") for x in inputs):
            raise ValueError(f"Layer '{self.name}': a merge layer should be called on a list of at least "
                             f"{self.min_inputs} inputs. "
                             f"Received: inputs={inputs} (not a list of tensors)")

    def call(self, inputs):
        self._check(inputs)
        xs = list(inputs)
        return self._merge(self._align(xs) if self.elementwise else xs)

    def compute_mask(self, inputs, mask=None):
        if not isinstance(mask, list) or all(m is None for m in mask):
            return None
        present = [ops.cast(m, "float32") for m in mask if m is not None]
        return reduce(ops.multiply, present)     # a step is kept when every input keeps it


class Add(_Merge):
    def _merge(self, xs):
        return reduce(ops.add, xs)


class Subtract(_Merge):
    def _merge(self, xs):
        if len(xs) != 2:
            raise ValueError(f"Layer '{self.name}': a `Subtract` layer should be called on exactly 2 inputs. "
                             f"Received: inputs={xs}")
        return ops.subtract(xs[0], xs[1])


class Multiply(_Merge):
    def _merge(self, xs):
        return reduce(ops.multiply, xs)


class Average(_Merge):
    def _merge(self, xs):
        return ops.multiply(reduce(ops.add, xs), 1.0 / len(xs))


class Maximum(_Merge):
    def _merge(self, xs):
        return reduce(ops.maximum, xs)


class Minimum(_Merge):
    def _merge(self, xs):
        return reduce(ops.minimum, xs)


class Concatenate(_Merge):
    min_inputs = 1
    elementwise = False

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def _merge(self, xs):
        rank = len(xs[0].shape)
        axis = self.axis % rank
        for x in xs[1:]:
            if len(x.shape) != rank or any(a != b for i, (a, b) in enumerate(zip(x.shape, xs[0].shape)) if i != axis):
                raise ValueError(f"Layer '{self.name}': a `Concatenate` layer requires inputs with matching shapes "
                                 f"except for the concatenation axis. Received: input_shape={[t.shape for t in xs]}")
        return ops.concatenate(xs, axis=axis)

    def compute_mask(self, inputs, mask=None):
        if not isinstance(mask, list) or all(m is None for m in mask):
            return None
        rank = len(inputs[0].shape)
        axis = self.axis % rank
        mask_rank = next(len(m.shape) for m in mask if m is not None)
        if axis >= mask_rank:          # joining features: a step is kept when every input keeps it
            return super().compute_mask(inputs, mask)
        # joining along a masked (time) axis: the masks are joined the same way, unmasked inputs all kept
        full = [ops.cast(m, "float32") if m is not None else
                ops.ones_like(ops.reshape(ops.sum(ops.zeros_like(x), axis=tuple(range(mask_rank, rank))),
                                          (-1,) + tuple(x.shape[1:mask_rank])))
                for x, m in zip(inputs, mask)]
        return ops.concatenate(full, axis=axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    elementwise = False

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        self.axes = list(axes) if isinstance(axes, (list, tuple)) else [int(axes), int(axes)]
        self.normalize = bool(normalize)
        self.supports_masking = False

    def _merge(self, xs):
        if len(xs) != 2:
            raise ValueError(f"Layer '{self.name}': a `Dot` layer should be called on exactly 2 inputs. "
                             f"Received: inputs={xs}")
        a, b = xs
        ra, rb = len(a.shape), len(b.shape)
        ax, bx = self.axes[0] % ra, self.axes[1] % rb
        if a.shape[ax] != b.shape[bx]:
            raise ValueError(f"Layer '{self.name}' (Dot): incompatible input shapes: axis values {a.shape[ax]} (at axis {ax}) != "
                             f"{b.shape[bx]} (at axis {bx}). Full input shapes: {a.shape}, {b.shape}")
        if self.normalize:
            a = ops.multiply(a, ops.rsqrt(ops.maximum(ops.sum(ops.square(a), axis=ax, keepdims=True), 1e-12)))
            b = ops.multiply(b, ops.rsqrt(ops.maximum(ops.sum(ops.square(b), axis=bx, keepdims=True), 1e-12)))
        return backend.batch_dot(a, b, axes=(ax, bx))

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
