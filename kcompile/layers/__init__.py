"""`kcompile.layers`: the Keras layers (one module per family)."""
from .base import InputSpec, Layer
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Reshape

__all__ = ["Layer", "InputSpec", "Input", "InputLayer", "Dense", "Activation", "Dropout", "Flatten", "Reshape"]
