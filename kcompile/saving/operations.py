"""Keras 3 operations inside saved functional models.

Keras 3 records `keras.ops.concatenate([a, b], axis=-1)` (or `a + b`) on symbolic tensors as a
node of an Operation, and writes it among the layers with a `keras.src.ops.*` module, the op's
constructor arguments as its config and the tensors as the node's call arguments. Loading
rebuilds each as a call of the kcompile.ops function of the same name, which the functional
model records exactly as it records user code.
"""
from __future__ import annotations

import inspect
from ..naming import to_snake_case

OPERATION_MODULES = ("keras.src.ops.", "keras.ops")

# The kcompile.ops functions Keras 3 can rebuild from a config: the keras.src.ops module of the
# operation, and the parameters its `call` takes (tensors, in order; the other arguments are the
# operation's constructor arguments, i.e. its config). The class is the name in CamelCase.
_NN = ("elu", "gelu", "hard_sigmoid", "leaky_relu", "log_softmax", "one_hot", "relu", "relu6", "selu", "sigmoid",
       "silu", "softmax", "softplus", "softsign")
_MATH = ("erf", "logsumexp", "rsqrt")
_CORE = ("cast", "convert_to_tensor", "slice")
_UNARY = ("abs", "absolute", "all", "amax", "amin", "any", "argmax", "argmin", "broadcast_to", "ceil", "clip",
          "cos", "exp", "expand_dims", "expm1", "floor", "log", "log1p", "logical_not", "max", "mean", "min",
          "negative", "ones_like", "prod", "reciprocal", "reshape", "round", "sign", "sin", "split", "sqrt",
          "square", "squeeze", "stack", "std", "sum", "tanh", "transpose", "var", "zeros_like") + _NN + _MATH + _CORE
_BINARY = ("add", "divide", "dot", "equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
           "logical_or", "matmul", "maximum", "minimum", "multiply", "not_equal", "power", "subtract", "true_divide")
CALL_PARAMETERS = {**{n: ("x",) for n in _UNARY}, **{n: ("x1", "x2") for n in _BINARY},
                   "concatenate": ("xs",), "einsum": ("operands",), "take": ("x", "indices"),
                   "where": ("condition", "x1", "x2"), "get_item": ("x", "key"),
                   "slice": ("inputs", "start_indices")}
# Keras operation names whose kcompile.ops function has another name (`x[...]` is GetItem)
_FUNCTION_NAMES = {"get_item": "_getitem"}
_OPERATION_NAMES = {v: k for k, v in _FUNCTION_NAMES.items()}


def operation_name(function):
    """The Keras operation name of a kcompile.ops function ("add", "get_item")."""
    name = getattr(function, "__name__", "operation")
    return _OPERATION_NAMES.get(name, name)


def _ops_function(op_name):
    from .. import ops
    function = getattr(ops, _FUNCTION_NAMES.get(op_name, op_name), None)
    return function if callable(function) else None


def operation_module(name):
    kind = "nn" if name in _NN else "math" if name in _MATH else "core" if name in _CORE else "numpy"
    return f"keras.src.ops.{kind}"


def operation_class(name):
    return "".join(part.capitalize() for part in name.split("_"))


# Keras constructor arguments some kcompile.ops functions do not take: accepted at these values
_KERAS_DEFAULTS = {"keepdims": False, "initial": None, "dtype": None, "sparse": False, "ragged": False,
                   "decimals": 0, "axis": -1}


def is_operation_entry(entry):
    module = entry.get("module")
    return isinstance(module, str) and module.startswith(OPERATION_MODULES)


class SavedOperation:
    """A `kcompile.ops` function with the constructor arguments Keras saved for the operation."""

    def __init__(self, name, function, arguments):
        self.name, self.function, self.arguments = name, function, arguments

    def __call__(self, *args, **kwargs):
        if self.function.__name__ == "_getitem" and len(args) == 2:
            args = (args[0], decode_index_key(args[1]))
        params = list(inspect.signature(self.function).parameters.values())
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            # e.g. einsum(subscripts, *operands): the constructor arguments lead, the tensors follow
            leading = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.name in self.arguments]
            rest = {k: v for k, v in self.arguments.items() if k not in leading}
            return self.function(*[self.arguments[n] for n in leading], *args, **rest, **kwargs)
        return self.function(*args, **{**self.arguments, **kwargs})


def build_operation(entry):
    """The SavedOperation for a config entry; ValueError naming what kcompile lacks."""
    class_name, module = entry["class_name"], entry.get("module")
    config = dict(entry.get("config") or {})
    name = config.pop("name", entry.get("name", to_snake_case(class_name)))
    function = _ops_function(to_snake_case(class_name))
    if function is None:
        raise ValueError(f"the operation {module}.{class_name} is not supported by kcompile.ops")
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        parameters = None
    if parameters is not None and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        for key in set(config) - set(parameters):
            if key in _KERAS_DEFAULTS and config[key] == _KERAS_DEFAULTS[key]:
                del config[key]
        unknown = sorted(set(config) - set(parameters), key=str)
        if unknown:
            raise ValueError(f"the operation {module}.{class_name} has arguments kcompile.ops."
                             f"{function.__name__} does not support: {unknown}")
    return SavedOperation(name, function, config)


def operation_entry(record, name, tensors):
    """The Keras 3 config entry of one recorded `kcompile.ops` call, or None when Keras has no
    operation of that name. `tensors` maps the call's values to their saved form."""
    function = record.fn
    op_name = operation_name(function)
    if op_name not in CALL_PARAMETERS or _ops_function(op_name) is not function:
        return None
    bound = inspect.signature(function).bind(*record.args, **record.kwargs)
    call_names = CALL_PARAMETERS[op_name]
    args, config = [], {"name": name}
    for key, value in bound.arguments.items():
        if key == "key":
            args.append(encode_index_key(value))
        elif key in call_names:
            args.extend(value if key == "operands" else [value])
        else:
            config[key] = _plain(value)
    return {"module": operation_module(op_name), "class_name": operation_class(op_name), "config": config,
            "registered_name": operation_class(op_name), "name": name,
            "inbound_nodes": [{"args": tensors(args), "kwargs": {}}]}


def _plain(value):
    """JSON-ready constructor arguments (tuples as lists, numpy scalars as numbers)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


# How Keras 3 writes the key of `x[key]`: a tuple as a list, slices and Ellipsis as tagged dicts
def encode_index_key(key):
    if isinstance(key, tuple):
        return [encode_index_key(k) for k in key]
    if isinstance(key, slice):
        return {"class_name": "__slice__",
                "config": {"start": _plain(key.start), "stop": _plain(key.stop), "step": _plain(key.step)}}
    if key is Ellipsis:
        return {"class_name": "__ellipsis__", "config": {}}
    return _plain(key)


def decode_index_key(value):
    if isinstance(value, list):
        return tuple(decode_index_key(v) for v in value)
    if isinstance(value, dict) and value.get("class_name") == "__slice__":
        c = value.get("config") or {}
        return slice(c.get("start"), c.get("stop"), c.get("step"))
    if isinstance(value, dict) and value.get("class_name") == "__ellipsis__":
        return Ellipsis
    if value is None or isinstance(value, int):
        return value
    raise ValueError(f"an index key Keras does not write: {value!r}")


def operation_names(model, records):
    """Unique names for the model's recorded op calls, as Keras names operations ("add", "add_1")."""
    from ..layers.base import Layer
    taken = {layer.name for layer in model._layers}
    names = {}
    for record in records:
        if isinstance(record.fn, Layer):
            continue
        base = to_snake_case(operation_name(record.fn))
        name, i = base, 0
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        names[id(record)] = name
    return names
