"""Preprocessing layers, one module per family. Image, numeric and categorical-encoding layers
compile into the model; the lookup and text layers work on Python/numpy strings, so they run
eagerly in numpy before the compiled graph (call them on the raw data, feed their integer output
to the model)."""
from .encoding import CategoryEncoding
from .image import CenterCrop, Rescaling, Resizing
from .numerical import Discretization, Normalization
from .lookup import IntegerLookup, StringLookup
from .text import TextVectorization
