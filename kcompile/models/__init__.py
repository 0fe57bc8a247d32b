"""`kcompile.models`: Model, Sequential, and loading/saving entry points."""
from .model import Model
from .sequential import Sequential

__all__ = ["Model", "Sequential"]
