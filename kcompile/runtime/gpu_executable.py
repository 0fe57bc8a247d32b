"""`GpuExecutable`: the Executable protocol (runtime/executable.py) over every entry of a model
(predict, train, evaluate, ...) on a CUDA device, through the ctypes binding of runtime/cuda.py.

One PTX module holds every entry's kernels (codegen/nvptx.py); the state (weights, optimizer
slots, BatchNorm statistics, RNG counters, metric sums) lives in one device buffer laid out as the
StatePool, and the kernels of a train step update it in place, as the CPU entries do.

How host and device state are exchanged (`exchange=`):
  "mirror"   (default) the pool stays the truth seen by Python: before a call the state is
             uploaded if the host copy changed since the last exchange (set_weights, loading,
             a callback), and after a call that writes the state (a train step, a whole
             run_loop epoch) it is copied back once. get_weights and saving need nothing more.
  "resident" nothing moves on its own: `sync_to_host()` copies the device state into the pool,
             `load_state()` copies the pool to the device. For callers that say when they read
             the weights (a StatePool read hook would let the model do this by itself).

Buffers for inputs, outputs and scratch come from a small device arena that grows to the largest
batch seen and is reused (no allocation per call). Calls are serialised on the device (one
stream); the pool's read/write lock orders readers and writers as on the CPU. Driver failures
raise runtime.cuda.CudaError naming the call and the kernel.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ..codegen.manifest import EntryInfo, Manifest
from ..codegen.nvptx import ARCHS, _symbol, emit_ptx_programs, flat_launches, nvptx_target, workspace_bytes
from ..codegen.sizes import Poly, WorkspaceSize, max_batch
from ..ir.graph import concrete_shape
from .cuda import Context, _launch_all
from .executable import Executable

EXCHANGES = ("mirror", "resident")


class _Arena:
    """Named device buffers that grow on demand and are reused between calls."""

    def __init__(self, ctx):
        self.ctx, self.buffers = ctx, {}

    def get(self, key, nbytes):
        ptr, size = self.buffers.get(key, (None, -1))
        if size < nbytes:
            if ptr is not None:
                self.ctx.free(ptr)
            size = max(int(nbytes), 2 * size, 256)
            ptr = self.ctx.alloc(size)
            self.buffers[key] = (ptr, size)
        return ptr

    def put(self, key, array):
        ptr = self.get(key, array.nbytes)
        return self.ctx.to_device(array, ptr)

    def free(self):
        for ptr, _ in self.buffers.values():
            self.ctx.free(ptr)
        self.buffers = {}


class GpuExecutable(Executable):
    """The model's entries on a GPU over `pool` (see the module docstring).

    programs: entry name -> KernelProgram; target: an NVPTX arch (sm_80, sm_90); by default the
    device's own when it is one of those, else sm_80 (PTX is forward-compatible).
    synchronize_each: synchronise after every launch, so a fault names its kernel (debugging;
    also turned on by the environment variable KCOMPILE_GPU_SYNC=1).
    """

    def __init__(self, programs, pool, target=None, name="model", context=None, synchronize_each=False,
                 exchange="mirror", static_batch=None):
        if exchange not in EXCHANGES:
            raise ValueError(f"GpuExecutable: exchange must be one of {EXCHANGES}, got {exchange!r}")
        self.ctx = context or Context()
        self.own_context = context is None
        synchronize_each = synchronize_each or os.environ.get("KCOMPILE_GPU_SYNC", "") == "1"
        self.programs, self.pool, self.synchronize_each, self.exchange = programs, pool, synchronize_each, exchange
        self.state = self.module = None
        self._device = threading.RLock()
        self._shadow = None
        self.arena = _Arena(self.ctx)
        try:
            if target is None:
                arch = self.ctx.arch()
                target = arch if arch in ARCHS else "sm_80"
            target = nvptx_target(target)
            self.ptx, self.launches = emit_ptx_programs(programs, target, name)
            self.module = self.ctx.load_ptx(self.ptx)
            self.functions = {l.symbol: self.ctx.function(self.module, l.symbol)
                              for ls in self.launches.values() for l in flat_launches(ls)}
            self.manifest = _manifest(programs, pool, target, name, static_batch)
            self.state = self.ctx.alloc(max(self.manifest.state_size, 4))
            self.load_state()
        except BaseException:
            self.close()
            raise

    # --- state exchange
    def _host_state(self):
        return self.pool.buffer[:self.manifest.state_size]

    def load_state(self):
        """Copy the pool's current state to the device."""
        with self.pool.lock.read(), self._device:
            self.ctx.make_current()
            raw = np.ascontiguousarray(self._host_state())
            self.ctx.to_device(raw, self.state)
            self._shadow = raw.copy()

    def sync_to_host(self):
        """Copy the device state into the pool (what get_weights and saving read)."""
        with self.pool.lock.write(), self._device:
            self._download()

    def _download(self):
        self.ctx.make_current()
        raw = self.ctx.from_device(self.state, (self.manifest.state_size,), np.uint8)
        self._host_state()[...] = raw
        self._shadow = raw

    def _upload_if_changed(self):
        if self.exchange == "mirror" and not np.array_equal(self._host_state(), self._shadow):
            raw = np.ascontiguousarray(self._host_state())
            self.ctx.to_device(raw, self.state)
            self._shadow = raw.copy()

    # --- calls
    def _check(self, entry, n):
        if self.ctx is None:
            raise RuntimeError("GpuExecutable.run after close()")
        if entry not in self.programs:
            raise KeyError(f"model '{self.manifest.name}' has no entry {entry!r} (has {sorted(self.programs)})")
        if not 1 <= n <= self.manifest.max_batch:
            raise ValueError(f"A batch of {n} samples is outside what model '{self.manifest.name}' supports "
                             f"(1 to {self.manifest.max_batch})")

    def _lock(self, entry):
        return self.pool.lock.write() if self.manifest.entries[entry].writes_state else self.pool.lock.read()

    def _step(self, entry, n, inputs, out_ptrs=None):
        """Copy inputs in and launch one call; returns the device output pointers (arena)."""
        program = self.programs[entry]
        graph, plan = program.graph, program.memory
        ins = [self.arena.put(("in", j), np.ascontiguousarray(a, dtype=node.dtype))
               for j, (a, node) in enumerate(zip(inputs, graph.inputs))]
        outs = list(out_ptrs or [])
        for j, o in enumerate(list(graph.outputs.values())[len(outs):], start=len(outs)):
            outs.append(self.arena.get(("out", j), 4 * int(np.prod(concrete_shape(o.shape, n), dtype=np.int64))))
        ws = self.arena.get("workspace", workspace_bytes(plan, self.launches[entry], n))
        slots = {s.name: self.state + s.offset for s in self.manifest.slots}
        _launch_all(self.ctx, self.functions, self.launches[entry], plan, n, ins, outs, slots, ws,
                    self.synchronize_each)
        return outs

    def run(self, entry, n, inputs):
        """The entry's outputs (graph order) for a batch of n rows."""
        self._check(entry, n)
        writes = self.manifest.entries[entry].writes_state
        with self._lock(entry), self._device:
            self.ctx.make_current()
            self._upload_if_changed()
            outs = self._step(entry, n, inputs)
            nodes = list(self.programs[entry].graph.outputs.values())
            result = [self.ctx.from_device(p, concrete_shape(o.shape, n), o.dtype) for p, o in zip(outs, nodes)]
            if writes and self.exchange == "mirror":
                self._download()
        return result

    def run_loop(self, entry, batch, arrays):
        """Every batch of `arrays` through `entry`, the state staying on the device until the end;
        each step's scalar first output is gathered on the device and copied back once."""
        nodes = list(self.programs[entry].graph.outputs.values()) if entry in self.programs else []
        if not nodes or concrete_shape(nodes[0].shape, 1) not in ((), (1,)):
            return super().run_loop(entry, batch, arrays)
        self._check(entry, min(batch, arrays[0].shape[0]))
        rows = arrays[0].shape[0]
        steps = -(-rows // batch)
        with self._lock(entry), self._device:
            self.ctx.make_current()
            self._upload_if_changed()
            per_step = self.arena.get("per_step", 4 * steps)
            for s in range(steps):
                part = [a[s * batch:(s + 1) * batch] for a in arrays]
                self._step(entry, part[0].shape[0], part, out_ptrs=[per_step + 4 * s])
            losses = self.ctx.from_device(per_step, (steps,), nodes[0].dtype).astype(np.float32)
            if self.manifest.entries[entry].writes_state and self.exchange == "mirror":
                self._download()
        return losses

    def close(self):
        if self.ctx is None:
            return
        if self.own_context:
            self.ctx.release()
        else:
            self.arena.free()
            if self.state is not None:
                self.ctx.free(self.state)
            if self.module is not None:
                self.ctx.unload(self.module)
        self.ctx = self.state = self.module = None


def _manifest(programs, pool, target, name, static_batch=None):
    """The Manifest of the GPU entries (the same entries and state layout as the CPU's)."""
    slots, state_size = pool.layout()
    entries = {}
    for entry, program in programs.items():
        workspace = WorkspaceSize(Poly(program.memory.workspace_coefficients))
        info = EntryInfo.of_graph(program.graph, symbol=_symbol(f"{name}__{entry}"), workspace=workspace,
                                  schedule=program.schedule)
        info.loop_symbol = None
        entries[entry] = info
    io = [Poly([0, 4 * t.row_elements()]) if t.shape and t.shape[0] == -1 else Poly([4 * t.row_elements()])
          for e in entries.values() for t in e.inputs + e.outputs]
    limit = max_batch([e.workspace for e in entries.values()] + io)
    return Manifest(name, target.describe(), entries, sorted(slots, key=lambda s: s.offset), state_size, limit,
                    static_batch)
