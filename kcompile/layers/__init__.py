"""`kcompile.layers`: the Keras layers (one module per family)."""
from .base import InputSpec, Layer
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Lambda, Masking, Reshape
from .recurrent import GRU, LSTM, RNN, Bidirectional, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell

__all__ = ["Layer", "InputSpec", "Input", "InputLayer", "Dense", "Activation", "Dropout", "Flatten", "Reshape", "Lambda", "Masking",
           "RNN", "SimpleRNN", "LSTM", "GRU", "SimpleRNNCell", "LSTMCell", "GRUCell", "Bidirectional"]
