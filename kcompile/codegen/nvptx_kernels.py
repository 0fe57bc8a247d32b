"""PTX grid functions of the opaque kernel classes (window_grad, gather_rows, scatter_add_rows,
scan), mixed into nvptx.py's kernel emitter. Every class is deterministic: each thread owns one
output element and sums its contributions in a fixed order, so no float atomics are used.

  window_grad       col2im: one thread per element (b, s.., c) of the input gradient; it loops
                    over the window offsets w.. in row-major order (the reference's order) and
                    adds g[b, o.., w.., c] where s = o * stride + w * dilation has an integer
                    solution o inside the output; 0 where no window reads the element.
  gather_rows       one thread per (index, column): table[row, c], NaN for an index outside
                    the table (as the CPU path).
  scatter_add_rows  one thread per (row, column) of the result, looping over all indices in
                    order and summing the values of those equal to its row: the same order as
                    the CPU's sequential loop, at O(rows * indices) work (a sorted/segmented
                    version for large vocabularies is a later step).
  scan              a host loop of launches: the body's kernels are emitted as grid functions
                    of their own (symbols SYMBOL_s_kJ) and the scan becomes a `ScanLaunch`
                    (nvptx_schedule.py) that the runtime walks step by step.
"""
from __future__ import annotations

from llvmlite import ir

from ..ir.passes.memory import base_of, buffer_of
from .llvm_util import F32, I32, I64, for_range, gep_f, i64
from .loops import Mono, contiguous_strides, dim, prod
from .nvptx_schedule import ScanLaunch
from .sizes import Poly


class OpaqueKernels:
    """Mixin: needs the emitter's _grid_function, _unflatten, _entry_alloca, ptr, n, b, module."""

    # --- convolution / pooling gradient (col2im)
    def _grid_window_grad(self):
        node = self.kernel.root
        self._grid_function("", prod(node.shape), lambda g: self._window_grad_body(g, node))

    def _window_grad_body(self, g, node):
        b = self.b
        grad = node.inputs[0]
        attrs = node.attrs
        k = len(attrs["sizes"])
        spatial = [int(s) for s in attrs["input_spatial"]]
        outs = [int(o) for o in grad.shape[1:1 + k]]
        idx = self._unflatten(g, [dim(d) for d in node.shape])     # (b, s_1..s_k, c)
        gs = [s.value(b, self.n) for s in contiguous_strides(grad.shape)]
        assert len(spatial) == k
        acc = self._entry_alloca(F32)
        b.store(ir.Constant(F32, 0.0), acc)
        base = b.add(b.mul(idx[0], gs[0]), b.mul(idx[-1], gs[-1]))

        def level(i, offset, valid):
            if i == k:
                bb = self.b
                with bb.if_then(valid):
                    v = bb.load(gep_f(bb, self.ptr(grad), offset), typ=F32)
                    bb.store(bb.fadd(bb.load(acc, typ=F32), v), acc)
                return
            with for_range(self.b, i64(0), i64(int(attrs["sizes"][i])), f"w{i}") as w:
                bb = self.b
                p = bb.sub(idx[1 + i], bb.mul(w, i64(int(attrs["dilations"][i]))))
                stride = i64(int(attrs["strides"][i]))
                o = bb.sdiv(p, stride)
                ok = bb.and_(bb.icmp_signed(">=", p, i64(0)), bb.icmp_signed("==", bb.srem(p, stride), i64(0)))
                ok = bb.and_(ok, bb.icmp_signed("<", o, i64(outs[i])))
                o = bb.select(ok, o, i64(0))
                offset = bb.add(offset, bb.add(bb.mul(o, gs[1 + i]), bb.mul(w, gs[1 + k + i])))
                level(i + 1, offset, bb.and_(valid, ok))
        level(0, base, ir.Constant(ir.IntType(1), 1))
        b = self.b
        b.store(b.load(acc, typ=F32), gep_f(b, self.ptr(node), g))

    # --- Embedding: gather and its gradient
    def _index_row(self, indices, i, rows):
        """(row clamped to 0, valid) of flat index i."""
        b = self.b
        row = b.sext(b.load(gep_f(b, self.ptr(indices), i, "int32"), typ=I32), I64)
        valid = b.and_(b.icmp_signed(">=", row, i64(0)), b.icmp_signed("<", row, i64(rows)))
        return b.select(valid, row, i64(0)), valid

    def _grid_gather_rows(self):
        node = self.kernel.root
        table, indices = node.inputs
        width = int(table.shape[1])

        def body(g):
            b = self.b
            i, c = b.udiv(g, i64(width)), b.urem(g, i64(width))
            row, valid = self._index_row(indices, i, int(table.shape[0]))
            v = b.load(gep_f(b, self.ptr(table), b.add(b.mul(row, i64(width)), c)), typ=F32)
            b.store(b.select(valid, v, ir.Constant(F32, float("nan"))), gep_f(b, self.ptr(node), g))
        self._grid_function("", prod(indices.shape) * Mono(width), body)

    def _grid_scatter_add_rows(self):
        node = self.kernel.root
        values, indices = node.inputs
        rows, width = int(node.shape[0]), int(node.shape[1])

        def body(g):
            b = self.b
            r, c = b.udiv(g, i64(width)), b.urem(g, i64(width))
            acc = self._entry_alloca(F32)
            b.store(ir.Constant(F32, 0.0), acc)
            with for_range(b, i64(0), prod(indices.shape).value(b, self.n), "i") as i:
                bb = self.b
                row, valid = self._index_row(indices, i, rows)
                with bb.if_then(bb.and_(valid, bb.icmp_unsigned("==", row, r))):
                    v = bb.load(gep_f(bb, self.ptr(values), bb.add(bb.mul(i, i64(width)), c)), typ=F32)
                    bb.store(bb.fadd(bb.load(acc, typ=F32), v), acc)
            b = self.b
            b.store(b.load(acc, typ=F32), gep_f(b, self.ptr(node), g))
        self._grid_function("", Mono(rows * width), body)

    # --- RNN scan: the body's kernels, launched once per step by the host
    def _grid_scan(self):
        node = self.kernel.root
        body = self.kernel.body
        init, xss = node.inputs[0], node.inputs[1:1 + node.attrs["xs"]]
        body_launches = []
        for pos, step in enumerate(body.schedule):
            emitter = type(self)(self.module, f"{self.name}_s_k{step.kernel}", body.kernels[step.kernel],
                                 body.memory, pos, step.kernel, self.emulate)
            body_launches += emitter.emit()
        operands = tuple(buffer_of(self.plan, i) for i in node.inputs)
        steps = int(node.shape[0])
        self.launches.append(ScanLaunch(
            self.step, self.kernel_index, "scan", self.name, steps, bool(node.attrs["reverse"]),
            tuple(body_launches), body.memory, operands, self.plan.buffers[node.id],
            row_bytes=Poly.of(prod(node.shape[1:]) * Mono(4)),
            x_bytes=tuple(Poly.of(prod(x.shape[1:]) * Mono(4)) for x in xss)))
        assert base_of(init).op not in ("const", "batch_size")


def scan_problems(kernel):
    """Why a scan kernel cannot run on the GPU (operands without a device buffer), or ''."""
    bad = [base_of(i).op for i in kernel.root.inputs if base_of(i).op in ("const", "batch_size")]
    return f"scan operand(s) {', '.join(bad)} without a device buffer" if bad else ""
