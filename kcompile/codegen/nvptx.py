"""Lower a kernel program to PTX for NVIDIA GPUs (first slice of the GPU path, issue #12).

`emit_ptx(program, target, name)` returns the PTX text of one module and `launches`: per
schedule step one or more `Launch`es (data) that a host runtime issues in order on one stream:

  kernel symbol   a `.visible .entry` function of the module
  elements        the thread count as a `Poly` in the batch size n (one thread per element)
  block           threads per block (grid = ceil(elements(n) / block))
  buffers         the memory-plan `Buffer` of each pointer argument, in order

Every PTX kernel has the signature

  void SYMBOL(i64 n, i64 count, ptr buffers...)

with n the run-time batch size (strides and the batch_size leaf depend on it) and count =
elements(n): thread g = ctaid.x * ntid.x + tid.x computes element g when g < count.

Kernel kinds:
  elementwise  one thread per element of the iteration space; operands broadcast through the
               strides the CPU path uses (loops.broadcast_strides), the element's multi-index
               recovered from g by division over the collapsed dims;
  reduce       reduce_sum/max/min and argmax: one thread per *output* element, running a fixed,
               sequential loop over the reduced elements in row-major order (the same order as
               the CPU path, so results do not depend on the launch shape); the fused prologue
               is evaluated inside that loop. (A warp-shuffle version is a later step.)
  layout       transpose, slice, reverse, window: one copy launch; pad: a zero launch then a
               copy launch; concat: one copy launch per input.
  matmul       float32 C = op(A) @ op(B) as a tiled SGEMM: one 256-thread block per 64x64 tile of
               C, each thread a 4x4 register block (rows ty+16i, columns tx+16j); K is staged in
               tiles of 16 through addrspace(3) shared memory between barriers (bar.sync), loads
               outside the matrix read 0, stores outside it are guarded; transposed operands are
               their strides (as lower.py's gemm). Every output element is summed in fixed, plain
               k order (fmul then fadd, no contraction), then stored and the kernel's fused
               elementwise epilogue is evaluated at that element (the elementwise emission).
               Its Launch has `tiles` = (M, N): grid = ceil(M/64) * ceil(N/64) blocks, count =
               grid * block (every thread reaches every barrier).
  window_grad, gather_rows, scatter_add_rows, scan
               nvptx_kernels.py: one thread per output element, fixed summation order (no float
               atomics); a scan is a `ScanLaunch` (nvptx_schedule.py), a host loop of launches
               over its body's kernels.
Anything else (a non-float32 matmul, an operand without a device buffer) is reported by
`UnsupportedKernels`, every unsupported kernel of the program at once, before any IR is built.

The elementwise math is the CPU path's (`elementwise.EMITTERS`, `vecmath` polynomials): no libm
calls, so nothing needs libdevice and every module assembles with plain ptxas.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import llvmlite.binding as llvm
from llvmlite import ir

from ..ir.graph import format_shape
from ..ir.passes.memory import base_of
from ..ir.primitives_spatial import window_strides
from .elementwise import EMITTERS
from .llvm_util import F32, FP_FLAGS, I32, I64, PTR, VOID, for_range, gep_f, i64, llvm_type
from .gemm_gather import emit_offset
from .lower import (EmitContext, _is_scalar_const, _KernelEmitter, _scale, gather_operand,
                    matmul_operands, sum_monos)
from .loops import ONE, Access, Mono, collapse, contiguous_strides, dim, prod
from .nvptx_kernels import OpaqueKernels, scan_problems
from .nvptx_schedule import ScanLaunch, flat_launches, walk_launches, workspace_bytes
from .sizes import Poly
from .target import Target, get_target

BLOCK = 256
ARCHS = ("sm_80", "sm_90")
SUPPORTED = {                  # kernel class -> the root primitives its grid functions lower
    "elementwise": None,                                            # every elementwise primitive
    "reduce": ("reduce_sum", "reduce_max", "reduce_min", "argmax"),
    "layout": ("transpose", "slice", "pad", "reverse", "window", "concat"),
    "matmul": ("matmul",),
    "window_grad": ("window_grad",),                                # nvptx_kernels.py
    "gather_rows": ("gather_rows",),
    "scatter_add_rows": ("scatter_add_rows",),
    "scan": ("scan",),                                              # its body's kernels too
}
OPAQUE = ("window_grad", "gather_rows", "scatter_add_rows", "scan")   # no fused members
TILE_M = TILE_N = 64           # the C tile of one matmul block
TILE_K = 16                    # K elements staged in shared memory per step
THREADS = 16                   # 16 x 16 threads per matmul block, each a REG x REG block of C
REG = 4


def nvptx_target(arch="sm_80"):
    """The NVPTX target for one compute capability (sm_80, sm_90, ...), named nvptx-ARCH."""
    if isinstance(arch, Target):
        return arch
    if arch in (None, "", "nvptx"):
        return get_target("nvptx")
    return get_target(arch if arch.startswith("nvptx-") else f"nvptx-{arch}")


def _resolve_target(target):
    if isinstance(target, Target):
        t = target
    elif isinstance(target, str) and (target == "nvptx" or target.startswith(("nvptx-", "sm_"))):
        t = nvptx_target(target)
    else:
        t = get_target(target)
    if not t.triple.startswith("nvptx"):
        raise ValueError(f"emit_ptx needs an NVPTX target, got {t.name!r} ({t.triple})")
    return t


class Unsupported(NamedTuple):
    entry: str                 # the program's entry (predict, train, ...)
    kernel: int                # index into program.kernels
    kind: str                  # kernel kind (matmul, scan, ...)
    op: str                    # the primitive the PTX path lacks
    detail: str                # the kernel's fused ops and shape

    def describe(self):
        return f"{self.entry} kernel {self.kernel}: {self.kind} kernel of {self.op!r} ({self.detail})"


class UnsupportedKernels(NotImplementedError):
    """Kernels the PTX path cannot lower yet, all of them; `.kernels` is a list of `Unsupported`."""

    def __init__(self, name, kernels):
        self.kernels = list(kernels)
        ops = sorted({k.op for k in self.kernels})
        super().__init__(
            f"The GPU (PTX) path cannot lower {len(self.kernels)} kernel(s) of model '{name}' yet "
            f"(unsupported: {', '.join(ops)}):\n" + "\n".join("  " + k.describe() for k in self.kernels)
            + "\n(supported: elementwise; reduce: " + ", ".join(SUPPORTED["reduce"])
            + "; layout: " + ", ".join(SUPPORTED["layout"]) + "; matmul (float32); "
            + ", ".join(k for k in SUPPORTED if k not in ("elementwise", "reduce", "layout", "matmul")) + ")")


def unsupported_kernels(program, entry="f"):
    """Every kernel of `program` the PTX path cannot lower, as `Unsupported` records."""
    out = []
    for step in program.schedule:
        k = program.kernels[step.kernel]
        detail = f"{'+'.join(n.op for n in k.computed())}, shape {format_shape(k.iter_shape)}"
        if k.kind not in SUPPORTED:
            out.append(Unsupported(entry, step.kernel, k.kind, k.root.op if k.root is not None else k.kind, detail))
        elif k.kind == "elementwise":
            for op in dict.fromkeys(m.op for m in k.members if m.op not in EMITTERS):
                out.append(Unsupported(entry, step.kernel, k.kind, op, detail))
        elif k.root.op not in SUPPORTED[k.kind]:
            out.append(Unsupported(entry, step.kernel, k.kind, k.root.op, detail))
        elif k.kind in OPAQUE and k.members:
            out.append(Unsupported(entry, step.kernel, k.kind, f"{k.root.op} with a fused epilogue", detail))
        elif k.kind == "scan":
            why = scan_problems(k)
            if why:
                out.append(Unsupported(entry, step.kernel, k.kind, "scan", f"{why}; {detail}"))
            out += [u._replace(entry=f"{entry}/scan{step.kernel}") for u in unsupported_kernels(k.body, entry)]
        elif k.kind == "matmul" and (k.root.dtype != "float32" or any(m.op not in EMITTERS for m in k.members)):
            out.append(Unsupported(entry, step.kernel, k.kind, f"{k.root.op} ({k.root.dtype})" if
                                   k.root.dtype != "float32" else next(m.op for m in k.members
                                                                       if m.op not in EMITTERS), detail))
    return out


@dataclass(frozen=True)
class Launch:
    """One kernel launch of a schedule step (1-D grid, one thread per element)."""
    step: int                  # position in program.schedule
    kernel: int                # index into program.kernels
    kind: str
    symbol: str                # the PTX entry to launch
    elements: Poly             # threads needed, a polynomial in the batch size n
    buffers: tuple             # memory-plan Buffer of each pointer argument, in order
    block: int = BLOCK
    tiles: tuple = ()          # matmul: (M, N) Polys; one block per TILE_M x TILE_N tile of C

    def count(self, n):
        if self.tiles:
            m, c = (p(n) for p in self.tiles)
            return -(-m // TILE_M) * -(-c // TILE_N) * self.block
        return self.elements(n)

    def grid(self, n):
        """Blocks for batch n (0: nothing to do, skip the launch)."""
        return -(-self.count(n) // self.block)

    def describe(self):
        return {"step": self.step, "kernel": self.kernel, "kind": self.kind, "symbol": self.symbol,
                "elements": list(self.elements.coeffs), "block": self.block,
                "tiles": [list(p.coeffs) for p in self.tiles],
                "buffers": [dataclasses.asdict(b) for b in self.buffers]}


def buffer_address(plan, buf, n, inputs, outputs, state, workspace_base):
    """The address of a memory-plan buffer at batch n (the same arithmetic as lower.py's entry).

    inputs/outputs: addresses by position; state: slot name -> address; workspace_base: the
    address of `plan.workspace_bytes(n)` bytes of scratch.
    """
    if buf.kind == "input":
        return inputs[buf.index]
    if buf.kind == "output":
        return outputs[buf.index]
    if buf.kind == "state":
        return state[buf.slot]
    if buf.batched:
        return workspace_base + plan.static_bytes + n * buf.row_offset
    return workspace_base + buf.static_offset


# --- code generation -----------------------------------------------------------------------------

def _sreg(module, name):
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(I32, []), name)
    return fn


class _PtxKernelEmitter(OpaqueKernels, _KernelEmitter):
    """One kernel of the program as one or more grid functions (see the module docstring)."""

    def __init__(self, module, symbol, kernel, plan, step, kernel_index, emulate=False):
        super().__init__(module, symbol, kernel, plan)
        self.step, self.kernel_index, self.emulate = step, kernel_index, emulate
        self.launches = []

    def emit(self):
        self.buffers, self.buf_index = self._collect_buffers()
        getattr(self, "_grid_" + self.kernel.kind)()
        return self.launches

    def _collect_buffers(self):
        order, index = super()._collect_buffers()
        if "gemm_scratch" in index:            # the CPU gemm's packing scratch: the GPU kernel has none
            order.remove("gemm_scratch")
            del index["gemm_scratch"]
        return order, index

    def _grid_function(self, suffix, elements, body):
        """Define SYMBOL[suffix](i64 n, i64 count, ptr...): body(g) runs for each g < count."""
        symbol = self.name + suffix
        fnty = ir.FunctionType(VOID, [I64, I64] + [PTR] * len(self.buffers))
        fn = ir.Function(self.module, fnty, symbol)
        for a in fn.args[2:]:
            a.add_attribute("noalias")
        self.fn = fn
        self.n, count, self.args = fn.args[0], fn.args[1], list(fn.args[2:])
        self.launches.append(Launch(self.step, self.kernel_index, self.kernel.kind, symbol, Poly.of(elements),
                                    tuple(self.buffers)))
        if self.emulate:
            # host emulation: the same body, with a loop over g in place of the grid
            self.b = ir.IRBuilder(fn.append_basic_block("entry"))
            with for_range(self.b, i64(0), count, "g") as g:
                body(g)
            self.b.ret_void()
            return
        fn.calling_convention = "ptx_kernel"
        entry = fn.append_basic_block("entry")
        work = fn.append_basic_block("work")
        done = fn.append_basic_block("done")
        b = self.b = ir.IRBuilder(entry)
        sreg = lambda r: b.zext(b.call(_sreg(self.module, f"llvm.nvvm.read.ptx.sreg.{r}"), []), I64)  # noqa: E731
        g = b.add(b.mul(sreg("ctaid.x"), sreg("ntid.x")), sreg("tid.x"), name="g")
        b.cbranch(b.icmp_unsigned("<", g, count), work, done)
        b.position_at_end(work)
        body(g)
        self.b.branch(done)
        self.b.position_at_end(done)
        self.b.ret_void()

    # --- index arithmetic
    def _unflatten(self, g, dims):
        """Row-major multi-index of flat g over `dims` (Monos)."""
        b = self.b
        idx = []
        for j in range(len(dims) - 1, 0, -1):
            d = dims[j].value(b, self.n)
            idx.append(b.urem(g, d))
            g = b.udiv(g, d)
        idx.append(g)
        return idx[::-1]

    def _offsets(self, idx, accesses, bases=None):
        b = self.b
        out = []
        for k, a in enumerate(accesses):
            off = bases[k] if bases is not None else a.base.value(b, self.n)
            for i, s in zip(idx, a.strides):
                if s.c != 0:
                    off = b.add(off, b.mul(i, s.value(b, self.n)))
            out.append(off)
        return out

    def _loop_nest(self, dims, accesses, bases, body):
        """Sequential loops over `dims` (row-major), offsets starting at `bases` (i64 values)."""
        b = self.b

        def level(j, offsets):
            if j == len(dims):
                body(offsets)
                return
            with for_range(b, i64(0), dims[j].value(b, self.n), name=f"r{j}") as idx:
                level(j + 1, [o if a.strides[j].c == 0 else b.add(o, b.mul(idx, a.strides[j].value(b, self.n)))
                              for o, a in zip(offsets, accesses)])
        level(0, bases)

    # --- elementwise
    def _grid_elementwise(self):
        members, shape = self.kernel.members, self.kernel.iter_shape
        self._grid_function("", prod(shape), lambda g: self._elementwise_body(g, members, shape))

    def _elementwise_body(self, g, members, shape, given=None):
        """Element g of `shape`: members evaluated and stored; `given`: node id -> value not loaded."""
        b = self.b
        given = given or {}
        stores = [m for m in members if m in self.kernel.outputs]
        reads, accesses = self._operand_accesses(members, shape)
        out_strides = contiguous_strides(shape)
        accesses = accesses + [Access(None, out_strides)] * (len(stores) + 1)   # stores, then the flat index
        dims, accesses = collapse([dim(d) for d in shape], accesses)
        offsets = self._offsets(self._unflatten(g, dims), accesses)
        loaded = {r.id: given[r.id] if r.id in given else
                  b.load(gep_f(b, self.ptr(r), offsets[k], r.dtype), typ=llvm_type(r.dtype))
                  for k, r in enumerate(reads)}
        values = self._eval_members(members, loaded, offsets[-1])
        for k, s in enumerate(stores):
            b.store(values[s.id], gep_f(b, self.ptr(s), offsets[len(reads) + k], s.dtype))

    # --- reductions
    def _grid_reduce(self):
        root = self.kernel.root
        x = root.inputs[0]
        axes = (root.attrs["axis"],) if root.op == "argmax" else tuple(root.attrs["axes"])
        kept = [d for j, d in enumerate(x.shape) if j not in axes]
        self._grid_function("", prod(kept), lambda g: self._reduce_body(g, root, x, axes, kept))

    def _reduce_body(self, g, root, x, axes, kept):
        b = self.b
        members = self.kernel.members
        shape = x.shape
        if x in members:
            stores = [m for m in members if m in self.kernel.outputs]
            reads, accesses = self._operand_accesses(members, shape)
        else:
            # no prologue: read the input directly (a scalar leaf has no buffer)
            members, stores = [], []
            leaf = base_of(x).op == "batch_size" or _is_scalar_const(x)
            reads = [] if leaf else [x]
            accesses = [] if leaf else [self._read_access(x, shape)]
        own = iter(contiguous_strides(kept))
        out_strides = [Mono(0) if j in axes else next(own) for j in range(len(shape))]
        reduced_strides = contiguous_strides([d for j, d in enumerate(shape) if j in axes])
        red = iter(reduced_strides)
        red_index = [next(red) if j in axes else Mono(0) for j in range(len(shape))]   # argmax position
        accesses = (accesses + [Access(None, contiguous_strides(shape))] * (len(stores) + 1)
                    + [Access(None, out_strides), Access(None, red_index)])
        # split every access into its kept part (from g) and its reduced part (the loop)
        kept_dims, kept_acc = collapse([dim(d) for j, d in enumerate(shape) if j not in axes],
                                       [Access(None, [s for j, s in enumerate(a.strides) if j not in axes])
                                        for a in accesses])
        red_dims, red_acc = collapse([dim(d) for j, d in enumerate(shape) if j in axes],
                                     [Access(None, [s for j, s in enumerate(a.strides) if j in axes])
                                      for a in accesses])
        start = self._offsets(self._unflatten(g, kept_dims), kept_acc, [a.base.value(b, self.n) for a in accesses])
        ty = llvm_type(root.dtype if root.op != "argmax" else x.dtype)
        acc = self._entry_alloca(ty)
        best_i = self._entry_alloca(I64) if root.op == "argmax" else None
        first = self._entry_alloca(ir.IntType(1)) if root.op == "argmax" else None
        if root.op == "argmax":
            b.store(ir.Constant(ty, 0), acc)
            b.store(i64(0), best_i)
            b.store(ir.Constant(ir.IntType(1), 1), first)
        else:
            b.store(self._identity(root), acc)

        def body(offsets):
            bb = self.b
            loaded = {r.id: bb.load(gep_f(bb, self.ptr(r), offsets[k], r.dtype), typ=llvm_type(r.dtype))
                      for k, r in enumerate(reads)}
            flat = offsets[len(reads) + len(stores)]
            if members:
                values = self._eval_members(members, loaded, flat)
                for k, s in enumerate(stores):
                    bb.store(values[s.id], gep_f(bb, self.ptr(s), offsets[len(reads) + k], s.dtype))
                v = values[x.id]
            else:
                v = loaded[x.id] if reads else self._leaf_value(x)
            a = bb.load(acc, typ=ty)
            if root.op == "argmax":
                is_first = bb.load(first, typ=ir.IntType(1))
                better = bb.or_(is_first, bb.fcmp_ordered(">", v, a) if x.dtype == "float32"
                                else bb.icmp_signed(">", v, a))
                bb.store(bb.select(better, v, a), acc)
                bb.store(bb.select(better, offsets[-1], bb.load(best_i, typ=I64)), best_i)
                bb.store(ir.Constant(ir.IntType(1), 0), first)
            else:
                bb.store(self._combine_ordered(root, a, v), acc)
        self._loop_nest(red_dims, red_acc, start, body)
        b = self.b
        result = b.trunc(b.load(best_i, typ=I64), I32) if root.op == "argmax" else b.load(acc, typ=ty)
        b.store(result, gep_f(b, self.ptr(root), start[-2], root.dtype))

    def _entry_alloca(self, ty):
        b = ir.IRBuilder(self.fn.entry_basic_block)
        b.position_at_start(self.fn.entry_basic_block)
        return b.alloca(ty)

    def _identity(self, root):
        if root.dtype == "int32":
            v = {"reduce_sum": 0, "reduce_max": -2 ** 31, "reduce_min": 2 ** 31 - 1}[root.op]
        else:
            v = {"reduce_sum": 0.0, "reduce_max": float("-inf"), "reduce_min": float("inf")}[root.op]
        return ir.Constant(llvm_type(root.dtype), v)

    def _combine_ordered(self, root, acc, v):
        """As the CPU path's combine, but with no reassociation: the loop order is the result's order."""
        b = self.b
        if root.op == "reduce_sum":
            return b.add(acc, v) if root.dtype == "int32" else b.fadd(acc, v, flags=FP_FLAGS)
        return EMITTERS["maximum" if root.op == "reduce_max" else "minimum"](EmitContext(b, self.module), root, acc, v)

    # --- matmul: tiled SGEMM through shared memory
    def _grid_matmul(self):
        node = self.kernel.root
        a, w = node.inputs
        M, N, K, (a_rs, a_cs), (b_rs, b_cs), views = matmul_operands(self.kernel)
        assert tuple(self.kernel.iter_shape) == tuple(node.shape)
        symbol = self.name
        fn = ir.Function(self.module, ir.FunctionType(VOID, [I64, I64] + [PTR] * len(self.buffers)), symbol)
        for arg in fn.args[2:]:
            arg.add_attribute("noalias")
        self.fn = fn
        self.n, count, self.args = fn.args[0], fn.args[1], list(fn.args[2:])
        threads = THREADS * THREADS
        self.launches.append(Launch(self.step, self.kernel_index, "matmul", symbol, Poly.of(M * N),
                                    tuple(self.buffers), block=threads, tiles=(Poly.of(M), Poly.of(N))))
        b = self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        tile_ty = ir.ArrayType(F32, TILE_K * TILE_M)
        if self.emulate:
            # host emulation: shared memory is two arrays of the function, the accumulators of all
            # threads of a block live in one array, and the kernel runs as a loop over blocks of
            # phases, each phase a loop over the block's threads (a barrier = the end of a phase)
            shared_a, shared_b = (b.alloca(F32, size=i64(TILE_K * TILE_M)) for _ in "ab")
            acc_all = b.alloca(F32, size=i64(REG * REG * threads))
            blocks = b.udiv(count, i64(threads))
            loop = for_range(b, i64(0), blocks, "block")
            block = loop.__enter__()
            tid = None
        else:
            fn.calling_convention = "ptx_kernel"
            shared_a, shared_b = (self._shared(f"{symbol}.{x}", tile_ty) for x in "ab")
            acc_all = b.alloca(F32, size=i64(REG * REG))
            sreg = lambda r: b.zext(b.call(_sreg(self.module, f"llvm.nvvm.read.ptx.sreg.{r}"), []), I64)  # noqa: E731
            block, tid = sreg("ctaid.x"), sreg("tid.x")
        v = lambda m: m.value(self.b, self.n)  # noqa: E731
        Mv, Nv, Kv = v(M), v(N), v(K)
        tiles_n = b.udiv(b.add(Nv, i64(TILE_N - 1)), i64(TILE_N))
        row0 = b.mul(b.udiv(block, tiles_n), i64(TILE_M))
        col0 = b.mul(b.urem(block, tiles_n), i64(TILE_N))
        barrier = self._barrier()

        def phase(body, sync=True):
            """body(t, acc) for every thread t of the block; then a barrier on the GPU (sync)."""
            if self.emulate:
                with for_range(self.b, i64(0), i64(threads), "t") as t:
                    body(t, self.b.gep(acc_all, [self.b.mul(t, i64(REG * REG))], source_etype=F32))
            else:
                body(tid, acc_all)
                if sync:
                    self.b.call(barrier, [])

        def tile_ptr(shared, index):
            return self.b.gep(shared, [index], source_etype=F32)

        def acc_ptr(acc, i, j):
            return self.b.gep(acc, [i64(i * REG + j)], source_etype=F32)

        def zero(t, acc):
            for i in range(REG):
                for j in range(REG):
                    self.b.store(ir.Constant(F32, 0.0), acc_ptr(acc, i, j))
        phase(zero, sync=False)
        k_tiles = b.udiv(b.add(Kv, i64(TILE_K - 1)), i64(TILE_K))
        gather = gather_operand(self.kernel)     # implicit GEMM: A read through the window
        # each operand: a slice read in place, the window's input (implicit GEMM), or its buffer
        pa, pb = [gep_f(b, self.ptr(view[0]), i64(view[1])) if view is not None else self.ptr(operand)
                  for view, operand in zip(views, (a if gather is None else self.kernel.a_window.inputs[0], w))]
        a_strides, b_strides = (v(a_rs), v(a_cs)), (v(b_rs), v(b_cs))
        # thread e of a tile load: consecutive threads along the operand's contiguous axis
        a_k_fast = a_cs == ONE
        b_k_fast = b_rs == ONE and b_cs != ONE
        with for_range(self.b, i64(0), k_tiles, "kt") as kt:
            k0 = self.b.mul(kt, i64(TILE_K))

            def load(t, acc):
                bb = self.b
                for r in range(TILE_K * TILE_M // threads):
                    e = bb.add(t, i64(r * threads))
                    for src, shared, (rs, cs), base, limit, k_fast in (
                            (pa, shared_a, a_strides, row0, Mv, a_k_fast),
                            (pb, shared_b, b_strides, col0, Nv, b_k_fast)):
                        if k_fast:
                            mm, kk = bb.udiv(e, i64(TILE_K)), bb.urem(e, i64(TILE_K))
                        else:
                            kk, mm = bb.udiv(e, i64(TILE_M)), bb.urem(e, i64(TILE_M))
                        x, k = bb.add(base, mm), bb.add(k0, kk)
                        ok = bb.and_(bb.icmp_unsigned("<", x, limit), bb.icmp_unsigned("<", k, Kv))
                        if src is pa and gather is not None:
                            off = bb.add(emit_offset(bb, x, gather.rows), emit_offset(bb, k, gather.cols))
                        elif src is pa:
                            off = bb.add(bb.mul(x, rs), bb.mul(k, cs))
                        else:
                            off = bb.add(bb.mul(k, rs), bb.mul(x, cs))
                        value = bb.load(gep_f(bb, src, bb.select(ok, off, i64(0))), typ=F32)
                        value = bb.select(ok, value, ir.Constant(F32, 0.0))
                        bb.store(value, tile_ptr(shared, bb.add(bb.mul(kk, i64(TILE_M)), mm)))

            def compute(t, acc):
                bb = self.b
                ty, tx = bb.udiv(t, i64(THREADS)), bb.urem(t, i64(THREADS))
                sums = [[bb.load(acc_ptr(acc, i, j), typ=F32) for j in range(REG)] for i in range(REG)]
                for kk in range(TILE_K):       # plain k order: acc = acc + a * b, no contraction
                    av = [bb.load(tile_ptr(shared_a, bb.add(ty, i64(kk * TILE_M + THREADS * i))), typ=F32)
                          for i in range(REG)]
                    bv = [bb.load(tile_ptr(shared_b, bb.add(tx, i64(kk * TILE_N + THREADS * j))), typ=F32)
                          for j in range(REG)]
                    sums = [[bb.fadd(sums[i][j], bb.fmul(av[i], bv[j])) for j in range(REG)] for i in range(REG)]
                for i in range(REG):
                    for j in range(REG):
                        bb.store(sums[i][j], acc_ptr(acc, i, j))
            phase(load)
            phase(compute)

        members, shape = self.kernel.members, node.shape

        def store(t, acc):
            bb = self.b
            ty, tx = bb.udiv(t, i64(THREADS)), bb.urem(t, i64(THREADS))
            for i in range(REG):
                for j in range(REG):
                    row = bb.add(row0, bb.add(ty, i64(THREADS * i)))
                    col = bb.add(col0, bb.add(tx, i64(THREADS * j)))
                    inside = bb.and_(bb.icmp_unsigned("<", row, Mv), bb.icmp_unsigned("<", col, Nv))
                    with bb.if_then(inside):
                        value = bb.load(acc_ptr(acc, i, j), typ=F32)
                        flat = bb.add(bb.mul(row, Nv), col)
                        bb.store(value, gep_f(bb, self.ptr(node), flat))
                        if members:
                            self._elementwise_body(flat, members, shape, given={node.id: value})
        phase(store, sync=False)
        if self.emulate:
            loop.__exit__(None, None, None)
        self.b.ret_void()

    def _barrier(self):
        if self.emulate:
            return None
        fn = self.module.globals.get("llvm.nvvm.barrier0")
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(VOID, []), "llvm.nvvm.barrier0")
        return fn

    def _shared(self, name, ty):
        g = ir.GlobalVariable(self.module, ty, name, addrspace=3)
        g.initializer = ir.Constant(ty, ir.Undefined)
        g.linkage, g.align = "internal", 16
        g.type = ir.PointerType(addrspace=3)   # an opaque `ptr addrspace(3)` (GEPs give float pointers)
        return g

    # --- layout: one or two copy launches per kernel
    def _grid_layout(self):
        node = self.kernel.root
        out_strides = contiguous_strides(node.shape)
        copies = []   # (suffix, shape, src node or None (zero fill), src strides, src base, dst strides, dst base)
        x = node.inputs[0]
        src = contiguous_strides(x.shape)
        if node.op == "transpose":
            copies.append((node.shape, x, [src[p] for p in node.attrs["perm"]], Mono(0), out_strides, Mono(0)))
        elif node.op == "slice":
            base = sum_monos([src[j] * Mono(lo) for j, (lo, hi) in enumerate(node.attrs["bounds"])])
            copies.append((node.shape, x, src, base, out_strides, Mono(0)))
        elif node.op == "pad":
            base = sum_monos([out_strides[j] * Mono(lo) for j, (lo, hi) in enumerate(node.attrs["pads"])])
            copies.append((node.shape, None, None, None, out_strides, Mono(0)))
            copies.append((x.shape, x, src, Mono(0), out_strides, base))
        elif node.op == "reverse":
            axis = node.attrs["axis"]
            flipped = [Mono(-s.c, s.k) if j == axis else s for j, s in enumerate(src)]
            copies.append((node.shape, x, flipped, src[axis] * Mono(x.shape[axis] - 1), out_strides, Mono(0)))
        elif node.op == "window":
            copies.append((node.shape, x, window_strides(src, node.attrs, _scale), Mono(0), out_strides, Mono(0)))
        elif node.op == "concat":
            axis, start = node.attrs["axis"], 0
            for xi in node.inputs:
                strides, base = self._read_strides(xi, xi.shape)     # (a slice is read in place: Kernel.views)
                copies.append((xi.shape, xi, strides, base, out_strides, out_strides[axis] * Mono(start)))
                start += xi.shape[axis]
        else:
            raise NotImplementedError(f"no PTX layout kernel for {node.op!r}")
        for j, copy in enumerate(copies):
            suffix = "" if len(copies) == 1 else f"_{j}"
            self._grid_function(suffix, prod(copy[0]), lambda g, c=copy: self._copy_body(g, node, *c))

    def _copy_body(self, g, node, shape, x, src_strides, src_base, dst_strides, dst_base):
        b = self.b
        accesses = [Access(None, dst_strides, dst_base)]
        if x is not None:
            accesses.append(Access(None, src_strides, src_base))
        dims, accesses = collapse([dim(d) for d in shape], accesses)
        offsets = self._offsets(self._unflatten(g, dims), accesses)
        ty = llvm_type(node.dtype)
        value = ir.Constant(ty, 0) if x is None else b.load(gep_f(b, self.ptr(x), offsets[1], x.dtype), typ=ty)
        b.store(value, gep_f(b, self.ptr(node), offsets[0], node.dtype))


def build_ptx_module(programs, target="nvptx", name="model", emulate=False):
    """(llvmlite ir.Module, {entry: launches}) for `programs` (entry name -> KernelProgram).

    emulate=True builds the same kernels for the host instead (each grid function loops over its
    thread indices; module triple left to the caller): a check of the kernels' index arithmetic
    and of the launch data where no GPU is present.
    """
    target = _resolve_target(target) if not emulate else None
    problems = [u for entry, p in programs.items() for u in unsupported_kernels(p, entry or name)]
    if problems:   # every entry's unsupported kernels at once, before any code is built
        raise UnsupportedKernels(name, problems)
    module = ir.Module(name="kcompile_gpu")
    if target is not None:
        module.triple = target.triple
    launches = {}
    for entry, program in programs.items():
        symbol = _symbol(name if entry is None else f"{name}__{entry}")
        out = []
        for pos, step in enumerate(program.schedule):
            emitter = _PtxKernelEmitter(module, f"{symbol}_k{step.kernel}", program.kernels[step.kernel],
                                        program.memory, pos, step.kernel, emulate)
            out += emitter.emit()
        launches[entry] = out
    return module, launches


def compile_ptx(module, target="nvptx", opt=3):
    """PTX text of an llvmlite module built by `build_ptx_module` (verified and optimized first)."""
    target = _resolve_target(target)
    tm = target.machine()
    mod = llvm.parse_assembly(str(module))
    mod.triple = target.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    if opt:
        pto = llvm.create_pipeline_tuning_options(speed_level=opt)   # fresh PTO + PassBuilder per run
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
    return tm.emit_assembly(mod)


def emit_ptx(program, target="nvptx", name="model"):
    """(PTX text, launches) for one KernelProgram; launches are in schedule order (see `Launch`)."""
    module, launches = build_ptx_module({None: program}, target, name)   # symbols NAME_kI
    return compile_ptx(module, target), launches[None]


def emit_ptx_programs(programs, target="nvptx", name="model"):
    """(PTX text, {entry: launches}) for several programs batched into one module."""
    module, launches = build_ptx_module(programs, target, name)
    return compile_ptx(module, target), launches


def _symbol(text):
    """A valid PTX identifier ([A-Za-z_$][A-Za-z0-9_$]*)."""
    out = "".join(c if c.isalnum() or c in "_$" else "_" for c in text)
    return out if out and not out[0].isdigit() else "_" + out


__all__ = ["Launch", "ScanLaunch", "flat_launches", "walk_launches", "workspace_bytes", "Unsupported",
           "UnsupportedKernels", "build_ptx_module", "buffer_address", "compile_ptx", "emit_ptx",
           "emit_ptx_programs", "nvptx_target", "unsupported_kernels"]
