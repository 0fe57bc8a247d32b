"""Preprocessing layers, one module per family. Image, numeric and categorical-encoding layers
compile into the model. StringLookup and TextVectorization work on Python/numpy strings, so they
run eagerly in numpy before the compiled graph: call them on the raw data and feed their integer
output to the model. IntegerLookup works either way (in a model when it has at most one OOV index)."""
from .encoding import CategoryEncoding
from .image import CenterCrop, Rescaling, Resizing
from .numerical import Discretization, Normalization
from .lookup import IntegerLookup, StringLookup
from .text import TextVectorization
