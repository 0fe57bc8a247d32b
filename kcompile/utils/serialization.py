"""Registering custom classes and functions so saved models that use them can be loaded.

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
        if isinstance(obj, type) and not hasattr(obj, "get_config"):
            raise ValueError(f"Cannot register {obj.__name__}: a class needs a get_config() method to be saved")
        key = f"{package}>{name or obj.__name__}"
        if key in _REGISTERED and _REGISTERED[key] is not obj:
            raise ValueError(f"{key} has already been registered to {_REGISTERED[key]}")
        _REGISTERED[key] = obj
        obj._keras_registered_name = key
        return obj
    return decorator


def get_custom_objects():
    """The global registry itself (name -> object), which code may update directly, as in Keras."""
    return _REGISTERED


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
