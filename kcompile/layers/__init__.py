"""`kcompile.layers`: the Keras layers (one module per family)."""
from .base import InputSpec, Layer
from .attention import AdditiveAttention, Attention
from .core import Activation, Dense, Dropout, Flatten, Identity, Input, InputLayer, Lambda, Masking, Reshape
from .convolutional import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose,
                            Convolution1D, Convolution1DTranspose, Convolution2D, Convolution2DTranspose,
                            Convolution3D, Convolution3DTranspose, DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D,
                            SeparableConv2D, SeparableConvolution1D, SeparableConvolution2D)
from .einsum_dense import EinsumDense
from .embedding import Embedding
from .pooling import (AdaptiveAveragePooling1D, AdaptiveAveragePooling2D, AdaptiveAveragePooling3D,
                      AdaptiveMaxPooling1D, AdaptiveMaxPooling2D, AdaptiveMaxPooling3D, AveragePooling1D,
                      AveragePooling2D, AveragePooling3D, AvgPool1D, AvgPool2D, AvgPool3D,
                      GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalAvgPool1D,
                      GlobalAvgPool2D, GlobalAvgPool3D, GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPool1D, MaxPool2D, MaxPool3D,
                      MaxPooling1D, MaxPooling2D, MaxPooling3D)
from .activation_layers import ELU, PReLU, ReLU, LeakyReLU, Softmax
from .multi_head_attention import MultiHeadAttention
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add, average, concatenate,
                      dot, maximum, minimum, multiply, subtract)
from .noise import (ActivityRegularization, AlphaDropout, GaussianDropout, GaussianNoise, SpatialDropout1D,
                    SpatialDropout2D, SpatialDropout3D)
from .normalization import (BatchNormalization, GroupNormalization, LayerNormalization, RMSNormalization,
                            SyncBatchNormalization, UnitNormalization)
from .preprocessing import (CategoryEncoding, CenterCrop, Discretization, Hashing, IntegerLookup, Normalization,
                            Rescaling, Resizing, StringLookup, TextVectorization)
from .reshaping import (Cropping1D, Cropping2D, Cropping3D, Permute, RepeatVector, UpSampling1D, UpSampling2D,
                        UpSampling3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D)
from .wrappers import TimeDistributed
from .recurrent import GRU, LSTM, RNN, Bidirectional, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell

__all__ = [name for name in dir() if not name.startswith('_') and (name[0].isupper() or name in (
    'add', 'average', 'concatenate', 'dot', 'maximum', 'minimum', 'multiply', 'subtract'))]
