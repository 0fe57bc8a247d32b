"""Primitives for convolutions, pooling and embeddings, registered into the rule table.

`window` is im2col as a strided view: on x of shape (B, S1..Sk, C) it gives
(B, O1..Ok, W1..Wk, C) with out[b, o.., w.., c] = x[b, o_i*stride_i + w_i*dilation_i, c]. A
convolution is then window → (view) → matmul with the reshaped kernel, so it runs on the GEMM
micro-kernels and its gradients come from matmul's and window's rules. Pooling reduces the window
axes. `window_grad` (col2im) is window's transpose: overlapping windows are summed.

`gather_rows` looks rows of a table up by int32 index (Embedding); `scatter_add_rows` is its
transpose. An out-of-range index gives a row of NaN, so a bad index shows up instead of reading
arbitrary memory.
"""
from __future__ import annotations

import numpy as np

from .graph import BATCH, format_shape
from .primitives import ShapeError, register


# ---------------------------------------------------------------- window (im2col) and its transpose

def window_output_sizes(spatial, sizes, strides, dilations):
    out = []
    for s, w, st, d in zip(spatial, sizes, strides, dilations):
        span = (w - 1) * d + 1
        if s < span:
            raise ShapeError(f"a window of size {w} (dilation {d}) does not fit in a dimension of size {s}")
        out.append((s - span) // st + 1)
    return tuple(out)


def _check_window_attrs(attrs, k):
    for key in ("sizes", "strides", "dilations"):
        if len(attrs[key]) != k or any(int(v) < 1 for v in attrs[key]):
            raise ShapeError(f"window {key} must be {k} positive integers, got {attrs[key]}")


def _window_rule(inputs, attrs):
    (x,) = inputs
    k = len(attrs["sizes"])
    if len(x.shape) != k + 2 or any(d is BATCH for d in x.shape[1:]):
        raise ShapeError(f"window over {k} spatial axes needs (batch, {k} spatial, channels), got {format_shape(x.shape)}")
    _check_window_attrs(attrs, k)
    out = window_output_sizes(x.shape[1:-1], attrs["sizes"], attrs["strides"], attrs["dilations"])
    return (x.shape[0],) + out + tuple(attrs["sizes"]) + (x.shape[-1],), x.dtype


def window_strides(x_strides, attrs, scale=lambda stride, k: stride * k):
    """Strides of the window view over (B, O.., W.., C), given x's strides (B, S.., C).

    `scale(stride, k)` multiplies a stride by an integer (numpy byte strides, or the code
    generator's symbolic strides)."""
    k = len(attrs["sizes"])
    spatial = x_strides[1:1 + k]
    return ([x_strides[0]] + [scale(s, st) for st, s in zip(attrs["strides"], spatial)]
            + [scale(s, d) for d, s in zip(attrs["dilations"], spatial)] + [x_strides[-1]])


def _window_ref(args, attrs, shape):
    (x,) = args
    strides = window_strides(list(x.strides), attrs)
    view = np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)
    return np.ascontiguousarray(view)


def _window_grad_rule(inputs, attrs):
    (g,) = inputs
    k = len(attrs["sizes"])
    spatial = tuple(attrs["input_spatial"])
    expected = window_output_sizes(spatial, attrs["sizes"], attrs["strides"], attrs["dilations"])
    if len(g.shape) != 2 * k + 2 or tuple(g.shape[1:1 + k]) != expected or tuple(g.shape[1 + k:1 + 2 * k]) != tuple(attrs["sizes"]):
        raise ShapeError(f"window_grad: cotangent {format_shape(g.shape)} does not match windows of "
                         f"{attrs['sizes']} over {spatial}")
    return (g.shape[0],) + spatial + (g.shape[-1],), g.dtype


def _window_grad_ref(args, attrs, shape):
    (g,) = args
    out = np.zeros(shape, dtype=g.dtype)
    view = np.lib.stride_tricks.as_strided(out, shape=g.shape, strides=window_strides(list(out.strides), attrs))
    k = len(attrs["sizes"])
    # accumulate one window offset at a time: within one offset, positions never overlap
    for w in np.ndindex(*attrs["sizes"]):
        index = (slice(None),) * (1 + k) + w
        view[index] += g[index]
    return out


def _window_attrs(attrs):
    return {k: attrs[k] for k in ("sizes", "strides", "dilations")}


register("window", "layout", _window_rule, _window_ref,
         lambda b, node, g: [b.window_grad(g, node.inputs[0].shape[1:-1], **_window_attrs(node.attrs))])
register("window_grad", "opaque", _window_grad_rule, _window_grad_ref,
         lambda b, node, g: [b.window(g, **_window_attrs(node.attrs))])


# ---------------------------------------------------------------- row gather / scatter (Embedding)

def _gather_rule(inputs, attrs):
    table, idx = inputs
    if len(table.shape) != 2 or BATCH in table.shape:
        raise ShapeError(f"gather_rows needs a (rows, width) table, got {format_shape(table.shape)}")
    if idx.dtype != "int32":
        raise ShapeError(f"gather_rows needs int32 indices, got {idx.dtype}")
    return tuple(idx.shape) + (table.shape[1],), table.dtype


def _gather_ref(args, attrs, shape):
    table, idx = args
    ok = (idx >= 0) & (idx < table.shape[0])
    out = table[np.where(ok, idx, 0)].astype(table.dtype)
    out[~ok] = np.nan
    return out


def _scatter_rule(inputs, attrs):
    g, idx = inputs
    if tuple(g.shape[:-1]) != tuple(idx.shape) or idx.dtype != "int32":
        raise ShapeError(f"scatter_add_rows: values {format_shape(g.shape)} do not match int32 indices "
                         f"{format_shape(idx.shape)}")
    return (int(attrs["rows"]), g.shape[-1]), g.dtype


def _scatter_ref(args, attrs, shape):
    g, idx = args
    out = np.zeros(shape, dtype=np.float64)
    flat_i, flat_g = idx.reshape(-1), g.reshape(-1, g.shape[-1])
    ok = (flat_i >= 0) & (flat_i < shape[0])
    np.add.at(out, flat_i[ok], flat_g[ok])
    return out.astype(g.dtype)


register("gather_rows", "opaque", _gather_rule, _gather_ref,
         lambda b, node, g: [b.scatter_add_rows(g, node.inputs[1], node.inputs[0].shape[0]), None])
register("scatter_add_rows", "opaque", _scatter_rule, _scatter_ref,
         lambda b, node, g: [b.gather_rows(g, node.inputs[1]), None])
