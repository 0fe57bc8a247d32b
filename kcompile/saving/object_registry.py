"""Where class names in saved configs are looked up: user registrations and custom objects
(kcompile.utils.serialization), then kcompile's own layers and models, looked up at call time so
newly added layers resolve without being listed anywhere."""
from __future__ import annotations

from ..utils.serialization import (CustomObjectScope, custom_object_scope, get_custom_objects,  # noqa: F401
                                   get_registered_name, get_registered_object, register_keras_serializable)


def builtin_layer_classes():
    """class name -> class for every layer and model kcompile provides."""
    from .. import layers
    from ..models.model import Model
    from ..models.sequential import Sequential
    table = {name: getattr(layers, name) for name in layers.__all__ if isinstance(getattr(layers, name), type)}
    table.update({"Sequential": Sequential, "Functional": Model, "Model": Model})
    return table


def resolve_class(class_name, registered_name=None, custom_objects=None):
    """The class for a config entry, or None when nothing known has that name."""
    for key in (registered_name, class_name):
        if not key:
            continue
        found = get_registered_object(key, custom_objects)
        if found is not None:
            return found
        if ">" in key:
            found = get_registered_object(key.split(">", 1)[1], custom_objects)
            if found is not None:
                return found
    return builtin_layer_classes().get(class_name)


# Config keys whose values may name user objects (custom activations, initializers, ...).
_OBJECT_KEY_SUFFIXES = ("activation", "initializer", "regularizer", "constraint")


def _user_object(name, registered_name, custom_objects):
    """A user object (custom_objects, custom_object_scope, register_keras_serializable) by name;
    built-ins are left to their own modules."""
    for key in (registered_name, name):
        if not isinstance(key, str) or key in ("function", ""):
            continue
        found = get_registered_object(key, custom_objects)
        if found is None and ">" in key:
            found = get_registered_object(key.split(">", 1)[1], custom_objects)
        if found is not None:
            return found
    return None


def resolve_user_objects(value, custom_objects=None):
    """`value` with every reference to a user object (a name string, Keras 3's function envelope
    {"class_name": "function", "config": name}, or a class envelope) replaced by the object — a
    class is rebuilt with from_config. Keras 3 function envelopes naming built-ins become the name."""
    if isinstance(value, str):
        found = _user_object(value, None, custom_objects)
        return value if found is None else found
    if isinstance(value, (list, tuple)):
        return type(value)(resolve_user_objects(v, custom_objects) for v in value)
    if not isinstance(value, dict):
        return value
    if isinstance(value.get("class_name"), str) and "config" in value:
        if value["class_name"] == "function":
            name = value["config"]
            found = _user_object(name, None, custom_objects) if isinstance(name, str) else None
            return name if found is None else found
        found = _user_object(value["class_name"], value.get("registered_name"), custom_objects)
        if found is None:
            return value
        if isinstance(found, type):
            config = value.get("config") or {}
            return found.from_config(config) if hasattr(found, "from_config") else found(**config)
        return found
    return {k: resolve_user_objects(v, custom_objects) for k, v in value.items()}


def resolve_layer_config_objects(config, custom_objects=None):
    """A layer config with its activation/initializer/regularizer/constraint entries resolved."""
    return {k: resolve_user_objects(v, custom_objects) if k.endswith(_OBJECT_KEY_SUFFIXES) else v
            for k, v in config.items()}
