"""Compile kernel programs into one native module and call its entry points through ctypes."""
from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir

from ..codegen.jit import JitModule
from ..codegen.lower import lower_program
from ..ir.graph import concrete_shape

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p)


class NativeModule:
    """One LLVM module holding every entry point of a compiled model (predict, train, eval...)."""

    def __init__(self, programs, pool, name="model"):
        module = ir.Module(name=name)
        self.entries = {}
        for entry_name, program in programs.items():
            scratch = lower_program(module, program, entry_name, pool.offsets)
            self.entries[entry_name] = (program, scratch)
        self.jit = JitModule(module)
        self.pool = pool
        self._functions = {k: _ENTRY(self.jit.address(k)) for k in self.entries}
        self._workspace = np.zeros(0, dtype=np.uint8)

    def workspace(self, nbytes):
        if self._workspace.size < nbytes + 64:
            raw = np.zeros(2 * nbytes + 128, dtype=np.uint8)
            start = (-raw.ctypes.data) % 64
            self._raw_ws = raw
            self._workspace = raw[start:]
        return self._workspace.ctypes.data

    def run(self, entry, n, inputs, outputs=None):
        """Run `entry` on a batch of n rows; inputs are contiguous arrays in graph-input order.

        Returns the output arrays (allocated here unless given).
        """
        program, scratch = self.entries[entry]
        if outputs is None:
            outputs = [np.empty(concrete_shape(node.shape, n), dtype=node.dtype)
                       for node in program.graph.outputs.values()]
        ins = (ctypes.c_void_p * max(len(inputs), 1))(*[a.ctypes.data for a in inputs])
        outs = (ctypes.c_void_p * max(len(outputs), 1))(*[a.ctypes.data for a in outputs])
        ws = self.workspace(program.memory.workspace_bytes(n) + scratch(n))
        self._functions[entry](n, ctypes.addressof(ins), ctypes.addressof(outs), self.pool.address, ws)
        return outputs

    def close(self):
        self._functions = {}
        if self.jit is not None:
            self.jit.close()
            self.jit = None
