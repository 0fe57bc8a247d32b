"""Convolution layers: Conv1D/2D/3D, their transposes, DepthwiseConv1D/2D, SeparableConv1D/2D.

The computation lives in kcompile/convolution.py (shared with kcompile.ops): a convolution is
pad → window (im2col view) → one matmul, with bias and activation fused into the matmul's
epilogue. The layers compute in channels_last; channels_first inputs are transposed in and out.
"""
from __future__ import annotations

import numpy as np

from .. import activations, initializers, regularizers
from ..convolution import (conv, conv_transpose, depthwise, from_channels_last, normalize_data_format,
                           normalize_padding, normalize_tuple, normalize_tuple_allow_zero, to_channels_last,
                           transpose_output_length)
from ..ir import builder as irb
from ..tracing import KerasTensor
from .base import InputSpec, Layer


class BaseConv(Layer):
    rank = 2
    transpose = False

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, lora_rank=None,
                 output_padding=None, **kwargs):
        for arg, value in (("kernel_constraint", kernel_constraint), ("bias_constraint", bias_constraint),
                           ("lora_rank", lora_rank)):
            if value is not None:
                raise ValueError(f"{type(self).__name__}: argument {arg}={value!r} is not supported")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        # arguments shared in this base class that a given Keras class does not have
        if self.transpose and groups != 1:
            _not_understood(self, "groups")
        if output_padding is not None and not self.transpose:
            _not_understood(self, "output_padding")
        r = self.rank
        if filters is not None and (not isinstance(filters, (int, np.integer)) or filters <= 0):
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly positive value. "
                             f"Received filters={filters}.")
        self.filters = None if filters is None else int(filters)
        self.kernel_size = normalize_tuple(kernel_size, r, "kernel_size")
        self.strides = normalize_tuple(strides, r, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, r, "dilation_rate")
        allowed = ("valid", "same", "causal") if (r == 1 and not self.transpose) else ("valid", "same")
        self.padding = normalize_padding(padding, allowed)
        self.data_format = normalize_data_format(data_format)
        self.groups = int(groups)
        if self.groups < 1 or (self.filters is not None and self.filters % self.groups):
            raise ValueError(f"The number of filters must be evenly divisible by the number of groups. "
                             f"Received: groups={groups}, filters={filters}.")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"`strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: "
                             f"strides={self.strides} and dilation_rate={self.dilation_rate}")
        self.output_padding = None if output_padding is None else \
            tuple(int(v) for v in normalize_tuple_allow_zero(output_padding, r))
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.input_spec = InputSpec(min_ndim=r + 2)

    def _channel_axis(self):
        return 1 if self.data_format == "channels_first" else -1

    def build(self, input_shape):
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError(f"{type(self).__name__} '{self.name}': the channel dimension of the inputs must be known")
        if channels % self.groups:
            raise ValueError(f"The number of input channels must be evenly divisible by the number of groups. "
                             f"Received groups={self.groups}, but the input has {channels} channels "
                             f"(full input shape is {input_shape}).")
        self._build_kernels(channels)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={self._channel_axis(): channels})
        self.built = True

    def _build_kernels(self, channels):
        shape = self.kernel_size + ((self.filters, channels) if self.transpose else (channels // self.groups, self.filters))
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer) if self.use_bias else None

    def call(self, inputs):
        x = to_channels_last(inputs.node, self.data_format)
        y = self._transposed(x) if self.transpose else self._forward(x)
        if self.bias is not None:
            y = irb.add(y, self.bias.node())
        y = from_channels_last(y, self.data_format)
        return self.activation(KerasTensor(y))

    def _forward(self, x):
        return conv(x, self.kernel.node(), self.strides, self.padding, self.dilation_rate)

    def _transposed(self, x):
        return conv_transpose(x, self.kernel.node(), self.strides, self.padding, self.dilation_rate,
                              self.output_padding)

    def output_length(self, size, axis):
        """Keras's transposed-convolution output length along one spatial axis."""
        return transpose_output_length(size, self.kernel_size[axis], self.strides[axis], self.dilation_rate[axis],
                                       self.padding, None if self.output_padding is None else
                                       self.output_padding[axis])

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "kernel_size": list(self.kernel_size), "strides": list(self.strides),
            "padding": self.padding, "data_format": self.data_format, "dilation_rate": list(self.dilation_rate),
            "groups": self.groups, "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": None, "bias_constraint": None,
        })
        if self.transpose:
            config.pop("groups")
            config["output_padding"] = None if self.output_padding is None else list(self.output_padding)
        return config


def _not_understood(layer, arg):
    raise TypeError(f"Keyword argument not understood: {arg!r} (in {type(layer).__name__})")


def _reject_foreign(layer, kwargs, names):
    """Depthwise/separable layers forward **kwargs to BaseConv: refuse BaseConv's own names there.
    groups=1 is let through because Keras 2 writes it into DepthwiseConv2D configs."""
    for arg in names:
        if arg in kwargs and not (arg == "groups" and kwargs[arg] == 1):
            _not_understood(layer, arg)


class Conv1D(BaseConv):
    rank = 1


class Conv2D(BaseConv):
    rank = 2


class Conv3D(BaseConv):
    rank = 3


class Conv1DTranspose(BaseConv):
    rank, transpose = 1, True


class Conv2DTranspose(BaseConv):
    rank, transpose = 2, True


class Conv3DTranspose(BaseConv):
    rank, transpose = 3, True


# ---------------------------------------------------------------- depthwise and separable

def _positive_depth_multiplier(value):
    if int(value) < 1:
        raise ValueError(f"depth_multiplier must be a positive integer, got {value}")
    return int(value)


class BaseDepthwiseConv(BaseConv):
    """Each input channel convolved with its own `depth_multiplier` filters."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        _reject_foreign(self, kwargs, ("filters", "groups", "output_padding", "kernel_initializer",
                                       "kernel_regularizer", "kernel_constraint"))
        if depthwise_constraint is not None:
            raise ValueError(f"{type(self).__name__}: argument depthwise_constraint={depthwise_constraint!r} "
                             f"is not supported")
        super().__init__(None, kernel_size, strides=strides, padding=padding, data_format=data_format,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         kernel_initializer=depthwise_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=depthwise_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer, bias_constraint=bias_constraint, **kwargs)
        self.depth_multiplier = _positive_depth_multiplier(depth_multiplier)

    def _build_kernels(self, channels):
        self.filters = channels * self.depth_multiplier
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_size + (channels, self.depth_multiplier),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer) if self.use_bias else None

    def _forward(self, x):
        return depthwise(x, self.kernel.node(), self.kernel_size, self.strides, self.dilation_rate, self.padding)

    def get_config(self):
        config = super().get_config()
        for key in ("filters", "groups"):
            config.pop(key, None)
        config["depth_multiplier"] = self.depth_multiplier
        config["depthwise_initializer"] = config.pop("kernel_initializer")
        config["depthwise_regularizer"] = config.pop("kernel_regularizer")
        config["depthwise_constraint"] = config.pop("kernel_constraint")
        return config


class DepthwiseConv1D(BaseDepthwiseConv):
    rank = 1


class DepthwiseConv2D(BaseDepthwiseConv):
    rank = 2


class BaseSeparableConv(BaseConv):
    """A depthwise convolution followed by a 1x1 (pointwise) convolution."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 depth_multiplier=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None, **kwargs):
        _reject_foreign(self, kwargs, ("groups", "output_padding", "kernel_initializer", "kernel_regularizer",
                                       "kernel_constraint"))
        for arg, value in (("depthwise_constraint", depthwise_constraint),
                           ("pointwise_constraint", pointwise_constraint)):
            if value is not None:
                raise ValueError(f"{type(self).__name__}: argument {arg}={value!r} is not supported")
        super().__init__(filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         kernel_initializer=depthwise_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=depthwise_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer, bias_constraint=bias_constraint, **kwargs)
        self.depth_multiplier = _positive_depth_multiplier(depth_multiplier)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)

    def _build_kernels(self, channels):
        self.depthwise_kernel = self.add_weight(name="depthwise_kernel",
                                                shape=self.kernel_size + (channels, self.depth_multiplier),
                                                initializer=self.kernel_initializer,
                                                regularizer=self.kernel_regularizer)
        self.pointwise_kernel = self.add_weight(name="pointwise_kernel",
                                                shape=(1,) * self.rank + (channels * self.depth_multiplier, self.filters),
                                                initializer=self.pointwise_initializer,
                                                regularizer=self.pointwise_regularizer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer) if self.use_bias else None

    def _forward(self, x):
        d = depthwise(x, self.depthwise_kernel.node(), self.kernel_size, self.strides, self.dilation_rate,
                      self.padding)
        pw = irb.reshape(self.pointwise_kernel.node(), (d.shape[-1], self.filters))
        return irb.matmul(d, pw)

    def get_config(self):
        config = super().get_config()
        config.pop("groups", None)
        config.update({"depth_multiplier": self.depth_multiplier,
                       "depthwise_initializer": config.pop("kernel_initializer"),
                       "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
                       "depthwise_regularizer": config.pop("kernel_regularizer"),
                       "pointwise_regularizer": regularizers.serialize(self.pointwise_regularizer),
                       "depthwise_constraint": config.pop("kernel_constraint"), "pointwise_constraint": None})
        return config


class SeparableConv1D(BaseSeparableConv):
    rank = 1


class SeparableConv2D(BaseSeparableConv):
    rank = 2


# Keras's long aliases
Convolution1D, Convolution2D, Convolution3D = Conv1D, Conv2D, Conv3D
Convolution1DTranspose, Convolution2DTranspose, Convolution3DTranspose = Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
SeparableConvolution1D, SeparableConvolution2D = SeparableConv1D, SeparableConv2D
