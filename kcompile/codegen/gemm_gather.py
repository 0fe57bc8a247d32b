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

Per packed block (at most MC rows x KC columns) the routine decodes its first row and column
with divisions once, fills a table of row offsets and one of column offsets by counting (carry
digit to digit, no division), then copies 6-row micro-panels in the gemm's layout:
  * columns that run contiguously in 8s (a row's channels within one window position: every
    forward convolution with 8 | channels) go through the gemm's 8x8 register transposes;
  * 6 rows that are contiguous for every column (the kernel gradient's A: channels of one window
    position) copy 6 floats per column;
  * anything else element by element.
Offsets come only from decoded in-range indices, so nothing outside the window's input is read.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .gemm import KC, MC, MR, V8, _f, _internal, _load_v8, _store_v8, _transpose8
from .llvm_util import F32, I64, PTR, for_range, gep_f, i64

MAX_DIGITS = 4                  # batch + 3 spatial axes, or 3 window axes + channels
UNBOUNDED = (1 << 63) - 1       # the radix of a group's outermost digit (never carries)
TABLE_SIZE = 4 * MAX_DIGITS     # i64: per group MAX_DIGITS radices then MAX_DIGITS strides


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

