"""`kcompile.data`: the Dataset pipeline and the adapters that feed fit/evaluate/predict."""
from .adapters import make_adapter
from .dataset import AUTOTUNE, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset

__all__ = ["Dataset", "AUTOTUNE", "INFINITE_CARDINALITY", "UNKNOWN_CARDINALITY", "make_adapter"]
