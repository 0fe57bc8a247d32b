"""Build a live model from a canonical model config (config_dialects.normalize_model_config).

Every layer entry is checked first — class known, arguments accepted — and all problems are
reported together in one error naming each layer and class (the pre-flight check), so a file
using three unsupported features says so once, not three times. Lambda layers whose function is
marshalled bytecode are refused unless safe_mode=False, as in Keras 3.
"""
from __future__ import annotations

import base64
import marshal
import types

from ..layers.base import register_nested_config_builder
from .config_dialects import is_tensor_ref
from .errors import KerasFileError
from .object_registry import resolve_class, resolve_layer_config_objects
from .operations import build_operation, is_operation_entry

MODEL_CLASSES = ("Sequential", "Functional", "Model")


class UnsupportedModelError(ValueError):
    """Raised with the full list of layers kcompile cannot build from a config.

    `problems` holds (layer name, class name, reason); `unknown_classes` the class names that
    nothing registered or built in resolves (in first-seen order)."""

    def __init__(self, message, problems=()):
        super().__init__(message)
        self.problems = list(problems)
        self.unknown_classes = list(dict.fromkeys(c for _, c, why in self.problems if why in (_UNKNOWN, _NOT_IMPLEMENTED)))


_UNKNOWN = ("unknown layer class (pass it in custom_objects, or register it with "
            "keras.utils.register_keras_serializable)")
# a class the file says is Keras's own (module keras.layers / keras.src.layers...): custom_objects is no help
_NOT_IMPLEMENTED = "unsupported layer class: a Keras layer kcompile does not implement"


def _unknown_reason(entry):
    module = entry.get("module")
    builtin = isinstance(module, str) and module.split(".")[0] == "keras" and ".layers" in f".{module}" \
        and ">" not in str(entry.get("registered_name") or "")
    return _NOT_IMPLEMENTED if builtin else _UNKNOWN


def build_model(canonical, custom_objects=None, safe_mode=True, source=None):
    problems = []
    model = _Builder(custom_objects, safe_mode, problems).model(canonical["class_name"], canonical["config"])
    if problems:
        where = f" in {source}" if source else ""
        raise UnsupportedModelError(f"The model{where} uses features kcompile does not support:\n"
                                    + "\n".join(f"  - layer '{name}' ({cls}): {why}" for name, cls, why in problems),
                                    problems)
    return model


class _Builder:
    def __init__(self, custom_objects, safe_mode, problems):
        self.custom_objects, self.safe_mode, self.problems = custom_objects or {}, safe_mode, problems

    # ------------------------------------------------------------ models
    def model(self, class_name, config):
        if class_name == "Sequential":
            return self.sequential(config)
        return self.functional(config)

    def sequential(self, config):
        from ..models.sequential import Sequential
        built = [self.layer(entry) for entry in config["layers"]]
        if any(layer is None for layer in built):
            return None
        return Sequential(built, name=config.get("name"), trainable=config.get("trainable", True))

    def functional(self, config):
        from ..models.model import Model
        entries = {e["name"]: e for e in config["layers"]}
        layers = {name: self.layer(e) for name, e in entries.items()}
        if any(layer is None for layer in layers.values()):
            return None
        outputs = {}                         # (layer, node index) -> list of output tensors
        pending = [(name, i, node) for name, e in entries.items() for i, node in enumerate(e.get("inbound_nodes", []))]
        for name, e in entries.items():
            if e["class_name"] == "InputLayer":
                outputs[(name, 0)] = [layers[name].output_tensor]
        while pending:
            progressed = False
            for item in list(pending):
                name, index, node = item
                refs = [r for r in _refs(node) if (r["layer"], r["node_index"]) not in outputs]
                if refs:
                    continue
                resolve = lambda v: outputs[(v["layer"], v["node_index"])][v["tensor_index"]] \
                    if is_tensor_ref(v) else v  # noqa: E731
                args = map_structure_refs(node.get("args", []), resolve)
                kwargs = map_structure_refs(node.get("kwargs", {}), resolve)
                try:
                    result = layers[name](*args, **kwargs)
                except (ValueError, TypeError) as exc:
                    raise KerasFileError(f"layer '{name}' ({entries[name]['class_name']}) cannot be applied to "
                                         f"its inputs: {exc}") from None
                from ..layers.base import flatten
                outputs[(name, index)] = [t for t in flatten(result)]
                pending.remove(item)
                progressed = True
            if not progressed:
                raise KerasFileError("the functional graph cannot be evaluated (disconnected or cyclic nodes: "
                                     + ", ".join(f"{n}[{i}]" for n, i, _ in pending[:5]) + ")")
        io = lambda s: map_structure_refs(s, lambda r: outputs[(r["layer"], r["node_index"])][r["tensor_index"]])  # noqa: E731
        return Model(inputs=io(config["input_layers"]), outputs=io(config["output_layers"]),
                     name=config.get("name"), trainable=config.get("trainable", True))

    # ------------------------------------------------------------ layers
    def layer(self, entry):
        class_name, config = entry["class_name"], dict(entry["config"])
        name = config.get("name", entry.get("name", "?"))
        if is_operation_entry(entry):
            try:
                return build_operation(entry)
            except ValueError as exc:
                self.problems.append((name, class_name, str(exc)))
                return None
        cls = resolve_class(class_name, entry.get("registered_name"), self.custom_objects)
        if class_name in MODEL_CLASSES and cls is not None and (cls.__name__ in ("Sequential", "Model")):
            return self.model(class_name, config)
        if cls is None:
            self.problems.append((name, class_name, _unknown_reason(entry)))
            return None
        try:
            config = self.inner_objects(class_name, config)
            if config is None:
                return None
            layer = cls.from_config(resolve_layer_config_objects(config, self.custom_objects))
        except (ValueError, TypeError, NotImplementedError) as exc:
            self.problems.append((name, class_name, str(exc)))
            return None
        return layer

    def inner_objects(self, class_name, config):
        """Deserialize the layers/cells/functions a wrapper's config holds."""
        for key in NESTED_LAYER_KEYS:
            value = config.get(key)
            if key == "cells" and isinstance(value, list):
                inner = [self.nested(v) for v in value]
                if any(v is None for v in inner):
                    return None
                config[key] = inner
            elif _is_envelope(value):
                inner = self.nested(value)
                if inner is None:
                    return None
                config[key] = inner
        if class_name == "Lambda":
            config["function"] = self.function(config.get("function"), config.get("name"))
            config.pop("function_type", None), config.pop("module", None)
            config.pop("output_shape_type", None), config.pop("output_shape_module", None)
        return config

    def nested(self, value):
        if not _is_envelope(value):
            return value
        return self.layer({"class_name": value["class_name"], "config": value.get("config", {}),
                           "registered_name": value.get("registered_name")})

    def function(self, spec, layer_name):
        if isinstance(spec, dict) and spec.get("class_name") == "__lambda__":
            if self.safe_mode:
                raise ValueError("Requested the deserialization of a Lambda layer whose function is Python bytecode. "
                                 "This can run arbitrary code, so it is refused in safe mode; pass "
                                 "safe_mode=False to load it if you trust the file")
            code = base64.b64decode(spec["config"]["code"])
            return types.FunctionType(marshal.loads(code), _lambda_globals())
        if isinstance(spec, (list, tuple)) and spec and isinstance(spec[0], str):     # Keras 2 tuple form
            if self.safe_mode:
                raise ValueError("a Lambda layer holding Python bytecode is refused in safe mode (safe_mode=False "
                                 "loads it)")
            return types.FunctionType(marshal.loads(base64.b64decode(spec[0])), _lambda_globals())
        name = spec.get("config") if isinstance(spec, dict) else spec
        found = resolve_class(name, None, self.custom_objects) if isinstance(name, str) else None
        if found is None:
            raise ValueError(f"function {name!r} of Lambda layer '{layer_name}' is unknown; pass it in custom_objects")
        return found


NESTED_LAYER_KEYS = ("layer", "backward_layer", "cell", "cells")


def _is_envelope(value):
    return isinstance(value, dict) and isinstance(value.get("class_name"), str)


def deserialize_nested_layers(config, custom_objects=None):
    """A wrapper layer's config (TimeDistributed, Bidirectional, RNN) with the layers it holds
    built from their config envelopes; what Layer.from_config uses, so `cls.from_config(
    layer.get_config())` works for wrappers as in Keras."""
    if not any(_is_envelope(config.get(k)) or isinstance(config.get(k), list) for k in NESTED_LAYER_KEYS):
        return config
    problems = []
    out = _Builder(custom_objects, True, problems).inner_objects(None, dict(config))
    if problems:
        raise UnsupportedModelError("the layers inside this wrapper cannot be built:\n" + "\n".join(
            f"  - layer '{name}' ({cls}): {why}" for name, cls, why in problems), problems)
    return out


register_nested_config_builder(deserialize_nested_layers)


def build_layer(entry, custom_objects=None, safe_mode=True):
    """One layer from its config envelope, nested layers included; UnsupportedModelError lists
    every problem found."""
    problems = []
    layer = _Builder(custom_objects, safe_mode, problems).layer(entry)
    if problems:
        raise UnsupportedModelError("The layer cannot be built:\n" + "\n".join(
            f"  - layer '{name}' ({cls}): {why}" for name, cls, why in problems), problems)
    return layer


def _lambda_globals():
    from .. import backend, ops
    return {"ops": ops, "K": backend, "keras": __import__("kcompile")}


def _refs(value):
    if is_tensor_ref(value):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _refs(v)


def map_structure_refs(value, fn):
    if is_tensor_ref(value):
        return fn(value)
    if isinstance(value, dict):
        return {k: map_structure_refs(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_structure_refs(v, fn) for v in value)
    return value
