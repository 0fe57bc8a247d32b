"""Inputs whose non-batch sizes are unknown until run time, e.g. `Input(shape=(None, None, 3))`.

The IR has one symbolic size, the batch. Other unknown sizes are handled by specialisation: while
the model is defined, an unknown size is traced at a probe size; when data arrives, the model is
traced again at the data's sizes and compiled for them, and the compiled variants are cached by
input shape (models/compiled.py). Layers called while the model is defined see the probe sizes
(so every layer works unchanged); once the Model is built, which sizes depend on the unknown
ones is found by tracing at a second probe size and comparing (`models.functional.mark_dynamic_shapes`), and from
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
