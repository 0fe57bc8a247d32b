"""Concat operands written in place: a value computed by an elementwise kernel and read by an
output concat along the last axis (an RNN step's row: [h | c | saved gates]) is stored straight
into that concat's columns, so the concat kernel does not copy it. Readers of the value in
other elementwise, reduce and concat kernels read it there, with the concat's row stride.

CPU code generation only (codegen/lower.py): the kernel program and its memory plan are not
changed; `place_operands` returns what the emitters read instead.
"""
from __future__ import annotations

from dataclasses import replace

from ..ir.graph import users

_READERS = ("elementwise", "reduce")   # kernel kinds whose loads go through _read_strides (and concats)


def place_operands(program):
    """(memory plan with each placed value in its concat's buffer, {value id: (concat, column)})."""
    graph, kernels, plan = program.graph, program.kernels, program.memory
    kernel_of = {n.id: k for k in kernels for n in k.computed()}
    readers = users(graph.nodes())
    outputs = {n.id for n in graph.outputs.values()}
    placed = {}
    for k in kernels:
        concat = k.root
        if k.kind != "layout" or concat.op != "concat" or concat.id not in outputs \
                or concat.attrs["axis"] != len(concat.shape) - 1 or plan.buffers[concat.id].kind != "output":
            continue
        column = 0
        for piece in concat.inputs:
            if _placeable(piece, concat, kernel_of, readers, outputs):
                placed[piece.id] = (concat, column)
            column += piece.shape[-1]
    if not placed:
        return plan, placed
    buffers = dict(plan.buffers)
    buffers.update({pid: plan.buffers[c.id] for pid, (c, _) in placed.items()})
    return replace(plan, buffers=buffers), placed


def _placeable(piece, concat, kernel_of, readers, outputs):
    writer = kernel_of.get(piece.id)
    if writer is None or writer.kind != "elementwise" or piece not in writer.outputs or piece.id in outputs:
        return False
    if sum(i is piece for i in concat.inputs) != 1 or piece.dtype != concat.dtype \
            or piece.shape[:-1] != concat.shape[:-1]:
        return False
    for user in readers.get(piece.id, []):
        reader = kernel_of.get(user.id)      # None: a reshape (a view) or a leaf
        if user is concat or reader is writer:
            continue
        if reader is None or user.op == "argmax":
            return False
        if reader.kind not in _READERS and not (reader.kind == "layout" and user is reader.root and user.op == "concat"):
            return False
    return True
