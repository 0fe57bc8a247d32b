"""Tracing: turning Keras code into IR by running it on symbolic tensors.

`KerasTensor` is a symbolic tensor: an IR node plus, for tensors made while *defining* a
functional model, the record of the call that made it. A `Trace` is active while a model is
being lowered; it fixes the `training` flag and collects what layers add on the side (losses
from `add_loss` and activity regularizers, state updates such as moving statistics, the
random-number step counter).
"""
from __future__ import annotations

import contextlib
import threading

from .ir.graph import BATCH
from .ir.primitives import ShapeError

_state = threading.local()


class KerasTensor:
    """A symbolic tensor. `.shape` uses None for the batch dimension, as Keras does.

    Mask convention: `_keras_mask` is None or a float32 KerasTensor of 0/1 values, shape (B, T)
    for sequences (1 = real step); Embedding(mask_zero=True) and Masking make it, Layer.__call__
    passes it on through compute_mask, and RNNs, GlobalAveragePooling1D and losses read it.
    """

    def __init__(self, node, history=None, name=None):
        self.node = node
        self._history = history        # (CallRecord, output index) while defining a model
        self.name = name
        self._keras_mask = None
        self._declared_shape = None     # with None for sizes known only at run time (see dynamic_shapes)

    @property
    def shape(self):
        if self._declared_shape is not None:
            return tuple(self._declared_shape)
        return tuple(None if d is BATCH else d for d in self.node.shape)

    @property
    def dtype(self):
        return self.node.dtype

    @property
    def ndim(self):
        return len(self.node.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __len__(self):
        raise TypeError("len() of a symbolic tensor is not defined; use tensor.shape[0]")

    def __bool__(self):
        raise TypeError("A symbolic KerasTensor cannot be used as a Python bool "
                        "(use kcompile.ops.where / ops.cond-free formulations)")

    __hash__ = object.__hash__

    def _op(name):
        def method(self, *args):
            from . import ops
            return getattr(ops, name)(self, *args)
        return method

    __add__, __radd__ = _op("add"), _op("_radd")
    __sub__, __rsub__ = _op("subtract"), _op("_rsub")
    __mul__, __rmul__ = _op("multiply"), _op("_rmul")
    __truediv__, __rtruediv__ = _op("true_divide"), _op("_rdiv")   # Keras 3: TrueDivide
    __matmul__, __rmatmul__ = _op("matmul"), _op("_rmatmul")
    __pow__ = _op("power")
    __neg__ = _op("negative")
    __abs__ = _op("abs")
    __lt__, __le__ = _op("less"), _op("less_equal")
    __gt__, __ge__ = _op("greater"), _op("greater_equal")
    __getitem__ = _op("_getitem")
    del _op


class CallRecord:
    """One call made while defining a functional model: `fn(*args, **kwargs)` gave `outputs`."""

    def __init__(self, fn, args, kwargs, outputs):
        self.fn, self.args, self.kwargs, self.outputs = fn, args, kwargs, outputs


class Trace:
    def __init__(self, training=False, step=None, recording=False, executes=False, static_batch=None,
                 row_offset=None):
        self.training = training
        self.step = step                 # IR node of the RNG step counter (int32 scalar)
        # data-parallel training: IR node of this replica's first row in the global batch (int32
        # scalar), so random numbers follow the global sample (ir/builder.random_uniform); else None
        self.row_offset = row_offset
        self.recording = recording       # True while defining a functional model
        # True when the traced graph will run (not a shape probe): stateful layers then read and
        # write their state, whose rows are `static_batch` (the model's declared batch size)
        self.executes = executes
        self.static_batch = static_batch
        self.losses = []                 # scalar IR nodes added to the training loss
        self.updates = {}                # slot name -> IR node (new value)

    def add_loss(self, node):
        if not self.recording:      # while defining a model, side effects are not kept
            self.losses.append(node)

    def add_update(self, slot_name, node):
        if not self.recording:
            self.updates[slot_name] = node

    def step_node(self):
        """The int32 step counter that keys random numbers (a constant 0 while defining)."""
        if self.step is None:
            from .ir import builder as irb
            self.step = irb.const(0, "int32")
        return self.step


def current_trace():
    trace = getattr(_state, "trace", None)
    if trace is None:
        trace = Trace(training=False, recording=True)   # defining a model at top level
        _state.trace = trace
        _state.default = trace
    return trace


def in_definition():
    return current_trace().recording


@contextlib.contextmanager
def trace_scope(trace):
    previous = getattr(_state, "trace", None)
    _state.trace = trace
    try:
        yield trace
    finally:
        _state.trace = previous


__all__ = ["KerasTensor", "CallRecord", "Trace", "current_trace", "trace_scope", "ShapeError"]
