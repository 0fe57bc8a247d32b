"""`kcompile.models`: Model, Sequential, and loading/saving entry points."""
from ..saving.api import load_model, model_from_config, model_from_json, model_from_yaml, save_model
from .built_state import load_state
from .model import Model
from .sequential import Sequential

__all__ = ["Model", "Sequential", "load_model", "save_model", "model_from_json", "model_from_yaml",
           "model_from_config", "load_state"]
