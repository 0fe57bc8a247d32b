"""The all-reduce hook of a module: how compiled code reaches the data-parallel engine.

A module whose train step holds an `all_reduce_sum` kernel keeps, in module-private globals,
one function pointer and its context:

    int allreduce(void *ctx, const float *send, float *recv, int64_t count)   /* 0: success */

set through the exported `NAME_set_allreduce(fn, ctx)` (the runtime hands it an MPI_Allreduce
shim, runtime/mpi.py; a C program hands its own). With no function set the kernel copies the
vector (one replica). A failed reduction fills the result with NaN (so the loss turns NaN and
TerminateOnNaN stops) and is kept for `NAME_allreduce_status()`.
"""
from __future__ import annotations

from llvmlite import ir

from .llvm_util import F32, I32, I64, PTR, for_range, gep_f, i64

ALLREDUCE_FN = ir.FunctionType(I32, [PTR, PTR, PTR, I64])
# llvmlite calls through a pointer only when the value's type names the function type (it prints
# as `ptr` in LLVM's opaque-pointer IR either way)
_ALLREDUCE_PTR = ir.types._TypedPointerType(ALLREDUCE_FN)
_GLOBALS = {"kc.allreduce.fn": PTR, "kc.allreduce.ctx": PTR, "kc.allreduce.status": I32}


def _hook(module, name):
    g = module.globals.get(name)
    if g is None:
        g = ir.GlobalVariable(module, _GLOBALS[name], name)
        g.linkage = "internal"     # one hook per module: two models linked into one program keep theirs
        g.initializer = ir.Constant(_GLOBALS[name], None)
    return g


def uses_hook(module):
    return "kc.allreduce.fn" in module.globals


def define_hook_functions(module, name):
    """Export NAME_set_allreduce(fn, ctx) -> 0 and NAME_allreduce_status() -> the last failure (0: none)."""
    setter = ir.Function(module, ir.FunctionType(I32, [PTR, PTR]), f"{name}_set_allreduce")
    b = ir.IRBuilder(setter.append_basic_block("entry"))
    b.store(setter.args[0], _hook(module, "kc.allreduce.fn"))
    b.store(setter.args[1], _hook(module, "kc.allreduce.ctx"))
    b.store(ir.Constant(I32, 0), _hook(module, "kc.allreduce.status"))
    b.ret(ir.Constant(I32, 0))
    status = ir.Function(module, ir.FunctionType(I32, []), f"{name}_allreduce_status")
    b = ir.IRBuilder(status.append_basic_block("entry"))
    b.ret(b.load(_hook(module, "kc.allreduce.status"), typ=I32))
    return setter.name, status.name


def emit_all_reduce(b, module, src, dst, count):
    """dst[0:count] = the sum over replicas of src[0:count] (float32), through the module's hook."""
    fn = b.load(_hook(module, "kc.allreduce.fn"), typ=_ALLREDUCE_PTR)
    unset = b.icmp_unsigned("==", b.ptrtoint(fn, I64), i64(0))
    with b.if_else(unset) as (alone, together):
        with alone:
            memcpy = module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
            b.call(memcpy, [dst, src, i64(4 * count), ir.Constant(ir.IntType(1), 0)])
        with together:
            ctx = b.load(_hook(module, "kc.allreduce.ctx"), typ=PTR)
            status = b.call(fn, [ctx, src, dst, i64(count)])
            with b.if_then(b.icmp_signed("!=", status, ir.Constant(I32, 0)), likely=False):
                b.store(status, _hook(module, "kc.allreduce.status"))
                nan = ir.Constant(F32, float("nan"))
                with for_range(b, 0, count, "nan") as i:
                    b.store(nan, gep_f(b, dst, i))
