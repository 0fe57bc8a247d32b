"""Implicit GEMM: the gemm's A operand read through a convolution's window, never materialised.

A convolution is window → reshape → matmul (ir/primitives_spatial.py). Written out, the window
(im2col) of a 3x3 convolution is 9x its input — for the guide's VGG-like model 340 MB per batch
of 32, written to memory and read back by the gemm's packing. When every user of a window is a
matmul reading it as A (the forward product and the kernel gradient), fusion hands the matmul
the window's input instead (`Kernel.a_window`) and the gemm's micro-kernels read A straight from
it: nothing of A is packed.

Element (i, k) of such an A lies at offset row_offset(i) + k_offset(k) of the window's input:
the row index and the column index each decode, as mixed-radix numbers, into window coordinates
(rows: batch, output positions; columns: window positions, channel — or the other way round for
a transposed A) with one stride per digit. `GatherA.digits` holds both decoders as data, at most
MAX_DIGITS digits each, innermost first; the code reads them at run time from a small constant
table, so one panel routine serves every convolution of a module.

Per block (at most MC rows x KC columns) the panel routine decodes its first row and column with
divisions once and fills a table of row offsets and one of column offsets by counting (carry digit
to digit, no division). The direct micro-kernels then broadcast A[r, k] from
X + row_offset[r] + column_offset[k] against the packed B, with the gemm's register tile
(gemm.RowSums). Where the columns run contiguously for at least DIRECT_MIN_RUN elements (a forward
convolution or an input gradient: a window position's channels, or a whole window row) the column
table is first turned into runs (offset, length), so the k loop reads A sequentially with no table
loads; otherwise (the kernel gradient, whose columns are output positions) each step loads its
column's offset from the table. Packing A instead (the earlier design) cost ~10% of a VGG-like
training step more: for the small N of convolutions it is about half the work of the products.
Offsets come only from decoded in-range indices, so nothing outside the window's input is read.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .gemm import (KC, MC, MR, UNROLL, RowSums, _ceil_div, _imin, _internal, store_tile, sweep_tiles,
                   tile_columns)
from .llvm_util import F32, I32, I64, PTR, for_range, gep_f, i64

MAX_DIGITS = 4                  # batch + 3 spatial axes, or 3 window axes + channels
UNBOUNDED = (1 << 63) - 1       # the radix of a group's outermost digit (never carries)
DIRECT_MIN_RUN = 8              # columns contiguous in runs at least this long: read as runs


@dataclass(frozen=True)
class GatherA:
    """How a gemm's A is read: (radix, stride) digits, innermost first, for rows and for columns.

    Each group's outermost digit has radix None (it takes whatever is left of the index)."""
    rows: tuple
    cols: tuple

    def __post_init__(self):
        for group in (self.rows, self.cols):
            if not 1 <= len(group) <= MAX_DIGITS or group[-1][0] is not None:
                raise ValueError(f"gather digits {group}: 1..{MAX_DIGITS} digits, the outermost unbounded")
            if any(r is not None and r < 1 for r, _ in group) or any(s < 0 for _, s in group):
                raise ValueError(f"gather digits {group}: radices >= 1 and strides >= 0")

    @property
    def column_run(self):
        """How many consecutive columns are always contiguous in the input (a lower bound of every
        run of the column table): the innermost digits while each one's stride continues the run."""
        run = 1
        for radix, stride in self.cols:
            if stride != run or radix is None:
                break
            run *= radix
        return run

    @property
    def runs(self):
        """Whether the panel routine reads columns as runs (direct_panel_fn), not one offset per step."""
        return self.column_run >= DIRECT_MIN_RUN

    def offset(self, i, k):
        """Python mirror of the generated decoding (for tests and the GPU emitter's reference)."""
        return _decode(i, self.rows) + _decode(k, self.cols)

    def table(self, module, name):
        """The decoders as a constant i64 global NAME (rows then columns, radices then strides)."""
        values = []
        for group in (self.rows, self.cols):
            padded = list(group) + [(None, 0)] * (MAX_DIGITS - len(group))
            values += [UNBOUNDED if r is None else r for r, _ in padded] + [s for _, s in padded]
        ty = ir.ArrayType(I64, len(values))
        table = ir.GlobalVariable(module, ty, name)
        table.global_constant = True
        table.linkage = "internal"
        table.initializer = ir.Constant(ty, values)
        return table


def _decode(index, group):
    offset = 0
    for radix, stride in group:
        if radix is None:
            return offset + index * stride
        offset += (index % radix) * stride
        index //= radix
    raise AssertionError("unreachable: the last digit is unbounded")


def emit_offset(b, index, group):
    """IR for decode(index) of one digit group with constant radices (the GPU's per-element loads)."""
    offset = i64(0)
    for radix, stride in group:
        if radix is None:
            return b.add(offset, b.mul(index, i64(stride)))
        offset = b.add(offset, b.mul(b.urem(index, i64(radix)), i64(stride)))
        index = b.udiv(index, i64(radix))
    raise AssertionError("unreachable: the last digit is unbounded")


def _fill_offsets(b, table, group, out, start, count, digit, offset):
    """out[t] = decode(start + t) for t < count, by one decode and then counting with carries
    (`digit`, `offset`: MAX_DIGITS + 1 i64 allocas of the entry block)."""
    base = group * 2 * MAX_DIGITS
    radix = [b.load(b.gep(table, [i64(base + j)], source_etype=I64), typ=I64) for j in range(MAX_DIGITS)]
    stride = [b.load(b.gep(table, [i64(base + MAX_DIGITS + j)], source_etype=I64), typ=I64)
              for j in range(MAX_DIGITS)]
    rest, acc = start, i64(0)
    for j in range(MAX_DIGITS):
        d = b.urem(rest, radix[j])
        rest = b.udiv(rest, radix[j])
        b.store(d, digit[j])
        acc = b.add(acc, b.mul(d, stride[j]))
    b.store(acc, offset)
    with for_range(b, 0, count, "t") as t:
        b.store(b.load(offset, typ=I64), b.gep(out, [t], source_etype=I64))

        def bump(j):
            # digit j + 1; on reaching its radix it wraps to 0 and carries into digit j + 1
            d = b.add(b.load(digit[j], typ=I64), i64(1))
            b.store(b.add(b.load(offset, typ=I64), stride[j]), offset)
            b.store(d, digit[j])
            if j + 1 < MAX_DIGITS:
                with b.if_then(b.icmp_unsigned("==", d, radix[j]), likely=False):
                    b.store(i64(0), digit[j])
                    b.store(b.sub(b.load(offset, typ=I64), b.mul(radix[j], stride[j])), offset)
                    bump(j + 1)
        bump(0)


def direct_panel_fn(module, runs=True):
    """void panel(mc, N, K, X, row0, 0, Bp, b_step, kcb, n_kb, C, ldc, accumulate, Ap, table): rows
    [row0, row0 + mc) of a gemm whose A is gathered from X, A not packed (Ap unused).

    Per k-block: the column offsets (as runs, with `runs`), then for each NR-column B micro-panel
    (outer) and 6-row micro-tile (inner) the direct micro-kernel, as the packed panel routine does."""
    name = "kcompile.gemm.panel.direct" + ("" if runs else "_table")
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, I64, PTR, I64, I32, PTR, PTR])
    mc, N, K, X, row0, _, Bp, b_step, kcb, n_kb, C, ldc, accumulate, _, table = fn.args
    for p in (X, Bp, C):
        p.add_attribute("noalias")
    row_off = b.alloca(I64, size=i64(MC))
    col_off = b.alloca(I64, size=i64(KC))
    runs_table = b.alloca(I64, size=i64(2 * KC))
    counters = [([b.alloca(I64) for _ in range(MAX_DIGITS)], b.alloca(I64)) for _ in range(2)]
    n_runs_slot, start_slot = b.alloca(I64), b.alloca(I64)
    _fill_offsets(b, table, 0, row_off, row0, mc, *counters[0])
    nr = tile_columns(module)
    n_pad = b.mul(_ceil_div(b, N, i64(nr)), i64(nr))
    slot = lambda base, i: b.gep(base, [i], source_etype=I64)  # noqa: E731
    with for_range(b, 0, n_kb, "pc") as pc:
        k0 = b.mul(pc, kcb)
        kc = _imin(b, kcb, b.sub(K, k0))
        _fill_offsets(b, table, 1, col_off, k0, kc, *counters[1])
        if runs:
            # runs: maximal stretches t where col_off[t] = col_off[t - 1] + 1
            b.store(i64(0), n_runs_slot)
            b.store(i64(0), start_slot)
            with for_range(b, 1, b.add(kc, i64(1)), "t") as t:
                at_end = b.icmp_signed("==", t, kc)
                prev = b.load(slot(col_off, b.sub(t, i64(1))), typ=I64)
                cur = b.load(slot(col_off, b.select(at_end, b.sub(t, i64(1)), t)), typ=I64)
                brk = b.or_(at_end, b.icmp_signed("!=", cur, b.add(prev, i64(1))))
                with b.if_then(brk):
                    start = b.load(start_slot, typ=I64)
                    n = b.load(n_runs_slot, typ=I64)
                    b.store(b.load(slot(col_off, start), typ=I64), slot(runs_table, b.mul(n, i64(2))))
                    b.store(b.sub(t, start), slot(runs_table, b.add(b.mul(n, i64(2)), i64(1))))
                    b.store(b.add(n, i64(1)), n_runs_slot)
                    b.store(t, start_slot)
            columns, count = runs_table, b.load(n_runs_slot, typ=I64)
        else:
            columns, count = col_off, kc
        acc = b.select(b.icmp_signed(">", pc, i64(0)), ir.Constant(I32, 1), accumulate)
        sweep_tiles(b, module, lambda rows, halves: _direct_kernel_fn(module, rows, runs, halves),
                    N, mc, n_pad, Bp, b_step, k0, kc,
                    lambda ir_, i0, j0, nv, b_panel, k_step, columns=columns, count=count, acc=acc: [
                        X, slot(row_off, i0), columns, count, b_panel, gep_f(b, C, b.add(b.mul(i0, ldc), j0)),
                        ldc, nv, acc, k_step])
    b.ret_void()
    return fn


def _direct_kernel_fn(module, rows, runs=True, halves=2):
    """void udk(X, row_off, columns, count, Bp, C, ldc, nv, accumulate, k_step): the micro-kernel with
    A read in place: C[r*ldc + j] (+)= sum over k of A[r, k] * Bp[k_step*k + j], r < rows, j < nv, where
    A[r, k] = X[row_off[r] + column offset of k], the columns given as `count` runs (offset, length)
    (with `runs`) or as a table of `count` offsets."""
    sums = RowSums(module, rows, halves)
    name = f"kcompile.gemm.udk{rows}x{sums.nr}" + ("" if runs else "t")
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [PTR, PTR, PTR, I64, PTR, PTR, I64, I64, I32, I64])
    X, row_off, columns, count, Bp, C, ldc, nv, accumulate, k_step = fn.args
    for p in (X, Bp, C):
        p.add_attribute("noalias")
    accs = [b.alloca(sums.ty) for _ in sums.zeros()]       # (promoted to registers by the optimizer)
    b_ptr = b.alloca(PTR)
    for a, zero in zip(accs, sums.zeros()):
        b.store(zero, a)
    b.store(Bp, b_ptr)
    bases = [gep_f(b, X, b.load(b.gep(row_off, [i64(r)], source_etype=I64), typ=I64)) for r in range(rows)]

    def steps(address, t, n):
        """n k steps from t; address(r, k): the pointer of A[r, k]."""
        pb = b.load(b_ptr, typ=PTR)
        values = [b.load(a, typ=sums.ty) for a in accs]
        for s in range(n):
            k = b.add(t, i64(s))
            bv = sums.load_b(b, gep_f(b, pb, b.mul(k_step, i64(s))), 4)
            values = sums.step(b, values, [b.load(address(r, k), typ=F32, align=4) for r in range(rows)], bv)
        for a, v in zip(accs, values):
            b.store(v, a)
        b.store(gep_f(b, pb, b.mul(k_step, i64(n))), b_ptr)

    def unrolled(length, address):
        if rows < MR:       # the edge kernels (ragged M only): not unrolled, less code to compile
            with for_range(b, 0, length, "t") as t:
                steps(address, t, 1)
            return
        main = b.sdiv(length, i64(UNROLL))
        with for_range(b, 0, main, "tu") as tu:
            steps(address, b.mul(tu, i64(UNROLL)), UNROLL)
        with for_range(b, b.mul(main, i64(UNROLL)), length, "tr") as t:
            steps(address, t, 1)

    if runs:
        with for_range(b, 0, count, "run") as q:
            off = b.load(b.gep(columns, [b.mul(q, i64(2))], source_etype=I64), typ=I64)
            length = b.load(b.gep(columns, [b.add(b.mul(q, i64(2)), i64(1))], source_etype=I64), typ=I64)
            a_rows = [gep_f(b, base, off) for base in bases]
            unrolled(length, lambda r, k: gep_f(b, a_rows[r], k))
    else:
        def address(r, k):    # (the column's offset is loaded once per step: the optimizer shares it)
            return gep_f(b, bases[r], b.load(b.gep(columns, [k], source_etype=I64), typ=I64))
        unrolled(count, address)
    c_rows = [gep_f(b, C, b.mul(i64(r), ldc)) for r in range(rows)]
    store_tile(b, module, sums.pieces(b, [b.load(a, typ=sums.ty) for a in accs]), c_rows, nv, accumulate)
    b.ret_void()
    return fn



def strided_panel_fn(module):
    """void panel(mc, N, K, A, a_rs, a_cs, Bp, b_step, kcb, n_kb, C, ldc, accumulate, Ap): the packed
    panel routine's contract (gemm._panel_fn) for a plain strided A, read in place by the direct
    micro-kernels (Ap unused): row r at A + r*a_rs, column k at k*a_cs, through a table of the
    k-block's column offsets. The gemm takes it when few B micro-panels read each A block
    (gemm.DIRECT_A_PANELS), where packing A costs more than the strided reads it saves."""
    name = "kcompile.gemm.panel.strided"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, I64, PTR, I64, I32, PTR])
    mc, N, K, A, a_rs, a_cs, Bp, b_step, kcb, n_kb, C, ldc, accumulate, _ = fn.args
    for p in (A, Bp, C):
        p.add_attribute("noalias")
    row_off = b.alloca(I64, size=i64(MC))
    col_off = b.alloca(I64, size=i64(KC))
    slot = lambda base, i: b.gep(base, [i], source_etype=I64)  # noqa: E731
    with for_range(b, 0, mc, "r") as r:
        b.store(b.mul(r, a_rs), slot(row_off, r))
    nr = tile_columns(module)
    n_pad = b.mul(_ceil_div(b, N, i64(nr)), i64(nr))
    with for_range(b, 0, n_kb, "pc") as pc:
        k0 = b.mul(pc, kcb)
        kc = _imin(b, kcb, b.sub(K, k0))
        acc = b.select(b.icmp_signed(">", pc, i64(0)), ir.Constant(I32, 1), accumulate)
        with for_range(b, 0, kc, "t") as t:
            b.store(b.mul(b.add(k0, t), a_cs), slot(col_off, t))
        sweep_tiles(b, module, lambda rows, halves: _direct_kernel_fn(module, rows, False, halves),
                    N, mc, n_pad, Bp, b_step, k0, kc,
                    lambda ir_, i0, j0, nv, b_panel, k_step: [
                        A, slot(row_off, i0), col_off, kc, b_panel, gep_f(b, C, b.add(b.mul(i0, ldc), j0)),
                        ldc, nv, acc, k_step])
    b.ret_void()
    return fn
