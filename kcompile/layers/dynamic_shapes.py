"""Inputs whose non-batch sizes are unknown until run time, e.g. `Input(shape=(None, None, 3))`.

The IR has one symbolic size, the batch. Other unknown sizes are handled by specialisation: while
the model is defined, an unknown size is traced at a probe size; when data arrives, the model is
traced again at the data's sizes and compiled for them, and the compiled variants are cached by
input shape (models/compiled.py). Layers called while the model is defined see the probe sizes
(so every layer works unchanged); once the Model is built, which sizes depend on the unknown
ones is found by tracing at a second probe size and comparing (`mark_dynamic_shapes`), and from
then on `tensor.shape` and `summary()` show None there, as Keras does.
"""
from __future__ import annotations

PROBE_SIZES = (256, 320)   # large enough for crops and strided convolutions at definition time


def probe_shape(shape, probe=PROBE_SIZES[0]):
    return tuple(probe if d is None else int(d) for d in shape)


def concrete_input_shape(declared, actual):
    """The traced shape of an input: declared sizes, with the unknown ones taken from the data."""
    return tuple(a if d is None else d for d, a in zip(declared, actual))


def declared_input_shape(tensor):
    """The shape an Input was declared with (None for unknown sizes)."""
    return tuple(tensor._history[0].fn.batch_shape)


def has_dynamic_inputs(model_inputs):
    return any(d is None for t in model_inputs for d in declared_input_shape(t)[1:])


def mark_dynamic_shapes(model):
    """Trace the model's recorded calls at the second probe size; sizes that change become None."""
    from ..ir import builder as irb
    from ..ir.graph import BATCH
    from ..models import functional
    from ..tracing import KerasTensor, Trace, trace_scope
    from .base import flatten
    if not has_dynamic_inputs(model.inputs):
        return
    probes = []
    for t in model.inputs:
        declared = declared_input_shape(t)
        t._declared_shape = declared
        probes.append(KerasTensor(irb.input(t.node.attrs["name"], (BATCH,) + probe_shape(declared[1:], PROBE_SIZES[1]),
                                            t.dtype)))
    seen = {}
    with trace_scope(Trace(training=False)):
        try:
            functional.replay_tensors(model._records, model.inputs, probes, seen)
        except ValueError as exc:
            raise ValueError(f"Model '{model.name}' has inputs with unknown sizes {[t.shape for t in model.inputs]}, "
                             f"but a layer needs them fixed: {exc}") from None
    for record in model._records:
        for old in record.outputs:
            new = seen.get(id(old))
            if new is not None and new.node.shape != old.node.shape:
                old._declared_shape = tuple(None if (a is BATCH or a != c) else a
                                            for a, c in zip(old.node.shape, new.node.shape))
