"""Keras files: `.keras`, legacy `.h5`, `.weights.h5`, JSON/YAML configs — read safely, written atomically.

api.py is the public surface (load_model, save_model, load_weights, save_weights, model_from_json,
...); the format readers and writers, the config dialects and the model builder sit beside it.
"""
from .api import load_model, load_weights, model_from_config, model_from_json, model_from_yaml, save_model, \
    save_weights
from .object_registry import (CustomObjectScope, custom_object_scope, get_custom_objects, get_registered_name,
                              get_registered_object, register_keras_serializable)
from .objects import deserialize_keras_object, serialize_keras_object
from . import api as _api
from .model_serialize import functional_config as _functional_config
from ..models import model as _model   # after api: kcompile.models re-exports load_model from it

# Model.save / load_weights / to_json / get_config reach the formats through this table: saving
# sits above the models (it builds them), so the models do not import it.
_model.SAVING.update(save_model=_api.save_model, save_weights=_api.save_weights, load_weights=_api.load_weights,
                     to_json=_api.to_json, to_yaml=_api.to_yaml, model_from_config=_api.model_from_config,
                     functional_config=_functional_config)

__all__ = ["load_model", "save_model", "load_weights", "save_weights", "model_from_json", "model_from_yaml",
           "model_from_config", "register_keras_serializable", "custom_object_scope", "CustomObjectScope",
           "get_registered_object", "get_registered_name", "get_custom_objects", "serialize_keras_object",
           "deserialize_keras_object"]
