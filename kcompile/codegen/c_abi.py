"""The checked C entry points of a built module (the ABI of runtime/kcompile.h).

Each wrapper validates its arguments — NULL pointers, the batch size, alignment — and returns a
kc_status instead of letting the kernels touch bad memory; then it arranges the pointer arrays
the internal entry takes (module.py) on the stack and calls it. Nothing is allocated: a missing
sample_weight is replaced by ones written at the front of the caller's workspace.
"""
from __future__ import annotations

import pathlib
import re

from llvmlite import ir

from .llvm_util import F32, I32, I64, I8, PTR, byte_offset, for_range, gep_f, i64
from .sizes import Poly, WorkspaceSize

RUNTIME_DIR = pathlib.Path(__file__).resolve().parents[2] / "runtime"
DTYPE_CODES = {"float32": 1, "int32": 2}
MAX_RANK = 8
STATE_ALIGN = 64
ONES_BYTES = Poly([64, 4])   # >= 4 * batch rounded up to 64: where a missing sample_weight's ones go


def header_path():
    path = RUNTIME_DIR / "kcompile.h"
    if not path.exists():
        raise FileNotFoundError(f"kcompile's C runtime header is missing: {path} (kcompile build needs the "
                                f"source tree's runtime/ folder; install kcompile from a clone)")
    return path


def status_codes():
    """{symbol: (value, message)} from the KC_STATUS_LIST of runtime/kcompile.h (its one definition)."""
    text = header_path().read_text()
    return {m[0]: (int(m[1]), m[2]) for m in re.findall(r'X\((KC_\w+), (\d+), "([^"]*)"\)', text)}


class _Checks:
    """Early returns of a status code from the wrapper being built."""

    def __init__(self, fn, builder, codes):
        self.fn, self.b, self.codes = fn, builder, codes

    def fail_if(self, condition, status):
        b = self.b
        bad = self.fn.append_basic_block("bad")
        good = self.fn.append_basic_block("ok")
        b.cbranch(condition, bad, good)
        b.position_at_end(bad)
        b.ret(ir.Constant(I32, self.codes[status][0]))
        b.position_at_end(good)

    def is_null(self, pointer):
        return self.b.icmp_unsigned("==", pointer, ir.Constant(PTR, None))

    def misaligned(self, pointer, alignment):
        low = self.b.and_(self.b.ptrtoint(pointer, I64), i64(alignment - 1))
        return self.b.icmp_unsigned("!=", low, i64(0))

    def pointer(self, pointer, alignment):
        self.fail_if(self.is_null(pointer), "KC_ERR_NULL_POINTER")
        if alignment > 1:
            self.fail_if(self.misaligned(pointer, alignment), "KC_ERR_MISALIGNED")

    def pointers(self, array, count):
        """Check a caller's array of `count` tensor pointers; returns the loaded pointers."""
        self.fail_if(self.is_null(array), "KC_ERR_NULL_POINTER")
        loaded = []
        for i in range(count):
            p = self.b.load(self.b.gep(array, [i64(i)], source_etype=PTR), typ=PTR)
            self.pointer(p, 4)
            loaded.append(p)
        return loaded

    def batch(self, n, manifest):
        b = self.b
        bad = b.or_(b.icmp_signed("<", n, i64(1)), b.icmp_signed(">", n, i64(manifest.max_batch)))
        if manifest.static_batch is not None:
            bad = b.or_(bad, b.icmp_signed("!=", n, i64(manifest.static_batch)))
        self.fail_if(bad, "KC_ERR_BAD_BATCH")


def define_entries(module, manifest, initial_state):
    """Define the C ABI of `manifest`'s entries in `module`; returns the WorkspaceSize they need."""
    codes = status_codes()
    name = manifest.name
    sizes = []
    predict = manifest.entries.get("predict")
    if predict is not None and not predict.writes_state:
        _define_predict(module, name, predict, manifest, codes)
        _tensor_table(module, f"{name}_inputs", predict.role("x"))
        _tensor_table(module, f"{name}_outputs", predict.outputs)
        sizes.append(predict.workspace)
        manifest.abi["predict"] = f"{name}_predict"
    for entry_name, c_name, mutates in (("train", "train_step", True), ("evaluate", "evaluate", False)):
        entry = manifest.entries.get(entry_name)
        if entry is None or entry.writes_state != mutates or len(entry.outputs) != 1:
            continue
        _define_step(module, f"{name}_{c_name}", entry, manifest, codes)
        sizes.append(entry.workspace.plus(ONES_BYTES))
        manifest.abi[entry_name] = f"{name}_{c_name}"
        if f"{name}_targets" not in module.globals:
            _tensor_table(module, f"{name}_targets", entry.role("y"))
    _define_init_state(module, name, manifest, initial_state, codes)
    manifest.abi["init_state"] = f"{name}_init_state"
    return WorkspaceSize.largest(sizes) if sizes else WorkspaceSize(Poly([64]))


def _define_predict(module, name, entry, manifest, codes):
    fn = ir.Function(module, ir.FunctionType(I32, [PTR, I64, PTR, PTR, PTR]), f"{name}_predict")
    state, n, inputs, outputs, ws = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    check = _Checks(fn, b, codes)
    check.pointer(state, STATE_ALIGN)
    check.pointer(ws, STATE_ALIGN)
    check.batch(n, manifest)
    check.pointers(inputs, len(entry.inputs))
    check.pointers(outputs, len(entry.outputs))
    b.call(module.globals[entry.symbol], [n, inputs, outputs, state, ws])
    b.ret(ir.Constant(I32, 0))


def _define_step(module, c_name, entry, manifest, codes):
    """int c_name(state, batch, x[], y[], sample_weight, loss, ws) — train_step's signature;
    evaluate's has no sample_weight."""
    with_weights = c_name.endswith("train_step")
    args = [PTR, I64, PTR, PTR] + ([PTR] if with_weights else []) + [PTR, PTR]
    fn = ir.Function(module, ir.FunctionType(I32, args), c_name)
    if with_weights:
        state, n, x, y, sample_weight, loss, ws = fn.args
    else:
        state, n, x, y, loss, ws = fn.args
        sample_weight = ir.Constant(PTR, None)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    check = _Checks(fn, b, codes)
    check.pointer(state, STATE_ALIGN)
    check.pointer(ws, STATE_ALIGN)
    check.pointer(loss, 4)
    check.batch(n, manifest)
    xs = check.pointers(x, len(entry.role("x")))
    ys = check.pointers(y, len(entry.role("y")))
    if with_weights:
        check.fail_if(check.misaligned(sample_weight, 4), "KC_ERR_MISALIGNED")
    # equal weights when none are given: ones at the front of the workspace
    ones_bytes = b.and_(b.add(b.mul(n, i64(4)), i64(63)), i64(-64))
    kernels_ws = byte_offset(b, ws, ones_bytes)
    given = b.icmp_unsigned("!=", sample_weight, ir.Constant(PTR, None))
    with b.if_then(b.not_(given)):
        with for_range(b, 0, n, "w") as i:
            b.store(ir.Constant(F32, 1.0), gep_f(b, ws, i))
    weights = b.select(given, sample_weight, ws)
    pointers = b.alloca(PTR, size=len(entry.inputs))
    queues = {"x": list(xs), "y": list(ys)}
    for i, t in enumerate(entry.inputs):
        value = weights if t.role == "sample_weight" else queues[t.role].pop(0)
        b.store(value, b.gep(pointers, [i64(i)], source_etype=PTR))
    outs = b.alloca(PTR, size=1)
    b.store(loss, outs)
    b.call(module.globals[entry.symbol], [n, pointers, outs, state, kernels_ws])
    b.ret(ir.Constant(I32, 0))


def _define_init_state(module, name, manifest, initial_state, codes):
    fn = ir.Function(module, ir.FunctionType(I32, [PTR]), f"{name}_init_state")
    state = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    check = _Checks(fn, b, codes)
    check.pointer(state, STATE_ALIGN)
    size = manifest.state_size
    if initial_state is None:
        memset = module.declare_intrinsic("llvm.memset", [PTR, I64])
        b.call(memset, [state, ir.Constant(I8, 0), i64(size), ir.Constant(ir.IntType(1), 0)])
        b.ret(ir.Constant(I32, codes["KC_ERR_NO_WEIGHTS"][0]))
        return
    if len(initial_state) != size:
        raise ValueError(f"initial state of {len(initial_state)} bytes for a state of {size} bytes")
    blob_type = ir.ArrayType(I8, size)
    blob = ir.GlobalVariable(module, blob_type, f"{name}.initial_state")
    blob.initializer = ir.Constant(blob_type, bytearray(initial_state))
    blob.global_constant, blob.linkage, blob.align = True, "private", STATE_ALIGN
    memcpy = module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
    b.call(memcpy, [state, blob, i64(size), ir.Constant(ir.IntType(1), 0)])
    b.ret(ir.Constant(I32, 0))


def _tensor_table(module, symbol, tensors):
    """const kc_tensor_info symbol[] = {{name, dtype, rank, dims[8]}, ...} (kcompile.h's layout)."""
    info = ir.LiteralStructType([PTR, I32, I32, ir.ArrayType(I64, MAX_RANK)])
    rows = []
    for k, t in enumerate(tensors):
        if len(t.shape) > MAX_RANK:
            raise ValueError(f"tensor {t.name!r} has rank {len(t.shape)}; the C ABI describes at most {MAX_RANK}")
        text = bytearray(t.name.encode() + b"\0")
        name_type = ir.ArrayType(I8, len(text))
        name = ir.GlobalVariable(module, name_type, f"{symbol}.name{k}")
        name.initializer = ir.Constant(name_type, text)
        name.global_constant, name.linkage = True, "private"
        dims = list(t.shape) + [0] * (MAX_RANK - len(t.shape))
        rows.append(ir.Constant(info, [name, ir.Constant(I32, DTYPE_CODES[t.dtype]), ir.Constant(I32, len(t.shape)),
                                       ir.Constant(ir.ArrayType(I64, MAX_RANK), dims)]))
    table_type = ir.ArrayType(info, max(len(rows), 1))
    table = ir.GlobalVariable(module, table_type, symbol)
    table.initializer = ir.Constant(table_type, rows or [ir.Constant(info, None)])
    table.global_constant = True
    return table
