"""`scan`: a loop over time in the IR, so a recurrent layer is one node, not T copies of its cell.

    out = scan(init, xs, *consts; body, reverse)
    init (N, R)      the packed row before the first step (its carry part, e.g. [h | c])
    xs   (T, N, F)   per-step inputs, time-major so each step's slab is contiguous
    out  (T, N, R)   out[t] = body(prev, xs[t], *consts), prev = out[t-1] (init at the first step)

`body` is a Graph whose inputs are placeholders (prev, x, consts) and whose one output is the
next row. A row may carry more than the state (e.g. a per-step output after it); the body reads
what it needs of `prev`. `reverse` walks t from T-1 down to 0 (out stays indexed by t).

The gradient is another, reversed scan whose body recomputes the forward step from the stored
rows and applies the body's own VJP. Weights used inside the body (consts) are not
differentiated per step: the backward scan stores, per step, what each weight-consuming node
needs (its other operands and its output cotangent), and the weight gradient is then one
time-stacked application of that node's VJP — e.g. dU = H_prevᵀ·dZ as a single large matmul.
The CPU code generator runs the body's own kernels once per step (codegen/lower.py).
"""
from __future__ import annotations

import numpy as np

from . import builder as b
from .graph import BATCH, Graph, Node, format_shape, static_size, toposort
from .primitives import PRIMITIVES, ShapeError, register

_STACKABLE = ("elementwise",)   # fusion classes whose rules broadcast over extra leading axes


def clone(roots, mapping):
    """Copies of the nodes `roots` depend on, with the nodes in `mapping` (id -> node) replaced."""
    new = dict(mapping)
    for node in toposort(roots):
        if node.id in new:
            continue
        inputs = tuple(new.get(i.id, i) for i in node.inputs)
        if all(a is c for a, c in zip(inputs, node.inputs)):
            new[node.id] = node
        else:
            new[node.id] = Node(node.op, inputs, node.attrs, node.shape, node.dtype, node.name)
    return [new[r.id] for r in roots]


def scan(step, init, xs, consts=(), reverse=False):
    """Build a scan node; `step(prev, x, consts) -> row` builds the body from placeholders.

    Everything in the body that does not depend on `prev` or `x` is loop-invariant: weights,
    masks, other tensors of the enclosing graph and expressions of them (a slice of a weight)
    are computed once outside the loop and become the scan's const operands.
    """
    init, xs = b.as_node(init), b.as_node(xs)
    if len(init.shape) != 2 or init.shape[0] is not BATCH:
        raise ShapeError(f"scan: the initial row must be (batch, width), got {format_shape(init.shape)}")
    if len(xs.shape) < 2 or xs.shape[1] is not BATCH or xs.shape[0] is BATCH:
        raise ShapeError(f"scan: inputs must be time-major (time, batch, ...), got {format_shape(xs.shape)}")
    prev = b.input("scan_prev", init.shape, init.dtype, index=0)
    x = b.input("scan_x", xs.shape[1:], xs.dtype, index=1)
    placeholders = [b.input(f"scan_arg{i}", c.shape, c.dtype) for i, c in enumerate(consts)]
    row = b.as_node(step(prev, x, placeholders))
    if row.shape != init.shape or row.dtype != init.dtype:
        raise ShapeError(f"scan: the step returns {format_shape(row.shape)} {row.dtype}, but the row is "
                         f"{format_shape(init.shape)} {init.dtype}")
    if placeholders:
        (row,) = clone([row], {p.id: c for p, c in zip(placeholders, consts)})
    row, captured = _hoist_invariants(row, prev, x)
    body = Graph([prev, x] + [inner for _, inner in captured], {"row": row}, name="scan_body")
    return b.node("scan", [init, xs] + [outer for outer, _ in captured], {"body": body, "reverse": bool(reverse)})


def _hoist_invariants(row, prev, x):
    """Replace the body's loop-invariant values by placeholders; returns (row, [(outer, placeholder)])."""
    order = toposort([row])
    per_step = {prev.id, x.id}
    for node in order:
        if any(i.id in per_step for i in node.inputs):
            per_step.add(node.id)
    captured, mapping = [], {}
    for node in order:
        if node.id not in per_step:
            continue
        for i in node.inputs:
            if i.id in per_step or i.id in mapping or i.op in ("const", "batch_size"):
                continue
            ph = b.input(f"scan_c{len(captured)}", i.shape, i.dtype, index=2 + len(captured))
            captured.append((i, ph))
            mapping[i.id] = ph
    if row.id not in per_step:        # a step that ignores its inputs: copy so the body computes
        row = b.add(b.copy(row), b.mul(b.reduce_sum(prev, keepdims=True), 0.0))
        return _hoist_invariants(row, prev, x)
    if captured:
        (row,) = clone([row], mapping)
    return row, captured


# ---------------------------------------------------------------- rule table entry

def _scan_rule(inputs, attrs):
    init, xs = inputs[0], inputs[1]
    body = attrs["body"]
    expected = [i.shape for i in body.inputs]
    got = [init.shape, xs.shape[1:]] + [c.shape for c in inputs[2:]]
    if expected != got:
        raise ShapeError("scan operands do not match its body: "
                         + ", ".join(f"{format_shape(g)} vs {format_shape(e)}" for g, e in zip(got, expected)))
    return (xs.shape[0],) + tuple(init.shape), init.dtype


def _scan_reference(args, attrs, shape):
    from .interpreter import evaluate
    init, xs, consts = args[0], args[1], args[2:]
    body = attrs["body"]
    names = [i.attrs["name"] for i in body.inputs]
    out = np.empty(shape, dtype=init.dtype)
    steps = range(xs.shape[0] - 1, -1, -1) if attrs["reverse"] else range(xs.shape[0])
    prev = init
    for t in steps:
        feeds = dict(zip(names, [prev, xs[t]] + list(consts)))
        outputs, _ = evaluate(body, feeds, {}, batch=init.shape[0])
        out[t] = prev = outputs["row"]
    return out


def _scan_vjp(bb, node, g):
    """Cotangents of (init, xs, *consts) from a reversed scan; see the module docstring."""
    init, xs, consts = node.inputs[0], node.inputs[1], list(node.inputs[2:])
    body, reverse = node.attrs["body"], node.attrs["reverse"]
    T = xs.shape[0]
    R = init.shape[1]
    F = static_size(xs.shape[2:])
    x_shape = xs.shape[1:]

    # the row each step started from, stacked like the outputs
    row0 = b.reshape(init, (1,) + init.shape)
    if reverse:
        prevs = b.concat([b.slice(node, _bounds(node.shape, 0, 1, T)), row0], 0) if T > 1 else row0
    else:
        prevs = b.concat([row0, b.slice(node, _bounds(node.shape, 0, 0, T - 1))], 0) if T > 1 else row0
    per_step = b.concat([g, prevs, b.reshape(xs, (T, BATCH, F))], 2)

    const_ids = [p.id for p in body.inputs[2:]]
    plan = _backward_plan(body, const_ids)

    def backward_step(gprev, xin, cs):
        g_t = b.slice(xin, ((0, None), (0, R)))
        prev_t = b.slice(xin, ((0, None), (R, 2 * R)))
        x_t = b.reshape(b.slice(xin, ((0, None), (2 * R, 2 * R + F))), x_shape)
        mapping = {body.inputs[0].id: prev_t, body.inputs[1].id: x_t}
        mapping.update({pid: c for pid, c in zip(const_ids, cs)})
        uses = [u for u, _ in plan]
        cloned = clone([body.outputs["row"]] + uses, mapping)
        row, uses_now = cloned[0], cloned[1:]
        total = b.add(g_t, b.slice(gprev, ((0, None), (0, R))))
        from .autodiff import grad
        loss = b.reduce_sum(b.mul(row, total))
        grads = grad(loss, [prev_t, x_t] + uses_now)
        pieces = [grads[0], b.reshape(grads[1], (BATCH, F))]
        for (u, operand_positions), u_now, g_u in zip(plan, uses_now, grads[2:]):
            for k in operand_positions:
                pieces.append(_flat(u_now.inputs[k]))
            pieces.append(_flat(g_u))
        return b.concat(pieces, 1)

    width = R + F + sum(_row_width(u.inputs[k].shape) * 1 for u, ks in plan for k in ks) \
        + sum(_row_width(u.shape) for u, _ in plan)
    zeros = b.broadcast_to(b.const(0.0), (BATCH, width))
    back = scan(backward_step, zeros, per_step, consts, reverse=not reverse)

    first = T - 1 if reverse else 0
    d_init = b.reshape(b.slice(back, _bounds3(back.shape, (first, first + 1), (0, R))), init.shape)
    d_xs = b.reshape(b.slice(back, _bounds3(back.shape, (0, T), (R, R + F))), xs.shape)
    d_consts = [None] * len(consts)
    offset = R + F
    for u, positions in plan:
        stacked = {}
        for k in positions:
            w = _row_width(u.inputs[k].shape)
            stacked[k] = b.reshape(b.slice(back, _bounds3(back.shape, (0, T), (offset, offset + w))),
                                   (T,) + u.inputs[k].shape)
            offset += w
        w = _row_width(u.shape)
        g_u = b.reshape(b.slice(back, _bounds3(back.shape, (0, T), (offset, offset + w))), (T,) + u.shape)
        offset += w
        outer = {pid: c for pid, c in zip(const_ids, consts)}
        inputs = [stacked[k] if k in stacked else outer.get(i.id, i) for k, i in enumerate(u.inputs)]
        u_stacked = b.node(u.op, inputs, u.attrs)
        for k, gi in enumerate(PRIMITIVES[u.op].vjp(b, u_stacked, g_u)):
            pid = u.inputs[k].id
            if gi is None or pid not in const_ids:
                continue
            j = const_ids.index(pid)
            d_consts[j] = gi if d_consts[j] is None else b.add(d_consts[j], gi)
    return [d_init, d_xs] + d_consts


def _backward_plan(body, const_ids):
    """[(node using a const, positions of its per-step operands)] for the const gradients."""
    const_ids = set(const_ids)
    plan = []
    for node in body.nodes():
        if not any(i.id in const_ids for i in node.inputs) or node.dtype != "float32":
            continue
        if not any(i.id in const_ids and i.dtype == "float32" for i in node.inputs):
            continue
        if PRIMITIVES[node.op].vjp is None:
            continue
        positions = [k for k, i in enumerate(node.inputs) if i.id not in const_ids and i.op != "const"]
        ok = node.shape and node.shape[0] is BATCH and all(
            node.inputs[k].shape and node.inputs[k].shape[0] is BATCH for k in positions)
        stackable = PRIMITIVES[node.op].fusion in _STACKABLE or (
            node.op == "matmul" and not node.attrs["transpose_a"]
            and all(k == 0 for k in positions))
        if not (ok and stackable):
            raise NotImplementedError(
                f"scan: the step uses a loop-invariant value in a {node.op!r} of shape "
                f"{format_shape(node.shape)} whose gradient cannot be stacked over time; compute it "
                "outside the step or from per-step values")
        plan.append((node, positions))
    return plan


def _row_width(shape):
    return static_size(shape)


def _flat(x):
    return b.reshape(x, (BATCH, _row_width(x.shape)))


def _bounds(shape, axis, lo, hi):
    return tuple((lo, hi) if j == axis else ((0, None) if d is BATCH else (0, d)) for j, d in enumerate(shape))


def _bounds3(shape, time, cols):
    return (time, (0, None), cols)


register("scan", "opaque", _scan_rule, _scan_reference, _scan_vjp)
