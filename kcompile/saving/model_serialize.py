"""A live model as the Keras 3 config dictionary Keras writes (`config.json`, `to_json`)."""
from __future__ import annotations

from .errors import KerasFileError
from ..layers.serialization import serialize_layer
from .operations import operation_entry, operation_names


def model_to_config(model):
    """The top-level Keras 3 envelope of `model` (Sequential or Functional), with its compile config."""
    from ..models.sequential import Sequential
    if isinstance(model, Sequential):
        entry = {"module": "keras", "class_name": "Sequential", "config": model.get_config(), "registered_name": None}
        if model._input_layer is not None:
            entry["build_config"] = {"input_shape": list(model._input_layer.batch_shape)}
    elif getattr(model, "_functional", False):
        entry = {"module": "keras", "class_name": "Functional", "config": functional_config(model),
                 "registered_name": None}
    else:
        raise KerasFileError(f"model '{model.name}' is a subclassed model ({type(model).__name__}): its structure is "
                             "Python code, so only its weights can be saved (save_weights), as in Keras")
    compile_config = compile_config_of(model)
    if compile_config is not None:
        entry["compile_config"] = compile_config
    return entry


def functional_config(model):
    from ..layers.base import Layer
    from ..layers.core import InputLayer
    from ..tracing import KerasTensor
    records = list(model._records)
    own = {id(r) for r in records}
    for t in model.inputs:
        own.add(id(t._history[0]))

    op_names = operation_names(model, records)

    def node_index(record):
        if id(record) in op_names:
            return 0                       # each op call is an operation of its own
        layer = record.fn
        mine = [r for r in layer._inbound if id(r) in own]
        return next(i for i, r in enumerate(mine) if r is record)

    def source(record):
        return op_names.get(id(record)) or record.fn.name

    def ref(t):
        record, index = t._history
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(t.shape), "dtype": t.dtype,
                           "keras_history": [source(record), node_index(record), index]}}

    def tensors(value):
        if isinstance(value, KerasTensor):
            return ref(value)
        if isinstance(value, dict):
            return {k: tensors(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [tensors(v) for v in value]
        return value

    entries, seen = [], {}
    for layer in model._layers:
        entry = serialize_layer(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = []
        seen[id(layer)] = entry
        entries.append(entry)
    for record in records:
        if not isinstance(record.fn, Layer):
            entry = operation_entry(record, op_names[id(record)], tensors)
            if entry is None:
                raise KerasFileError(f"model '{model.name}' applies '{getattr(record.fn, '__name__', record.fn)}' "
                                     "to symbolic tensors, which Keras cannot rebuild from a file (slicing, or an "
                                     "op Keras lacks); use the equivalent layer (e.g. layers.Lambda)")
            entries.append(entry)
            continue
        if isinstance(record.fn, InputLayer):
            continue
        kwargs = {k: tensors(v) for k, v in record.kwargs.items() if k != "training"}
        seen[id(record.fn)]["inbound_nodes"].append({"args": tensors(list(record.args)), "kwargs": kwargs})

    def io(struct):
        if isinstance(struct, KerasTensor):
            record, index = struct._history
            # Keras 3 counts a nested Functional's calls from 1 here (its node 0 is its own construction)
            shift = 1 if type(record.fn).__name__ == "Model" and getattr(record.fn, "_functional", False) else 0
            return [source(record), node_index(record) + shift, index]
        if isinstance(struct, dict):
            return {k: io(v) for k, v in struct.items()}
        return [io(v) for v in struct]
    return {"name": model.name, "trainable": model.trainable, "layers": entries,
            "input_layers": io(model._input_struct), "output_layers": io(model._output_struct)}


def compile_config_of(model):
    """Keras 3's compile_config for a compiled model, or None."""
    args = getattr(model, "_compile_args", None)
    if args is None or getattr(model, "optimizer", None) is None:
        return None
    from .. import losses, metrics, optimizers
    return {"optimizer": optimizers.serialize(model.optimizer), "loss": _serial(args["loss"], losses),
            "loss_weights": args["loss_weights"], "metrics": _serial(args["metrics"], metrics),
            "weighted_metrics": _serial(args["weighted_metrics"], metrics), "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": False}


def _serial(value, module):
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, dict):
        return {k: _serial(v, module) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_serial(v, module) for v in value]
    if callable(value) and hasattr(value, "__name__") and not hasattr(value, "get_config"):
        from ..utils.serialization import get_registered_name
        return get_registered_name(value)          # "package>name" for registered functions
    entry = module.serialize(value)
    registered = type(value).__dict__.get("_keras_registered_name")
    if registered is not None and isinstance(entry, dict):        # a registered custom Loss/Metric subclass
        entry = {**entry, "module": type(value).__module__, "registered_name": registered}
    return entry
