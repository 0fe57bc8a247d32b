"""The graph IR: typed SSA nodes over tensors with a symbolic batch dimension.

Every node has exactly one tensor output, so a node *is* its value. Leaves are graph inputs
(`input`), state slots (`param`: weights, optimizer slots, counters), constants (`const`) and
the run-time batch size (`batch_size`). A `Graph` names its outputs and, for training graphs,
the new values of state slots (`updates`), which the runtime writes back after a step.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


class _Batch:
    """The symbolic batch dimension: its size is an argument of the compiled entry points."""

    def __repr__(self):
        return "N"

    def __reduce__(self):
        return "BATCH"


BATCH = _Batch()
DTYPES = ("float32", "int32")
ITEMSIZE = 4                   # bytes per element of every dtype in DTYPES
# Generated code indexes memory with 64-bit byte offsets: a tensor must stay below this per sample.
INDEXABLE_BYTES = 2 ** 63
# The largest single buffer (a weight, an input, an intermediate) or workspace a compiled model
# may use, for one sample: beyond it compile() refuses the model instead of failing to allocate.
MAX_BUFFER_BYTES = 2 ** 40
_ids = itertools.count()


class ShapeError(ValueError):
    """An IR-level shape mismatch; frontends re-raise it naming the layer."""


def static_size(shape):
    """Elements of the non-batch dimensions, as a Python int: numpy's int64 products wrap around."""
    return math.prod(int(d) for d in shape if d is not BATCH)


def concrete_shape(shape, batch):
    return tuple(batch if d is BATCH else d for d in shape)


def format_shape(shape):
    return "(" + ", ".join("N" if d is BATCH else str(d) for d in shape) + ")"


class Node:
    """One primitive application. `attrs` hold hashable static parameters of the primitive."""

    __slots__ = ("op", "inputs", "attrs", "shape", "dtype", "id", "name")

    def __init__(self, op, inputs, attrs, shape, dtype, name=None):
        assert dtype in DTYPES, dtype
        _check_addressable(shape)
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.shape = tuple(shape)
        self.dtype = dtype
        self.id = next(_ids)
        self.name = name

    def key(self):
        """Structural identity used by CSE: same op, inputs and attributes compute the same value."""
        return (self.op, tuple(i.id for i in self.inputs), _freeze(self.attrs), self.shape, self.dtype)

    def __repr__(self):
        return f"%{self.id}:{self.op}{format_shape(self.shape)}"


def _check_addressable(shape):
    size = static_size(shape)
    if size * ITEMSIZE >= INDEXABLE_BYTES:
        per = " per sample" if BATCH in shape else ""
        raise ShapeError(f"a tensor of shape {format_shape(shape)} has {size} elements{per}, more than "
                         f"64-bit indexing can address")


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return (value.shape, str(value.dtype), value.tobytes())
    return value


class Slot:
    """A named piece of persistent state (a weight, an optimizer slot, a counter)."""

    __slots__ = ("name", "shape", "dtype", "kind")

    def __init__(self, name, shape, dtype="float32", kind="weight"):
        self.name, self.shape, self.dtype, self.kind = name, tuple(shape), dtype, kind

    def __repr__(self):
        return f"Slot({self.name}{format_shape(self.shape)}:{self.dtype},{self.kind})"


class Graph:
    """Inputs (ordered), named outputs, state slots and their updates."""

    def __init__(self, inputs, outputs, slots=(), updates=None, name="graph"):
        self.inputs = list(inputs)
        self.outputs = dict(outputs)
        self.slots = {s.name: s for s in slots}
        self.updates = dict(updates or {})
        self.name = name

    def roots(self):
        return list(self.outputs.values()) + list(self.updates.values())

    def nodes(self):
        """All nodes reachable from the outputs and updates, in a topological order."""
        return toposort(self.roots(), self.inputs)

    def replace_roots(self, mapping):
        """Redirect outputs and updates through `mapping` (old node -> new node)."""
        self.outputs = {k: mapping.get(v, v) for k, v in self.outputs.items()}
        self.updates = {k: mapping.get(v, v) for k, v in self.updates.items()}


def toposort(roots, extra=()):
    order, seen = [], set()
    for root in list(extra) + list(roots):
        if root.id in seen:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node.id in seen:
                continue
            seen.add(node.id)
            stack.append((node, True))
            for inp in reversed(node.inputs):
                if inp.id not in seen:
                    stack.append((inp, False))
    return order


def users(nodes):
    """Map node id -> list of nodes that read it."""
    result = {n.id: [] for n in nodes}
    for n in nodes:
        for i in n.inputs:
            result.setdefault(i.id, []).append(n)
    return result
