"""Pooling layers: Max/AveragePooling1D/2D/3D, GlobalMax/GlobalAveragePooling1D/2D/3D and
AdaptiveMax/AdaptiveAveragePooling1D/2D/3D.

Windowed pooling reduces the window axes of the `window` view (see convolution.pool). With
padding='same', max pooling never picks a padded position and average pooling divides by the
number of real inputs in each window, as Keras does.
"""
from __future__ import annotations

from ..convolution import (from_channels_last, normalize_data_format, normalize_padding, normalize_tuple, pool,
                           to_channels_last)
from ..ir import builder as irb
from ..tracing import KerasTensor
from .base import InputSpec, Layer


class BasePooling(Layer):
    rank, mode = 2, "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size")
        self.strides = normalize_tuple(self.pool_size if strides is None else strides, self.rank, "strides")
        self.padding = normalize_padding(padding)
        self.data_format = normalize_data_format(data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs):
        x = to_channels_last(inputs.node, self.data_format)
        y = pool(x, self.mode, self.pool_size, self.strides, self.padding)
        return KerasTensor(from_channels_last(y, self.data_format))

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": list(self.pool_size), "strides": list(self.strides), "padding": self.padding,
                       "data_format": self.data_format})
        return config


class MaxPooling1D(BasePooling):
    rank, mode = 1, "max"


class MaxPooling2D(BasePooling):
    rank, mode = 2, "max"


class MaxPooling3D(BasePooling):
    rank, mode = 3, "max"


class AveragePooling1D(BasePooling):
    rank, mode = 1, "average"


class AveragePooling2D(BasePooling):
    rank, mode = 2, "average"


class AveragePooling3D(BasePooling):
    rank, mode = 3, "average"


class BaseGlobalPooling(Layer):
    rank, mode = 2, "max"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format)
        self.keepdims = bool(keepdims)
        self.input_spec = InputSpec(ndim=self.rank + 2)
        self.supports_masking = self.rank == 1 and self.mode == "average"

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs, mask=None):
        x = inputs.node if inputs.dtype == "float32" else irb.cast(inputs.node, "float32")
        axes = tuple(range(2, 2 + self.rank)) if self.data_format == "channels_first" else tuple(range(1, 1 + self.rank))
        if self.mode == "max":
            return KerasTensor(irb.reduce_max(x, axes, keepdims=self.keepdims))
        if mask is not None and self.rank == 1:
            m = irb.cast(mask.node if isinstance(mask, KerasTensor) else irb.as_node(mask), "float32")
            m = irb.reshape(m, m.shape + (1,)) if self.data_format == "channels_last" else \
                irb.reshape(m, (m.shape[0], 1, m.shape[1]))
            total = irb.reduce_sum(irb.mul(x, m), axes, keepdims=self.keepdims)
            return KerasTensor(irb.div(total, irb.reduce_sum(m, axes, keepdims=self.keepdims)))
        return KerasTensor(irb.reduce_mean(x, axes, keepdims=self.keepdims))

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config


class GlobalMaxPooling1D(BaseGlobalPooling):
    rank, mode = 1, "max"


class GlobalMaxPooling2D(BaseGlobalPooling):
    rank, mode = 2, "max"


class GlobalMaxPooling3D(BaseGlobalPooling):
    rank, mode = 3, "max"


class GlobalAveragePooling1D(BaseGlobalPooling):
    rank, mode = 1, "average"


class GlobalAveragePooling2D(BaseGlobalPooling):
    rank, mode = 2, "average"


class GlobalAveragePooling3D(BaseGlobalPooling):
    rank, mode = 3, "average"


# Keras's short aliases
MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D
GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D


class _AdaptivePooling(Layer):
    """Keras 3's adaptive pooling: output index i of a spatial axis of input size L pools the window
    [floor(i*L/n), ceil((i+1)*L/n)) for an output size n (windows overlap when n does not divide L,
    and repeat inputs when n > L)."""
    rank, mode = 1, "max"

    def __init__(self, output_size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(output_size, int):
            output_size = (output_size,) * self.rank
        elif isinstance(output_size, (tuple, list)):
            if len(output_size) != self.rank:
                raise ValueError(f"For {self.rank}D input, `output_size` tuple must have length {self.rank}. "
                                 f"Received: {output_size}")
        else:
            raise TypeError(f"`output_size` must be an integer or tuple of {self.rank} integers. "
                            f"Received: {output_size} of type {type(output_size)}")
        if any(int(n) != n or n <= 0 for n in output_size):
            raise ValueError(f"`output_size` entries must be positive integers. Received: {output_size}")
        self.output_size = tuple(int(n) for n in output_size)
        self.data_format = normalize_data_format(data_format)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def call(self, inputs):
        x = to_channels_last(inputs.node, self.data_format)
        reduce = irb.reduce_max if self.mode == "max" else irb.reduce_mean
        for axis, n in enumerate(self.output_size, start=1):
            size = x.shape[axis]
            if size is None or not isinstance(size, int):
                raise ValueError(f"{type(self).__name__} '{self.name}': the spatial sizes must be known, "
                                 f"got input shape {inputs.shape}")
            parts = []
            for i in range(n):
                lo, hi = (i * size) // n, -((-(i + 1) * size) // n)
                bounds = [(0, None)] + [(0, d) for d in x.shape[1:]]
                bounds[axis] = (lo, hi)
                parts.append(reduce(irb.slice(x, bounds), axis, True))
            x = parts[0] if n == 1 else irb.concat(parts, axis)
        return KerasTensor(from_channels_last(x, self.data_format))

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size), "data_format": self.data_format}


class AdaptiveAveragePooling1D(_AdaptivePooling):
    rank, mode = 1, "average"


class AdaptiveAveragePooling2D(_AdaptivePooling):
    rank, mode = 2, "average"


class AdaptiveAveragePooling3D(_AdaptivePooling):
    rank, mode = 3, "average"


class AdaptiveMaxPooling1D(_AdaptivePooling):
    rank, mode = 1, "max"


class AdaptiveMaxPooling2D(_AdaptivePooling):
    rank, mode = 2, "max"


class AdaptiveMaxPooling3D(_AdaptivePooling):
    rank, mode = 3, "max"
