"""Preprocessing layers, one module per family. Image, numeric and categorical-encoding layers
compile into the model. StringLookup, TextVectorization and Hashing compute in numpy: called on
data they return numpy arrays, and in a model each is the host stage of the input it takes
(host_stage.py), run on every batch before the native graph. IntegerLookup is part of the graph,
or a host stage when it has several (hashed) OOV buckets."""
from .encoding import CategoryEncoding
from .hashing import Hashing
from .image import CenterCrop, Rescaling, Resizing
from .numerical import Discretization, Normalization
from .lookup import IntegerLookup, StringLookup
from .text import TextVectorization
