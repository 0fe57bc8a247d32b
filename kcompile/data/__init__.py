"""`kcompile.data`: turning user data (arrays, generators, sequences, iterables) into batches."""
from .adapters import make_adapter

__all__ = ["make_adapter"]
