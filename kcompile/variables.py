"""Keras variables: named, shaped state owned by layers, optimizers and metrics.

A variable holds its value in numpy until a compiled model adopts it into its state pool; from
then on its value *is* a view of that pool, so native training updates it in place and
`set_weights` writes straight into the memory the native code reads. Inside a trace a variable
stands for one `param` node (the same node on every use, so gradients of a shared weight add up).
"""
from __future__ import annotations

import contextlib
import itertools

import numpy as np

from .ir import builder as irb
from .ir.graph import Slot

_uids = itertools.count()


class Variable:
    def __init__(self, initializer, shape=None, dtype="float32", trainable=True, name="variable",
                 path=None, kind="weight"):
        self.name = name
        self.path = path or name
        self.trainable = bool(trainable)
        self.dtype = str(np.dtype(dtype))
        value = initializer(tuple(shape), dtype=self.dtype) if callable(initializer) else initializer
        value = np.array(value, dtype=self.dtype)
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(f"Initial value for variable {self.path!r} has shape {value.shape}, "
                             f"expected {tuple(shape)}")
        self.shape = tuple(value.shape)
        self.slot = Slot(f"{self.path}#{next(_uids)}", self.shape, self.dtype, kind)
        self._own = value
        self._pool = None
        self._node = None

    # ---- value
    @property
    def _value(self):
        # Read through the pool every time: the pool may reallocate when it grows.
        return self._own if self._pool is None else self._pool.view(self.slot.name)

    def numpy(self):
        return np.array(self._value)

    @property
    def value(self):
        return self._value

    def assign(self, value):
        value = np.asarray(value)
        if value.shape != self.shape:
            raise ValueError(f"Cannot assign a value of shape {value.shape} to variable {self.path!r} "
                             f"of shape {self.shape}")
        with self.writing():
            self._value[...] = value
        return self

    def writing(self):
        """The write lock of the state this variable lives in (no compiled call runs meanwhile)."""
        return self._pool.lock.write() if self._pool is not None else contextlib.nullcontext()

    def adopt_into(self, pool):
        """Make `pool` hold this variable's value (copying the current value in)."""
        if self._pool is pool:
            return
        current = np.array(self._value)
        pool.add(self.slot, initial=current)
        self._pool = pool

    # ---- tracing
    def node(self):
        if self._node is None:
            self._node = irb.param(self.slot)
        return self._node

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._value, dtype=dtype)

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"

    # arithmetic on variables goes through ops (symbolic inside a trace)
    def _op(name):
        def method(self, *args):
            from . import ops
            return getattr(ops, name)(self, *args)
        return method

    __add__, __radd__ = _op("add"), _op("_radd")
    __sub__, __rsub__ = _op("subtract"), _op("_rsub")
    __mul__, __rmul__ = _op("multiply"), _op("_rmul")
    __truediv__, __rtruediv__ = _op("divide"), _op("_rdiv")
    __matmul__ = _op("matmul")
    __neg__ = _op("negative")
    __pow__ = _op("power")
    __getitem__ = _op("_getitem")
    del _op
