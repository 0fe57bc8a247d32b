"""Host stages: preprocessing layers that run in numpy on the host, in front of the native graph.

Strings (and the 64-bit hashes of Hashing) have no place in the graph IR, which holds float32 and
int32 tensors. So a StringLookup, TextVectorization, Hashing, or IntegerLookup with hashed OOV
buckets that takes a model input directly becomes that input's *host stage*:

* while the model is defined, calling the layer on the symbolic input gives a placeholder tensor
  of the layer's output shape (its numbers are never computed in the graph);
* the model's feed path (Trainer._check_x) runs the stage on the raw batch — strings or integers —
  and feeds the resulting int32 / float32 array as the graph input;
* the compiled model's trace (CompiledModel._inputs) marks that graph input as fed to the layer,
  and the layer passes it on (int32 values through a float32 round trip, exact below 2**24,
  because the graph cannot yet return an int32 input unchanged).

`host_stages(model)` finds the stage of each model input and reports every misuse by name.
"""
from __future__ import annotations

import numpy as np

from ... import ops
from ...ir import builder as irb
from ...ir.graph import BATCH
from ...tracing import KerasTensor, current_trace
from ..core import InputLayer

STRING_LAYERS = "StringLookup, TextVectorization or Hashing"


class HostStage:
    """Mixin of the layers that can run as a host stage. A subclass defines
    `host_output_spec(input_shape) -> (output shape without the batch axis, "int32" | "float32")`,
    `host_call(array) -> numpy array`, and `_host_stage_ok()` (None, or why it cannot be one)."""

    _takes_text = False              # True: its model input must be a string Input

    def _host_stage_ok(self):
        return None

    def _is_host_stage(self):
        return True

    def _host_index_bound(self):
        """An upper bound of the int32 values the stage outputs."""
        return self.vocabulary_size()

    def __call__(self, inputs, *args, **kwargs):
        """On a symbolic tensor: the Layer call (a placeholder for the stage's output); on data: the
        stage itself, in numpy."""
        if hasattr(inputs, "node"):
            return super().__call__(inputs, *args, **kwargs)
        return self.host_call(inputs)

    def call(self, inputs):
        return self._symbolic_call(inputs)

    def _symbolic_call(self, x):
        """The layer's call on a symbolic tensor (from Layer.__call__)."""
        fed = getattr(x, "_host_fed", None)
        if fed is self:                   # the feed path already ran this layer on the host
            if x.dtype == "int32" and self._host_index_bound() < 2 ** 24:
                # through float32 and back (exact below 2**24): the graph cannot yet return an int32
                # input unchanged (its output copy is float-only), as a model ending here would
                return ops.cast(ops.cast(x, "float32"), "int32")
            return x
        if current_trace().executes:
            raise ValueError(f"{self._host_label()} runs on the host before the compiled graph, so in a compiled "
                             f"model it must take an input of that model (keras.Input) directly; here it is "
                             f"called on {x!r} (inside a nested or subclassed model, or after another layer)")
        reason = self._host_stage_ok()
        if reason is not None:
            raise ValueError(f"{self._host_label()} cannot be part of a model: {reason}")
        history = getattr(x, "_history", None)
        if history is not None:               # defining a functional model: misuse is caught here
            if not isinstance(history[0].fn, InputLayer):
                raise ValueError(f"{self._host_label()} runs on the host before the compiled graph, so it must "
                                 f"take a model input (keras.Input) directly, not the output of another layer")
            if self._takes_text and not is_string_input(x):
                raise ValueError(f"{self._host_label()} takes strings: its input must be "
                                 f"keras.Input(dtype='string'), got {x!r}")
        shape, dtype = self.host_output_spec(x.shape)
        if any(d is None for d in shape):
            raise ValueError(f"{self._host_label()} in a model needs inputs whose sizes are known but the batch "
                             f"(its output would have the shape {(None,) + tuple(shape)})")
        self._host_defined = dict(getattr(self, "_host_defined", {}), **{str(tuple(x.shape)): shape})
        return KerasTensor(irb.input(f"{self.name}_host_output", (BATCH,) + tuple(shape), dtype))

    def _host_label(self):
        return f"{type(self).__name__} '{self.name}'"

    def host_feed(self, data, declared_shape, what, text_input):
        """The graph input for a raw batch of this stage's model input (declared_shape has None for
        the batch; text_input: the input was declared with dtype string)."""
        text = _is_text(data)
        if text_input and not text:
            raise TypeError(f"Input {what!r} has dtype string, but the data given for it has dtype "
                            f"{np.asarray(data).dtype}")
        arr = np.asarray(data, dtype=object if text else None)
        if not text and arr.dtype.kind not in "biuf":
            raise TypeError(f"{self._host_label()} takes strings or numbers; the data for input {what!r} has "
                            f"dtype {arr.dtype}")
        if arr.ndim == 0:
            raise ValueError(f"Data for {what!r} must have a batch dimension; got a scalar")
        # a trailing axis of size 1 may be missing or extra, as Keras 3's functional models allow
        if arr.ndim == len(declared_shape) - 1 and declared_shape[-1] == 1:
            arr = arr[..., None]
        elif arr.ndim == len(declared_shape) + 1 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        want = tuple(declared_shape[1:])
        if arr.ndim != len(declared_shape) or any(w is not None and w != g for w, g in zip(want, arr.shape[1:])):
            raise ValueError(f'Input {what!r} of layer "{self.name}" is incompatible with the layer: expected '
                             f"shape={tuple(declared_shape)}, found shape={arr.shape}")
        shape, dtype = self.host_output_spec(tuple(declared_shape))
        out = np.asarray(self.host_call(arr))
        if out.shape[1:] != tuple(shape):
            raise ValueError(f"{self._host_label()} produced outputs of shape {out.shape[1:]} per sample, but the "
                             f"model was built for {tuple(shape)}")
        if dtype == "int32":
            return np.ascontiguousarray(out, dtype=np.int32)      # indices and bins fit int32
        return np.ascontiguousarray(out, dtype=np.float32)


def _is_text(data):
    arr = np.asarray(data) if not isinstance(data, np.ndarray) else data
    return arr.dtype.kind in "USO"


def _is_stage(fn):
    return isinstance(fn, HostStage) and fn._is_host_stage()


def _flat_args(record):
    from ..base import flatten
    return [a for a in flatten(list(record.args) + list(record.kwargs.values())) if isinstance(a, KerasTensor)]


def is_string_input(tensor):
    history = getattr(tensor, "_history", None)
    return bool(history) and isinstance(history[0].fn, InputLayer) and history[0].fn.input_dtype == "string"


def host_stages(model):
    """The host-stage layer of each model input (None for an input fed to the graph as it is).
    Raises, naming the layer, for a stage layer that does not take a model input directly, an input
    shared between a stage and other layers, and a string input without a stage."""
    inputs = list(getattr(model, "inputs", None) or [])
    stack = getattr(model, "_stack", None)
    if stack is not None:                                   # Sequential: the first layer takes the input
        if not stack or not inputs:
            return [None] * len(inputs)
        consumers, others = [[stack[0]]], list(stack[1:])
    elif getattr(model, "_functional", False):
        records = list(model._records)
        consumers = [[r.fn for r in records if any(a is t for a in _flat_args(r))] for t in inputs]
        direct = {id(t) for t in inputs}
        others = [r.fn for r in records if not all(id(a) in direct for a in _flat_args(r))]
    else:
        return None                                         # subclassed: no recorded graph to inspect
    for fn in others:
        if _is_stage(fn):
            raise ValueError(f"{fn._host_label()} runs on the host before the compiled graph, so it must take a "
                             f"model input (keras.Input) directly, not the output of another layer")
    stages = []
    for t, fns in zip(inputs, consumers):
        hosts = [fn for fn in fns if _is_stage(fn)]
        name = t._history[0].fn.name if t._history else t.name
        if hosts and len(fns) > 1:
            raise ValueError(f"Input '{name}' feeds {hosts[0]._host_label()}, which runs on the host before the "
                             f"compiled graph, and also {len(fns) - 1} other call(s); give each its own Input")
        if not hosts:
            if is_string_input(t):
                raise ValueError(f"Input '{name}' has dtype string: in a compiled model only a {STRING_LAYERS} "
                                 f"layer can take it, directly")
            stages.append(None)
            continue
        stage = hosts[0]
        key = str(tuple(t.shape))
        shape, _ = stage.host_output_spec(t.shape)
        defined = getattr(stage, "_host_defined", {}).get(key)
        if defined is not None and tuple(defined) != tuple(shape):
            raise ValueError(f"{stage._host_label()} now produces outputs of shape {tuple(shape)} per sample, but "
                             f"model '{model.name}' was built for {tuple(defined)}: set its vocabulary (or adapt "
                             f"it) before building the model")
        stages.append(stage)
    return stages
