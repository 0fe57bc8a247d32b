"""Implicit GEMM: the gemm's A operand read through a convolution's window, never materialised.

A convolution is window → reshape → matmul (ir/primitives_spatial.py). Written out, the window
(im2col) of a 3x3 convolution is 9x its input — for the guide's VGG-like model 340 MB per batch
of 32, written to memory and read back by the gemm's packing. When every user of a window is a
matmul reading it as A (the forward product and the kernel gradient), fusion hands the matmul
the window's input instead (`Kernel.a_window`) and the gemm packs its A blocks straight from it.

Element (i, k) of such an A lies at offset row_offset(i) + k_offset(k) of the window's input:
the row index and the column index each decode, as mixed-radix numbers, into window coordinates
(rows: batch, output positions; columns: window positions, channel — or the other way round for
a transposed A) with one stride per digit. `GatherA.digits` holds both decoders as data, at most
MAX_DIGITS digits each, innermost first; the code reads them at run time from a small constant
table, so one packing routine serves every convolution of a module.

Per block (at most MC rows x KC columns) the code decodes its first row and column with
divisions once and fills a table of row offsets and one of column offsets by counting (carry digit
to digit, no division). Then one of two panel routines:
  * direct (columns run contiguously for at least DIRECT_MIN_RUN elements: a forward convolution
    or an input gradient, whose columns are a window position's channels, or its whole window row):
    nothing is packed. The column table becomes a list of runs (offset, length) and the direct
    micro-kernels broadcast A straight from the input, row r at X + row_offset[r] + run offset + t,
    against the packed B, with the micro-kernel's register tile;
  * packed (the kernel gradient's A, whose columns are output positions): pack_gather copies 6-row
    micro-panels in the gemm's layout — 8-column register transposes where columns run in 8s,
    6 floats per column where 6 rows are contiguous channels, element by element otherwise — and
    the gemm's own panel routine and micro-kernels run on them.
Offsets come only from decoded in-range indices, so nothing outside the window's input is read.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .gemm import (KC, MC, MR, UNROLL, V8, RowSums, _ceil_div, _f, _imin, _internal, _load_v8, _panel_fn,
                   _store_v8, _transpose8, store_tile, tile_columns)
from .llvm_util import F32, I32, I64, PTR, for_range, gep_f, i64

MAX_DIGITS = 4                  # batch + 3 spatial axes, or 3 window axes + channels
UNBOUNDED = (1 << 63) - 1       # the radix of a group's outermost digit (never carries)
TABLE_SIZE = 4 * MAX_DIGITS     # i64: per group MAX_DIGITS radices then MAX_DIGITS strides
DIRECT_MIN_RUN = 8              # columns contiguous in runs at least this long: no packing of A


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

    def panel_fn(self, module):
        """The gemm panel routine for this operand (gemm._row_panels calls it per row panel)."""
        if self.column_run >= DIRECT_MIN_RUN:
            return direct_panel_fn(module)
        return _panel_fn(module, pack_gather_fn(module))

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


def pack_gather_fn(module):
    """void pack_gather(mc, kc, X, row0, k0, Ap, table): rows [row0, row0+mc) x columns [k0, k0+kc)
    of the gathered A into 6-row micro-panels, exactly as the gemm's pack_a lays them out."""
    name = "kcompile.gemm.pack_gather"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, PTR, I64, I64, PTR, PTR])
    mc, kc, X, row0, k0, Ap, table = fn.args
    for p in (X, Ap):
        p.add_attribute("noalias")
    row_off = b.alloca(I64, size=i64(MC))
    col_off = b.alloca(I64, size=i64(KC))
    runs8 = b.alloca(ir.IntType(1), size=i64(KC // 8))
    counters = [([b.alloca(I64) for _ in range(MAX_DIGITS)], b.alloca(I64)) for _ in range(2)]
    _fill_offsets(b, table, 0, row_off, row0, mc, *counters[0])
    _fill_offsets(b, table, 1, col_off, k0, kc, *counters[1])
    col = lambda k: b.load(b.gep(col_off, [k], source_etype=I64), typ=I64)  # noqa: E731
    row = lambda i: b.load(b.gep(row_off, [i], source_etype=I64), typ=I64)  # noqa: E731

    # which 8-column chunks are contiguous in X (the same for every row)
    n8 = b.sdiv(kc, i64(8))
    with for_range(b, 0, n8, "c8") as c8:
        k = b.mul(c8, i64(8))
        first = col(k)
        ok = ir.Constant(ir.IntType(1), 1)
        for c in range(1, 8):
            ok = b.and_(ok, b.icmp_signed("==", col(b.add(k, i64(c))), b.add(first, i64(c))))
        b.store(ok, b.gep(runs8, [c8], source_etype=ir.IntType(1)))

    zero = ir.Constant(V8, [_f(0.0)] * 8)
    n_full = b.sdiv(mc, i64(MR))

    def scalar_columns(ptrs, dst, k_lo, k_hi):
        with for_range(b, k_lo, k_hi, "ks") as k:
            off = col(k)
            for r in range(MR):
                b.store(b.load(gep_f(b, ptrs[r], off), typ=F32), gep_f(b, dst, b.add(b.mul(k, i64(MR)), i64(r))))

    with for_range(b, 0, n_full, "ip") as ip:
        i0 = b.mul(ip, i64(MR))
        dst = gep_f(b, Ap, b.mul(b.mul(ip, kc), i64(MR)))
        offs = [row(b.add(i0, i64(r))) for r in range(MR)]
        ptrs = [gep_f(b, X, o) for o in offs]
        rows_run = ir.Constant(ir.IntType(1), 1)
        for r in range(1, MR):
            rows_run = b.and_(rows_run, b.icmp_signed("==", offs[r], b.add(offs[0], i64(r))))
        with b.if_else(rows_run) as (contiguous_rows, other):
            with contiguous_rows:
                v4, v2 = ir.VectorType(F32, 4), ir.VectorType(F32, 2)
                with for_range(b, 0, kc, "kr") as k:
                    src = gep_f(b, ptrs[0], col(k))
                    out = gep_f(b, dst, b.mul(k, i64(MR)))
                    b.store(b.load(src, typ=v4, align=4), out, align=4)
                    b.store(b.load(gep_f(b, src, i64(4)), typ=v2, align=4), gep_f(b, out, i64(4)), align=4)
            with other:
                with for_range(b, 0, n8, "kv") as kv:
                    k = b.mul(kv, i64(8))
                    run = b.load(b.gep(runs8, [kv], source_etype=ir.IntType(1)), typ=ir.IntType(1))
                    with b.if_else(run, likely=True) as (vector, scalar):
                        with vector:
                            # each 8-wide store lands column k and 2 floats the next store overwrites
                            off = col(k)
                            cols = _transpose8(b, [_load_v8(b, p, off) for p in ptrs] + [zero, zero])
                            for c in range(8):
                                _store_v8(b, cols[c], dst, b.mul(b.add(k, i64(c)), i64(MR)))
                        with scalar:
                            scalar_columns(ptrs, dst, k, b.add(k, i64(8)))
                scalar_columns(ptrs, dst, b.mul(n8, i64(8)), kc)

    # the last, partial micro-panel: rows past mc are zeros (and never decoded or read)
    with b.if_then(b.icmp_signed("<", b.mul(n_full, i64(MR)), mc)):
        i0 = b.mul(n_full, i64(MR))
        valid = b.sub(mc, i0)
        dst = gep_f(b, Ap, b.mul(b.mul(n_full, kc), i64(MR)))
        with for_range(b, 0, kc, "kp") as k:
            off = col(k)
            out = gep_f(b, dst, b.mul(k, i64(MR)))
            with for_range(b, 0, valid, "rp") as r:
                b.store(b.load(gep_f(b, X, b.add(row(b.add(i0, r)), off)), typ=F32), gep_f(b, out, r))
            with for_range(b, valid, i64(MR), "rz") as r:
                b.store(_f(0.0), gep_f(b, out, r))
    b.ret_void()
    return fn



def direct_panel_fn(module):
    """void panel(mc, N, K, X, row0, 0, Bp, kcb, n_kb, C, ldc, accumulate, Ap, table): rows
    [row0, row0 + mc) of a gemm whose A is gathered from X, A not packed (Ap unused).

    Per k-block: the column offsets as runs, then for each NR-column B micro-panel (outer) and
    6-row micro-tile (inner) the direct micro-kernel, as the packed panel routine does."""
    name = "kcompile.gemm.panel.direct"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, PTR, I64, I32, PTR, PTR])
    mc, N, K, X, row0, _, Bp, kcb, n_kb, C, ldc, accumulate, _, table = fn.args
    for p in (X, Bp, C):
        p.add_attribute("noalias")
    row_off = b.alloca(I64, size=i64(MC))
    col_off = b.alloca(I64, size=i64(KC))
    runs = b.alloca(I64, size=i64(2 * KC))
    counters = [([b.alloca(I64) for _ in range(MAX_DIGITS)], b.alloca(I64)) for _ in range(2)]
    n_runs_slot, start_slot = b.alloca(I64), b.alloca(I64)
    kernels = [None] + [_direct_kernel_fn(module, rows) for rows in range(1, MR + 1)]
    _fill_offsets(b, table, 0, row_off, row0, mc, *counters[0])
    nr = tile_columns(module)
    n_pad = b.mul(_ceil_div(b, N, i64(nr)), i64(nr))
    n_ir = _ceil_div(b, mc, i64(MR))
    slot = lambda base, i: b.gep(base, [i], source_etype=I64)  # noqa: E731
    with for_range(b, 0, n_kb, "pc") as pc:
        k0 = b.mul(pc, kcb)
        kc = _imin(b, kcb, b.sub(K, k0))
        _fill_offsets(b, table, 1, col_off, k0, kc, *counters[1])
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
                b.store(b.load(slot(col_off, start), typ=I64), slot(runs, b.mul(n, i64(2))))
                b.store(b.sub(t, start), slot(runs, b.add(b.mul(n, i64(2)), i64(1))))
                b.store(b.add(n, i64(1)), n_runs_slot)
                b.store(t, start_slot)
        n_runs = b.load(n_runs_slot, typ=I64)
        acc = b.select(b.icmp_signed(">", pc, i64(0)), ir.Constant(I32, 1), accumulate)
        b_blk = gep_f(b, Bp, b.mul(k0, n_pad))
        with for_range(b, 0, b.sdiv(n_pad, i64(nr)), "jr") as jr:
            j0 = b.mul(jr, i64(nr))
            nv = _imin(b, b.sub(N, j0), i64(nr))
            b_panel = gep_f(b, b_blk, b.mul(j0, kc))
            with for_range(b, 0, n_ir, "ir") as ir_:
                i0 = b.mul(ir_, i64(MR))
                rows = b.sub(mc, i0)
                call_args = [X, slot(row_off, i0), runs, n_runs, b_panel, gep_f(b, C, b.add(b.mul(i0, ldc), j0)),
                             ldc, nv, acc]
                full = b.icmp_signed(">=", rows, i64(MR))
                with b.if_else(full, likely=True) as (then, otherwise):
                    with then:
                        b.call(kernels[MR], call_args)
                    with otherwise:
                        after = b.append_basic_block("rows.done")
                        sw = b.switch(rows, after)
                        for r in range(1, MR):
                            blk = b.append_basic_block(f"rows{r}")
                            sw.add_case(i64(r), blk)
                            b.position_at_end(blk)
                            b.call(kernels[r], call_args)
                            b.branch(after)
                        b.position_at_end(after)
    b.ret_void()
    return fn


def _direct_kernel_fn(module, rows):
    """void udk(X, row_off, runs, n_runs, Bp, C, ldc, nv, accumulate): the micro-kernel with A read
    in place: C[r*ldc + j] (+)= sum over the runs (off, len), t < len, of
    X[row_off[r] + off + t] * Bp[16k + j] (k counting through the runs), r < rows, j < nv."""
    nr = tile_columns(module)
    name = f"kcompile.gemm.udk{rows}x{nr}"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [PTR, PTR, PTR, I64, PTR, PTR, I64, I64, I32])
    X, row_off, runs, n_runs, Bp, C, ldc, nv, accumulate = fn.args
    for p in (X, Bp, C):
        p.add_attribute("noalias")
    sums = RowSums(module, rows)
    accs = [b.alloca(sums.ty) for _ in range(2 * rows)]       # (promoted to registers by the optimizer)
    b_ptr = b.alloca(PTR)
    for a, zero in zip(accs, sums.zeros()):
        b.store(zero, a)
    b.store(Bp, b_ptr)
    bases = [gep_f(b, X, b.load(b.gep(row_off, [i64(r)], source_etype=I64), typ=I64)) for r in range(rows)]

    def steps(a_rows, t, count):
        pb = b.load(b_ptr, typ=PTR)
        values = [b.load(a, typ=sums.ty) for a in accs]
        for s in range(count):
            k = b.add(t, i64(s))
            bv = sums.load_b(b, gep_f(b, pb, i64(nr * s)), 4 * sums.lanes)
            a_values = [b.load(gep_f(b, a_rows[r], k), typ=F32, align=4) for r in range(rows)]
            values = sums.step(b, values, a_values, bv)
        for a, v in zip(accs, values):
            b.store(v, a)
        b.store(gep_f(b, pb, i64(nr * count)), b_ptr)

    with for_range(b, 0, n_runs, "run") as q:
        off = b.load(b.gep(runs, [b.mul(q, i64(2))], source_etype=I64), typ=I64)
        length = b.load(b.gep(runs, [b.add(b.mul(q, i64(2)), i64(1))], source_etype=I64), typ=I64)
        a_rows = [gep_f(b, base, off) for base in bases]
        main = b.sdiv(length, i64(UNROLL))
        with for_range(b, 0, main, "tu") as tu:
            steps(a_rows, b.mul(tu, i64(UNROLL)), UNROLL)
        with for_range(b, b.mul(main, i64(UNROLL)), length, "tr") as t:
            steps(a_rows, t, 1)
    c_rows = [gep_f(b, C, b.mul(i64(r), ldc)) for r in range(rows)]
    store_tile(b, module, sums.pieces(b, [b.load(a, typ=sums.ty) for a in accs]), c_rows, nv, accumulate)
    b.ret_void()
    return fn
