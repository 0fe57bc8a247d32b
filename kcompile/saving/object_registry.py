"""Where class names in saved configs are looked up: user registrations, custom objects, built-ins.

`register_keras_serializable(package, name)` registers a class or function under
"package>name" (Keras's registered name); `custom_object_scope({...})` and the
`custom_objects=` argument of the loaders make user objects visible by name for one load.
Nothing is ever imported from a module path written in a file: only names known here resolve.
"""
from __future__ import annotations

import contextlib
import threading

_REGISTERED = {}           # "package>name" -> object
_SCOPES = threading.local()


def register_keras_serializable(package="Custom", name=None):
    """Decorator registering a class or function for loading from saved files."""
    def decorator(obj):
        key = f"{package}>{name or obj.__name__}"
        if key in _REGISTERED and _REGISTERED[key] is not obj:
            raise ValueError(f"{key} has already been registered to {_REGISTERED[key]}")
        _REGISTERED[key] = obj
        obj._keras_registered_name = key
        return obj
    return decorator


def get_registered_name(obj):
    return getattr(obj, "_keras_registered_name", None) or getattr(obj, "__name__", type(obj).__name__)


def get_registered_object(name, custom_objects=None, module_objects=None):
    for table in (custom_objects or {}, *reversed(_scopes()), _REGISTERED, module_objects or {}):
        if name in table:
            return table[name]
    return None


@contextlib.contextmanager
def custom_object_scope(*scopes):
    """Within the `with` block, these name -> object mappings resolve class names in loaded files."""
    stack = _scopes()
    merged = {}
    for s in scopes:
        merged.update(s or {})
    stack.append(merged)
    try:
        yield merged
    finally:
        stack.pop()


CustomObjectScope = custom_object_scope


def _scopes():
    if not hasattr(_SCOPES, "stack"):
        _SCOPES.stack = []
    return _SCOPES.stack


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
