"""Lower a kernel program (ir/passes) to LLVM IR: one internal function per kernel and one
exported entry point that computes every buffer's address and calls the kernels in order.

Entry ABI: void NAME(i64 n, ptr inputs[], ptr outputs[], ptr state, ptr workspace)
  n          run-time batch size
  inputs     array of pointers to the graph inputs (row-major float32/int32)
  outputs    array of pointers to the graph outputs
  state      the state pool (weights, optimizer slots, counters) — slots at fixed byte offsets
  workspace  scratch memory of `MemoryPlan.workspace_bytes(n)` bytes, 64-byte aligned
"""
from __future__ import annotations

from llvmlite import ir

from ..ir.passes.fusion import rows_of
from ..ir.passes.memory import base_of, buffer_of
from ..ir.primitives_spatial import window_strides
from . import collective, gemm
from .gemm_gather import GatherA
from .elementwise import EMITTERS
from .placement import place_operands
from .llvm_util import F32, FP_FLAGS, I32, I64, PTR, REDUCE_FLAGS, VOID, byte_offset, for_range, gep_f, i64, llvm_type
from .loops import ONE, ZERO, Access, Mono, broadcast_strides, collapse, contiguous_strides, dim, emit_nest, prod, split_dim
from .sizes import Poly, WorkspaceSize

_SCALAR_LEAVES = ("batch_size",)
# Threads beyond the GEMM (executor "threads", runtime/kc_threads.c): an elementwise, reduction,
# layout (transpose, slice, reverse, window = im2col) or col2im accumulation nest of at least this many
# elements splits one dim (loops.split_dim: every written element owned by one thread) among the
# pool's workers; smaller ones (every batch-1 call of the guide models) run serially in the caller.
PARALLEL_MIN_ELEMENTS = 1 << 15
# Only nests that can reach the cut-off at ordinary batch sizes get the pool's task function (more
# code to compile): batch-sized ones of at least PARALLEL_MIN_ROW_ELEMENTS per batch row (a conv
# layer's maps, its im2col windows; not an MLP's 64-wide activations), or fixed-size ones of at
# least PARALLEL_MIN_ELEMENTS (a big layer's weight update).
PARALLEL_MIN_ROW_ELEMENTS = 1 << 10


class EmitContext:
    """What an elementwise emitter may use: the builder, the module and the element's flat index."""

    def __init__(self, builder, module, flat_index=None):
        self.builder, self.module, self.flat_index = builder, module, flat_index


def lower_program(module, program, entry_name, slot_offsets, flush_denormals=False):
    """Define the entry point; returns its WorkspaceSize (planned buffers + the largest scratch).

    flush_denormals (a model's entries, not the loop bodies they call): on x86 the entry runs with
    denormals flushed to zero (MXCSR FTZ and DAZ) and restores the caller's MXCSR before returning,
    as TensorFlow and XLA run Keras models: an optimizer state decaying into denormals otherwise
    costs microcode assists on every element (a momentum update measured 30x slower)."""
    entry = ir.Function(module, ir.FunctionType(VOID, [I64, PTR, PTR, PTR, PTR]), entry_name)
    n, ins, outs, state, ws = entry.args
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    restore = _flush_denormals(module, b) if flush_denormals else None
    plan, placed = place_operands(program)
    # the gemm scratch sits after the planned workspace
    batch_region = byte_offset(b, ws, i64(plan.static_bytes))
    gemm_scratch = byte_offset(b, batch_region, b.add(b.mul(n, i64(plan.row_bytes)), i64(64)))

    def address(buf):
        if buf.kind == "input":
            return b.load(b.gep(ins, [i64(buf.index)], source_etype=PTR), typ=PTR)
        if buf.kind == "output":
            return b.load(b.gep(outs, [i64(buf.index)], source_etype=PTR), typ=PTR)
        if buf.kind == "state":
            return byte_offset(b, state, i64(slot_offsets[buf.slot]))
        if buf.batched:
            return byte_offset(b, batch_region, b.mul(n, i64(buf.row_offset)))
        return byte_offset(b, ws, i64(buf.static_offset))

    scratch_needs = []
    for step in program.schedule:
        emitter = _KernelEmitter(module, f"{entry_name}.k{step.kernel}", program.kernels[step.kernel], plan, placed)
        fn, arg_buffers = emitter.emit()
        scratch_needs += emitter.scratch_needs
        b.call(fn, [n] + [gemm_scratch if buf == "gemm_scratch" else address(buf) for buf in arg_buffers])
    if restore is not None:
        restore()
    b.ret_void()
    # kernels run one after another, so they share one scratch area after the planned buffers
    return WorkspaceSize(Poly(plan.workspace_coefficients), scratch_needs)


MXCSR_FTZ_DAZ = 0x8040   # flush-to-zero (bit 15) and denormals-are-zero (bit 6)


def _flush_denormals(module, b):
    """Save MXCSR and set FTZ|DAZ (x86 targets; elsewhere nothing); returns the restoring call."""
    if not str(getattr(module, "triple", "")).startswith(("x86_64", "i686", "i386")):
        return None
    stmxcsr = module.globals.get("llvm.x86.sse.stmxcsr") or ir.Function(
        module, ir.FunctionType(VOID, [PTR]), "llvm.x86.sse.stmxcsr")
    ldmxcsr = module.globals.get("llvm.x86.sse.ldmxcsr") or ir.Function(
        module, ir.FunctionType(VOID, [PTR]), "llvm.x86.sse.ldmxcsr")
    saved, flushed = b.alloca(I32), b.alloca(I32)
    b.call(stmxcsr, [saved])
    b.store(b.or_(b.load(saved, typ=I32), ir.Constant(I32, MXCSR_FTZ_DAZ)), flushed)
    b.call(ldmxcsr, [flushed])
    return lambda: b.call(ldmxcsr, [saved])


def lower_step_loop(module, program, entry_name):
    """Define NAME_loop: run the (scalar-output) step entry over consecutive batches of arrays.

    void NAME_loop(i64 batch, i64 rows, ptr bases[], ptr per_step_outputs, ptr state, ptr ws,
                   ptr pointer_scratch[len(inputs) + 1])
    Batch s covers rows [s*batch, min((s+1)*batch, rows)) of every input array (so the caller
    shuffles by permuting the arrays once per epoch); the step's scalar output s is written to
    per_step_outputs[s]. One native call then trains a whole epoch.
    """
    entry = module.globals[entry_name]
    row_bytes = [4 * int(_eval(prod(node.shape[1:]), 0)) for node in program.graph.inputs]
    fn = ir.Function(module, ir.FunctionType(VOID, [I64, I64, PTR, PTR, PTR, PTR, PTR]), entry_name + "_loop")
    batch, rows, bases, per_step, state, ws, scratch = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    k = len(row_bytes)
    ins = scratch                                          # k input pointers, then the output pointer
    outs = b.gep(scratch, [i64(k)], source_etype=PTR)
    steps = b.sdiv(b.add(rows, b.sub(batch, i64(1))), batch)
    with for_range(b, 0, steps, "step") as st:
        start = b.mul(st, batch)
        left = b.sub(rows, start)
        n = b.select(b.icmp_signed("<", left, batch), left, batch)
        for i, rb in enumerate(row_bytes):
            base = b.load(b.gep(bases, [i64(i)], source_etype=PTR), typ=PTR)
            b.store(byte_offset(b, base, b.mul(start, i64(rb))), b.gep(ins, [i64(i)], source_etype=PTR))
        b.store(gep_f(b, per_step, st), outs)
        b.call(entry, [n, ins, outs, state, ws])
    b.ret_void()
    return fn


def _eval(mono, batch):
    return mono.c * batch ** mono.k


def matmul_geometry(node):
    """(M, N, K, A's (row, column) strides, B's strides) of a matmul node, as Monos in the batch:
    transposed operands are the same product with other strides (shared by the CPU and GPU kernels)."""
    a, w = node.inputs
    if node.attrs["transpose_a"]:
        K, M = prod(a.shape[:-1]), dim(a.shape[-1])
        a_strides = (ONE, M)
    else:
        M, K = prod(a.shape[:-1]), dim(a.shape[-1])
        a_strides = (K, ONE)
    if node.attrs["transpose_b"]:
        N = prod(w.shape[:-1])
        b_strides = (ONE, dim(w.shape[-1]))
    else:
        N = dim(w.shape[-1])
        b_strides = (N, ONE)
    return M, N, K, a_strides, b_strides


def matmul_operands(kernel):
    """matmul_geometry of a matmul kernel's root with its operands as read: for A and B, None or
    (input node, first element) of a slice read in place (operand_view), whose strides replace
    the contiguous ones (shared by the CPU and GPU kernels)."""
    M, N, K, a_strides, b_strides = matmul_geometry(kernel.root)
    views = [operand_view(kernel, p) for p in (0, 1)]
    a_strides = views[0][2] if views[0] is not None else a_strides
    b_strides = views[1][2] if views[1] is not None else b_strides
    return M, N, K, a_strides, b_strides, [view[:2] if view is not None else None for view in views]


def operand_view(kernel, p):
    """(input node, offset of the first element, (row, column) strides as Monos) of a matmul
    kernel's operand p (0: A, 1: B) when it is a slice read in place (Kernel.views: only the last
    axis sliced, fusion.last_axis_slice; maybe through reshapes that keep that axis), or None.
    Its rows are the sliced input's rows: the row stride is the input's width."""
    node = kernel.root
    v = kernel.views.get(rows_of(node.inputs[p]).id)
    if v is None or v.op != "slice":
        return None
    x = v.inputs[0]
    width = Mono(int(x.shape[-1]))
    transposed = node.attrs["transpose_a" if p == 0 else "transpose_b"]
    return x, int(v.attrs["bounds"][-1][0]), (ONE, width) if transposed else (width, ONE)


def gather_operand(kernel):
    """A matmul kernel's A read through its window (Kernel.a_window, implicit GEMM) as a GatherA:
    rows and columns of A decoded into the window input's offsets; None for a plain A."""
    w = kernel.a_window
    if w is None:
        return None
    x = w.inputs[0]
    x_strides = [1]
    for d in reversed(x.shape[1:]):
        x_strides.insert(0, x_strides[0] * int(d))
    strides = window_strides(x_strides, w.attrs)
    k = len(w.attrs["sizes"])

    def digits(dims):   # innermost first, the outermost unbounded
        return tuple((None if j == dims[0] else int(w.shape[j]), strides[j]) for j in reversed(dims))
    major, minor = digits(range(0, k + 1)), digits(range(k + 1, 2 * k + 2))
    if kernel.root.attrs["transpose_a"]:
        return GatherA(rows=minor, cols=major)
    return GatherA(rows=major, cols=minor)


class _KernelEmitter:
    def __init__(self, module, name, kernel, plan, placed=None):
        self.module, self.name, self.kernel, self.plan = module, name, kernel, plan
        self.placed = placed or {}  # value id -> (concat, column): stored in the concat (placement.py)
        self.consts = {}
        self._region = None        # while a nest is emitted into a pool task: its range and split
        self._tasks = 0
        self.scratch_needs = []    # Polys in the batch size: scratch bytes this kernel uses

    # --- arguments: one pointer per distinct buffer the kernel touches
    def _collect_buffers(self):
        order, index = [], {}
        nodes = [i for i in self.kernel.external_inputs() if base_of(i).op not in ("const",) + _SCALAR_LEAVES]
        nodes += self.kernel.outputs
        for node in nodes:
            buf = buffer_of(self.plan, node) if node not in self.kernel.outputs else self.plan.buffers[node.id]
            if buf not in index:
                index[buf] = len(order)
                order.append(buf)
        if self.kernel.kind in ("matmul", "scan"):
            index["gemm_scratch"] = len(order)
            order.append("gemm_scratch")
        return order, index

    def emit(self):
        buffers, self.buf_index = self._collect_buffers()
        fnty = ir.FunctionType(VOID, [I64] + [PTR] * len(buffers))
        fn = ir.Function(self.module, fnty, self.name)
        fn.linkage = "internal"
        for a in fn.args[1:]:
            a.add_attribute("noalias")
        self.fn = fn
        self.n, self.args = fn.args[0], list(fn.args[1:])
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        getattr(self, "_emit_" + self.kernel.kind)()
        self.b.ret_void()
        return fn, buffers

    def ptr(self, node):
        if node in self.kernel.outputs:
            return self.args[self.buf_index[self.plan.buffers[node.id]]]
        if node.id in self.kernel.views:     # a window or slice read in place: its input's buffer
            node = node.inputs[0]
        base = base_of(node)
        if base.op == "const":
            return self._const_global(base)
        return self.args[self.buf_index[buffer_of(self.plan, node)]]

    def _const_global(self, node):
        arr = node.attrs["value"]
        if node.id not in self.consts:
            ty = ir.ArrayType(ir.IntType(8), arr.nbytes)
            g = ir.GlobalVariable(self.module, ty, f"{self.name}.c{len(self.consts)}")
            g.initializer = ir.Constant(ty, bytearray(arr.astype(arr.dtype.newbyteorder("<")).tobytes()))
            g.global_constant, g.linkage, g.align = True, "private", 32
            self.consts[node.id] = g
        return self.consts[node.id]

    # --- elementwise bodies shared by every kernel kind
    def _operand_accesses(self, members, iter_shape):
        """External operands of `members` that are read from memory, with broadcast strides."""
        inside = {m.id for m in members}
        reads = []
        for m in members:
            for i in m.inputs:
                if i.id in inside or any(r is i for r in reads):
                    continue
                if base_of(i).op == "batch_size" or _is_scalar_const(i):
                    continue
                reads.append(i)
        return reads, [self._read_access(r, iter_shape) for r in reads]

    def _read_access(self, node, iter_shape):
        """How `node` is read over iter_shape (numpy broadcasting); a view (Kernel.views) is read
        in its input's buffer: a window with the window's strides, a slice from its first element."""
        strides, base = self._read_strides(node, iter_shape)
        return Access(self.ptr(node), strides, base)

    def _read_strides(self, node, iter_shape):
        """(strides, first element) of _read_access, without the pointer."""
        if node.id in self.placed:
            return self._placed_strides(node, iter_shape)
        v = self.kernel.views.get(node.id)
        if v is None:
            return broadcast_strides(node.shape, iter_shape), ZERO
        src = contiguous_strides(v.inputs[0].shape)
        if v.op == "window":
            own, base = window_strides(src, v.attrs, _scale), ZERO
        else:
            own, base = src, sum_monos([src[j] * Mono(lo) for j, (lo, _) in enumerate(v.attrs["bounds"])])
        return broadcast_strides(node.shape, iter_shape, own), base

    def _placed_strides(self, node, iter_shape):
        """(strides, first element) of a value stored in its concat's columns."""
        concat, column = self.placed[node.id]
        return broadcast_strides(node.shape, iter_shape, contiguous_strides(concat.shape)), Mono(column)

    def _eval_members(self, members, loaded, flat_index):
        """Compute member values in order; `loaded` maps node id -> already-available value."""
        b = self.b
        ctx = EmitContext(b, self.module, flat_index)
        values = dict(loaded)
        for m in members:
            args = [values[i.id] if i.id in values else self._leaf_value(i) for i in m.inputs]
            values[m.id] = EMITTERS[m.op](ctx, m, *args)
        return values

    def _leaf_value(self, node):
        base = base_of(node)
        if base.op == "batch_size":
            return self.b.sitofp(self.n, F32)
        if _is_scalar_const(node):
            v = base.attrs["value"].reshape(())
            return ir.Constant(llvm_type(node.dtype), int(v) if node.dtype == "int32" else float(v))
        raise AssertionError(f"operand {node} was not loaded")

    def _emit_elementwise_body(self, members, iter_shape, outer_range=None, keep_last=False,
                               extra=None):
        """One fused loop nest: load operands, compute members, store the kernel's outputs.

        extra: optional (accesses, on_element(offsets, values)) for reductions, which add their
        own accumulator access and update.
        """
        stores = [m for m in members if m in self.kernel.outputs]
        reads, accesses = self._operand_accesses(members, iter_shape)
        out_strides = contiguous_strides(iter_shape)
        accesses = accesses + [Access(self.ptr(s), *self._placed_strides(s, iter_shape)) if s.id in self.placed
                               else Access(self.ptr(s), out_strides) for s in stores]
        accesses.append(Access(None, out_strides))  # the flat element index
        extra_accesses, on_element = extra if extra else ([], None)
        accesses += extra_accesses
        dims, accesses = collapse([dim(d) for d in iter_shape], accesses, keep_last=keep_last)
        if outer_range is not None and len(dims) != 2:
            return False

        written = list(range(len(reads), len(reads) + len(stores)))
        written += [len(reads) + len(stores) + 1 + k for k in range(len(extra_accesses))]

        def body(offsets):
            b = self.b
            loaded = {r.id: b.load(gep_f(b, self.ptr(r), offsets[k], r.dtype), typ=llvm_type(r.dtype))
                      for k, r in enumerate(reads)}
            flat = offsets[len(reads) + len(stores)]
            values = self._eval_members(members, loaded, flat)
            for k, s in enumerate(stores):
                b.store(values[s.id], gep_f(b, self.ptr(s), offsets[len(reads) + k], s.dtype))
            if on_element:
                on_element(offsets[len(reads) + len(stores) + 1:], values)
        self._nest(dims, accesses, body, written, outer_range)
        return True

    # --- threads: one nest of a kernel as a task of the pool
    def _threaded(self):
        return getattr(self.module, "kc_executor", "serial") == "threads"

    def _parallel(self, build, shape):
        """Emit what build() emits (one loop nest, through self._nest) so that it may run on the pool.

        With the executor "threads" the nest goes into NAME.rK(n, ptrs..., begin, end), the kernel's
        arguments and a range of the split dim (loops.split_dim), called only by a pool task that
        unpacks them from a ctx block (one copy of the loops: LLVM inlines it there, its noalias
        arguments becoming scoped metadata); the kernel calls the task directly over the whole
        range when the nest has fewer than PARALLEL_MIN_ELEMENTS elements or no dim can be split,
        else kc_parallel_for hands each worker a contiguous range. A nest over `shape` that is
        rarely that big (PARALLEL_MIN_ROW_ELEMENTS) is emitted in place: less code to compile.
        Every written element is computed by one thread in the serial order, so results are the
        same for any thread count.
        """
        size = prod(shape)
        least = PARALLEL_MIN_ELEMENTS if size.k == 0 else min(PARALLEL_MIN_ROW_ELEMENTS, PARALLEL_MIN_ELEMENTS)
        small = size.c < least
        if not self._threaded() or self._region is not None or small:
            build()
            return
        outer_b, outer_n, outer_args = self.b, self.n, self.args
        name = f"{self.name}.r{self._tasks}"
        self._tasks += 1
        body_fn = ir.Function(self.module, ir.FunctionType(VOID, [I64] + [PTR] * len(outer_args) + [I64, I64]), name)
        body_fn.linkage = "internal"
        for a in body_fn.args[1:1 + len(outer_args)]:
            a.add_attribute("noalias")
        args = list(body_fn.args)
        self.b = ir.IRBuilder(body_fn.append_basic_block("entry"))
        self.n, self.args = args[0], args[1:-2]
        self._region = {"range": (args[-2], args[-1]), "split": None, "nests": 0}
        try:
            build()
            self.b.ret_void()
            split = self._region["split"]
        finally:
            self.b, self.n, self.args = outer_b, outer_n, outer_args
            self._region = None
        b = self.b
        task = self._task_trampoline(name, body_fn, len(outer_args))
        values = [self.n] + self.args
        ctx = b.alloca(I64, size=i64(len(values)), name="ctx")
        for i, v in enumerate(values):
            slot = v if v.type == I64 else b.ptrtoint(v, I64)
            b.store(slot, b.gep(ctx, [i64(i)], inbounds=True, source_etype=I64))
        if split is None:
            b.call(task, [ctx, i64(0), i64(1), i64(0)])
            return
        count_m, work_m = split
        count, work = count_m.value(b, self.n), work_m.value(b, self.n)
        big = b.and_(b.icmp_signed(">=", work, i64(PARALLEL_MIN_ELEMENTS)), b.icmp_signed(">", count, i64(1)))
        with b.if_else(big) as (parallel, serial):
            with parallel:
                b.call(gemm._parallel_for_fn(self.module), [task, ctx, count])
            with serial:
                b.call(task, [ctx, i64(0), count, i64(0)])

    def _task_trampoline(self, name, body_fn, count):
        """void NAME.task(ptr ctx, i64 begin, i64 end, i64 worker): body_fn(ctx's n and pointers, begin, end)."""
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR, I64, I64, I64]), name + ".task")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        ctx, begin, end, _ = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        slots = [b.load(b.gep(ctx, [i64(i)], inbounds=True, source_etype=I64), typ=I64) for i in range(count + 1)]
        b.call(body_fn, [slots[0]] + [b.inttoptr(v, PTR) for v in slots[1:]] + [begin, end])
        b.ret_void()
        return fn

    def _nest(self, dims, accesses, body, written, outer_range=None):
        """emit_nest; inside _parallel the first nest splits a dim that owns the accesses `written` (indices)."""
        region = self._region
        if region is None or outer_range is not None:
            emit_nest(self.b, self.n, dims, accesses, body, outer_range)
            return
        region["nests"] += 1
        assert region["nests"] == 1, "a parallel region holds one loop nest"
        j = split_dim(dims, [accesses[i] for i in written])
        if j is None:
            emit_nest(self.b, self.n, dims, accesses, body)
            return
        region["split"] = (dims[j], prod_monos(dims))
        emit_nest(self.b, self.n, dims, accesses, body, split=(j,) + region["range"])

    # --- kernel kinds
    def _emit_elementwise(self):
        self._parallel(lambda: self._emit_elementwise_body(self.kernel.members, self.kernel.iter_shape),
                       self.kernel.iter_shape)

    def _emit_reduce(self):
        root = self.kernel.root
        if root.op == "argmax":
            return self._emit_argmax(root)
        b = self.b
        x = root.inputs[0]
        axes = root.attrs["axes"]
        out = self.ptr(root)
        kept = [d for j, d in enumerate(x.shape) if j not in axes]
        if root.dtype == "int32":
            identity = {"reduce_sum": 0, "reduce_max": -2 ** 31, "reduce_min": 2 ** 31 - 1}[root.op]
        else:
            identity = {"reduce_sum": 0.0, "reduce_max": float("-inf"), "reduce_min": float("inf")}[root.op]
        init = ir.Constant(llvm_type(root.dtype), identity)
        dims, (acc,) = collapse([dim(d) for d in kept] or [ONE], [Access(out, contiguous_strides(kept) or [ONE])])
        emit_nest(b, self.n, dims, [acc], lambda offs: b.store(init, gep_f(b, out, offs[0], root.dtype)))

        own = contiguous_strides(kept)
        out_strides, k = [], 0
        for j in range(len(x.shape)):
            if j in axes:
                out_strides.append(Mono(0))
            else:
                out_strides.append(own[k])
                k += 1
        members = self.kernel.members
        # the accumulation may run on the pool: only over kept dims, so each output element is
        # summed by one thread in the serial order (the builder and pointers are the region's)
        self._parallel(lambda: self._reduce_nest(root, x, out_strides, members), x.shape)

    def _reduce_nest(self, root, x, out_strides, members):
        out = self.ptr(root)

        def accumulate(offsets, values):
            b = self.b
            v = values[x.id]
            p = gep_f(b, out, offsets[0], root.dtype)
            a = b.load(p, typ=llvm_type(root.dtype))
            b.store(self._combine(root, a, v), p)

        if members and x in members:
            self._emit_elementwise_body(members, x.shape, extra=([Access(out, out_strides)], accumulate))
        else:
            # no prologue: read the input directly; a scalar leaf (batch size, constant) has no
            # buffer, every element is its value
            leaf = base_of(x).op == "batch_size" or _is_scalar_const(x)
            ax = Access(None, [Mono(0)] * len(x.shape)) if leaf else self._read_access(x, x.shape)
            dims, accesses = rows_inner(*collapse([dim(d) for d in x.shape], [ax, Access(out, out_strides)]))

            def body(offs):
                b = self.b
                v = self._leaf_value(x) if leaf else \
                    b.load(gep_f(b, self.ptr(x), offs[0], x.dtype), typ=llvm_type(x.dtype))
                p = gep_f(b, out, offs[1], root.dtype)
                b.store(self._combine(root, b.load(p, typ=llvm_type(root.dtype)), v), p)
            self._nest(dims, accesses, body, [1])

    def _combine(self, root, acc, v):
        b = self.b
        if root.op == "reduce_sum":
            return b.add(acc, v) if root.dtype == "int32" else b.fadd(acc, v, flags=REDUCE_FLAGS)
        return EMITTERS["maximum" if root.op == "reduce_max" else "minimum"](EmitContext(b, self.module), root, acc, v)

    def _emit_argmax(self, root):
        b = self.b
        x = root.inputs[0]
        axis = root.attrs["axis"]
        outer, size, inner = prod(x.shape[:axis]), dim(x.shape[axis]), prod(x.shape[axis + 1:])
        xp, out = self.ptr(x), self.ptr(root)
        inner_v, size_v = inner.value(b, self.n), size.value(b, self.n)
        with for_range(b, 0, outer.value(b, self.n), "o") as o:
            with for_range(b, 0, inner_v, "i") as i:
                start = b.add(b.mul(b.mul(o, size_v), inner_v), i)
                best_p = b.alloca(F32)
                best_i = b.alloca(I64)
                b.store(b.load(gep_f(b, xp, start), typ=F32), best_p)
                b.store(i64(0), best_i)
                with for_range(b, 1, size_v, "a") as a:
                    v = b.load(gep_f(b, xp, b.add(start, b.mul(a, inner_v))), typ=F32)
                    better = b.fcmp_ordered(">", v, b.load(best_p, typ=F32))
                    b.store(b.select(better, v, b.load(best_p, typ=F32)), best_p)
                    b.store(b.select(better, a, b.load(best_i, typ=I64)), best_i)
                b.store(b.trunc(b.load(best_i, typ=I64), I32),
                        gep_f(b, out, b.add(b.mul(o, inner_v), i), "int32"))

    def _emit_layout(self):
        if self.kernel.root.op in ("transpose", "slice", "reverse", "window"):
            self._parallel(self._emit_layout_nest, self.kernel.root.shape)      # one copy nest
        else:
            self._emit_layout_nest()

    def _emit_layout_nest(self):
        b = self.b
        node = self.kernel.root
        out = self.ptr(node)
        if node.op == "transpose":
            x = node.inputs[0]
            src = contiguous_strides(x.shape)
            self._copy(node.shape, Access(self.ptr(x), [src[p] for p in node.attrs["perm"]]),
                       Access(out, contiguous_strides(node.shape)), x.dtype)
        elif node.op == "slice":
            x = node.inputs[0]
            src = contiguous_strides(x.shape)
            base = sum_monos([src[j] * Mono(lo) for j, (lo, hi) in enumerate(node.attrs["bounds"])])
            self._copy(node.shape, Access(self.ptr(x), src, base), Access(out, contiguous_strides(node.shape)), x.dtype)
        elif node.op == "pad":
            x = node.inputs[0]
            dst = contiguous_strides(node.shape)
            zero = ir.Constant(llvm_type(node.dtype), 0)
            dims, (acc,) = collapse([dim(d) for d in node.shape], [Access(out, dst)])
            emit_nest(b, self.n, dims, [acc], lambda offs: b.store(zero, gep_f(b, out, offs[0], node.dtype)))
            base = sum_monos([dst[j] * Mono(lo) for j, (lo, hi) in enumerate(node.attrs["pads"])])
            self._copy(x.shape, Access(self.ptr(x), contiguous_strides(x.shape)), Access(out, dst, base), x.dtype)
        elif node.op == "reverse":
            x, axis = node.inputs[0], node.attrs["axis"]
            src = contiguous_strides(x.shape)
            flipped = [Mono(-st.c, st.k) if j == axis else st for j, st in enumerate(src)]
            self._copy(node.shape, Access(self.ptr(x), flipped, src[axis] * Mono(x.shape[axis] - 1)),
                       Access(out, contiguous_strides(node.shape)), x.dtype)
        elif node.op == "window":
            x = node.inputs[0]
            src = window_strides(contiguous_strides(x.shape), node.attrs, _scale)
            self._copy(node.shape, Access(self.ptr(x), src), Access(out, contiguous_strides(node.shape)), x.dtype)
        elif node.op == "concat":
            dst = contiguous_strides(node.shape)
            axis, start = node.attrs["axis"], 0
            for x in node.inputs:       # (a slice is read in place: Kernel.views)
                if self.placed.get(x.id, (None,))[0] is node:
                    start += x.shape[axis]
                    continue            # written there by its own kernel
                self._copy(x.shape, self._read_access(x, x.shape), Access(out, dst, dst[axis] * Mono(start)), x.dtype)
                start += x.shape[axis]
        else:
            raise NotImplementedError(f"no layout kernel for {node.op!r}")

    def _copy(self, shape, src, dst, dtype):
        b = self.b
        dims, (s, d) = collapse([dim(x) for x in shape], [src, dst])
        ty = llvm_type(dtype)
        self._nest(dims, [s, d], lambda offs: b.store(
            b.load(gep_f(b, s.pointer, offs[0], dtype), typ=ty), gep_f(b, d.pointer, offs[1], dtype)), [1])

    def _emit_matmul(self):
        b = self.b
        node = self.kernel.root
        a, w = node.inputs
        M, N, K, (a_rs, a_cs), (b_rs, b_cs), views = matmul_operands(self.kernel)
        self.scratch_needs.append(4 * gemm.scratch_floats(Poly.of(K), Poly.of(N)))
        members = self.kernel.members
        fused = bool(members) and self._epilogue_collapses(members, node.shape)

        def epilogue(builder, row_start, row_end, extra_args):
            # Runs inside the gemm function: rebind the builder, n and our pointers to its arguments.
            saved = self.b, self.n, self.args
            self.b, self.n, self.args = builder, extra_args[0], list(extra_args[1:])
            self._emit_elementwise_body(members, node.shape, outer_range=(row_start, row_end), keep_last=True)
            self.b, self.n, self.args = saved

        extra = [self.n] + self.args
        gather = gather_operand(self.kernel)
        a_read = None
        if gather is None and N.k == 0 and a_cs.k == 0:
            a_read = gemm.a_read_for(N.c, a_cs.c, self.module)
        gemm_fn = gemm.define_gemm(self.module, f"{self.name}.gemm", epilogue=epilogue if fused else None,
                                   extra_arg_types=[I64] + [PTR] * len(self.args), a_gather=gather, a_read=a_read)
        scratch = self.args[self.buf_index["gemm_scratch"]]
        v = lambda m: m.value(b, self.n)  # noqa: E731
        # each operand: a slice read in place, the window's input (implicit GEMM), or its buffer
        a_ptr, b_ptr = [gep_f(b, self.ptr(view[0]), i64(view[1])) if view is not None else self.ptr(operand)
                        for view, operand in zip(views, (a if gather is None else self.kernel.a_window.inputs[0], w))]
        b.call(gemm_fn, [v(M), v(N), v(K), a_ptr, v(a_rs), v(a_cs), b_ptr, v(b_rs), v(b_cs),
                         self.ptr(node), v(N), ir.Constant(I32, 0), scratch] + extra)
        if members and not fused:
            self._parallel(lambda: self._emit_elementwise_body(members, node.shape), node.shape)

    def _emit_scan(self):
        """The time loop of a scan (ir/scan.py): the body is a program of its own, called per step."""
        b = self.b
        node = self.kernel.root
        m = node.attrs["xs"]
        init, xss = node.inputs[0], node.inputs[1:1 + m]
        body_name = f"{self.name}.body"
        body_size = lower_program(self.module, self.kernel.body, body_name, {})
        body_fn = self.module.globals[body_name]
        body_fn.linkage = "internal"
        count = len(node.inputs)
        pointer_bytes = -(-8 * (count + 1) // 64) * 64
        self.scratch_needs += [body_size.base + pointer_bytes + s for s in body_size.scratch or [Poly()]]
        scratch = self.args[self.buf_index["gemm_scratch"]]
        ins, outs = scratch, b.gep(scratch, [i64(count)], source_etype=PTR)
        ws = byte_offset(b, scratch, i64(pointer_bytes))
        for j, c in enumerate(node.inputs[1 + m:], start=1 + m):
            b.store(self.ptr(c), b.gep(ins, [i64(j)], source_etype=PTR))
        steps = node.shape[0]
        row_bytes = b.mul(self.n, i64(4 * int(init.shape[1])))
        x_bytes = [(prod(x.shape[1:]) * Mono(4)).value(b, self.n) for x in xss]
        out, first = self.ptr(node), self.ptr(init)
        with for_range(b, 0, steps, "t") as i:
            if node.attrs["reverse"]:
                t, before = b.sub(i64(steps - 1), i), b.sub(i64(steps), i)
            else:
                t, before = i, b.sub(i, i64(1))
            prev = b.select(b.icmp_signed("==", i, i64(0)), first, byte_offset(b, out, b.mul(before, row_bytes)))
            b.store(prev, ins)
            for j, (x, size) in enumerate(zip(xss, x_bytes), start=1):
                b.store(byte_offset(b, self.ptr(x), b.mul(t, size)), b.gep(ins, [i64(j)], source_etype=PTR))
            b.store(byte_offset(b, out, b.mul(t, row_bytes)), outs)
            b.call(body_fn, [self.n, ins, outs, ir.Constant(PTR, None), ws])

    def _zero(self, node):
        # serial: LLVM makes it a memset, bandwidth-bound (a pool task would be code to compile for little)
        out = self.ptr(node)
        zero = ir.Constant(llvm_type(node.dtype), 0)
        dims, (acc,) = collapse([dim(d) for d in node.shape], [Access(out, contiguous_strides(node.shape))])
        emit_nest(self.b, self.n, dims, [acc], lambda offs: self.b.store(zero, gep_f(self.b, out, offs[0], node.dtype)))

    def _emit_all_reduce_sum(self):
        node = self.kernel.root
        collective.emit_all_reduce(self.b, self.module, self.ptr(node.inputs[0]), self.ptr(node),
                                   int(node.shape[0]))

    def _emit_window_grad(self):
        """col2im: zero, then add every window element back where it was read (overlaps summed).

        On the pool the accumulation splits a dim whose ranges write disjoint elements (the batch),
        so overlapping windows are still summed by one thread in the serial order."""
        node = self.kernel.root
        self._zero(node)
        self._parallel(lambda: self._window_grad_nest(node), node.inputs[0].shape)

    def _window_grad_nest(self, node):
        b = self.b
        g = node.inputs[0]
        out = self.ptr(node)
        dst = window_strides(contiguous_strides(node.shape), node.attrs, _scale)
        dims, (src_a, dst_a) = collapse([dim(d) for d in g.shape],
                                        [Access(self.ptr(g), contiguous_strides(g.shape)), Access(out, dst)])

        def body(offs):
            p = gep_f(b, out, offs[1], node.dtype)
            v = b.load(gep_f(b, src_a.pointer, offs[0], g.dtype), typ=F32)
            b.store(b.fadd(b.load(p, typ=F32), v, flags=FP_FLAGS), p)
        self._nest(dims, [src_a, dst_a], body, [1])

    def _row_loop(self, indices, rows, width, body):
        """For each index i (flat over `indices`): body(position, row, valid) with row clamped to 0."""
        b = self.b
        count = prod(indices.shape).value(b, self.n)
        with for_range(b, 0, count, "i") as i:
            raw = b.load(gep_f(b, self.ptr(indices), i, "int32"), typ=I32)
            row = b.sext(raw, I64)
            valid = b.and_(b.icmp_signed(">=", row, i64(0)), b.icmp_signed("<", row, i64(rows)))
            body(i, b.select(valid, row, i64(0)), valid)

    def _emit_gather_rows(self):
        b = self.b
        node = self.kernel.root
        table, indices = node.inputs
        width = int(table.shape[1])
        nan = ir.Constant(F32, float("nan"))

        def body(i, row, valid):
            src = gep_f(b, self.ptr(table), b.mul(row, i64(width)))
            dst = gep_f(b, self.ptr(node), b.mul(i, i64(width)))
            with for_range(b, 0, width, "c") as c:
                v = b.load(gep_f(b, src, c), typ=F32)
                b.store(b.select(valid, v, nan), gep_f(b, dst, c))
        self._row_loop(indices, int(table.shape[0]), width, body)

    def _emit_scatter_add_rows(self):
        b = self.b
        node = self.kernel.root
        values, indices = node.inputs
        width = int(node.shape[1])
        self._zero(node)
        zero = ir.Constant(F32, 0.0)

        def body(i, row, valid):
            src = gep_f(b, self.ptr(values), b.mul(i, i64(width)))
            dst = gep_f(b, self.ptr(node), b.mul(row, i64(width)))
            with for_range(b, 0, width, "c") as c:
                p = gep_f(b, dst, c)
                v = b.select(valid, b.load(gep_f(b, src, c), typ=F32), zero)
                b.store(b.fadd(b.load(p, typ=F32), v, flags=FP_FLAGS), p)
        self._row_loop(indices, int(node.shape[0]), width, body)

    def _epilogue_collapses(self, members, shape):
        """True when the epilogue's index space folds into (rows, columns), as the gemm hands it rows."""
        _, accesses = self._operand_accesses(members, shape)
        strides = contiguous_strides(shape)
        accesses += [Access(None, strides), Access(None, strides)]
        dims, _ = collapse([dim(d) for d in shape], accesses, keep_last=True)
        return len(dims) == 2


SHORT_REDUCTION = 32    # a reduced innermost axis at most this long runs outside the rows' loop (rows_inner)


def rows_inner(dims, accesses):
    """For a reduce nest (accesses: input, output) whose innermost dim is reduced and short (a
    softmax over 10 classes): that dim's loop goes outside the next one, so the inner loop runs
    over independent output elements and vectorizes, instead of a chain of dependent adds or max
    per element (the guide MLP's batch-1000 predict: -5%). Each output element then takes its
    values in index order (a longer axis may be summed in vector partial sums: REDUCE_FLAGS)."""
    out = accesses[1].strides
    if len(dims) < 2 or out[-1] != ZERO or out[-2] == ZERO or dims[-1].k != 0 or dims[-1].c > SHORT_REDUCTION:
        return dims, accesses
    swap = lambda seq: list(seq[:-2]) + [seq[-1], seq[-2]]  # noqa: E731
    return swap(dims), [Access(a.pointer, swap(a.strides), a.base) for a in accesses]


def prod_monos(monos):
    total = ONE
    for m in monos:
        total = total * m
    return total


def _scale(stride, k):
    return Mono(int(k)) * stride


def sum_monos(monos):
    total = Mono(0)
    for m in monos:
        assert m.k == 0 or total.c == 0 or m.k == total.k, "mixed batch powers in an offset"
        total = Mono(total.c + m.c, max(total.k, m.k)) if m.c else total
    return total


def _is_scalar_const(node):
    base = base_of(node)
    return base.op == "const" and base.attrs["value"].size == 1
