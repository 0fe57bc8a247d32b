"""`all_reduce_sum`: the element-wise sum of a float32 vector over every replica of a data-parallel job.

The data-parallel train step (models/compiled.py) packs its gradients into one vector and
reduces it here, between the backward pass and the optimizer update. Compiled code calls the
all-reduce function the runtime handed to the module (codegen/collective.py); the numpy
reference calls `HOST_ALL_REDUCE[0]` (set by kcompile.distribute); with neither, one replica:
the sum is the vector itself.
"""
from __future__ import annotations

import numpy as np

from .graph import BATCH
from .graph import ShapeError, format_shape
from .primitives import register

HOST_ALL_REDUCE = [None]    # fn(float32 vector) -> its sum over replicas, or None for one replica


def _rule(inputs, attrs):
    (x,) = inputs
    if len(x.shape) != 1 or BATCH in x.shape or x.dtype != "float32":
        raise ShapeError(f"all_reduce_sum needs a float32 vector of static length, got {x.dtype} "
                         f"{format_shape(x.shape)}")
    return tuple(x.shape), "float32"


def _reference(args, attrs, shape):
    (x,) = args
    reduce = HOST_ALL_REDUCE[0]
    x = np.ascontiguousarray(x, np.float32)
    return x.copy() if reduce is None else reduce(x)


# the adjoint of a sum over replicas is the sum of the replicas' adjoints
register("all_reduce_sum", "opaque", _rule, _reference, lambda b, node, g: [b.all_reduce_sum(g)])
