"""`serialize_keras_object` / `deserialize_keras_object`: any Keras object <-> its config envelope.

Envelopes are Keras 3's ({"module", "class_name", "config", "registered_name"}); deserialization
also takes Keras 2's ({"class_name", "config"}). What a config names is resolved among user
objects (custom_objects, custom_object_scope, register_keras_serializable) first, then among
kcompile's own layers, losses, metrics, optimizers, schedules, initializers, regularizers and
activations — never by importing a module named in the config.
"""
from __future__ import annotations

import types

from ..utils.serialization import custom_object_scope, get_registered_name
from .object_registry import resolve_user_objects

# module prefix in an envelope -> kcompile module holding the `get` that rebuilds it
_FAMILIES = ("losses", "metrics", "optimizers", "initializers", "regularizers", "activations")


def serialize_keras_object(obj):
    """The config envelope of `obj`; plain values (and lists/dicts of them) are returned as they are."""
    from .. import initializers, losses, metrics, optimizers, regularizers, schedules
    from ..layers.base import Layer
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(v) for v in obj]
    if isinstance(obj, dict):
        return {k: serialize_keras_object(v) for k, v in obj.items()}
    if isinstance(obj, Layer):
        from ..layers.serialization import serialize_layer
        from .model_serialize import model_to_config
        from ..models.model import Model
        if isinstance(obj, Model) and (getattr(obj, "_functional", False) or type(obj).__name__ == "Sequential"):
            return model_to_config(obj)
        return serialize_layer(obj)
    for base, module in ((losses.Loss, losses), (metrics.Metric, metrics), (optimizers.Optimizer, optimizers),
                         (schedules.LearningRateSchedule, schedules), (initializers.Initializer, initializers),
                         (regularizers.Regularizer, regularizers)):
        if isinstance(obj, base):
            entry = module.serialize(obj)
            registered = type(obj).__dict__.get("_keras_registered_name")
            if registered is not None and isinstance(entry, dict):
                entry = {**entry, "module": type(obj).__module__, "registered_name": registered}
            return entry
    if isinstance(obj, types.FunctionType):
        if obj.__name__ == "<lambda>":
            raise ValueError("a lambda cannot be serialized by name; use a Lambda layer or a registered function")
        return {"module": "builtins", "class_name": "function", "config": get_registered_name(obj),
                "registered_name": "function"}
    if hasattr(obj, "get_config"):
        return {"module": type(obj).__module__, "class_name": type(obj).__name__, "config": obj.get_config(),
                "registered_name": getattr(type(obj), "_keras_registered_name", None)}
    raise ValueError(f"Cannot serialize {obj!r}: it has no get_config() and is not a known Keras object")


def deserialize_keras_object(config, custom_objects=None, safe_mode=True, **kwargs):
    """The object a config envelope describes (the inverse of serialize_keras_object)."""
    if kwargs:
        raise TypeError(f"deserialize_keras_object: argument(s) not supported: {sorted(kwargs)}")
    if config is None or isinstance(config, (bool, int, float)):
        return config
    with custom_object_scope(custom_objects or {}):
        if isinstance(config, (list, tuple)):
            return [deserialize_keras_object(v, custom_objects, safe_mode) for v in config]
        resolved = resolve_user_objects(config, custom_objects)
        if resolved is not config and not isinstance(resolved, (dict, str)):
            return resolved                                   # a user object
        if isinstance(config, str):
            from .. import activations
            try:
                return activations.get(config)
            except ValueError:
                raise ValueError(f"Could not interpret serialized object {config!r}: not a registered or "
                                 "custom object, nor a built-in activation") from None
        if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
            raise ValueError(f"Could not interpret serialized object {config!r}")
        return _builtin(config, custom_objects, safe_mode)


def _builtin(config, custom_objects, safe_mode):
    from .. import activations, schedules
    class_name, module = config["class_name"], config.get("module") or ""
    if class_name == "function":
        return activations.get(config.get("config"))
    if not isinstance(config.get("config", {}), dict):     # only a function's config is a bare name
        raise ValueError(f"Could not interpret serialized object {config!r}: the 'config' of a "
                         f"{class_name!r} must be a dict")
    if class_name in ("Sequential", "Functional", "Model"):
        from .api import model_from_config
        return model_from_config(config, custom_objects, safe_mode)
    if module.startswith("keras.optimizers.schedules") or (not module.startswith("keras.optimizers") and
                                                          class_name in _schedule_names()):
        return schedules.deserialize(config)
    family = next((f for f in _FAMILIES if module.startswith(f"keras.{f}")), None)
    if family is None and not module.startswith("keras.layers"):
        family = _family_by_name(class_name)
    if family is not None:
        import importlib
        getter = importlib.import_module(f"kcompile.{family}").get
        return getter({"class_name": class_name, "config": config.get("config", {})})
    from .model_build import build_layer
    return build_layer(config, custom_objects, safe_mode)


def _schedule_names():
    from .. import schedules
    return {name for name, value in vars(schedules).items()
            if isinstance(value, type) and issubclass(value, schedules.LearningRateSchedule)}


def _family_by_name(class_name):
    """Keras 2 envelopes carry no module: the family is whichever kcompile module has the class."""
    import importlib
    for family in _FAMILIES[:-1]:
        module = importlib.import_module(f"kcompile.{family}")
        if isinstance(getattr(module, class_name, None), type):
            return family
    return None
