"""Fusion: group primitives into kernels.

Rules (applied walking the graph from outputs to inputs):
  * an elementwise node joins the kernel of its users when they all sit in one kernel that
    iterates over the node's shape — chains of elementwise ops become one loop;
  * an elementwise node whose users are all one reduction (over the node's shape) becomes that
    reduction's prologue — e.g. exp(x - max) is computed inside the softmax denominator's sum;
  * an elementwise kernel that reads a matmul result of its own shape becomes the matmul's
    epilogue (bias + activation run on each finished row panel while it is hot in cache);
  * layout ops (transpose, slice, pad, concat) are kernels of their own; reshape is a view; a
    concat copies a slice operand from the slice's input;
  * a convolution's window (im2col) read only as the A operand of matmuls becomes part of each of
    them (`Kernel.a_window`): the gemm packs A straight from the window's input (implicit GEMM,
    codegen/gemm_gather.py), so the 9x-larger window is never written; elementwise and reduce
    kernels read a window (pooling, its gradient mask) or a slice (an LSTM's gates out of its
    fused gate matmul) as a strided view of its input (`Kernel.views`). A window or slice with
    any other reader is a layout kernel of its own.
The result is a list of kernels in an order that respects data dependencies and lets state
updates be written in place after every read of the old value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import builder as b
from ..graph import Graph, users
from ..primitives import PRIMITIVES
from .memory import base_of

LEAVES = ("input", "param", "const", "batch_size")


@dataclass(eq=False)
class Kernel:
    kind: str                      # elementwise | reduce | matmul | layout | an opaque primitive (scan)
    iter_shape: tuple
    root: object = None            # the reduce / matmul / layout node (None for elementwise)
    members: list = field(default_factory=list)   # fused elementwise nodes, topological order
    outputs: list = field(default_factory=list)   # nodes whose values are stored to memory
    body: object = None            # scan: the lowered KernelProgram of its step body
    a_window: object = None        # matmul: the window node its A is read through (not materialised)
    views: dict = field(default_factory=dict)   # window/slice id -> that node, read as a strided view

    def computed(self):
        return ([self.root] if self.root is not None else []) + self.members

    def external_inputs(self):
        inside = {n.id for n in self.computed()}
        seen, result = set(), []
        for n in self.computed():
            ins = n.inputs
            if n is self.root and self.a_window is not None:
                ins = [self.a_window.inputs[0]] + list(n.inputs[1:])
            ins = [self._viewed(i) for i in ins]
            for i in ins:
                if i.id not in inside and i.id not in seen:
                    seen.add(i.id)
                    result.append(i)
        return result

    def _viewed(self, node):
        """What reading `node` reads: a view's input (also through reshapes: a matmul operand)."""
        base = node
        while base.op == "reshape":
            base = base.inputs[0]
        return self.views[base.id].inputs[0] if base.id in self.views else node

    def describe(self):
        ops = "+".join(n.op for n in self.computed())
        return f"{self.kind}[{ops}] -> " + ", ".join(f"%{o.id}" for o in self.outputs)


def prepare_roots(graph):
    """Give each output/update its own computed node (copies where a value lands twice or is a leaf)."""
    claimed = set()

    def own(node):
        if node.op in LEAVES or node.op == "reshape" or node.id in claimed:
            node = b.copy(node)
        claimed.add(node.id)
        return node
    outputs = {k: own(v) for k, v in graph.outputs.items()}
    updates = {}
    for k, v in graph.updates.items():
        if v.op == "param" and v.attrs["slot"] == k:
            continue  # unchanged state: nothing to write
        updates[k] = own(v)
    return Graph(graph.inputs, outputs, graph.slots.values(), updates, graph.name)


def fuse(graph, enabled=True):
    """Return (graph with prepared roots, kernels in schedule order); enabled=False: one op per kernel."""
    graph = prepare_roots(graph)
    order = graph.nodes()
    use = users(order)
    root_ids = {n.id for n in graph.roots()}
    kernel_of = {}
    kernels = []

    for node in reversed(order):
        fusion = PRIMITIVES[node.op].fusion
        if node.op in LEAVES or node.op == "reshape":
            continue
        if fusion == "elementwise":
            host = _host_kernel(node, use[node.id], kernel_of) if enabled else None
            if host is None:
                host = Kernel("elementwise", node.shape)
                kernels.append(host)
            host.members.insert(0, node)
            kernel_of[node.id] = host
        elif fusion == "reduction":
            k = Kernel("reduce", node.inputs[0].shape, root=node)
            kernels.append(k)
            kernel_of[node.id] = k
        elif fusion == "contraction":
            k = Kernel("matmul", node.shape, root=node)
            kernels.append(k)
            kernel_of[node.id] = k
        elif fusion == "layout":
            k = Kernel("layout", node.shape, root=node)
            kernels.append(k)
            kernel_of[node.id] = k
        elif fusion == "opaque":
            # one kernel of its own, emitted by a dedicated method named after the primitive
            k = Kernel(node.op, node.shape, root=node)
            kernels.append(k)
            kernel_of[node.id] = k
        else:
            raise NotImplementedError(f"no kernel for primitive {node.op!r}")

    if enabled:
        kernels = _fuse_views(kernels, kernel_of, use, root_ids)
        kernels = _fuse_epilogues(kernels, kernel_of, use)
    for k in kernels:
        # stored: roots, and values read outside the kernel (a reshape view counts as outside)
        # (a matmul always writes its result: the epilogue reads it back from C)
        k.outputs = [n for n in k.computed()
                     if n.id in root_ids or (n is k.root and k.kind == "matmul")
                     or any(kernel_of.get(u.id) is not k for u in use.get(n.id, []))]
    return graph, _schedule(kernels, kernel_of, graph)


def _host_kernel(node, node_users, kernel_of):
    if not node_users:
        return None
    hosts = {id(kernel_of.get(u.id)) for u in node_users}
    host = kernel_of.get(node_users[0].id)
    if host is None or len(hosts) != 1 or host.kind not in ("elementwise", "reduce"):
        return None
    if host.iter_shape != node.shape:
        return None
    if host.kind == "reduce" and not all(u is host.root or u in host.members for u in node_users):
        return None
    return host


def window_matmul_split(window, a):
    """True when a matmul reading `a` (a view of `window`) as A sees rows = (batch, output positions)
    and columns = (window positions, channels), or the transpose: the split gemm_gather decodes."""
    k = len(window.attrs["sizes"])
    inner = 1
    for d in window.shape[1 + k:]:
        inner *= int(d)
    return int(a.shape[-1]) == inner


def _fuse_views(kernels, kernel_of, use, root_ids):
    """Drop each window kernel whose every reader is a matmul using it (through reshapes) as A, or
    an elementwise or reduce kernel reading it directly (not through a reshape); and each slice
    kernel whose every reader is such an elementwise or reduce kernel."""
    result = list(kernels)
    for k in kernels:
        w = k.root
        if k.kind != "layout" or w.op not in ("window", "slice") or w.id in root_ids \
                or w.op == "window" and w.dtype != "float32":
            continue
        readers, views = [], [(w, True)]
        while views:
            v, direct = views.pop()
            for u in use.get(v.id, []):
                if u.op == "reshape":
                    views.append((u, False))
                else:
                    readers.append((u, direct))
        plan = [_window_reader(w, u, direct, kernel_of.get(u.id)) for u, direct in readers]
        if not readers or None in plan:
            continue
        for how, rk in plan:
            if how == "a_window":
                rk.a_window = w
            else:
                rk.views[w.id] = w
        result.remove(k)
        del kernel_of[w.id]
    return result


def last_axis_slice(node):
    """True for a slice that keeps every axis whole but the last (its rows are strided rows of its input)."""
    x = node.inputs[0]
    return all(lo == 0 and hi in (None, x.shape[j]) for j, (lo, hi) in enumerate(node.attrs["bounds"][:-1]))


def rows_of(node):
    """The node whose rows `node`'s rows are, through reshapes that keep the last axis (a matmul
    reads its operands as matrices of rows), else `node`."""
    base = node
    while base.op == "reshape" and base.shape[-1:] == base.inputs[0].shape[-1:]:
        base = base.inputs[0]
    return base


def _window_reader(w, u, direct, rk):
    """How kernel rk's node u can read window or slice w without it being stored: ("a_window", rk)
    for a matmul's A (windows), ("view", rk) for a strided read, or None."""
    if rk is None:
        return None
    if rk.kind == "matmul" and rk.root is u:
        if w.op == "window" and rk.a_window is None and base_of(u.inputs[0]) is w and base_of(u.inputs[1]) is not w \
                and window_matmul_split(w, u.inputs[0]):
            return "a_window", rk
        reads = [p for p in (0, 1) if rows_of(u.inputs[p]) is w]
        if w.op == "slice" and last_axis_slice(w) and reads and not (0 in reads and rk.a_window):
            # an operand with a longer row stride: an RNN step's h out of its state row; the
            # per-step pieces a weight gradient reads out of the backward scan's rows
            return "view", rk
        return None
    if direct and (rk.kind == "elementwise" or rk.kind == "reduce" and u.op != "argmax"):
        return "view", rk
    if direct and w.op == "slice" and rk.kind == "layout" and rk.root is u and u.op == "concat":
        return "view", rk          # a piece of a concat copied from where it lies (an RNN's rows)
    return None


def _fuse_epilogues(kernels, kernel_of, use):
    """Merge elementwise kernels into the matmul that feeds them (one epilogue per matmul)."""
    result = list(kernels)
    ancestors = _ancestor_kernels(kernels, kernel_of)
    for mm in kernels:
        if mm.kind != "matmul":
            continue
        for u in use.get(mm.root.id, []):
            ek = kernel_of.get(u.id)
            if ek is None or ek.kind != "elementwise" or ek.iter_shape != mm.iter_shape or ek not in result:
                continue
            # the epilogue must not need anything that itself needs the matmul (that would be a cycle),
            # through reshape views too (a batch statistic of the matmul's output, reshaped to broadcast)
            others = [src for i in ek.external_inputs() if i is not mm.root for src in _producers(i, kernel_of)]
            if any(mm in ancestors[id(o)] for o in others):
                continue
            mm.members = ek.members
            mm.views.update(ek.views)
            for n in ek.members:
                kernel_of[n.id] = mm
            result.remove(ek)
            break
    return result


def _ancestor_kernels(kernels, kernel_of):
    """id(kernel) -> set of kernels it transitively depends on."""
    memo = {}

    def visit(k):
        if id(k) in memo:
            return memo[id(k)]
        memo[id(k)] = set()
        acc = set()
        for i in k.external_inputs():
            for src in _producers(i, kernel_of):
                acc.add(src)
                acc |= visit(src)
        memo[id(k)] = acc
        return acc
    for k in kernels:
        visit(k)
    return memo


def _producers(node, kernel_of):
    """Kernels that produce `node` (through reshape views)."""
    while node.op == "reshape":
        node = node.inputs[0]
    k = kernel_of.get(node.id)
    return [k] if k is not None else []


def _schedule(kernels, kernel_of, graph):
    """Topological order of kernels; a kernel writing state slot S runs after every reader of S."""
    deps = {id(k): set() for k in kernels}
    readers_of_slot = {}
    for k in kernels:
        for i in k.external_inputs():
            for src in _producers(i, kernel_of):
                if src is not k:
                    deps[id(k)].add(id(src))
            base = i
            while base.op == "reshape":
                base = base.inputs[0]
            if base.op == "param":
                readers_of_slot.setdefault(base.attrs["slot"], set()).add(id(k))
    for slot, node in graph.updates.items():
        writer = kernel_of[node.id]
        deps[id(writer)] |= readers_of_slot.get(slot, set()) - {id(writer)}
    by_id = {id(k): k for k in kernels}
    order, state = [], {}

    def visit(kid):
        if state.get(kid) == 2:
            return
        if state.get(kid) == 1:
            raise RuntimeError("kernel schedule has a cycle (in-place state update conflict)")
        state[kid] = 1
        for d in sorted(deps[kid], key=lambda x: kernels.index(by_id[x])):
            visit(d)
        state[kid] = 2
        order.append(by_id[kid])
    # visit in reverse of the fusion order = forward graph order
    for k in reversed(kernels):
        visit(id(k))
    return order
