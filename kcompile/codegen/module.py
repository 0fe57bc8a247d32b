"""`build_module(programs, state, target)`: the one lowering every back end shares.

From the finished kernel programs of a model's entries (predict, train, evaluate, ...) and the
state layout it builds one LLVM module and its manifest:

  NAME__ENTRY(i64 n, ptr inputs[], ptr outputs[], ptr state, ptr ws)   each entry (lower.py)
  NAME__ENTRY_loop(...)                                                whole epochs of a scalar entry
  int64_t NAME_state_size(void), int64_t NAME_workspace_size(int64_t)  the sizes, as in the manifest
  NAME_predict / NAME_train_step / NAME_evaluate / NAME_init_state     the checked C ABI (c_abi.py)

The in-process JIT, `kcompile build` and later targets all call this; they differ only in what
they do with the module (JIT it, or write an object file).
"""
from __future__ import annotations

from llvmlite import ir

from . import c_abi, collective
from .lower import lower_program, lower_step_loop
from .manifest import EntryInfo, Manifest
from .sizes import Poly, WorkspaceSize, emit_size_function, max_batch
from .llvm_util import I64
from .target import get_target


def build_module(programs, state, target="host", name="model", initial_state=None, static_batch=None,
                 c_interface=True):
    """(llvmlite module, Manifest) for `programs` (entry name -> KernelProgram).

    state: (list of manifest.SlotInfo, total bytes) — the layout of the state buffer.
    initial_state: bytes to embed for NAME_init_state (None: the C init entry reports KC_ERR_NO_WEIGHTS).
    c_interface: emit the checked C entry points and tensor tables (the JIT calls the internal
    entries directly and leaves them out, so identical models keep identical IR for the cache).
    The target's executor says how kernels run: "threads" (the in-process JIT with the pool loaded,
    jit.jit_target) lets the GEMMs use the pool; the kernel templates read it from
    `module.kc_executor`. Built libraries get serial targets and link alone.
    """
    target = get_target(target)
    slots, state_size = state
    offsets = {s.name: s.offset for s in slots}
    module = ir.Module(name="kcompile")   # not the model name: identical IR must hash identically
    module.triple = target.triple
    module.kc_executor = target.executor
    module.kc_vector_bits = target.vector_bits      # the GEMM's micro-tiles: 512 -> <16 x float> sums
    entries = {}
    for entry, program in programs.items():
        symbol = f"{name}__{entry}"
        workspace = lower_program(module, program, symbol, offsets, flush_denormals=True)
        entries[entry] = info = EntryInfo.of_graph(program.graph, symbol, workspace, program.schedule)
        if info.loop_symbol:
            lower_step_loop(module, program, symbol)
    limit = max_batch([e.workspace for e in entries.values()] + [_io_bytes(e) for e in entries.values()])
    if static_batch is not None and static_batch > limit:
        raise ValueError(f"Model '{name}': a batch of {static_batch} needs more than the largest supported buffers")
    manifest = Manifest(name, target.describe(), entries, sorted(slots, key=lambda s: s.offset), state_size,
                        limit, static_batch)
    if collective.uses_hook(module):   # a data-parallel train step: its all-reduce function is set at run time
        manifest.abi["set_allreduce"], manifest.abi["allreduce_status"] = \
            collective.define_hook_functions(module, name)
    if c_interface:
        abi_workspace = c_abi.define_entries(module, manifest, initial_state)
    else:
        abi_workspace = WorkspaceSize.largest([e.workspace for e in entries.values()])
    manifest.abi["workspace"] = abi_workspace.to_json()
    fn = ir.Function(module, ir.FunctionType(I64, []), f"{name}_state_size")
    ir.IRBuilder(fn.append_basic_block("entry")).ret(ir.Constant(I64, state_size))
    emit_size_function(module, f"{name}_workspace_size", abi_workspace, limit)
    return module, manifest


def _io_bytes(entry):
    """Bytes of the entry's largest input or output at batch n (the caller's buffers must be addressable too)."""
    polys = [Poly([0, 4 * t.row_elements()]) if t.shape and t.shape[0] == -1 else Poly([4 * t.row_elements()])
             for t in entry.inputs + entry.outputs]
    return WorkspaceSize(Poly(), polys)
