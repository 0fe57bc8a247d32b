"""The matmul kernel template: C = op(A) @ op(B) in generated IR, behind one interface.

`define_gemm(module, name, epilogue)` defines
  void name(i64 M, i64 N, i64 K, ptr A, i64 a_rs, i64 a_cs, ptr B, i64 b_rs, i64 b_cs,
            ptr C, i64 ldc, i32 accumulate, ptr scratch, <extra args>)
computing C[i*ldc + j] (+)= sum_k A[i*a_rs + k*a_cs] * B[k*b_rs + j*b_cs], so transposed
operands are just other strides. B is packed into `scratch` as K rows of N rounded up to 16
(zero padded), then a 6x16 register-blocked micro-kernel (12 <8 x float> accumulators carried as
phis through the k loop, llvm.fma.v8f32, A broadcast from strided loads) sweeps C. Rows are
processed in panels of ROW_PANEL; after each finished panel `epilogue(builder, row_start,
row_end, extra_args)` emits the fused elementwise tail for those rows while they are in cache.
`scratch_floats(K, N)` is the scratch size. A later issue swaps in a BLIS-class version.
"""
from __future__ import annotations

from llvmlite import ir

from .llvm_util import F32, I32, I64, PTR, VOID, for_range, gep_f, i64

MR, NR, ROW_PANEL, KC = 6, 16, 48, 256
V8 = ir.VectorType(F32, 8)


def scratch_floats(k, n):
    # + and * only: it is also evaluated on polynomials in the batch size (an upper bound is fine)
    return k * (n + NR - 1) + MR * NR + 8


def _fma(module):
    fn = module.globals.get("llvm.fma.v8f32")
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(V8, [V8, V8, V8]), "llvm.fma.v8f32")
    return fn


def _splat(b, x):
    undef = ir.Constant(V8, ir.Undefined)
    v = b.insert_element(undef, x, ir.Constant(I32, 0))
    return b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(I32, 8), [0] * 8))


def _load_v8(b, ptr, idx):
    return b.load(gep_f(b, ptr, idx), typ=V8, align=4)


def _store_v8(b, value, ptr, idx):
    b.store(value, gep_f(b, ptr, idx), align=4)


def define_gemm(module, name, epilogue=None, extra_arg_types=(), exported=False):
    args = [I64, I64, I64, PTR, I64, I64, PTR, I64, I64, PTR, I64, I32, PTR] + list(extra_arg_types)
    fn = ir.Function(module, ir.FunctionType(VOID, args), name)
    if not exported:
        fn.linkage = "internal"
    M, N, K, A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, accumulate, scratch = fn.args[:13]
    extra = list(fn.args[13:])
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    np_ = b.mul(b.sdiv(b.add(N, i64(NR - 1)), i64(NR)), i64(NR))     # N rounded up to NR

    # pack B (K x N, strided) into scratch (K x np_, contiguous, zero padded)
    with for_range(b, 0, K, "pk") as k:
        with for_range(b, 0, np_, "pj") as j:
            inside = b.icmp_signed("<", j, N)
            jj = b.select(inside, j, i64(0))
            v = b.load(gep_f(b, B, b.add(b.mul(k, b_rs), b.mul(jj, b_cs))), typ=F32)
            b.store(b.select(inside, v, ir.Constant(F32, 0.0)), gep_f(b, scratch, b.add(b.mul(k, np_), j)))

    tile = gep_f(b, scratch, b.mul(K, np_))   # staging for partial column tiles, after the panel
    kernels = {rows: _micro_kernel_fn(module, rows) for rows in (MR, 1)}

    # K runs in blocks of KC (at least one block, so K = 0 still writes C): a long contraction
    # (a weight gradient summed over batch x positions) then reuses a cached B block per panel
    n_kblocks = b.sdiv(b.add(K, i64(KC - 1)), i64(KC))
    n_kblocks = b.select(b.icmp_signed(">", n_kblocks, i64(0)), n_kblocks, i64(1))

    def call_kernel(rows, row, j0, k0, kn, acc):
        b.call(kernels[rows], [kn, A, b.add(b.mul(row, a_rs), b.mul(k0, a_cs)), a_rs, a_cs,
                               gep_f(b, scratch, b.mul(k0, np_)), np_, j0, C, b.mul(row, ldc), ldc, N, acc, tile])

    n_panels = b.sdiv(b.add(M, i64(ROW_PANEL - 1)), i64(ROW_PANEL))
    with for_range(b, 0, n_panels, "panel") as p:
        r0 = b.mul(p, i64(ROW_PANEL))
        r1 = b.add(r0, i64(ROW_PANEL))
        r1 = b.select(b.icmp_signed("<", r1, M), r1, M)
        full_blocks = b.sdiv(b.sub(r1, r0), i64(MR))
        with for_range(b, 0, n_kblocks, "kb") as kb:
            k0 = b.mul(kb, i64(KC))
            kn = b.sub(K, k0)
            kn = b.select(b.icmp_signed("<", kn, i64(KC)), kn, i64(KC))
            acc = b.select(b.icmp_signed(">", kb, i64(0)), ir.Constant(I32, 1), accumulate)
            with for_range(b, 0, b.sdiv(np_, i64(NR)), "jb") as jb:
                j0 = b.mul(jb, i64(NR))
                with for_range(b, 0, full_blocks, "rb") as rb:
                    call_kernel(MR, b.add(r0, b.mul(rb, i64(MR))), j0, k0, kn, acc)
                with for_range(b, b.add(r0, b.mul(full_blocks, i64(MR))), r1, "rr") as r:
                    call_kernel(1, r, j0, k0, kn, acc)
        if epilogue is not None:
            epilogue(b, r0, r1, extra)
    b.ret_void()
    return fn


def _micro_kernel_fn(module, rows):
    """The shared micro-kernel for `rows` rows: one definition per module, used by every gemm.

    void uk(K, A, a_off, a_rs, a_cs, Bp, np, j0, C, c_off, ldc, N, accumulate, tile) computes
    C[c_off + r*ldc + j0 + j] (+)= sum_k A[a_off + r*a_rs + k*a_cs] * Bp[k*np + j0 + j], j < 16.
    """
    name = f"kcompile.gemm.uk{rows}"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(VOID, [I64, PTR, I64, I64, I64, PTR, I64, I64, PTR, I64, I64, I64,
                                                    I32, PTR]), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    K, A, a_off, a_rs, a_cs, Bp, np_, j0, C, c_off, ldc, N, accumulate, tile = fn.args
    for a in (A, Bp, C, tile):
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fma = _fma(module)
    zero = ir.Constant(V8, [ir.Constant(F32, 0.0)] * 8)
    acc_flag = b.icmp_signed("!=", accumulate, ir.Constant(I32, 0))
    pre = b.block
    head = b.append_basic_block("uk.head")
    body = b.append_basic_block("uk.body")
    done = b.append_basic_block("uk.done")
    a_rows = [b.add(a_off, b.mul(i64(r), a_rs)) for r in range(rows)]
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(I64, "k")
    k.add_incoming(i64(0), pre)
    accs = []
    for r in range(rows):
        for h in range(2):
            phi = b.phi(V8, f"acc{r}_{h}")
            phi.add_incoming(zero, pre)
            accs.append(phi)
    b.cbranch(b.icmp_signed("<", k, K), body, done)
    b.position_at_end(body)
    boff = b.add(b.mul(k, np_), j0)
    bv = [_load_v8(b, Bp, boff), _load_v8(b, Bp, b.add(boff, i64(8)))]
    koff = b.mul(k, a_cs)
    new = []
    for r in range(rows):
        a = _splat(b, b.load(gep_f(b, A, b.add(a_rows[r], koff)), typ=F32))
        for h in range(2):
            new.append(b.call(fma, [a, bv[h], accs[2 * r + h]]))
    for phi, v in zip(accs, new):
        phi.add_incoming(v, body)
    k.add_incoming(b.add(k, i64(1)), body)
    b.branch(head)
    b.position_at_end(done)

    # write back: whole 16-wide tiles directly, the ragged last tile through the staging buffer
    full = b.icmp_signed("<=", b.add(j0, i64(NR)), N)
    with b.if_else(full) as (then, otherwise):
        with then:
            for r in range(rows):
                for h in range(2):
                    idx = b.add(b.add(b.add(c_off, b.mul(i64(r), ldc)), j0), i64(8 * h))
                    v = accs[2 * r + h]
                    old = _load_v8(b, C, idx)
                    _store_v8(b, b.select(acc_flag, b.fadd(old, v), v), C, idx)
        with otherwise:
            for r in range(rows):
                for h in range(2):
                    _store_v8(b, accs[2 * r + h], tile, i64(NR * r + 8 * h))
            with for_range(b, 0, b.sub(N, j0), "tail") as j:
                for r in range(rows):
                    v = b.load(gep_f(b, tile, b.add(i64(NR * r), j)), typ=F32)
                    cp = gep_f(b, C, b.add(b.add(b.add(c_off, b.mul(i64(r), ldc)), j0), j))
                    old = b.load(cp, typ=F32)
                    b.store(b.select(acc_flag, b.fadd(old, v), v), cp)
    b.ret_void()
    return fn
