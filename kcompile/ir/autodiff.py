"""Reverse-mode automatic differentiation as a graph transformation.

`grad(loss, wrt)` walks the nodes that `loss` depends on in reverse topological order, asks each
primitive's VJP rule (in `primitives.py`) for its inputs' cotangents, and sums cotangents of
values used several times. The result is more IR: the backward pass is just nodes.
"""
from __future__ import annotations

from . import builder as b
from .graph import toposort
from .primitives import PRIMITIVES


def grad(loss, wrt):
    """Cotangents d loss / d w for each node in `wrt` (a zero tensor where loss does not depend on w)."""
    if loss.shape != ():
        raise ValueError(f"grad needs a scalar loss, got shape {loss.shape}")
    order = toposort([loss])
    needed = _needs_grad(order, {w.id for w in wrt})
    cotangents = {loss.id: b.const(1.0)}
    for node in reversed(order):
        g = cotangents.get(node.id)
        if g is None or not node.inputs or node.id not in needed:
            continue
        vjp = PRIMITIVES[node.op].vjp
        if vjp is None:
            raise NotImplementedError(f"primitive {node.op!r} has no gradient rule")
        for inp, gi in zip(node.inputs, vjp(b, node, g)):
            if gi is None or inp.id not in needed or inp.dtype != "float32":
                continue
            prev = cotangents.get(inp.id)
            cotangents[inp.id] = gi if prev is None else b.add(prev, gi)
    return [cotangents.get(w.id, b.zeros_like(w)) for w in wrt]


def _needs_grad(order, targets):
    """Ids of nodes on a path to one of `targets` (only those need cotangents)."""
    needed = set(targets)
    for node in order:
        if any(i.id in needed for i in node.inputs):
            needed.add(node.id)
    return needed
