"""Convolution and pooling ops of `kcompile.ops` (Keras 3's ops.conv, conv_transpose,
depthwise_conv, separable_conv, max_pool, average_pool), for custom layers.

They share their implementation with the layers (kcompile/convolution.py): channels_last
nodes built from `window` and matmul; channels_first inputs are transposed around that core. Like every op they emit IR on symbolic tensors and evaluate at once on arrays.
"""
from __future__ import annotations

from .convolution import (conv as _conv, conv_transpose as _conv_transpose, depthwise as _depthwise,
                          from_channels_last, normalize_data_format, normalize_padding, normalize_tuple,
                          normalize_tuple_allow_zero, pool as _pool, to_channels_last)
from .ops import _n, keras_op


def _spatial_rank(x, name):
    rank = len(x.shape) - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"{name}: inputs must have rank 3, 4 or 5 (batch, spatial.., channels), "
                         f"got shape {x.shape}")
    return rank


def _common(name, x, strides, padding, data_format, dilation_rate):
    rank = _spatial_rank(x, name)
    strides = normalize_tuple(strides, rank, "strides")
    dilation = normalize_tuple(dilation_rate, rank, "dilation_rate")
    padding = normalize_padding(padding)
    data_format = normalize_data_format(data_format)
    return rank, strides, dilation, padding, data_format


def _check_kernel(name, kernel, rank):
    if len(kernel.shape) != rank + 2:
        raise ValueError(f"{name}: a kernel for {rank} spatial dimensions has rank {rank + 2}, got shape {kernel.shape}")


@keras_op
def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """N-D convolution; kernel (k.., in_channels / groups, out_channels)."""
    x, kernel = _n(inputs), _n(kernel)
    rank, strides, dilation, padding, data_format = _common("conv", x, strides, padding, data_format, dilation_rate)
    _check_kernel("conv", kernel, rank)
    y = _conv(to_channels_last(x, data_format), kernel, strides, padding, dilation)
    return from_channels_last(y, data_format)


@keras_op
def conv_transpose(inputs, kernel, strides, padding="valid", output_padding=None, data_format=None,
                   dilation_rate=1):
    """Transposed convolution; kernel (k.., out_channels, in_channels)."""
    x, kernel = _n(inputs), _n(kernel)
    rank, strides, dilation, padding, data_format = _common("conv_transpose", x, strides, padding, data_format,
                                                            dilation_rate)
    _check_kernel("conv_transpose", kernel, rank)
    if output_padding is not None:
        output_padding = normalize_tuple_allow_zero(output_padding, rank)
    y = _conv_transpose(to_channels_last(x, data_format), kernel, strides, padding, dilation, output_padding)
    return from_channels_last(y, data_format)


@keras_op
def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """Per-channel convolution; kernel (k.., in_channels, depth_multiplier)."""
    x, kernel = _n(inputs), _n(kernel)
    rank, strides, dilation, padding, data_format = _common("depthwise_conv", x, strides, padding, data_format,
                                                            dilation_rate)
    _check_kernel("depthwise_conv", kernel, rank)
    x = to_channels_last(x, data_format)
    if kernel.shape[-2] != x.shape[-1]:
        raise ValueError(f"depthwise_conv: kernel {kernel.shape} needs {kernel.shape[-2]} input channels, "
                         f"got {x.shape[-1]}")
    y = _depthwise(x, kernel, tuple(kernel.shape[:rank]), strides, dilation, padding)
    return from_channels_last(y, data_format)


@keras_op
def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    """depthwise_conv followed by a 1x1 conv with pointwise_kernel (1.., C*multiplier, out_channels)."""
    x, dk, pk = _n(inputs), _n(depthwise_kernel), _n(pointwise_kernel)
    rank, strides, dilation, padding, data_format = _common("separable_conv", x, strides, padding, data_format,
                                                            dilation_rate)
    _check_kernel("separable_conv", dk, rank)
    _check_kernel("separable_conv", pk, rank)
    x = to_channels_last(x, data_format)
    if dk.shape[-2] != x.shape[-1]:
        raise ValueError(f"separable_conv: depthwise kernel {dk.shape} needs {dk.shape[-2]} input channels, "
                         f"got {x.shape[-1]}")
    mid = _depthwise(x, dk, tuple(dk.shape[:rank]), strides, dilation, padding)
    y = _conv(mid, pk, (1,) * rank, "valid", (1,) * rank)
    return from_channels_last(y, data_format)


def _pool_op(mode, name):
    def op(inputs, pool_size, strides=None, padding="valid", data_format=None):
        x = _n(inputs)
        rank = _spatial_rank(x, name)
        size = normalize_tuple(pool_size, rank, "pool_size")
        steps = normalize_tuple(size if strides is None else strides, rank, "strides")
        data_format = normalize_data_format(data_format)
        y = _pool(to_channels_last(x, data_format), mode, size, steps, normalize_padding(padding))
        return from_channels_last(y, data_format)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"{mode.capitalize()} pooling over windows of `pool_size` (strides default to pool_size)."
    return keras_op(op)


max_pool = _pool_op("max", "max_pool")
average_pool = _pool_op("average", "average_pool")
