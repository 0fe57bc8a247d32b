"""Compile kernel programs into one native module and call its entry points through ctypes."""
from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir

from ..codegen.jit import JitModule
from ..codegen.lower import lower_program, lower_step_loop
from ..ir.graph import concrete_shape

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p)
_LOOP = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_void_p)


class NativeModule:
    """One LLVM module holding every entry point of a compiled model (predict, train, eval...)."""

    def __init__(self, programs, pool, name="model"):
        module = ir.Module(name="kcompile")   # not the model name: identical IR must hash identically
        self.entries = {}
        for entry_name, program in programs.items():
            scratch = lower_program(module, program, entry_name, pool.offsets)
            self.entries[entry_name] = (program, scratch)
            if all(node.shape == () for node in program.graph.outputs.values()):
                lower_step_loop(module, program, entry_name)
        self.jit = JitModule(module)
        self.pool = pool
        self._functions = {k: _ENTRY(self.jit.address(k)) for k in self.entries}
        self._loops = {k: _LOOP(self.jit.address(k + "_loop")) for k, (p, _) in self.entries.items()
                       if all(node.shape == () for node in p.graph.outputs.values())}
        self._workspace = np.zeros(0, dtype=np.uint8)
        self._plans = {}

    def workspace(self, nbytes):
        if self._workspace.size < nbytes + 64:
            raw = np.zeros(2 * nbytes + 128, dtype=np.uint8)
            start = (-raw.ctypes.data) % 64
            self._raw_ws = raw
            self._workspace = raw[start:]
        return _address(self._workspace)

    def _call_plan(self, entry, n):
        """(workspace bytes, output shapes and dtypes) for `entry` at batch n, computed once."""
        key = (entry, n)
        plan = self._plans.get(key)
        if plan is None:
            program, scratch = self.entries[entry]
            outs = [(concrete_shape(node.shape, n), node.dtype) for node in program.graph.outputs.values()]
            plan = self._plans[key] = (program.memory.workspace_bytes(n) + scratch(n), outs)
        return plan

    def run(self, entry, n, inputs, outputs=None):
        """Run `entry` on a batch of n rows; inputs are contiguous arrays in graph-input order.

        Returns the output arrays (allocated here unless given).
        """
        ws_bytes, out_specs = self._call_plan(entry, n)
        if outputs is None:
            outputs = [np.empty(shape, dtype) for shape, dtype in out_specs]
        ins = (ctypes.c_void_p * max(len(inputs), 1))(*[_address(a) for a in inputs])
        outs = (ctypes.c_void_p * max(len(outputs), 1))(*[_address(a) for a in outputs])
        ws = self.workspace(ws_bytes)
        self._functions[entry](n, ctypes.addressof(ins), ctypes.addressof(outs), _address(self.pool.buffer), ws)
        return outputs

    def has_loop(self, entry):
        return entry in self._loops

    def run_loop(self, entry, batch, arrays):
        """Run `entry` over consecutive batches of the full `arrays`; returns each step's output."""
        program, scratch = self.entries[entry]
        rows = arrays[0].shape[0]
        steps = -(-rows // batch)
        per_step = np.empty(steps, np.float32)
        bases = (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])
        ws = self.workspace(program.memory.workspace_bytes(batch) + scratch(batch))
        pointers = (ctypes.c_void_p * (len(arrays) + 1))()
        self._loops[entry](batch, rows, ctypes.addressof(bases), per_step.ctypes.data, self.pool.address, ws,
                           ctypes.addressof(pointers))
        return per_step

    def close(self):
        self._functions = {}
        self._loops = {}
        if self.jit is not None:
            self.jit.close()
            self.jit = None


def _address(array):
    return array.__array_interface__["data"][0]
