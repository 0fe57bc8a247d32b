"""`kcompile.layers`: the Keras layers (one module per family)."""
from .base import InputSpec, Layer
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Lambda, Masking, Reshape
from .convolutional import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose,
                            DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D)
from .embedding import Embedding
from .pooling import (AveragePooling1D, AveragePooling2D, AveragePooling3D, AvgPool1D, AvgPool2D, AvgPool3D,
                      GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalAvgPool1D,
                      GlobalAvgPool2D, GlobalAvgPool3D, GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPool1D, MaxPool2D, MaxPool3D,
                      MaxPooling1D, MaxPooling2D, MaxPooling3D)
from .recurrent import GRU, LSTM, RNN, Bidirectional, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell

__all__ = [name for name in dir() if not name.startswith('_') and name[0].isupper()]
