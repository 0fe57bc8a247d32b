"""Functional graphs: the calls recorded while a model was defined, replayed on new tensors.

A functional model remembers which recorded calls (layers, ops, nested models) lead from its
inputs to its outputs. `replay` re-runs them in order inside the active trace, so the same
definition yields the inference graph, the training graph (Dropout active) and so on.
"""
from __future__ import annotations

from ..ir import builder as irb
from ..ir.graph import BATCH
from ..layers.base import flatten, map_structure
from ..layers.dynamic_shapes import PROBE_SIZES, declared_input_shape, has_dynamic_inputs, probe_shape
from ..tracing import KerasTensor, Trace, trace_scope


def records_between(inputs, outputs):
    """Recorded calls needed to compute `outputs` from `inputs`, in a valid execution order."""
    input_ids = {id(t) for t in inputs}
    order, state = [], {}

    def visit_tensor(t):
        if id(t) in input_ids:
            return
        if t._history is None:
            raise ValueError(f"Output tensors of a Functional model must be the output of a Keras layer or op; "
                             f"{t!r} was not created from the model's inputs")
        record = t._history[0]
        if not record.args and not record.kwargs:
            raise ValueError(f"Graph disconnected: cannot obtain value for tensor {t!r} (from input "
                             f"'{record.fn.name}') from the model's inputs {[i.name for i in inputs]}")
        visit(record)

    def visit(record):
        if state.get(id(record)) == 2:
            return
        state[id(record)] = 1
        for a in flatten(list(record.args) + list(record.kwargs.values())):
            if isinstance(a, KerasTensor):
                visit_tensor(a)
        state[id(record)] = 2
        order.append(record)
    for t in outputs:
        visit_tensor(t)
    return order


def replay(records, inputs, new_inputs, outputs, training):
    """Recompute `outputs` (a structure of KerasTensors) from `new_inputs` in the active trace."""
    mapping = {}
    return replay_tensors(records, inputs, new_inputs, mapping, outputs, training)


def replay_tensors(records, inputs, new_inputs, mapping, outputs=None, training=False):
    """Replay; `mapping` collects id(old tensor) -> new tensor for every recorded output."""
    mapping.update({id(old): new for old, new in zip(inputs, new_inputs)})

    def sub(x):
        if isinstance(x, KerasTensor):
            if id(x) not in mapping:
                raise ValueError(f"Graph disconnected: tensor {x!r} is not computed from the inputs")
            return mapping[id(x)]
        return x
    for record in records:
        args = map_structure(sub, record.args)
        kwargs = map_structure(sub, record.kwargs)
        if hasattr(record.fn, "call") and hasattr(record.fn, "_inbound"):   # a layer or model
            kwargs = dict(kwargs, training=training)
        result = record.fn(*args, **kwargs)
        new_flat = [t for t in flatten(result) if isinstance(t, KerasTensor)]
        for old, new in zip(record.outputs, new_flat):
            mapping[id(old)] = new
    return map_structure(sub, outputs) if outputs is not None else None


def keras_layer_order(inputs, outputs):
    """The callables of a functional graph in Keras's `model.layers` order: by decreasing depth
    from the outputs, ties broken by first visit in a depth-first walk from the outputs. Weight
    order, optimizer-slot order and saved configs follow it, so files match Keras's."""
    input_ids = {id(t) for t in inputs}
    first_visit, finished, order_nodes = {}, set(), []

    def walk(t):
        if t._history is None:
            return
        record = t._history[0]
        fn = record.fn
        if id(fn) not in first_visit:
            first_visit[id(fn)] = (len(first_visit), fn)
        if id(record) in finished:
            return
        if id(t) not in input_ids:
            for a in flatten(list(record.args) + list(record.kwargs.values())):
                if isinstance(a, KerasTensor):
                    walk(a)
        finished.add(id(record))
        order_nodes.append(record)
    for t in outputs:
        walk(t)
    depth = {}
    for record in reversed(order_nodes):
        d = depth.setdefault(id(record), 0)
        if any(id(t) in input_ids for t in record.outputs):
            continue
        for a in flatten(list(record.args) + list(record.kwargs.values())):
            if isinstance(a, KerasTensor) and a._history is not None:
                producer = a._history[0]
                depth[id(producer)] = max(depth.get(id(producer), 0), d + 1)
    fn_depth = {}
    for record in order_nodes:
        fn_depth[id(record.fn)] = max(fn_depth.get(id(record.fn), 0), depth[id(record)])
    ranked = sorted(first_visit.values(), key=lambda item: (-fn_depth.get(id(item[1]), 0), item[0]))
    return [fn for _, fn in ranked]


def mark_dynamic_shapes(model):
    """Trace the model's recorded calls at the second probe size; sizes that change become None."""
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
            replay_tensors(model._records, model.inputs, probes, seen)
        except ValueError as exc:
            raise ValueError(f"Model '{model.name}' has inputs with unknown sizes {[t.shape for t in model.inputs]}, "
                             f"but a layer needs them fixed: {exc}") from None
    for record in model._records:
        for old in record.outputs:
            new = seen.get(id(old))
            if new is not None and new.node.shape != old.node.shape:
                old._declared_shape = tuple(None if (a is BATCH or a != c) else a
                                            for a, c in zip(old.node.shape, new.node.shape))
