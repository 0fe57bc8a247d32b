"""Keras files: `.keras`, legacy `.h5`, `.weights.h5`, JSON/YAML configs — read safely, written atomically.

api.py is the public surface (load_model, save_model, load_weights, save_weights, model_from_json,
...); the format readers and writers, the config dialects and the model builder sit beside it.
"""
from .api import load_model, load_weights, model_from_config, model_from_json, model_from_yaml, save_model, \
    save_weights
from .object_registry import custom_object_scope, get_registered_object, register_keras_serializable

__all__ = ["load_model", "save_model", "load_weights", "save_weights", "model_from_json", "model_from_yaml",
           "model_from_config", "register_keras_serializable", "custom_object_scope", "get_registered_object"]
