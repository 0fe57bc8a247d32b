"""`scan`: a loop over time in the IR, so a recurrent layer is one node, not T copies of its cell.

    out = scan(init, xs_0, ..., xs_{m-1}, *consts; body, reverse, xs=m)
    init (N, R)      the packed row before the first step (its carry part, e.g. [h | c])
    xs_j (T, N, ...) per-step inputs, time-major so each step's slab is contiguous
    out  (T, N, R)   out[t] = body(prev, xs_0[t], ..., *consts), prev = out[t-1] (init at the first step)

`body` is a Graph whose inputs are placeholders (prev, x_0 ... x_{m-1}, consts) and whose one
output is the next row. A row may carry more than the state (e.g. a per-step output after it); the body reads
what it needs of `prev`. `reverse` walks t from T-1 down to 0 (out stays indexed by t).

The gradient is another, reversed scan whose body recomputes the forward step from the stored
rows and applies the body's own VJP (its per-step inputs: the output cotangent, the rows each
step started from, maybe the stored rows, and the forward inputs, each an xs of its own: nothing
is concatenated into one per-step array); where the step's own stored row holds a value the VJP needs
and that takes the recurrent matmul out of the backward step (a SimpleRNN's tanh output), it is
read instead of recomputed. So that it can be, `scan` saves in the row, after the state, the other
values of the step the VJP reads through the matmul (an LSTM's gate activations and tanh(c), a
GRU's gates and recurrent product): the forward step writes them, the backward step reads them,
and the pass `drop_unread_saves` narrows every scan whose saved columns no gradient reads. When
only the last step's output is read, its cotangent starts the backward carry (no per-step array
of zeros). A value the backward row would hold twice (d x and the cotangent of the matmul
x + h·U) is stored once, and `tidy` keeps both step bodies free of the layout kernels autodiff
leaves (zero pads summed into a gate gradient, slices of slices).

Weights used inside the body (consts) are not differentiated per step: the backward scan stores,
per step, what each weight-consuming node needs (its other operands and its output cotangent),
and the weight gradient is then one time-stacked application of that node's VJP — e.g.
dU = H_prevᵀ·dZ as a single large matmul. The CPU code generator runs the body's own kernels
once per step (codegen/lower.py).
"""
from __future__ import annotations

import numpy as np

from . import builder as b
from .graph import BATCH, Graph, Node, format_shape, static_size, toposort
from .primitives import PRIMITIVES, ShapeError, register
from .slices import simplest_slice

_STACKABLE = ("elementwise",)   # fusion classes whose rules broadcast over extra leading axes
_VALUE_FREE_VJP = ("add", "sub")   # primitives whose VJP reads no operand's value


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


def scan(step, init, xs, consts=(), reverse=False, save_for_grad=True):
    """Build a scan; returns its (time, batch, width) rows. `step(prev, x, consts) -> row` builds
    the body from placeholders (x: one placeholder, or a list of them when xs is a list of
    per-step inputs).

    Everything in the body that does not depend on `prev` or `x` is loop-invariant: weights,
    masks, other tensors of the enclosing graph and expressions of them (a slice of a weight)
    are computed once outside the loop and become the scan's const operands.

    With `save_for_grad` the row also keeps, after the state, the values of the step its
    gradient would otherwise recompute through a matmul (an LSTM's gate activations): the scan
    node's rows are wider by attrs["saved"] columns, which the pass `drop_unread_saves` removes
    again wherever no gradient reads them (predict, evaluate).
    """
    several = isinstance(xs, (list, tuple))
    init, xs = b.as_node(init), [b.as_node(x) for x in (xs if several else [xs])]
    if len(init.shape) != 2 or init.shape[0] is not BATCH:
        raise ShapeError(f"scan: the initial row must be (batch, width), got {format_shape(init.shape)}")
    for x in xs:
        if len(x.shape) < 2 or x.shape[1] is not BATCH or x.shape[0] is BATCH or x.shape[0] != xs[0].shape[0]:
            raise ShapeError("scan: inputs must be time-major (time, batch, ...) with one length, got "
                             + ", ".join(format_shape(v.shape) for v in xs))
    prev = b.input("scan_prev", init.shape, init.dtype, index=0)
    x = [b.input("scan_x" if j == 0 else f"scan_x{j}", v.shape[1:], v.dtype, index=1 + j) for j, v in enumerate(xs)]
    placeholders = [b.input(f"scan_arg{i}", c.shape, c.dtype) for i, c in enumerate(consts)]
    row = b.as_node(step(prev, x if several else x[0], placeholders))
    if row.shape != init.shape or row.dtype != init.dtype:
        raise ShapeError(f"scan: the step returns {format_shape(row.shape)} {row.dtype}, but the row is "
                         f"{format_shape(init.shape)} {init.dtype}")
    if placeholders:
        (row,) = clone([row], {p.id: c for p, c in zip(placeholders, consts)})
    (row,) = tidy([row])
    row, captured = _hoist_invariants(row, prev, x)
    saves = _values_to_save(row, prev, x) if save_for_grad else []
    width = init.shape[1]
    if saves:
        saved = sum(v.shape[1] for v in saves)
        wide = b.input("scan_prev", (BATCH, width + saved), init.dtype, index=0)
        (row,) = tidy(clone([b.concat([row] + saves, 1)], {prev.id: b.slice(wide, ((0, None), (0, width)))}))
        prev, init = wide, b.concat([init, _zeros(saved)], 1)
    body = Graph([prev] + x + [inner for _, inner in captured], {"row": row}, name="scan_body")
    out = b.node("scan", [init] + xs + [outer for outer, _ in captured],
                 {"body": body, "reverse": bool(reverse), "xs": len(xs), "saved": init.shape[1] - width})
    return b.slice(out, _bounds3(out.shape, (0, out.shape[0]), (0, width)))


def _values_to_save(row, prev, xs):
    """The step's values its VJP reads that depend on a matmul of per-step values (an LSTM's gate
    activations and tanh(c)), not already in the row; [] when saving would not spare the
    backward step that matmul (a value that is not a (batch, width) float32 row), or when the
    step has no gradient."""
    from .autodiff import grad
    order = toposort([row])
    per_step, after_matmul = {prev.id} | {x.id for x in xs}, set()
    for node in order:
        if any(i.id in per_step for i in node.inputs):
            per_step.add(node.id)
            if node.op == "matmul" or any(i.id in after_matmul for i in node.inputs):
                after_matmul.add(node.id)
    if not after_matmul or row.dtype != "float32":
        return []
    cotangent = b.input("save_cotangent", row.shape, row.dtype)
    wrt = [prev] + [x for x in xs if x.dtype == "float32"]
    try:
        grads = grad(b.reduce_sum(b.mul(row, cotangent)), wrt)
    except NotImplementedError:
        return []
    forward = {n.id for n in order}
    in_row = {p.id for p in _pieces(row)}
    saves = []
    for node in toposort(grads):
        if node.id in forward:
            continue
        for i in node.inputs:
            if i.id not in after_matmul or i.id in in_row or any(i is v for v in saves):
                continue
            if i.dtype != "float32" or len(i.shape) != 2 or i.shape[0] is not BATCH:
                return []
            saves.append(i)
    return _fewest(saves, after_matmul)


_CHEAP = ("slice", "add", "sub", "mul", "neg")   # recomputed in the backward step rather than stored


def _fewest(saves, after_matmul):
    """`saves` without the values cheaply recomputed from the others (a GRU's update gate, a
    slice of its saved gate block, and 1 - z): latest first, each dropped when it follows from
    what stays saved and values computed without the step's matmul."""
    kept = list(saves)
    for value in reversed(saves):
        others = {v.id for v in kept if v is not value}

        def follows(node, depth=0):
            if node.id in others or node.id not in after_matmul:
                return True
            return node.op in _CHEAP and depth < 8 and all(follows(i, depth + 1) for i in node.inputs)
        if value.op in _CHEAP and all(follows(i) for i in value.inputs):
            kept.remove(value)
    return kept


def _pieces(row):
    """The operands of a row built as one concat along its columns, else the row itself."""
    return list(row.inputs) if row.op == "concat" and row.attrs["axis"] == 1 else [row]


def _only_step(g, t):
    """(batch, width) cotangent of step t when `g` (time, batch, width) is zero at every other step
    (a pad along time alone), else None."""
    if g.op != "pad" or any(p != (0, 0) for p in g.attrs["pads"][1:]):
        return None
    if g.attrs["pads"][0] != ((t, 0) if t else (0, g.shape[0] - 1)) or g.inputs[0].shape[0] != 1:
        return None
    return b.reshape(g.inputs[0], g.shape[1:])


def _zeros(width):
    return b.broadcast_to(b.const(0.0), (BATCH, width))


def drop_unread_saves(graph):
    """Graph pass: a scan whose saved columns nothing reads (no gradient in this graph) drops them,
    so predict and evaluate write only the state. Repeated, since narrowing one scan rebuilds the
    nodes after it (a stacked RNN's next scan)."""
    from .passes.rewrite import rewrite
    while True:
        consumers, roots = {}, {r.id for r in graph.roots()}
        for node in graph.nodes():
            for i in node.inputs:
                consumers.setdefault(i.id, []).append(node)
        mapping = {}
        for node in graph.nodes():
            if node.op != "scan" or not node.attrs.get("saved") or node.id in roots:
                continue
            state = node.shape[2] - node.attrs["saved"]
            users = consumers.get(node.id, [])
            if all(u.op == "slice" and u.attrs["bounds"][2][1] is not None and u.attrs["bounds"][2][1] <= state
                   for u in users):
                narrow = _without_saves(node)
                mapping.update({u.id: b.slice(narrow, u.attrs["bounds"]) for u in users})
        if not mapping:
            return graph
        graph = rewrite(graph, lambda node: mapping.get(node.id))


def _without_saves(node):
    """The scan `node` without its saved columns: the same state rows."""
    body, state = node.attrs["body"], node.shape[2] - node.attrs["saved"]
    wide = body.inputs[0]
    prev = b.input("scan_prev", (BATCH, state), wide.dtype, index=0)
    (row,) = tidy(clone([b.slice(body.outputs["row"], ((0, None), (0, state)))],
                        {wide.id: b.concat([prev, _zeros(node.attrs["saved"])], 1)}))
    (init,) = tidy([b.slice(node.inputs[0], ((0, None), (0, state)))])
    narrow_body = Graph([prev] + list(body.inputs[1:]), {"row": row}, name=body.name)
    return b.node("scan", [init] + list(node.inputs[1:]), dict(node.attrs, body=narrow_body, saved=0))


def tidy(roots, keep=()):
    """Fewer layout kernels per step, same values: the step body runs T times, so it is worth it.

    * a slice of a slice, pad or concat -> a simpler expression (ir/slices.py);
    * a sum of zero pads that exactly tile one axis (what autodiff makes of the slices of a fused
      gate matmul: dz = pad(di) + pad(df) + ...) -> one concat (x + 0 is x: the values are equal);
    * concat(.., concat(..), ..) on one axis -> one concat; a slice that selects one concat
      operand -> that operand;
    * x * ones (the seed autodiff's reduce_sum gives the step's cotangent) -> x.
    Nodes in `keep` (ids) are neither rewritten nor looked through (values to differentiate by).
    """
    keep = set(keep)
    new = {}
    for node in toposort(roots):
        inputs = tuple(new.get(i.id, i) for i in node.inputs)
        out = None
        if node.id in keep or any(i.id in keep for i in inputs):
            pass
        elif node.op == "slice":
            out = simplest_slice(inputs[0], node.attrs["bounds"], keep)
        elif node.op == "concat":
            flat = []
            for i in inputs:
                flat += list(i.inputs) if i.op == "concat" and i.attrs["axis"] == node.attrs["axis"] else [i]
            if len(flat) != len(inputs):
                out = b.concat(flat, node.attrs["axis"])
        elif node.op == "add":
            out = _pads_to_concat(node, inputs)
        elif node.op == "mul":
            for one, other in (inputs, inputs[::-1]):
                if other.shape == node.shape and other.dtype == node.dtype and _filled_const(one, 1.0):
                    out = other
                    break
        if out is None:
            out = node if all(a is c for a, c in zip(inputs, node.inputs)) else \
                Node(node.op, inputs, node.attrs, node.shape, node.dtype, node.name)
        if out.shape != node.shape or out.dtype != node.dtype:   # a rule gone wrong: keep the original
            out = Node(node.op, inputs, node.attrs, node.shape, node.dtype, node.name)
        new[node.id] = out
    return [new[r.id] for r in roots]


def _pads_to_concat(node, inputs):
    """concat of the pieces when the add tree `node` sums zero pads tiling one axis; else None."""
    leaves, stack = [], list(inputs)
    while stack:
        t = stack.pop()
        if t.op == "add" and t.shape == node.shape and all(i.shape == node.shape for i in t.inputs):
            stack.extend(t.inputs)
        elif t.op == "pad" and t.shape == node.shape:
            leaves.append(t)
        else:
            return None
    if len(leaves) < 2 or any(i.shape != node.shape for i in inputs):
        return None
    axes = {k for t in leaves for k, p in enumerate(t.attrs["pads"]) if p != (0, 0)}
    if len(axes) != 1:
        return None
    (axis,) = axes
    pieces = sorted(((t.attrs["pads"][axis][0], t.inputs[0]) for t in leaves), key=lambda p: p[0])
    parts, at = [], 0
    for lo, piece in pieces:
        if lo != at:
            return None                      # a gap (an inner sum of a larger tiling) or an overlap
        parts.append(piece)
        at = lo + piece.shape[axis]
    return b.concat(parts, axis) if at == node.shape[axis] else None


def _filled_const(node, value=None):
    """Whether `node` is a constant, broadcast or reshaped (and, given `value`, all of it equal to it)."""
    while node.op in ("broadcast_to", "reshape"):
        node = node.inputs[0]
    return node.op == "const" and (value is None or bool(np.all(node.attrs["value"] == value)))


def _hoist_invariants(row, prev, xs):
    """Replace the body's loop-invariant values by placeholders; returns (row, [(outer, placeholder)])."""
    order = toposort([row])
    per_step = {prev.id} | {x.id for x in xs}
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
            if _filled_const(i):
                continue              # a filled constant (autodiff's ones): computed in the step, not read
            ph = b.input(f"scan_c{len(captured)}", i.shape, i.dtype, index=1 + len(xs) + len(captured))
            captured.append((i, ph))
            mapping[i.id] = ph
    if row.id not in per_step:        # a step that ignores its inputs: copy so the body computes
        row = b.add(b.copy(row), b.mul(b.reduce_sum(prev, keepdims=True), 0.0))
        return _hoist_invariants(row, prev, xs)
    if captured:
        (row,) = clone([row], mapping)
    return row, captured


# ---------------------------------------------------------------- rule table entry

def _scan_rule(inputs, attrs):
    m = attrs["xs"]
    init, xs = inputs[0], inputs[1:1 + m]
    body = attrs["body"]
    expected = [i.shape for i in body.inputs]
    got = [init.shape] + [x.shape[1:] for x in xs] + [c.shape for c in inputs[1 + m:]]
    if expected != got:
        raise ShapeError("scan operands do not match its body: "
                         + ", ".join(f"{format_shape(g)} vs {format_shape(e)}" for g, e in zip(got, expected)))
    if any(x.shape[0] != xs[0].shape[0] for x in xs):
        raise ShapeError("scan inputs of different lengths: " + ", ".join(format_shape(x.shape) for x in xs))
    return (xs[0].shape[0],) + tuple(init.shape), init.dtype


def _scan_reference(args, attrs, shape):
    from .interpreter import evaluate
    m = attrs["xs"]
    init, xs, consts = args[0], args[1:1 + m], args[1 + m:]
    body = attrs["body"]
    names = [i.attrs["name"] for i in body.inputs]
    out = np.empty(shape, dtype=init.dtype)
    steps = range(shape[0] - 1, -1, -1) if attrs["reverse"] else range(shape[0])
    prev = init
    for t in steps:
        feeds = dict(zip(names, [prev] + [x[t] for x in xs] + list(consts)))
        outputs, _ = evaluate(body, feeds, {}, batch=init.shape[0])
        out[t] = prev = outputs["row"]
    return out


def _scan_vjp(bb, node, g):
    """Cotangents of (init, *xs, *consts) from a reversed scan; see the module docstring."""
    m = node.attrs["xs"]
    init, xss, consts = node.inputs[0], list(node.inputs[1:1 + m]), list(node.inputs[1 + m:])
    body, reverse = node.attrs["body"], node.attrs["reverse"]
    T = xss[0].shape[0]
    R = init.shape[1]                       # the row: the state (S columns), then what was saved
    S = R - node.attrs.get("saved", 0)

    # the state each step started from, stacked like the outputs
    (row0,) = tidy([b.slice(init, ((0, None), (0, S)))])
    row0 = b.reshape(row0, (1, BATCH, S))
    if reverse:
        prevs = b.concat([b.slice(node, _bounds3(node.shape, (1, T), (0, S))), row0], 0) if T > 1 else row0
    else:
        prevs = b.concat([row0, b.slice(node, _bounds3(node.shape, (0, T - 1), (0, S)))], 0) if T > 1 else row0
    (g,) = tidy([b.slice(g, _bounds3(g.shape, (0, T), (0, S)))])   # saved columns: no cotangent
    # the cotangent of the first step the backward scan runs, when no other step has one (an RNN
    # whose last output alone is read): it starts the backward carry instead of being a per-step
    # input, so no (time, batch, S) array of zeros is written
    g_first = _only_step(g, T - 1 if not reverse else 0)
    x_holders = body.inputs[1:1 + m]
    const_ids = [p.id for p in body.inputs[1 + m:]]
    plan = _backward_plan(body, const_ids)

    def backward_pieces(gprev, xin, cs, use_out):
        """[(key, value)]: d prev, d x per input, then per plan node its per-step operands and cotangent.

        xin: this step's output cotangent (not there when it starts the carry: g_first), the
        state it started from (S columns), with use_out its stored row (all R columns), then its
        forward inputs. With use_out every piece of the row (an operand of its concat, or the row
        itself) is read from the stored row wherever the gradient needs its value, instead of
        being recomputed: the recurrent matmul behind a stored piece (a SimpleRNN's new state,
        whose tanh VJP needs only it; the gates scan saved) then drops out of the backward step.
        """
        xin = list(xin) if g_first is None else [None] + list(xin)
        g_t, prev_t = xin[0], xin[1]
        out_t = xin[2] if use_out else None
        x_ts = list(xin[3 if use_out else 2:])
        mapping = {body.inputs[0].id: b.concat([prev_t, _zeros(R - S)], 1) if R > S else prev_t}
        mapping.update({h.id: x for h, x in zip(x_holders, x_ts)})
        mapping.update({pid: c for pid, c in zip(const_ids, cs)})
        uses = [u for u, _ in plan]
        cloned = tidy(clone([body.outputs["row"]] + uses, mapping), keep=[prev_t.id] + [x.id for x in x_ts])
        row, uses_now = cloned[0], cloned[1:]
        (state,) = tidy([b.slice(row, ((0, None), (0, S)))])
        total = b.slice(gprev, ((0, None), (0, S)))
        total = total if g_t is None else b.add(g_t, total)
        from .autodiff import grad
        loss = b.reduce_sum(b.mul(state, total))
        grads = grad(loss, [prev_t] + x_ts + uses_now)
        pieces = [("d_prev", grads[0])] + [(("d_x", j), _flat(grads[1 + j])) for j in range(m)]
        for j, ((u, operand_positions), u_now, g_u) in enumerate(zip(plan, uses_now, grads[1 + m:])):
            for k in operand_positions:
                pieces.append(((j, k), _flat(u_now.inputs[k])))
            pieces.append(((j, "g"), _flat(g_u)))
        read = []
        if use_out:
            stored, at = {}, 0
            for piece in _pieces(row):
                w = piece.shape[1]
                if piece.op not in ("input", "const") and piece.id not in stored:
                    stored[piece.id] = b.slice(out_t, ((0, None), (at, at + w)))
                at += w
            keys = [k for k, _ in pieces]
            values = clone([v for _, v in pieces], stored)
            pieces = list(zip(keys, values))
            needed = {n.id for n in toposort(values)}
            read = [n for n in stored.values() if n.id in needed]
        return pieces, read

    def columns(pieces):
        """key -> (first column, width); a value stored twice (d x is often the cotangent of the
        recurrent matmul's output) gets one set of columns."""
        where, by_id, at, unique = {}, {}, 0, []
        for key, value in pieces:
            if value.id not in by_id:
                by_id[value.id] = (at, _row_width(value.shape))
                unique.append(value)
                at += by_id[value.id][1]
            where[key] = by_id[value.id]
        return where, unique, at

    def trial(use_out):
        """The backward step built once on placeholders: ((its row layout, the row's values, width),
        the placeholders, whether it reads the stored row, its matmul count)."""
        # the carry: only its first S columns are read (wider than S, so that slice is not elided)
        carry = b.input("trial_carry", (BATCH, S + 1))
        rows = ([b.input("trial_g", (BATCH, S))] if g_first is None else []) + [b.input("trial_prev", (BATCH, S))]
        rows += [b.input("trial_out", (BATCH, R))] if use_out else []
        xs_now = [b.input(f"trial_x{j}", x.shape[1:], x.dtype) for j, x in enumerate(xss)]
        cs = [b.input(f"trial_c{i}", c.shape, c.dtype) for i, c in enumerate(consts)]
        pieces, read = backward_pieces(carry, rows + xs_now, cs, use_out)
        matmuls = sum(n.op == "matmul" for n in toposort([v for _, v in pieces]))
        return columns(pieces), [carry] + rows + xs_now + cs, bool(read), matmuls
    # read the stored row only where that takes a matmul out of the backward step: reading it
    # costs more than recomputing elementwise values from it
    reading, recomputing = trial(True), trial(False)
    use_out = reading[2] and reading[3] < recomputing[3]
    (where, unique, width), holders, _, _ = reading if use_out else recomputing
    per_step = ([g] if g_first is None else []) + [prevs] + ([node] if use_out else []) + xss

    def backward_step(gprev, xin, cs):
        """The step built above, on this scan's placeholders (its carry is the whole backward row)."""
        real = [gprev] + list(xin) + list(cs)
        return b.concat(clone(unique, {h.id: r for h, r in zip(holders, real)}), 1)

    carry = _zeros(width) if g_first is None else b.concat([g_first, _zeros(width - S)], 1)
    back = scan(backward_step, carry, per_step, consts, reverse=not reverse, save_for_grad=False)

    def stacked(key, shape):
        lo, w = where[key]
        return b.reshape(b.slice(back, _bounds3(back.shape, (0, T), (lo, lo + w))), (T,) + shape)

    first = T - 1 if reverse else 0
    d_init = b.reshape(b.slice(back, _bounds3(back.shape, (first, first + 1), (0, S))), (BATCH, S))
    d_init = b.pad(d_init, ((0, 0), (0, R - S)))
    d_xs = [stacked(("d_x", j), x.shape[1:]) for j, x in enumerate(xss)]
    d_consts = [None] * len(consts)
    for j, (u, positions) in enumerate(plan):
        operands = {k: stacked((j, k), u.inputs[k].shape) for k in positions}
        g_u = stacked((j, "g"), u.shape)
        outer = {pid: c for pid, c in zip(const_ids, consts)}
        # a per-step operand the VJP does not read (of an add) is not stored: zeros stand in
        inputs = [operands[k] if k in operands else outer[i.id] if i.id in outer else i if i.op == "const"
                  else b.broadcast_to(b.const(0.0), (T,) + i.shape) for k, i in enumerate(u.inputs)]
        u_stacked = b.node(u.op, inputs, u.attrs)
        for k, gi in enumerate(PRIMITIVES[u.op].vjp(b, u_stacked, g_u)):
            pid = u.inputs[k].id
            if gi is None or pid not in const_ids:
                continue
            j2 = const_ids.index(pid)
            d_consts[j2] = gi if d_consts[j2] is None else b.add(d_consts[j2], gi)
    return [d_init] + d_xs + d_consts


def _backward_plan(body, const_ids):
    """[(node using a const, positions of the per-step operands its VJP reads)] for the const
    gradients (none for an add or sub: their VJP reads no operand, so the backward step need not
    recompute one, e.g. a GRU's recurrent matmul before its bias)."""
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
        plan.append((node, [] if node.op in _VALUE_FREE_VJP else positions))
    return plan


def _row_width(shape):
    return static_size(shape)


def _flat(x):
    return b.reshape(x, (BATCH, _row_width(x.shape)))


def _bounds3(shape, time, cols):
    return (time, (0, None), cols)


register("scan", "opaque", _scan_rule, _scan_reference, _scan_vjp)
