"""Simplification passes: common-subexpression elimination, constant folding, algebraic rules.

Dead-code elimination needs no pass of its own: a graph's nodes are whatever its outputs and
updates reach, so every rewrite drops unreachable nodes.
"""
from __future__ import annotations

import numpy as np

from .. import builder as b
from ..graph import BATCH, static_size
from ..primitives import PRIMITIVES
from ..slices import simpler_pad, simplest_slice
from .rewrite import rewrite

FOLD_LIMIT = 1 << 16  # elements; larger constants stay computed at run time


def cse(graph):
    seen = {}

    def rule(node):
        if node.op in ("input", "param"):
            return None
        key = node.key()
        if key in seen:
            return seen[key]
        seen[key] = node
        return None
    return rewrite(graph, rule)


def fold_constants(graph):
    def rule(node):
        if not node.inputs or any(i.op != "const" for i in node.inputs) or BATCH in node.shape:
            return None
        if node.op == "random_uniform" or static_size(node.shape) > FOLD_LIMIT:
            return None
        value = PRIMITIVES[node.op].reference([i.attrs["value"] for i in node.inputs], node.attrs, node.shape)
        return b.const(np.asarray(value, dtype=node.dtype).reshape(node.shape), node.dtype)
    return rewrite(graph, rule)


def _is_const(node, value):
    return node.op == "const" and node.attrs["value"].size == 1 and float(node.attrs["value"].reshape(())) == value


def algebraic(graph):
    """Identities that are exact in IEEE arithmetic (no x*0 -> 0: that would drop NaN/inf)."""

    def rule(node):
        ins = node.inputs
        if node.op in ("add", "sub") and _is_const(ins[1], 0.0) and ins[0].shape == node.shape:
            return ins[0]
        if node.op == "add" and _is_const(ins[0], 0.0) and ins[1].shape == node.shape:
            return ins[1]
        if node.op in ("mul", "div") and _is_const(ins[1], 1.0) and ins[0].shape == node.shape:
            return ins[0]
        if node.op == "mul" and _is_const(ins[0], 1.0) and ins[1].shape == node.shape:
            return ins[1]
        if node.op == "neg" and ins[0].op == "neg":
            return ins[0].inputs[0]
        if node.op == "reshape" and ins[0].op == "reshape" and \
                not (node.attrs.get("rebatch") or ins[0].attrs.get("rebatch")):
            inner = ins[0].inputs[0]
            return inner if inner.shape == node.shape else b.reshape(inner, node.shape)
        if node.op == "transpose" and ins[0].op == "transpose":      # e.g. between stacked RNN layers
            inner, perm = ins[0].inputs[0], ins[0].attrs["perm"]
            composed = tuple(perm[p] for p in node.attrs["perm"])
            return inner if composed == tuple(range(len(composed))) else b.transpose(inner, composed)
        if node.op == "cast" and ins[0].dtype == node.dtype:
            return ins[0]
        # the output cotangent of a scan whose last step alone is read: pads of pads, sliced
        if node.op == "slice":
            return simplest_slice(ins[0], node.attrs["bounds"])
        if node.op == "pad":
            return simpler_pad(ins[0], node.attrs["pads"])
        # log(softmax(x)) -> log_softmax(x): exact in real arithmetic, and stable in float.
        if node.op == "log" and ins[0].op == "div":
            num, den = ins[0].inputs
            if (num.op == "exp" and den.op == "reduce_sum" and den.inputs[0] is num
                    and den.attrs["keepdims"]):
                shifted = num.inputs[0]
                return b.sub(shifted, b.log(den))
        return None
    return rewrite(graph, rule)
