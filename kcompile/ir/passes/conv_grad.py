"""The input gradient of a stride-1 convolution as a convolution (no col2im).

Differentiating conv = window → matmul(kernel) gives dx = window_grad(g @ kernelᵀ): a matrix of
the window's size (9x the input for a 3x3 kernel) written out, then summed back into place. For
unit strides the same sum is a convolution of the padded gradient with the flipped kernel,

    dx[b, s, c] = Σ_w Σ_f g[b, s - w·d, f] · K[w, c, f]
                = Σ_w' Σ_f gp[b, s + w'·d, f] · K[W-1-w', c, f],   gp = g padded by (W-1)·d,

which is window → matmul again and so runs as an implicit GEMM (codegen/gemm_gather.py) with the
same multiply-adds and no large intermediate. Strided convolutions keep window_grad.
"""
from __future__ import annotations

from .. import builder as b
from .memory import base_of
from .rewrite import rewrite


def conv_input_grads(graph):
    def rule(node):
        if node.op != "window_grad" or any(s != 1 for s in node.attrs["strides"]):
            return None
        mm = base_of(node.inputs[0])
        if mm.op != "matmul" or mm.attrs["transpose_a"] or not mm.attrs["transpose_b"] or mm.dtype != "float32":
            return None
        g, kernel = mm.inputs
        sizes, dilations = node.attrs["sizes"], node.attrs["dilations"]
        k, channels, filters = len(sizes), int(node.shape[-1]), int(g.shape[-1])
        window_size = 1
        for w in sizes:
            window_size *= int(w)
        if tuple(kernel.shape) != (window_size * channels, filters) or int(mm.shape[-1]) != window_size * channels:
            return None
        outputs = tuple(node.inputs[0].shape[1:1 + k])
        g = b.reshape(g, (node.shape[0],) + outputs + (filters,))
        halo = [(int(w) - 1) * int(d) for w, d in zip(sizes, dilations)]
        padded = b.pad(g, ((0, 0),) + tuple((h, h) for h in halo) + ((0, 0),))
        windows = b.window(padded, sizes, [1] * k, dilations)
        flipped = b.reshape(kernel, tuple(sizes) + (channels, filters))
        for axis in range(k):
            flipped = b.reverse(flipped, axis)
        flipped = b.transpose(flipped, tuple(range(k)) + (k + 1, k))          # (W.., F, C)
        flipped = b.reshape(flipped, (window_size * filters, channels))
        cols = b.reshape(windows, tuple(windows.shape[:1 + k]) + (window_size * filters,))
        return b.matmul(cols, flipped)
    return rewrite(graph, rule)
