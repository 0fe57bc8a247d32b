"""Convolution and pooling on IR nodes, shared by the layers (layers/convolutional.py,
layers/pooling.py) and kcompile.ops (ops_convolution.py): argument normalisation, Keras's padding
rules, and the cores, all channels_last (B, S.., C).

Everything is written on the `window` primitive (im2col as a strided view, see
ir/primitives_spatial.py): a convolution is pad → window → one matmul with the reshaped kernel, so
it runs on the GEMM micro-kernels with bias and activation fused into its epilogue and its
gradients come from matmul's and window's rules; the transposed convolution is a matmul followed
by `window_grad` (col2im); pooling reduces the window axes. None of these windows is materialised
by the compiled code: fusion lets the matmul read through it (codegen/gemm_gather.py) and pooling
read it as a view; stride-1 input gradients become convolutions (ir/passes/conv_grad.py).
"""
from __future__ import annotations

import numpy as np

from .ir import builder as irb
from .ir.graph import BATCH, Graph
from .ir.interpreter import evaluate


def normalize_tuple(value, rank, name):
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank or any(v < 1 for v in value):
        raise ValueError(f"The `{name}` argument must be a tuple of {rank} positive integers. Received: {value}")
    return value


def normalize_tuple_allow_zero(value, rank):
    value = (int(value),) * rank if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(value) != rank or any(v < 0 for v in value):
        raise ValueError(f"The `output_padding` argument must be a tuple of {rank} non-negative integers. "
                         f"Received: {value}")
    return value


def normalize_padding(padding, allowed=("valid", "same")):
    padding = str(padding).lower()
    if padding not in allowed:
        raise ValueError(f"The `padding` argument must be one of {list(allowed)}. Received: {padding}")
    return padding


def normalize_data_format(value):
    value = (value or "channels_last").lower()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"The `data_format` argument must be one of 'channels_first', 'channels_last'. "
                         f"Received: {value}")
    return value


def same_padding(size, kernel, stride, dilation):
    """(before, after) so that a window pass gives ceil(size / stride) outputs (TensorFlow's rule)."""
    span = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def to_channels_last(x, data_format):
    if data_format == "channels_first":
        rank = len(x.shape)
        return irb.transpose(x, (0,) + tuple(range(2, rank)) + (1,))
    return x


def from_channels_last(x, data_format):
    if data_format == "channels_first":
        rank = len(x.shape)
        return irb.transpose(x, (0, rank - 1) + tuple(range(1, rank - 1)))
    return x


def pad_spatial(x, pads, value=None):
    """Pad the spatial axes of (B, S.., C); `value` other than 0 fills through a constant mask."""
    full = ((0, 0),) + tuple(pads) + ((0, 0),)
    padded = irb.pad(x, full)
    if value is None or not any(lo or hi for lo, hi in pads):
        return padded
    inside = irb.pad(irb.const(np.ones((1,) + tuple(x.shape[1:-1]) + (1,), np.float32)), full)
    return irb.where(inside, padded, irb.const(value))


def conv_windows(x, kernel_size, strides, dilation, padding):
    """(B, S.., C) → (B, O.., prod(kernel)*C): the patches a convolution multiplies with its kernel."""
    if padding == "same":
        pads = [same_padding(s, k, st, d) for s, k, st, d in zip(x.shape[1:-1], kernel_size, strides, dilation)]
    elif padding == "causal":
        pads = [((kernel_size[0] - 1) * dilation[0], 0)]
    else:
        pads = [(0, 0)] * len(kernel_size)
    win = irb.window(pad_spatial(x, pads), kernel_size, strides, dilation)
    k = len(kernel_size)
    return irb.reshape(win, win.shape[:1 + k] + (int(np.prod(kernel_size)) * x.shape[-1],))


def conv(x, kernel, strides, padding, dilation):
    """(B, S.., C) with a (k.., C/groups, F) kernel → (B, O.., F): im2col windows @ kernel, per group
    (the number of groups is C over the kernel's input channels, as in Keras's ops.conv)."""
    r = len(kernel.shape) - 2
    kernel_size = tuple(kernel.shape[:r])
    cin, per_group, filters = x.shape[-1], kernel.shape[-2], kernel.shape[-1]
    if cin % per_group or filters % (cin // per_group):
        raise ValueError(f"conv: a kernel of shape {kernel.shape} does not fit inputs with {cin} channels "
                         f"(kernel input channels must divide them, and the groups must divide the filters)")
    groups = cin // per_group
    out_per_group = filters // groups
    outs = []
    for g in range(groups):
        xg = x if groups == 1 else irb.slice(x, _channel_bounds(x.shape, g * per_group, (g + 1) * per_group))
        kg = kernel if groups == 1 else irb.slice(kernel, _channel_bounds(kernel.shape, g * out_per_group,
                                                                          (g + 1) * out_per_group))
        cols = conv_windows(xg, kernel_size, strides, dilation, padding)
        outs.append(irb.matmul(cols, irb.reshape(kg, (cols.shape[-1], out_per_group))))
    return outs[0] if len(outs) == 1 else irb.concat(outs, -1)


def transpose_output_length(size, kernel, stride, dilation, padding, output_padding=None):
    """Keras's transposed-convolution output length along one spatial axis."""
    span = (kernel - 1) * dilation + 1
    if output_padding is None:
        return size * stride + max(span - stride, 0) if padding == "valid" else size * stride
    pad = 0 if padding == "valid" else span // 2
    return (size - 1) * stride + span - 2 * pad + output_padding


def conv_transpose(x, kernel, strides, padding, dilation, output_padding=None):
    """(B, S.., C) with a (k.., F, C) kernel → (B, O.., F): the gradient of a convolution with
    respect to its input, i.e. matmul, then col2im (window_grad), then crop to Keras's size."""
    r = len(kernel.shape) - 2
    k, filters = tuple(kernel.shape[:r]), kernel.shape[-2]
    if kernel.shape[-1] != x.shape[-1]:
        raise ValueError(f"conv_transpose: a kernel of shape {kernel.shape} needs inputs with {kernel.shape[-1]} "
                         f"channels, got {x.shape[-1]}")
    spatial = x.shape[1:-1]
    cols = irb.matmul(x, irb.reshape(kernel, (int(np.prod(k)) * filters, x.shape[-1])),
                      transpose_b=True)                                  # (B, S.., prod(k)*F)
    cols = irb.reshape(cols, (cols.shape[0],) + tuple(spatial) + k + (filters,))
    full = tuple((s - 1) * st + (kk - 1) * d + 1 for s, st, kk, d in zip(spatial, strides, k, dilation))
    y = irb.window_grad(cols, full, k, strides, dilation)
    bounds, pads = [(0, None) if x.shape[0] is BATCH else (0, x.shape[0])], [(0, 0)]
    for i in range(r):
        size = transpose_output_length(spatial[i], k[i], strides[i], dilation[i], padding,
                                       None if output_padding is None else output_padding[i])
        span = (k[i] - 1) * dilation[i] + 1
        # 'same' crops as the forward convolution of that output size pads: the smaller half first
        lo = max((spatial[i] - 1) * strides[i] + span - size, 0) // 2 if padding == "same" else 0
        hi = min(full[i], lo + size)
        bounds.append((lo, hi))
        pads.append((0, lo + size - hi))        # output_padding can ask for more than col2im covers
    y = irb.slice(y, tuple(bounds) + ((0, filters),))
    return irb.pad(y, tuple(pads) + ((0, 0),))


def _channel_bounds(shape, lo, hi):
    return tuple((0, None) if d is BATCH else (0, d) for d in shape[:-1]) + ((lo, hi),)


def depthwise(x, kernel, kernel_size, strides, dilation, padding):
    """(B, S.., C) with a (k.., C, M) kernel → (B, O.., C*M): a broadcast product summed over the window."""
    channels, mult = kernel.shape[-2], kernel.shape[-1]
    r = len(kernel_size)
    cols = conv_windows(x, kernel_size, strides, dilation, padding)            # (B, O.., Wp*C)
    wp = int(np.prod(kernel_size))
    cols = irb.reshape(cols, cols.shape[:1 + r] + (wp, channels, 1))
    prod = irb.mul(cols, irb.reshape(kernel, (wp, channels, mult)))
    out = irb.reduce_sum(prod, 1 + r)                                           # (B, O.., C, M)
    return irb.reshape(out, out.shape[:1 + r] + (channels * mult,))


_LOWEST = float(np.finfo(np.float32).min)


def pool(x, mode, pool_size, strides, padding):
    """Max ('max') or average ('average') pooling of channels_last (B, S.., C) over windows."""
    if x.dtype != "float32":
        x = irb.cast(x, "float32")
    r = len(pool_size)
    spatial = x.shape[1:-1]
    pads = [same_padding(s, k, st, 1) for s, k, st in zip(spatial, pool_size, strides)] \
        if padding == "same" else [(0, 0)] * r
    ones, axes = (1,) * r, tuple(range(1 + r, 1 + 2 * r))
    if mode == "max":
        win = irb.window(pad_spatial(x, pads, _LOWEST), pool_size, strides, ones)
        return irb.reduce_max(win, axes)
    win = irb.window(pad_spatial(x, pads), pool_size, strides, ones)
    return irb.div(irb.reduce_sum(win, axes), irb.const(_window_counts(spatial, pads, pool_size, strides)))


def _window_counts(spatial, pads, pool_size, strides):
    """How many real (unpadded) inputs each output window covers, shape (1, O.., 1): evaluated
    now, since spatial sizes are static."""
    r = len(pool_size)
    ones = irb.const(np.ones((1,) + tuple(spatial) + (1,), np.float32))
    win = irb.window(pad_spatial(ones, pads), pool_size, strides, (1,) * r)
    count = irb.reduce_sum(win, tuple(range(1 + r, 1 + 2 * r)))
    values, _ = evaluate(Graph([], {"c": count}), {}, {}, batch=1)
    return values["c"]
