"""The matmul kernel template: C = op(A) @ op(B) in generated IR, behind one interface.

`define_gemm(module, name, epilogue)` defines
  void name(i64 M, i64 N, i64 K, ptr A, i64 a_rs, i64 a_cs, ptr B, i64 b_rs, i64 b_cs,
            ptr C, i64 ldc, i32 accumulate, ptr scratch, <extra args>)
computing C[i*ldc + j] (+)= sum_k A[i*a_rs + k*a_cs] * B[k*b_rs + j*b_cs], so transposed
operands are just other strides; `accumulate` = 0 overwrites C, 1 adds to it. Rows are
finished in panels of at most MC; after each finished panel (all of K, all of N)
`epilogue(builder, row_start, row_end, extra_args)` emits the fused elementwise tail for those
rows while they are in cache. `scratch` (64-byte aligned) holds `scratch_floats(K, N)` floats.

BLIS-style blocking for one core, tuned on Zen 3 (32 KiB L1d, 512 KiB L2, AVX2 + FMA):
  * B is packed once, whole (on the pool when large), in k-blocks (K split into equal blocks of at most KC = 256 rows),
    each block as NR = 16 column micro-panels (kc x 16 contiguous, 64-byte aligned, zero padded
    past N): K x N rounded up to 16 floats in all.
  * M is split into equal row panels of at most MC = 144 rows. Per panel and k-block the
    mc x kc block of A is packed into MR = 6 row micro-panels (kc x 6, k-major, zero padded
    past M; 144 KiB, it stays in L2), then the macro-kernel sweeps B micro-panels (outer; each,
    16 KiB, stays in L1) against the A micro-panels (inner). When N spans at most
    DIRECT_A_PANELS micro-panels, A is not packed: the direct micro-kernels of gemm_gather.py
    read it in place with its strides (packing would cost more than the reads it saves).
  * The 6x16 micro-kernel keeps 12 <8 x float> accumulators in registers through the k loop
    (unrolled by 4): per k two aligned B loads, six A broadcasts, twelve llvm.fma.v8f32. It
    prefetches its C tile and, spread over the calls of a sweep, the next B micro-panel into L2.
    On a 512-bit target (AVX-512: module.kc_vector_bits, set by build_module) the tile is 6x32,
    NR = 32, with <16 x float> accumulators: each A broadcast feeds two 16-wide FMAs (RowSums).
    Every column is one FMA chain in k order either way, so the results are the same bits.
    Ragged tiles stay vectorized: 1..5 row variants for the last rows, masked loads and stores
    for the last (zero padded) columns.
  * Packing is vectorized for contiguous rows or columns (8x8 register transposes where the
    layout turns around, row-sequential reads); other strides and ragged edges take a scalar loop.
  * At most MR rows with B's rows contiguous (b_cs = 1: batch-1 predictions, forward Dense
    layers of small batches) take the GEMV path: nothing packed, A and B read in place, rows in
    groups of 3 with the micro-kernel's accumulators and FMA order, so those rows get the same
    bits as in a larger batch (a batch-1 C call of the guide MLP: ~3.3x fewer instructions).
The micro-kernels, GEMV, packing and panel routines, and one driver per way of reading A
(_driver_fn: GEMV path, B packing, row panels, the thread-pool task), are defined once per module
and shared by every gemm in it; each `define_gemm` adds only its epilogue (one function, called
through a pointer by every path) and a small function handing its arguments to the driver. With
`a_gather` (implicit GEMM, gemm_gather.py) A is read through a convolution window's index
decoding, by direct micro-kernels: A is not packed.

The summation order depends on the shapes only: each C element is
((C or 0) + block 0's sum) + block 1's sum ..., each block's sum an FMA chain in k order.

Threads: when the module is for an executor "threads" (`module.kc_executor`, set by build_module
for the in-process JIT), the row-panel loop is outlined into a task over a range of panels, its
values passed in a ctx block on the driver's stack, and a gemm of at least PARALLEL_MIN_WORK
multiply-adds and more than one panel runs it through kc_parallel_for (runtime/kc_threads.c):
contiguous ranges of panels that the threads claim as they come, B packed once before by the
caller. Worker 0 packs A into `scratch`, pool worker w into kc_worker_scratch(w), so
`scratch_floats` is unchanged. Each C element
is still computed by one thread in the order above: results are identical for any thread count.
Other executors (a built library) get the serial loop and no reference to the pool.
"""
from __future__ import annotations

from llvmlite import ir

from .llvm_util import F32, I32, I64, PTR, VOID, for_range, gep_f, i64

MR, NR = 6, 16            # the micro-tile: MR rows x NR columns (NR_WIDE on 512-bit targets)
NR_WIDE = 32
GEMV_COLUMNS = 16
MC, KC = 144, 256        # A block MC x KC: 144 KiB in L2; B micro-panel KC x NR: 16 KiB in L1
UNROLL = 4               # k steps per micro-kernel loop iteration
A_PAD = 64               # floats after the packed A block (8-wide packing stores overrun by 2)
ALIGN = 16               # floats: 64 bytes
GEMV_ROWS = 3            # rows per GEMV call (2 * 3 accumulators), for M <= MR
V8 = ir.VectorType(F32, 8)
V16 = ir.VectorType(F32, 16)
A_FLOATS = MC * KC + A_PAD
# The thread pool (executor "threads", runtime/kc_threads.c): KC_MAX_WORKERS threads at most; pool
# worker w >= 1 packs A into its own kc_worker_scratch(w) of WORKER_SCRATCH_BYTES (the caller, worker
# 0, into `scratch`, so scratch_floats is the serial one). A gemm of fewer than PARALLEL_MIN_WORK
# multiply-adds, or of one row panel, runs serially.
KC_MAX_WORKERS = 8
WORKER_SCRATCH_BYTES = 256 * 1024
PARALLEL_MIN_WORK = 1 << 18
IN_PLACE_B_ROWS = 48      # B is read in place (not packed) by gemms of at most this many rows
DIRECT_A_PANELS = 8       # A is read in place (not packed) by gemms of at most this many B micro-panels
assert 4 * A_FLOATS <= WORKER_SCRATCH_BYTES


def scratch_floats(k, n):
    """Floats of `scratch` a gemm uses: packed B (K x N rounded up to 16), one packed A block, alignment.

    Only +, * and constants: it is also evaluated on polynomials in the batch size.
    """
    return k * n + (NR_WIDE - 1) * k + (A_FLOATS + ALIGN + 64)


# ---------------------------------------------------------------------------------------------
# small IR helpers

def _f(v):
    return ir.Constant(F32, v)


def _imin(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _imax(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def _ceil_div(b, x, y):
    return b.sdiv(b.add(x, b.sub(y, i64(1))), y)


def _fma_fn(module, ty=V8):
    name = f"llvm.fma.v{ty.count}f32"
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ty, [ty, ty, ty]), name)
    return fn


def _masked_fns(module, ty=V8):
    # the (auto-upgraded) form with the alignment operand, accepted by every LLVM llvmlite ships
    n = ty.count
    mask = ir.VectorType(ir.IntType(1), n)
    load = module.globals.get(f"llvm.masked.load.v{n}f32.p0")
    if load is None:
        load = ir.Function(module, ir.FunctionType(ty, [PTR, I32, mask, ty]), f"llvm.masked.load.v{n}f32.p0")
    store = module.globals.get(f"llvm.masked.store.v{n}f32.p0")
    if store is None:
        store = ir.Function(module, ir.FunctionType(VOID, [ty, PTR, I32, mask]), f"llvm.masked.store.v{n}f32.p0")
    return load, store


def _prefetch_fn(module):
    fn = module.globals.get("llvm.prefetch.p0")
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(VOID, [PTR, I32, I32, I32]), "llvm.prefetch.p0")
    return fn


def _splat(b, x, lanes=8):
    undef = ir.Constant(ir.VectorType(F32, lanes), ir.Undefined)
    v = b.insert_element(undef, x, ir.Constant(I32, 0))
    return b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


def _load_v8(b, ptr, idx, align=4):
    return b.load(gep_f(b, ptr, idx), typ=V8, align=align)


def _store_v8(b, value, ptr, idx, align=4):
    b.store(value, gep_f(b, ptr, idx), align=align)


def _shuffle(b, x, y, mask):
    return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, 8), mask))


def _transpose8(b, rows):
    """8x8 transpose of 8 <8 x float> rows (unpck / shufps / vperm2f128 on AVX)."""
    t = []
    for p in range(4):
        t.append(_shuffle(b, rows[2 * p], rows[2 * p + 1], [0, 8, 1, 9, 4, 12, 5, 13]))
        t.append(_shuffle(b, rows[2 * p], rows[2 * p + 1], [2, 10, 3, 11, 6, 14, 7, 15]))
    lo, hi = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    s = [_shuffle(b, t[0], t[2], lo), _shuffle(b, t[0], t[2], hi), _shuffle(b, t[1], t[3], lo),
         _shuffle(b, t[1], t[3], hi), _shuffle(b, t[4], t[6], lo), _shuffle(b, t[4], t[6], hi),
         _shuffle(b, t[5], t[7], lo), _shuffle(b, t[5], t[7], hi)]
    out = [None] * 8
    for c in range(4):
        out[c] = _shuffle(b, s[c], s[c + 4], [0, 1, 2, 3, 8, 9, 10, 11])
        out[c + 4] = _shuffle(b, s[c], s[c + 4], [4, 5, 6, 7, 12, 13, 14, 15])
    return out


def _lane_mask(b, count, first, width=8, limit=NR):
    """<width x i1>: lane l is on when first + l < count (count taken as at most `limit`)."""
    lanes = ir.Constant(ir.VectorType(I32, width), [first + lane for lane in range(width)])
    undef = ir.Constant(ir.VectorType(I32, width), ir.Undefined)
    count = b.trunc(_imin(b, count, i64(limit)), I32)
    splat = b.shuffle_vector(b.insert_element(undef, count, ir.Constant(I32, 0)), undef,
                             ir.Constant(ir.VectorType(I32, width), [0] * width))
    return b.icmp_signed("<", lanes, splat)


def wide_tiles(module):
    """Whether this module's micro-tiles use 512-bit vectors (its target has AVX-512: build_module
    sets module.kc_vector_bits from the target)."""
    return getattr(module, "kc_vector_bits", 256) >= 512


def tile_columns(module):
    """NR of this module: 16 columns (two <8 x float> per row) on 256-bit targets, 32 (two
    <16 x float>) on 512-bit ones, where each A broadcast then feeds two 16-wide FMAs."""
    return NR_WIDE if wide_tiles(module) else NR


class RowSums:
    """A micro-tile's arithmetic, shared by the packed and the direct micro-kernels: per row `halves`
    accumulators of `lanes` floats — two (the tile's NR columns), or one for a narrow tile (the last
    micro-panel of B when at most NR / 2 columns are left: a 10-class output layer) — each column
    one FMA chain in k order: the same sums for every column on every target and path (the GEMV
    path's too)."""

    def __init__(self, module, rows, halves=2):
        self.module, self.rows, self.halves = module, rows, halves
        self.lanes = tile_columns(module) // 2
        self.nr = self.lanes * halves
        self.ty = ir.VectorType(F32, self.lanes)

    def zeros(self):
        return [ir.Constant(self.ty, [_f(0.0)] * self.lanes)] * (self.halves * self.rows)

    def load_b(self, b, ptr, align):
        """One k step's values of a B micro-panel at ptr (this tile's columns of it)."""
        return [b.load(gep_f(b, ptr, i64(self.lanes * h)), typ=self.ty, align=align) for h in range(self.halves)]

    def step(self, b, accs, a_values, bv):
        """accs after one k step: a_values[r] (scalars, one per row) times the B values bv."""
        fma = _fma_fn(self.module, self.ty)
        out = list(accs)
        for r, a in enumerate(a_values):
            av = _splat(b, a, self.lanes)
            for h in range(self.halves):
                j = self.halves * r + h
                out[j] = b.call(fma, [av, bv[h], out[j]])
        return out

    def pieces(self, b, accs):
        """The finished sums as <8 x float> pieces, NR // 8 per row (columns 0-7, 8-15, ...)."""
        if self.lanes == 8:
            return list(accs)
        out = []
        for acc in accs:
            for q in range(self.lanes // 8):
                out.append(b.shuffle_vector(acc, acc, ir.Constant(ir.VectorType(I32, 8), list(range(8 * q, 8 * q + 8)))))
        return out


def _internal(module, name, arg_types):
    fn = ir.Function(module, ir.FunctionType(VOID, arg_types), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


# ---------------------------------------------------------------------------------------------
# the gemm

def define_gemm(module, name, epilogue=None, extra_arg_types=(), exported=False, a_gather=None, a_read=None):
    """The gemm function NAME (signature in the module docstring). `a_gather` (a gemm_gather.GatherA):
    A is not a strided matrix but read through a window's index decoding from the array passed as
    A (a_rs and a_cs are then ignored): implicit GEMM, see gemm_gather.py.

    a_read: how a strided A is read, when the caller knows N and a_cs (a_read_for): "packed" or
    "table" (in place, through a table of column offsets); None decides at run time (then the
    module holds the code of both paths).

    NAME itself is small: it stores its extra arguments in a block on its stack and calls the
    module's shared driver for this way of reading A (_driver_fn: the GEMV, packing, panel and
    thread-pool logic, one copy per module and a library function of the JIT), handing it the
    epilogue function, that block and the gather table."""
    args = [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, PTR, I64, I32, PTR] + list(extra_arg_types)
    fn = ir.Function(module, ir.FunctionType(VOID, args), name)
    if not exported:
        fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    extra = list(fn.args[13:])
    block = b.alloca(I64, size=i64(max(len(extra), 1)), name="extra")
    for i, v in enumerate(extra):
        b.store(_to_slot(b, v), b.gep(block, [i64(i)], inbounds=True, source_etype=I64))
    null = ir.Constant(PTR, None)
    epilogue_fn = _epilogue_fn(module, name, epilogue, extra_arg_types)
    table = null if a_gather is None else a_gather.table(module, f"{name}.gather")
    kind = ("gather_" + ("runs" if a_gather.runs else "table")) if a_gather is not None else (a_read or "any")
    b.call(_driver_fn(module, kind), list(fn.args[:13]) + [epilogue_fn or null, block, table])
    b.ret_void()
    return fn


EPILOGUE_TYPE = ir.FunctionType(VOID, [I64, I64, PTR])   # epilogue(row_start, row_end, extra block)


class _Indirect:
    """A function pointer as llvmlite's call() takes it (an opaque pointer knows no function type)."""

    def __init__(self, pointer, function_type):
        self.pointer, self.function_type, self.type = pointer, function_type, pointer.type

    def get_reference(self):
        return self.pointer.get_reference()


def _to_slot(b, v):
    """v as an i64 slot of a block handed through memory (pointers through ptrtoint, i32 sign-extended)."""
    if v.type == I64:
        return v
    if v.type == I32:
        return b.sext(v, I64)
    if isinstance(v.type, ir.PointerType):
        return b.ptrtoint(v, I64)
    raise TypeError(f"gemm: an argument of type {v.type} cannot be handed through a block of i64 slots")


def _from_slots(b, block, types):
    values = []
    for i, t in enumerate(types):
        slot = b.load(b.gep(block, [i64(i)], inbounds=True, source_etype=I64), typ=I64)
        values.append(slot if t == I64 else b.trunc(slot, t) if t == I32 else b.inttoptr(slot, t))
    return values


def _driver_fn(module, kind):
    """void driver(M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, accumulate, scratch, epilogue, extra,
    table): the gemm for one way of reading A — `kind` "gather_runs" / "gather_table" (implicit GEMM
    through `table`), "packed", "table" or "any" (define_gemm's a_read) — calling
    epilogue(row_start, row_end, extra) on each finished row panel when `epilogue` is not null."""
    name = f"kcompile.gemm.driver.{kind}"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, PTR, I64, I32, PTR, PTR, PTR, PTR])
    M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, accumulate, scratch, epilogue_ptr, extra_block, table = fn.args
    gathered = kind.startswith("gather_")

    # 64-byte align the scratch ourselves (it should already be): packed panels use aligned loads
    base = b.ptrtoint(scratch, I64)
    pad = b.and_(b.sub(i64(0), base), i64(4 * ALIGN - 1))
    ws = b.gep(scratch, [pad], inbounds=True, source_etype=ir.IntType(8))
    a_pack = ws
    b_pack = gep_f(b, ws, i64(A_FLOATS + (-A_FLOATS) % ALIGN))

    # K in n_kb equal blocks of at most KC (at least one block, so K = 0 still writes C)
    n_kb = _imax(b, _ceil_div(b, K, i64(KC)), i64(1))
    kcb = _ceil_div(b, K, n_kb)

    # at most MR rows with B's rows contiguous (batch-1 predictions, small batches): the GEMV
    # path reads A and B where they are, no packing, the same sums in the same order; rows go in
    # groups of GEMV_ROWS (B is read at most twice), the last group 1 or 2 rows.
    # (a gathered A has panel routines of its own: no GEMV)
    if not gathered:
        tiny = b.and_(b.and_(b.icmp_signed(">", M, i64(0)), b.icmp_signed("<=", M, i64(MR))),
                      b.icmp_signed("==", b_cs, i64(1)))
        with b.if_then(tiny, likely=False):
            with for_range(b, 0, _ceil_div(b, M, i64(GEMV_ROWS)), "gv") as g:
                r0 = b.mul(g, i64(GEMV_ROWS))
                rows = _imin(b, b.sub(M, r0), i64(GEMV_ROWS))
                args = [N, K, gep_f(b, A, b.mul(r0, a_rs)), a_rs, a_cs, B, b_rs, gep_f(b, C, b.mul(r0, ldc)), ldc,
                        accumulate, kcb, n_kb]
                after = b.append_basic_block("gemv.done")
                sw = b.switch(rows, after)
                for r in range(1, GEMV_ROWS + 1):
                    blk = b.append_basic_block(f"gemv{r}")
                    sw.add_case(i64(r), blk)
                    b.position_at_end(blk)
                    b.call(_gemv_fn(module, r), args)
                    b.branch(after)
                b.position_at_end(after)
            _call_epilogue(b, epilogue_ptr, i64(0), M, extra_block)
            b.ret_void()

    # rows in n_ic panels of equal size (rounded up to MR), at most MC
    n_ic = _ceil_div(b, M, i64(MC))
    mcb = b.mul(_ceil_div(b, _ceil_div(b, M, _imax(b, n_ic, i64(1))), i64(MR)), i64(MR))

    # B read in place (b_step = its row stride), when its rows are contiguous and whole
    # micro-panels wide, and either already laid out as one micro-panel (N = NR: a convolution's
    # output gradient as B of its kernel gradient) or read by few rows (M <= IN_PLACE_B_ROWS: an
    # RNN step's recurrent kernel, a Dense layer's weights at a small batch), where packing copies
    # more than it saves. Otherwise (b_step = 0) it is packed: a wide B's rows, read in place by many
    # micro-panels, would fight over L1 sets (a 1 KiB row stride: 256x256 ran at 78%).
    nr = tile_columns(module)
    whole = b.and_(b.icmp_signed("==", b_cs, i64(1)), b.icmp_signed("==", b.srem(N, i64(nr)), i64(0)))
    in_place = b.and_(whole, b.or_(b.icmp_signed("==", b_rs, i64(nr)), b.icmp_signed("<=", M, i64(IN_PLACE_B_ROWS))))
    b_base = b.select(in_place, B, b_pack)
    b_step = b.select(in_place, b_rs, i64(0))
    threads = getattr(module, "kc_executor", "serial") == "threads"
    with b.if_then(b.and_(b.icmp_signed(">", M, i64(0)), b.not_(in_place))):
        if threads:
            _pack_b_parallel(b, module, [K, N, B, b_rs, b_cs, b_pack, kcb, n_kb])
        else:
            b.call(_pack_b_fn(module), [K, N, B, b_rs, b_cs, b_pack, kcb, i64(0), n_kb])
    values = [M, N, K, A, a_rs, a_cs, b_base, b_step, kcb, n_kb, C, ldc, accumulate, a_pack, mcb,
              epilogue_ptr, extra_block, table]
    if not threads:
        _row_panels(b, module, i64(0), n_ic, mcb, *values[:14], values[15:], kind)
        b.ret_void()
        return fn
    # threads: the row-panel loop is a task over [begin, end) of the panels, run by kc_parallel_for
    # when the work is big enough. The driver's values travel in a block of i64 slots on its stack.
    ctx = b.alloca(I64, size=i64(len(values)), name="ctx")
    for i, v in enumerate(values):
        b.store(_to_slot(b, v), b.gep(ctx, [i64(i)], inbounds=True, source_etype=I64))
    task = _panel_task_fn(module, f"{name}.task", [v.type for v in values], kind)
    work = b.mul(b.mul(M, N), K)
    big = b.and_(b.icmp_signed(">=", work, i64(PARALLEL_MIN_WORK)), b.icmp_signed(">", n_ic, i64(1)))
    with b.if_else(big) as (parallel, serial):
        with parallel:
            b.call(_parallel_for_fn(module), [task, ctx, n_ic])
        with serial:
            b.call(task, [ctx, i64(0), n_ic, i64(0)])
    b.ret_void()
    return fn


def _call_epilogue(b, epilogue_ptr, row_start, row_end, extra_block):
    with b.if_then(b.icmp_unsigned("!=", epilogue_ptr, ir.Constant(PTR, None))):
        b.call(_Indirect(epilogue_ptr, EPILOGUE_TYPE), [row_start, row_end, extra_block])


def _epilogue_fn(module, name, epilogue, extra_arg_types):
    """The epilogue as one function NAME.epilogue(i64 row_start, i64 row_end, ptr extra) (EPILOGUE_TYPE),
    its extra arguments read from the block define_gemm stored them in; or None."""
    if epilogue is None:
        return None
    fn = ir.Function(module, EPILOGUE_TYPE, f"{name}.epilogue")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    eb = ir.IRBuilder(fn.append_basic_block("entry"))
    epilogue(eb, fn.args[0], fn.args[1], _from_slots(eb, fn.args[2], extra_arg_types))
    eb.ret_void()
    return fn


def _row_panels(b, module, first, last, mcb, M, N, K, A, a_rs, a_cs, b_base, b_step, kcb, n_kb, C, ldc, accumulate,
                a_pack, tail, kind):
    """Row panels [first, last) of mcb rows: the panel routine for A read as `kind` (_driver_fn), then
    the epilogue. tail = (epilogue pointer, extra block, gather table). A gathered A's panel routine
    gets A unshifted, its first row in place of a_rs and the table as a last argument."""
    epilogue_ptr, extra_block, table = tail
    with for_range(b, first, last, "ic") as ic:
        r0 = b.mul(ic, mcb)
        mc = _imin(b, b.sub(M, r0), mcb)
        c_rows = gep_f(b, C, b.mul(r0, ldc))
        if kind.startswith("gather_"):
            from .gemm_gather import direct_panel_fn      # (it imports this module)
            b.call(direct_panel_fn(module, runs=kind == "gather_runs"),
                   [mc, N, K, A, r0, i64(0), b_base, b_step, kcb, n_kb, c_rows, ldc, accumulate, a_pack, table])
        else:
            args = [mc, N, K, gep_f(b, A, b.mul(r0, a_rs)), a_rs, a_cs, b_base, b_step, kcb, n_kb,
                    c_rows, ldc, accumulate, a_pack]
            if kind == "any":
                few_panels = b.icmp_signed("<=", N, i64(DIRECT_A_PANELS * tile_columns(module)))
                with b.if_else(few_panels) as (direct, packed):
                    with direct:
                        b.call(_a_panel_fn(module, None), args)
                    with packed:
                        b.call(_a_panel_fn(module, "packed"), args)
            else:
                b.call(_a_panel_fn(module, kind), args)
        _call_epilogue(b, epilogue_ptr, r0, b.add(r0, mc), extra_block)


def a_read_for(n, a_cs, module):
    """define_gemm's a_read for a static N and column stride of A: few B micro-panels read each A
    block, so the direct micro-kernels read A where it is (a Dense layer's M x K x 64 product ran
    10-20% faster than packing it; at N = 1024 packing wins by 15%); else A is packed. In place,
    A's columns are read through a table of offsets whatever a_cs is: a contiguous A read as one
    run measured no faster, and one family of micro-kernels compiles in less time."""
    return "packed" if n > DIRECT_A_PANELS * tile_columns(module) else "table"


def _a_panel_fn(module, a_read):
    """The panel routine for a strided A read as `a_read` (define_gemm; None: in place, a_cs at run time)."""
    if a_read == "packed":
        return _panel_fn(module)
    from .gemm_gather import strided_panel_fn      # (it imports this module)
    return strided_panel_fn(module)


def _panel_task_fn(module, name, types, kind):
    """void task(ptr ctx, i64 begin, i64 end, i64 worker): row panels [begin, end) of one gemm call
    (the driver's values in ctx).

    Worker 0 (the caller, or any call the pool runs inline) packs A into the call's scratch;
    pool worker w >= 1 into its own buffer, kc_worker_scratch(w). Each C element is computed by
    one worker with the serial code, so the result does not depend on the thread count.
    """
    fn, b = _internal(module, name, [PTR, I64, I64, I64])
    ctx, begin, end, worker = fn.args
    fields = _from_slots(b, ctx, types)
    M, N, K, A, a_rs, a_cs, b_base, b_step, kcb, n_kb, C, ldc, accumulate, a_own, mcb = fields[:15]
    scratch_fn = module.globals.get("kc_worker_scratch")
    if scratch_fn is None:
        scratch_fn = ir.Function(module, ir.FunctionType(PTR, [I64]), "kc_worker_scratch")
    own = b.icmp_signed("==", worker, i64(0))
    with b.if_else(own) as (mine, pooled):
        with mine:
            blk_own = b.block
        with pooled:
            theirs = b.call(scratch_fn, [worker])
            blk_pool = b.block
    a_pack = b.phi(PTR, "a_pack")
    a_pack.add_incoming(a_own, blk_own)
    a_pack.add_incoming(theirs, blk_pool)
    _row_panels(b, module, begin, end, mcb, M, N, K, A, a_rs, a_cs, b_base, b_step, kcb, n_kb, C, ldc, accumulate,
                a_pack, fields[15:], kind)
    b.ret_void()
    return fn


def _parallel_for_fn(module):
    fn = module.globals.get("kc_parallel_for")
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64]), "kc_parallel_for")
    return fn


def b_tile(b, module, Bp, b_step, k0, kc, j0, n_pad):
    """(pointer to B's row k0 at column j0, floats from one k to the next) for a micro-kernel: in
    the packed layout (b_step 0: the k-block's micro-panel of column j0, NR floats per k) or read
    in place (b_step: B's row stride)."""
    packed = b.icmp_signed("==", b_step, i64(0))
    in_packed = gep_f(b, Bp, b.add(b.mul(k0, n_pad), b.mul(j0, kc)))
    in_place = gep_f(b, Bp, b.add(b.mul(k0, b_step), j0))
    return b.select(packed, in_packed, in_place), b.select(packed, i64(tile_columns(module)), b_step)


def _panel_fn(module):
    """void panel(mc, N, K, A, a_rs, a_cs, Bp, b_step, kcb, n_kb, C, ldc, accumulate, Ap): rows [0, mc) of C.

    For each k-block: pack the mc x kc block of A, then sweep NR-column B micro-panels (outer)
    and 6-row A micro-panels (inner) with the micro-kernel. (A gathered A has panel routines of
    its own: gemm_gather.direct_panel_fn.)
    """
    name = "kcompile.gemm.panel"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, I64, PTR, I64, I32, PTR])
    mc, N, K, A, a_rs, a_cs, Bp, b_step, kcb, n_kb, C, ldc, accumulate, Ap = fn.args
    for p in (A, Bp, C, Ap):
        p.add_attribute("noalias")
    pack_a = _pack_a_fn(module)
    nr = tile_columns(module)
    n_pad = b.mul(_ceil_div(b, N, i64(nr)), i64(nr))
    with for_range(b, 0, n_kb, "pc") as pc:
        k0 = b.mul(pc, kcb)
        kc = _imin(b, kcb, b.sub(K, k0))
        b.call(pack_a, [mc, kc, gep_f(b, A, b.mul(k0, a_cs)), a_rs, a_cs, Ap])
        acc = b.select(b.icmp_signed(">", pc, i64(0)), ir.Constant(I32, 1), accumulate)

        def tile(ir_, i0, j0, nv, b_panel, k_step):
            a_panel = gep_f(b, Ap, b.mul(b.mul(ir_, kc), i64(MR)))
            c_tile = gep_f(b, C, b.add(b.mul(i0, ldc), j0))
            # each call prefetches a quarter of the next packed B micro-panel (past the last, or
            # of a B read in place: harmless)
            quarter = b.mul(b.and_(ir_, i64(3)), b.mul(kc, i64(nr // 4)))
            b_next = b.gep(b_panel, [b.add(b.mul(kc, i64(nr)), quarter)], source_etype=F32)
            return [kc, a_panel, b_panel, c_tile, ldc, nv, acc, b_next, k_step]
        sweep_tiles(b, module, lambda rows, halves: _micro_kernel_fn(module, rows, halves), N, mc, n_pad, Bp,
                    b_step, k0, kc, tile)
    b.ret_void()
    return fn


def sweep_tiles(b, module, make_kernel, N, mc, n_pad, Bp, b_step, k0, kc, tile_args):
    """One k-block of a panel: for each NR-column B micro-panel (outer) and MR-row micro-tile
    (inner), the micro-kernel make_kernel(rows, halves) for the rows left, on
    tile_args(ir, i0, j0, nv, b_panel, k_step). On 512-bit targets a micro-panel with at most
    NR / 2 columns left takes the narrow MR-row kernel (halves = 1: half the FMAs; the guide MLP's
    10-column output layer ran 1.6x faster)."""
    nr = tile_columns(module)
    kernels = [None] + [make_kernel(rows, 2) for rows in range(1, MR + 1)]
    # (ragged rows of a narrow panel take the wide edge kernels: fewer library functions to compile)
    narrow = kernels[:MR] + [make_kernel(MR, 1)] if wide_tiles(module) else None
    n_ir = _ceil_div(b, mc, i64(MR))
    with for_range(b, 0, b.sdiv(n_pad, i64(nr)), "jr") as jr:
        j0 = b.mul(jr, i64(nr))
        nv = _imin(b, b.sub(N, j0), i64(nr))
        b_panel, k_step = b_tile(b, module, Bp, b_step, k0, kc, j0, n_pad)

        def rows_loop(kernel_set):
            with for_range(b, 0, n_ir, "ir") as ir_:
                i0 = b.mul(ir_, i64(MR))
                call_by_rows(b, kernel_set, b.sub(mc, i0), tile_args(ir_, i0, j0, nv, b_panel, k_step))
        if narrow is None:
            rows_loop(kernels)
        else:
            with b.if_else(b.icmp_signed("<=", nv, i64(nr // 2))) as (few, many):
                with few:
                    rows_loop(narrow)
                with many:
                    rows_loop(kernels)


def call_by_rows(b, kernels, rows, args):
    """kernels[MR](args) when the micro-panel has MR or more rows left, else kernels[rows](args)."""
    with b.if_else(b.icmp_signed(">=", rows, i64(MR)), likely=True) as (then, otherwise):
        with then:
            b.call(kernels[MR], args)
        with otherwise:
            after = b.append_basic_block("rows.done")
            sw = b.switch(rows, after)
            for r in range(1, MR):
                blk = b.append_basic_block(f"rows{r}")
                sw.add_case(i64(r), blk)
                b.position_at_end(blk)
                b.call(kernels[r], args)
                b.branch(after)
            b.position_at_end(after)


def _gemv_fn(module, rows):
    """void gemv(N, K, A, a_rs, a_cs, B, b_rs, C, ldc, accumulate, kcb, n_kb): C (+)= A @ B for `rows`
    rows of A, B read in place (its rows contiguous: b_cs = 1), nothing packed.

    The micro-kernel's arithmetic on unpacked operands: per k-block of kcb rows and per 16 columns,
    2 * rows <8 x float> accumulators from zero, one FMA chain in k order, then stored or added
    to C, so every element has exactly the sums the packed path gives it (a batch-1 row equals
    the same row of a larger batch). The last columns use masked loads and stores.
    """
    name = f"kcompile.gemm.gemv{rows}"     # (16-column blocks whatever the module's tile width)
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, PTR, I64, I64, PTR, I64, PTR, I64, I32, I64, I64])
    N, K, A, a_rs, a_cs, B, b_rs, C, ldc, accumulate, kcb, n_kb = fn.args
    for p in (A, B, C):
        p.add_attribute("noalias")
    fma = _fma_fn(module)
    mload, mstore = _masked_fns(module)
    zero = ir.Constant(V8, [_f(0.0)] * 8)
    four = ir.Constant(I32, 4)
    slots = [b.alloca(V8, name=f"acc{j}") for j in range(2 * rows)]   # promoted to registers
    a_rows = [gep_f(b, A, b.mul(i64(r), a_rs)) for r in range(rows)]
    c_rows = [gep_f(b, C, b.mul(i64(r), ldc)) for r in range(rows)]
    with for_range(b, 0, n_kb, "pc") as pc:
        k0 = b.mul(pc, kcb)
        kc = _imin(b, kcb, b.sub(K, k0))
        acc_flag = b.or_(b.icmp_signed(">", pc, i64(0)), b.icmp_signed("!=", accumulate, ir.Constant(I32, 0)))
        with for_range(b, 0, _ceil_div(b, N, i64(GEMV_COLUMNS)), "jr") as jr:
            j0 = b.mul(jr, i64(GEMV_COLUMNS))
            nv = _imin(b, b.sub(N, j0), i64(GEMV_COLUMNS))
            full = b.icmp_signed(">=", nv, i64(GEMV_COLUMNS))
            masks = [_lane_mask(b, nv, 8 * h) for h in range(2)]
            for slot in slots:
                b.store(zero, slot)
            with b.if_else(full, likely=True) as (then, otherwise):
                for masked, branch in ((False, then), (True, otherwise)):
                    with branch:
                        with for_range(b, k0, b.add(k0, kc), "k") as k:
                            b_row = gep_f(b, B, b.add(b.mul(k, b_rs), j0))
                            if masked:
                                bv = [b.call(mload, [gep_f(b, b_row, i64(8 * h)), four, masks[h], zero])
                                      for h in range(2)]
                            else:
                                bv = [_load_v8(b, b_row, i64(8 * h)) for h in range(2)]
                            for r in range(rows):
                                a = _splat(b, b.load(gep_f(b, a_rows[r], b.mul(k, a_cs)), typ=F32))
                                for h in range(2):
                                    slot = slots[2 * r + h]
                                    b.store(b.call(fma, [a, bv[h], b.load(slot, typ=V8)]), slot)
            for r in range(rows):
                for h in range(2):
                    p = gep_f(b, c_rows[r], b.add(j0, i64(8 * h)))
                    acc = b.load(slots[2 * r + h], typ=V8)
                    with b.if_else(full, likely=True) as (then, otherwise):
                        with then:
                            with b.if_else(acc_flag) as (add, put):
                                with add:
                                    _store_v8(b, b.fadd(_load_v8(b, p, i64(0)), acc), p, i64(0))
                                with put:
                                    _store_v8(b, acc, p, i64(0))
                        with otherwise:
                            with b.if_else(acc_flag) as (add, put):
                                with add:
                                    old = b.call(mload, [p, four, masks[h], zero])
                                    b.call(mstore, [b.fadd(old, acc), p, four, masks[h]])
                                with put:
                                    b.call(mstore, [acc, p, four, masks[h]])
    b.ret_void()
    return fn


def _micro_kernel_fn(module, rows, halves=2):
    """void uk(kc, Ap, Bp, C, ldc, nv, accumulate, b_next, k_step): C[r*ldc + j] (+)= sum_k Ap[6k + r] * Bp[k_step*k + j]

    for r < rows, j < nv (nv <= the tile's columns, RowSums(module, rows, halves).nr; fewer go through
    masked loads and stores). Prefetches the C tile into L1 and kc/4 lines from b_next into L2.
    """
    sums = RowSums(module, rows, halves)
    nr = sums.nr
    name = f"kcompile.gemm.uk{rows}x{nr}"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, PTR, PTR, PTR, I64, I64, I32, PTR, I64])
    kc, Ap, Bp, C, ldc, nv, accumulate, b_next, k_step = fn.args
    for p in (Ap, Bp, C):
        p.add_attribute("noalias")
    prefetch = _prefetch_fn(module)
    c_rows = [gep_f(b, C, b.mul(i64(r), ldc)) for r in range(rows)]
    for r in range(rows):      # the C tile is needed at the end: start bringing it in now
        for off in range(0, nr, 16):   # (a plain gep: past N in a ragged tile, and prefetches never fault)
            b.call(prefetch, [b.gep(c_rows[r], [i64(off)], source_etype=F32), ir.Constant(I32, 1),
                              ir.Constant(I32, 3), ir.Constant(I32, 1)])

    def step(a_ptr, b_ptr, accs):
        a_values = [b.load(gep_f(b, a_ptr, i64(r)), typ=F32, align=4) for r in range(rows)]
        return sums.step(b, accs, a_values, sums.load_b(b, b_ptr, 4))

    def loop(count, a_start, b_start, accs_in, steps, label):
        """count iterations of `steps` k steps; returns (a_end, b_end, accs) as seen after it."""
        pre = b.block
        head = b.append_basic_block(f"{label}.head")
        body = b.append_basic_block(f"{label}.body")
        done = b.append_basic_block(f"{label}.done")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, "i")
        pa = b.phi(PTR, "pa")
        pb = b.phi(PTR, "pb")
        pn = b.phi(PTR, "pn")
        pn.add_incoming(b_next, pre)
        accs = [b.phi(sums.ty, f"acc{j}") for j in range(len(accs_in))]
        i.add_incoming(i64(0), pre)
        pa.add_incoming(a_start, pre)
        pb.add_incoming(b_start, pre)
        for phi, v in zip(accs, accs_in):
            phi.add_incoming(v, pre)
        b.cbranch(b.icmp_signed("<", i, count), body, done)
        b.position_at_end(body)
        cur = list(accs)
        if steps > 1:   # one line of the next B micro-panel per iteration, into L2 (prefetcht1)
            b.call(prefetch, [pn, ir.Constant(I32, 0), ir.Constant(I32, 2), ir.Constant(I32, 1)])
        pn.add_incoming(b.gep(pn, [i64(16)], source_etype=F32), body)
        b_row = pb
        for s in range(steps):   # (B's row pointer walks by k_step: fewer live registers than pb + s*k_step)
            cur = step(gep_f(b, pa, i64(MR * s)), b_row, cur)
            b_row = gep_f(b, b_row, k_step)
        i.add_incoming(b.add(i, i64(1), flags=("nsw",)), body)
        pa.add_incoming(gep_f(b, pa, i64(MR * steps)), body)
        pb.add_incoming(b_row, body)
        for phi, v in zip(accs, cur):
            phi.add_incoming(v, body)
        b.branch(head)
        b.position_at_end(done)
        return pa, pb, accs

    if rows == MR:
        pa, pb, accs = loop(b.sdiv(kc, i64(UNROLL)), Ap, Bp, sums.zeros(), UNROLL, "main")
        _, _, accs = loop(b.srem(kc, i64(UNROLL)), pa, pb, accs, 1, "rest")
    else:   # the edge kernels (ragged M only): not unrolled, less code to compile
        _, _, accs = loop(kc, Ap, Bp, sums.zeros(), 1, "main")

    store_tile(b, module, sums.pieces(b, accs), c_rows, nv, accumulate)
    b.ret_void()
    return fn


def store_tile(b, module, accs, c_rows, nv, accumulate):
    """Write (accumulate != 0: add) a micro-tile's sums, NR // 8 <8 x float> pieces per row
    (RowSums.pieces), to C's rows; the first nv columns only (nv < NR: masked loads and stores)."""
    rows = len(c_rows)
    per_row = len(accs) // rows
    nr = 8 * per_row
    zero = ir.Constant(V8, [_f(0.0)] * 8)
    acc_flag = b.icmp_signed("!=", accumulate, ir.Constant(I32, 0))
    full = b.icmp_signed(">=", nv, i64(nr))
    with b.if_else(full, likely=True) as (then, otherwise):
        with then:
            with b.if_else(acc_flag) as (add, put):
                with add:
                    for r in range(rows):
                        for h in range(per_row):
                            old = _load_v8(b, c_rows[r], i64(8 * h))
                            _store_v8(b, b.fadd(old, accs[per_row * r + h]), c_rows[r], i64(8 * h))
                with put:
                    for r in range(rows):
                        for h in range(per_row):
                            _store_v8(b, accs[per_row * r + h], c_rows[r], i64(8 * h))
        with otherwise:
            mload, mstore = _masked_fns(module)
            masks = [_lane_mask(b, nv, 8 * h, limit=nr) for h in range(per_row)]
            four = ir.Constant(I32, 4)
            with b.if_else(acc_flag) as (add, put):
                with add:
                    for r in range(rows):
                        for h in range(per_row):
                            p = gep_f(b, c_rows[r], i64(8 * h))
                            old = b.call(mload, [p, four, masks[h], zero])
                            b.call(mstore, [b.fadd(old, accs[per_row * r + h]), p, four, masks[h]])
                with put:
                    for r in range(rows):
                        for h in range(per_row):
                            b.call(mstore, [accs[per_row * r + h], gep_f(b, c_rows[r], i64(8 * h)), four, masks[h]])


def _pack_a_fn(module):
    """void pack_a(mc, kc, A, a_rs, a_cs, Ap): the mc x kc block of A into 6-row micro-panels.

    Micro-panel p holds Ap[p*6*kc + 6k + r] = A[(6p + r)*a_rs + k*a_cs], zero for rows past mc.
    """
    name = "kcompile.gemm.pack_a"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, PTR, I64, I64, PTR])
    mc, kc, A, a_rs, a_cs, Ap = fn.args
    for p in (A, Ap):
        p.add_attribute("noalias")
    zero = ir.Constant(V8, [_f(0.0)] * 8)
    n_full = b.sdiv(mc, i64(MR))
    n_all = _ceil_div(b, mc, i64(MR))

    def panel_ptrs(ip):
        i0 = b.mul(ip, i64(MR))
        return i0, gep_f(b, A, b.mul(i0, a_rs)), gep_f(b, Ap, b.mul(b.mul(ip, kc), i64(MR)))

    copy = _copy_fn(module)

    def scalar_panels(first, last, k_start=None):
        # generic strided copy with zero padding past mc (never reads rows past mc)
        with for_range(b, first, last, "ips") as ip:
            i0, src, dst = panel_ptrs(ip)
            b.call(copy, [i64(0) if k_start is None else k_start, kc, i64(MR), b.sub(mc, i0), src, a_cs, a_rs, dst])

    with b.if_else(b.icmp_signed("==", a_cs, i64(1))) as (rows_contig, other):
        with rows_contig:
            # each row contiguous in k: per full micro-panel, 8x8 transposes of 6 rows x 8 k (2 zero
            # rows); each 8-wide store lands column k and 2 floats that the next store overwrites
            # (past the last column: the next micro-panel, packed later, or A_PAD)
            n8 = b.sdiv(kc, i64(8))
            with for_range(b, 0, n_full, "ip") as ip:
                _, src, dst = panel_ptrs(ip)
                row_ptrs = [gep_f(b, src, b.mul(i64(r), a_rs)) for r in range(MR)]
                with for_range(b, 0, n8, "kv") as kv:
                    k = b.mul(kv, i64(8))
                    cols = _transpose8(b, [_load_v8(b, p, k) for p in row_ptrs] + [zero, zero])
                    for c in range(8):
                        _store_v8(b, cols[c], dst, b.mul(b.add(k, i64(c)), i64(MR)))
                scalar_panels(ip, b.add(ip, i64(1)), b.mul(n8, i64(8)))
            scalar_panels(n_full, n_all)
        with other:
            with b.if_else(b.icmp_signed("==", a_rs, i64(1))) as (cols_contig, generic):
                with cols_contig:
                    # A transposed, each column contiguous: walk the stored rows (k) in order and
                    # copy 6 floats (4 + 2) into every full micro-panel
                    v4, v2 = ir.VectorType(F32, 4), ir.VectorType(F32, 2)
                    with for_range(b, 0, kc, "kw") as k:
                        row = gep_f(b, A, b.mul(k, a_cs))
                        with for_range(b, 0, n_full, "iw") as ip:
                            src = gep_f(b, row, b.mul(ip, i64(MR)))
                            dst = gep_f(b, Ap, b.mul(b.add(b.mul(ip, kc), k), i64(MR)))
                            b.store(b.load(src, typ=v4, align=4), dst, align=4)
                            b.store(b.load(gep_f(b, src, i64(4)), typ=v2, align=4), gep_f(b, dst, i64(4)), align=4)
                    scalar_panels(n_full, n_all)
                with generic:
                    scalar_panels(i64(0), n_all)
    b.ret_void()
    return fn


PARALLEL_PACK_B_FLOATS = 1 << 16   # a B smaller than this is packed by the caller alone


def _pack_b_parallel(b, module, args):
    """Pack B on the pool, k-blocks split between the threads (each block written by one thread,
    so the packed B does not depend on the thread count), when it is large and has several blocks:
    a convolution's kernel gradient packs its whole output gradient as B."""
    K, N, n_kb = args[0], args[1], args[7]
    big = b.and_(b.icmp_signed(">=", b.mul(K, N), i64(PARALLEL_PACK_B_FLOATS)), b.icmp_signed(">", n_kb, i64(1)))
    with b.if_else(big) as (parallel, serial):
        with parallel:
            ctx = b.alloca(I64, size=i64(len(args)), name="pack_ctx")
            for i, v in enumerate(args):
                slot = b.ptrtoint(v, I64) if isinstance(v.type, ir.PointerType) else v
                b.store(slot, b.gep(ctx, [i64(i)], inbounds=True, source_etype=I64))
            b.call(_parallel_for_fn(module), [_pack_b_task_fn(module), ctx, n_kb])
        with serial:
            b.call(_pack_b_fn(module), list(args[:7]) + [i64(0), n_kb])


def _pack_b_task_fn(module):
    """void task(ptr ctx, i64 begin, i64 end, i64 worker): pack_b's k-blocks [begin, end)."""
    name = "kcompile.gemm.pack_b.task"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, I64, I64, I64]), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    ctx, begin, end, _ = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    slots = [b.load(b.gep(ctx, [i64(i)], inbounds=True, source_etype=I64), typ=I64) for i in range(8)]
    K, N, B, b_rs, b_cs, Bp, kcb = slots[:7]
    b.call(_pack_b_fn(module), [K, N, b.inttoptr(B, PTR), b_rs, b_cs, b.inttoptr(Bp, PTR), kcb, begin, end])
    b.ret_void()
    return fn


def _pack_b_fn(module):
    """void pack_b(K, N, B, b_rs, b_cs, Bp, kcb, first, last): k-blocks [first, last) of B into
    NR-column micro-panels (NR = tile_columns(module); all of B: first = 0, last = n_kb).

    Block p covers k in [p*kcb, p*kcb + kc); its micro-panel j holds, at Bp[k0*Np + j*NR*kc + NR*k + c],
    B[(k0 + k)*b_rs + (NR*j + c)*b_cs], zero for columns past N (Np: N rounded up to NR).
    """
    name = "kcompile.gemm.pack_b"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, PTR, I64, I64, PTR, I64, I64, I64])
    K, N, B, b_rs, b_cs, Bp, kcb, first, last = fn.args
    nr = tile_columns(module)
    chunks = nr // 8
    for p in (B, Bp):
        p.add_attribute("noalias")
    mload, _ = _masked_fns(module)
    copy = _copy_fn(module)
    zero = ir.Constant(V8, [_f(0.0)] * 8)
    n_pad = b.mul(_ceil_div(b, N, i64(nr)), i64(nr))
    n_full = b.sdiv(N, i64(nr))
    rest = b.sub(N, b.mul(n_full, i64(nr)))
    with for_range(b, first, last, "pc") as pc:
        k0 = b.mul(pc, kcb)
        kc = _imin(b, kcb, b.sub(K, k0))
        blk = gep_f(b, Bp, b.mul(k0, n_pad))
        src_blk = gep_f(b, B, b.mul(k0, b_rs))
        panel_stride = b.mul(kc, i64(nr))

        def scalar_panel(jp, k_start):
            j0 = b.mul(jp, i64(nr))
            b.call(copy, [k_start, kc, i64(nr), b.sub(N, j0), gep_f(b, src_blk, b.mul(j0, b_cs)), b_rs, b_cs,
                          gep_f(b, blk, b.mul(jp, panel_stride))])

        with b.if_else(b.icmp_signed("==", b_cs, i64(1))) as (rows_contig, other):
            with rows_contig:
                # rows contiguous: 8 rows of B at a time (8 sequential read streams), 8 x NR floats
                # (512 contiguous bytes) into each micro-panel, the ragged last one through masked loads
                masks = [_lane_mask(b, rest, 8 * h, limit=nr) for h in range(chunks)]
                with for_range(b, 0, _ceil_div(b, kc, i64(8)), "kr") as kv:
                    k_lo = b.mul(kv, i64(8))
                    k_hi = _imin(b, b.add(k_lo, i64(8)), kc)
                    with for_range(b, 0, n_full, "jr") as jp:
                        src = gep_f(b, src_blk, b.mul(jp, i64(nr)))
                        dst = gep_f(b, blk, b.mul(jp, panel_stride))
                        with for_range(b, k_lo, k_hi, "kk") as k:
                            for h in range(chunks):
                                _store_v8(b, _load_v8(b, src, b.add(b.mul(k, b_rs), i64(8 * h))), dst,
                                          b.add(b.mul(k, i64(nr)), i64(8 * h)), 32)
                    with b.if_then(b.icmp_signed(">", rest, i64(0))):
                        src = gep_f(b, src_blk, b.mul(n_full, i64(nr)))
                        dst = gep_f(b, blk, b.mul(n_full, panel_stride))
                        with for_range(b, k_lo, k_hi, "km") as k:
                            for h in range(chunks):
                                v = b.call(mload, [gep_f(b, src, b.add(b.mul(k, b_rs), i64(8 * h))),
                                                   ir.Constant(I32, 4), masks[h], zero])
                                _store_v8(b, v, dst, b.add(b.mul(k, i64(nr)), i64(8 * h)), 32)
            with other:
                with b.if_else(b.icmp_signed("==", b_rs, i64(1))) as (cols_contig, generic):
                    with cols_contig:
                        # B transposed, each column contiguous in k: NR columns x 8 k, NR / 8 8x8 transposes
                        n8 = b.sdiv(kc, i64(8))
                        with for_range(b, 0, n_full, "jt") as jp:
                            src = gep_f(b, src_blk, b.mul(b.mul(jp, i64(nr)), b_cs))
                            dst = gep_f(b, blk, b.mul(jp, panel_stride))
                            col_ptrs = [gep_f(b, src, b.mul(i64(c), b_cs)) for c in range(nr)]
                            with for_range(b, 0, n8, "kt") as kv:
                                k = b.mul(kv, i64(8))
                                halves = [_transpose8(b, [_load_v8(b, p, k) for p in col_ptrs[8 * h:8 * h + 8]])
                                          for h in range(chunks)]
                                for t in range(8):
                                    for h in range(chunks):
                                        _store_v8(b, halves[h][t], dst,
                                                  b.add(b.mul(b.add(k, i64(t)), i64(nr)), i64(8 * h)), 32)
                            scalar_panel(jp, b.mul(n8, i64(8)))
                        with b.if_then(b.icmp_signed(">", rest, i64(0))):
                            scalar_panel(n_full, i64(0))
                    with generic:
                        with for_range(b, 0, b.sdiv(n_pad, i64(nr)), "jg") as jp:
                            scalar_panel(jp, i64(0))
    b.ret_void()
    return fn


def _copy_fn(module):
    """void copy(k_start, kc, w, valid, src, s_k, s_c, dst): the packing loops' generic (scalar) path.

    dst[k*w + c] = c < valid ? src[k*s_k + c*s_c] : 0 for k in [k_start, kc), c < w; never reads c >= valid.
    """
    name = "kcompile.gemm.copy"
    if name in module.globals:
        return module.globals[name]
    fn, b = _internal(module, name, [I64, I64, I64, I64, PTR, I64, I64, PTR])
    k_start, kc, w, valid, src, s_k, s_c, dst = fn.args
    for p in (src, dst):
        p.add_attribute("noalias")
    n = _imin(b, valid, w)
    with for_range(b, k_start, kc, "k") as k:
        row = gep_f(b, src, b.mul(k, s_k))
        out = gep_f(b, dst, b.mul(k, w))
        with for_range(b, 0, n, "c") as c:
            b.store(b.load(gep_f(b, row, b.mul(c, s_c)), typ=F32), gep_f(b, out, c))
        with for_range(b, n, w, "z") as c:
            b.store(_f(0.0), gep_f(b, out, c))
    b.ret_void()
    return fn
