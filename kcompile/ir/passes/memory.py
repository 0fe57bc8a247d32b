"""Liveness-based memory planning: where each materialized value lives.

Graph inputs and outputs live in caller arrays, state in the state pool, constants in the
module, and every other stored value in one workspace. Workspace buffers whose lifetimes do not
overlap share bytes. Values whose shape has the batch dimension scale with the run-time batch
size n, so they are planned in "bytes per batch row" in a region placed after the fixed-size
one: a buffer there starts at `static_bytes + n * row_offset`. One plan serves every n.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import BATCH, ITEMSIZE, MAX_BUFFER_BYTES, format_shape, static_size

ALIGN = 64


@dataclass(frozen=True)
class Buffer:
    kind: str                 # input | output | state | temp | const
    index: int = 0            # input/output position
    slot: str = ""            # state slot name
    static_offset: int = 0    # temp: bytes from the workspace start (fixed region)
    row_offset: int = 0       # temp: bytes per batch row into the batch region
    batched: bool = False     # temp: lives in the batch region


@dataclass
class MemoryPlan:
    buffers: dict             # node id -> Buffer
    static_bytes: int
    row_bytes: int

    def workspace_bytes(self, n):
        return self.static_bytes + n * self.row_bytes + ALIGN

    @property
    def workspace_coefficients(self):
        """workspace_bytes as polynomial coefficients in the batch size: (constant, per row)."""
        return (self.static_bytes + ALIGN, self.row_bytes)


def base_of(node):
    while node.op == "reshape":
        node = node.inputs[0]
    return node


def _bytes(shape):
    """(fixed bytes, batched?) for a float32/int32 tensor; batched means bytes per batch row."""
    if list(shape).count(BATCH) > 1:
        raise NotImplementedError(f"a tensor of shape {format_shape(shape)} grows with the square of the batch")
    return ITEMSIZE * static_size(shape), BATCH in shape


def _check_buffer(graph, node):
    """A buffer over the limit is refused here, at compile(), rather than at its first allocation."""
    size, batched = _bytes(node.shape)
    if size > MAX_BUFFER_BYTES:
        what = f"{node.op} '{node.name}'" if node.name else f"{node.op} node %{node.id}"
        per = " per sample" if batched else ""
        raise ValueError(f"Graph '{graph.name}': {what} of shape {format_shape(node.shape)} needs {size} bytes{per}, "
                         f"more than the limit of {MAX_BUFFER_BYTES} bytes for one buffer")


def _check_workspace(graph, static_bytes, row_bytes):
    total = static_bytes + row_bytes
    if total > MAX_BUFFER_BYTES:
        raise ValueError(f"Graph '{graph.name}': its workspace needs {total} bytes for a batch of one sample "
                         f"({static_bytes} fixed + {row_bytes} per sample), more than the limit of "
                         f"{MAX_BUFFER_BYTES} bytes")


def plan_memory(graph, kernels):
    buffers = {}
    for i, node in enumerate(graph.inputs):
        _check_buffer(graph, node)
        buffers[node.id] = Buffer("input", index=i)
    for i, node in enumerate(graph.outputs.values()):
        _check_buffer(graph, node)
        buffers[node.id] = Buffer("output", index=i)
    for slot, node in graph.updates.items():
        buffers[node.id] = Buffer("state", slot=slot)

    # lifetimes of stored values that need workspace
    first, last = {}, {}
    for t, k in enumerate(kernels):
        for n in k.outputs:
            if n.id not in buffers:
                first.setdefault(n.id, (t, n))
        for i in k.external_inputs():
            last[base_of(i).id] = t

    # a matmul result read only by its own epilogue shares the buffer of one epilogue output of its
    # shape: the epilogue reads each element of C once, then writes that element of the output
    in_place = {}                      # matmul root id -> the epilogue output id whose buffer it uses
    for k in kernels:
        root = k.root
        if k.kind != "matmul" or not k.members or root.id not in first or root.id in last \
                or any(v.inputs[0] is root for v in k.views.values()):   # (the epilogue reads C elsewhere)
            continue
        for m in k.outputs:
            if m is not root and m.id in first and m.shape == root.shape and m.dtype == root.dtype:
                in_place[root.id] = m.id
                break

    static_live, batch_live = [], []   # (start, end, offset, size) of placed buffers
    static_top = row_top = 0
    # largest buffers placed first (each at the lowest offset free over its lifetime): packs the
    # workspace close to the peak of live bytes, where placing in schedule order left holes
    def largest_first(item):
        nid, (start, node) = item
        return (-_bytes(node.shape)[0], start, nid)
    for nid, (start, node) in sorted(first.items(), key=largest_first):
        if nid in in_place:
            continue
        end = last.get(nid, start)
        _check_buffer(graph, node)
        size, batched = _bytes(node.shape)
        live = batch_live if batched else static_live
        align = 4 if batched else ALIGN
        offset = _first_fit(live, start, end, size, align)
        live.append((start, end, offset, size))
        if batched:
            row_top = max(row_top, offset + size)
            buffers[nid] = Buffer("temp", row_offset=offset, batched=True)
        else:
            static_top = max(static_top, offset + size)
            buffers[nid] = Buffer("temp", static_offset=offset)
    for root_id, out_id in in_place.items():
        buffers[root_id] = buffers[out_id]
    static_bytes = -(-static_top // ALIGN) * ALIGN
    _check_workspace(graph, static_bytes, row_top)
    return MemoryPlan(buffers, static_bytes, row_top)


def _first_fit(live, start, end, size, align):
    """Lowest aligned offset whose [offset, offset+size) overlaps no buffer alive at the same time."""
    busy = sorted((o, o + s) for (a, e, o, s) in live if not (e < start or end < a))
    offset = 0
    for lo, hi in busy:
        if offset + size <= lo:
            break
        offset = max(offset, -(-hi // align) * align)
    return offset


def buffer_of(plan, node):
    node = base_of(node)
    if node.op == "param":
        return Buffer("state", slot=node.attrs["slot"])
    if node.op == "const":
        return Buffer("const")
    return plan.buffers[node.id]
