"""Small llvmlite helpers shared by the code generators: types, counted loops, intrinsics."""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

F32 = ir.FloatType()
I32 = ir.IntType(32)
I64 = ir.IntType(64)
I8 = ir.IntType(8)
PTR = ir.PointerType()  # opaque pointer (LLVM 15+)
VOID = ir.VoidType()
FP_FLAGS = ("contract",)
REDUCE_FLAGS = ("reassoc", "contract")


def llvm_type(dtype):
    return {"float32": F32, "int32": I32}[dtype]


def i64(v):
    return ir.Constant(I64, int(v))


@contextmanager
def for_range(builder, start, stop, name="i"):
    """`for i in range(start, stop)` with an i64 phi; yields i. Empty ranges run zero times."""
    start = start if isinstance(start, ir.Value) else i64(start)
    stop = stop if isinstance(stop, ir.Value) else i64(stop)
    pre = builder.block
    head = builder.append_basic_block(f"{name}.head")
    body = builder.append_basic_block(f"{name}.body")
    done = builder.append_basic_block(f"{name}.done")
    builder.branch(head)
    builder.position_at_end(head)
    idx = builder.phi(I64, name=name)
    idx.add_incoming(start, pre)
    builder.cbranch(builder.icmp_signed("<", idx, stop), body, done)
    builder.position_at_end(body)
    yield idx
    nxt = builder.add(idx, i64(1), name=f"{name}.next", flags=("nsw",))
    idx.add_incoming(nxt, builder.block)
    builder.branch(head)
    builder.position_at_end(done)


def intrinsic(module, name, ret, args):
    """Declare (once) an intrinsic or external function by its exact LLVM name."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def gep_f(builder, ptr, index, dtype="float32"):
    return builder.gep(ptr, [index], inbounds=True, source_etype=llvm_type(dtype))


def byte_offset(builder, ptr, offset):
    return builder.gep(ptr, [offset], inbounds=True, source_etype=I8)
