"""Native executables: a built module's entries called through ctypes, from the in-process JIT
(`jit_executable`) or from a library `kcompile build` wrote (`load_built`).

Both call the internal entries of codegen/module.py with one state buffer (a StatePool) and a
workspace per thread, so any number of threads may share one model: readers run at once, a
call that writes the state runs alone (the pool's lock).
"""
from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from ..codegen.jit import JitModule, jit_target
from ..codegen.manifest import Manifest
from ..codegen.module import build_module
from ..timings import phase
from .executable import Executable
from .state import StatePool

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p)
_LOOP = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_void_p)
# The same entries without argument types, for run_one's bound calls: every argument there is
# already a ctypes object of the exact C type (c_int64, c_void_p), and ctypes converts nothing
# (measurably cheaper per call than the typed prototype).
_UNTYPED_ENTRY = ctypes.CFUNCTYPE(None)
KEEP_WORKSPACE_BYTES = 64 << 20   # a thread's workspace larger than this is freed after the call
BIND_BYTES = 64 << 10             # run_one prebinds a batch whose own input and outputs fit this
BINDINGS_PER_THREAD = 16          # (entry, batch) pairs a thread keeps bound; beyond, it forgets them all


class _Bound:
    """One thread's prepared call of one entry at one batch size (run_one): its own input copy
    and outputs, and the thread's workspace, with the C arguments pointing at them, built once.
    Only the thread that made it uses it (it lives in that thread's threading.local, and is
    dropped whenever that thread's workspace is replaced: _workspace)."""
    __slots__ = ("function", "args", "x", "outputs", "pool_buffer", "pool_arg", "keep")

    def __init__(self, function, n, x, outputs, workspace):
        self.function, self.x, self.outputs = function, x, outputs
        ins = (ctypes.c_void_p * 1)(_address(x))
        outs = (ctypes.c_void_p * max(len(outputs), 1))(*[_address(o) for o in outputs])
        self.pool_buffer = None                 # set (with pool_arg) under the lock on the first call
        self.pool_arg = ctypes.c_void_p(0)
        self.args = (ctypes.c_int64(n), ctypes.c_void_p(ctypes.addressof(ins)),
                     ctypes.c_void_p(ctypes.addressof(outs)), self.pool_arg, ctypes.c_void_p(_address(workspace)))
        self.keep = (ins, outs, workspace)      # the memory the argument pointers point at


class NativeExecutable(Executable):
    """The entries of `manifest`, found by `address(symbol)`, run over `pool`."""

    def __init__(self, manifest, address, pool, owner=None):
        self.manifest, self.pool, self._owner = manifest, pool, owner
        self._functions = {k: _ENTRY(address(e.symbol)) for k, e in manifest.entries.items()}
        self._loops = {k: _LOOP(address(e.loop_symbol)) for k, e in manifest.entries.items() if e.loop_symbol}
        self._local = threading.local()
        self._plans = {}
        self._address = address
        self._allreduce_status = None
        self._pool_cache = (None, 0)   # (pool buffer, its address): one tuple, swapped whole (threads)

    def _workspace(self, nbytes):
        """The address of this thread's 64-byte-aligned workspace of at least nbytes (never shared
        between threads; the array stays referenced by the thread-local until replaced)."""
        local = self._local
        if getattr(local, "size", -1) < nbytes:
            local.workspace = _aligned_bytes(nbytes)
            local.address, local.size = _address(local.workspace), nbytes
            local.bound = {}     # bindings point at the old workspace: bind again on the new one
        return local.address

    def _release_large_workspace(self):
        if getattr(self._local, "size", 0) > KEEP_WORKSPACE_BYTES:
            self._local.workspace, self._local.size = None, -1
            self._local.bound = {}

    def _plan(self, entry, n):
        """(workspace bytes, output shapes and dtypes) of `entry` at batch n, computed once."""
        plan = self._plans.get((entry, n))
        if plan is None:
            info = self.manifest.entries[entry]
            if not 1 <= n <= self.manifest.max_batch:
                raise ValueError(f"A batch of {n} samples is outside what model '{self.manifest.name}' supports "
                                 f"(1 to {self.manifest.max_batch})")
            outs = [(tuple(n if d == -1 else d for d in t.shape), t.dtype) for t in info.outputs]
            if len(self._plans) > 256:   # many distinct batch sizes: keep the memo bounded
                self._plans.clear()
            plan = self._plans[(entry, n)] = (info.workspace(n), outs)
        return plan

    def _lock(self, entry):
        return self.pool.lock.write() if self.manifest.entries[entry].writes_state else self.pool.lock.read()

    def _pool_address(self):
        """The state buffer's address (under the pool's lock: the buffer moves only when the pool
        grows, which happens under its write lock); computed again only when the buffer changed."""
        buffer = self.pool.buffer
        cached = self._pool_cache
        if cached[0] is not buffer:
            cached = self._pool_cache = (buffer, _address(buffer))
        return cached[1]

    def run(self, entry, n, inputs, outputs=None):
        """Run `entry` on a batch of n rows; inputs are contiguous arrays in the entry's input order."""
        ws_bytes, out_specs = self._plan(entry, n)
        if outputs is None:
            outputs = [np.empty(shape, dtype) for shape, dtype in out_specs]
        ins = (ctypes.c_void_p * max(len(inputs), 1))(*[_address(a) for a in inputs])
        outs = (ctypes.c_void_p * max(len(outputs), 1))(*[_address(a) for a in outputs])
        ws = self._workspace(ws_bytes)
        with self._lock(entry):
            self._functions[entry](n, ctypes.addressof(ins), ctypes.addressof(outs), self._pool_address(), ws)
            self._check_allreduce(entry)
        self._release_large_workspace()
        return outputs

    def run_one(self, entry, x):
        """run(entry, n, [x]) for an entry of one input, x of its dtype and shape: the small-call
        path. A batch size this thread has seen before runs on its prebound call (_Bound): x is
        copied into the binding's input, the function is called on arguments converted once, and
        the outputs are returned as copies (each call's arrays belong to the caller). Entries that
        write the state, and large batches, take run()."""
        n = x.shape[0]
        try:
            bound = self._local.bound[entry, n]
        except (AttributeError, KeyError):
            bound = self._bind(entry, n)
        if bound is None:
            return self.run(entry, n, [np.ascontiguousarray(x)])
        bound.x[...] = x
        lock = self.pool.lock
        lock.acquire_read()          # the same lock as run()'s `with`, minus the guard's frames
        try:
            buffer = self.pool.buffer
            if buffer is not bound.pool_buffer:   # first call, or the pool grew (reallocated) since
                bound.pool_arg.value = _address(buffer)
                bound.pool_buffer = buffer
            bound.function(*bound.args)
        finally:
            lock.release_read()
        return [o.copy() for o in bound.outputs]

    def _bind(self, entry, n):
        """This thread's _Bound for (entry, n), or None where run() serves (remembered either way)."""
        ws_bytes, out_specs = self._plan(entry, n)   # raises for a batch size the model cannot take
        info = self.manifest.entries[entry]
        bound = None
        if not info.writes_state and len(info.inputs) == 1 and ws_bytes <= KEEP_WORKSPACE_BYTES:
            spec = info.inputs[0]
            x = np.empty((n,) + tuple(spec.shape[1:]), spec.dtype)
            outputs = [np.empty(shape, dtype) for shape, dtype in out_specs]
            if x.nbytes + sum(o.nbytes for o in outputs) <= BIND_BYTES:
                function = _UNTYPED_ENTRY(ctypes.cast(self._functions[entry], ctypes.c_void_p).value)
                self._workspace(ws_bytes)            # (may replace the workspace: bindings so far are dropped)
                bound = _Bound(function, n, x, outputs, self._local.workspace)
        local = self._local
        bindings = getattr(local, "bound", None)
        if bindings is None or len(bindings) >= BINDINGS_PER_THREAD:
            bindings = local.bound = {}
        bindings[entry, n] = bound
        return bound

    def run_loop(self, entry, batch, arrays):
        """Every batch of `arrays` through `entry` in one native call (entries with a scalar output)."""
        if entry not in self._loops:
            return super().run_loop(entry, batch, arrays)
        rows = arrays[0].shape[0]
        steps = -(-rows // batch)
        per_step = np.empty(steps, np.float32)
        bases = (ctypes.c_void_p * max(len(arrays), 1))(*[_address(a) for a in arrays])
        ws = self._workspace(self._plan(entry, batch)[0])
        pointers = (ctypes.c_void_p * (len(arrays) + 1))()
        with self._lock(entry):
            self._loops[entry](batch, rows, ctypes.addressof(bases), _address(per_step), self._pool_address(), ws,
                               ctypes.addressof(pointers))
            self._check_allreduce(entry)
        self._release_large_workspace()
        return per_step

    def set_allreduce(self, address, context=None):
        """Hand the train step the function that sums its gradient vector over replicas
        (codegen/collective.py: int fn(void *ctx, const float *send, float *recv, int64 count))."""
        symbol = self.manifest.abi.get("set_allreduce")
        if symbol is None:
            raise ValueError(f"Model '{self.manifest.name}' was not compiled for data-parallel training "
                             f"(its train step has no all-reduce)")
        setter = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(self._address(symbol))
        setter(address, context)
        self._allreduce_status = ctypes.CFUNCTYPE(ctypes.c_int)(self._address(self.manifest.abi["allreduce_status"]))

    def _check_allreduce(self, entry):
        if self._allreduce_status is not None and self.manifest.entries[entry].writes_state:
            status = self._allreduce_status()
            if status:
                raise RuntimeError(f"Model '{self.manifest.name}': the gradient all-reduce failed (MPI error "
                                   f"code {status}); the step's update is NaN")

    def close(self):
        """Free the native code and every thread's workspace (a new threading.local drops the
        buffers of all threads at once); the state pool belongs to the caller."""
        self._functions, self._loops = {}, {}
        self._local, self._plans = threading.local(), {}
        owner, self._owner = self._owner, None
        if owner is not None and hasattr(owner, "close"):
            owner.close()


def jit_executable(programs, pool, name="model", target="host", static_batch=None, device=None):
    """Compile `programs` (entry -> KernelProgram) into this process over `pool` (on the thread
    pool when it is available: jit_target), or onto the GPU (runtime/gpu_executable.py).

    device: "cpu", "gpu", or None for kcompile.config.get_device() (set_device, KCOMPILE_DEVICE,
    else the GPU when one is present). Only the host target has a GPU twin: an explicit CPU
    target always compiles for the CPU. A GPU asked for explicitly runs there or raises (no GPU,
    kernels the PTX path cannot lower); the automatic choice falls back to the CPU with a warning
    naming the kernels.
    """
    from .gpu_device import get_device, requested_device
    if target == "host" and (device or get_device()) == "gpu":
        from ..codegen.nvptx import UnsupportedKernels
        from .gpu_device import _check
        explicit = device is not None or requested_device() is not None
        if device is not None:
            _check(device, f"jit_executable(device={device!r})")
        try:
            from .gpu_executable import GpuExecutable
            return GpuExecutable(programs, pool, name=name, static_batch=static_batch)
        except UnsupportedKernels as e:
            if explicit:
                raise
            import warnings
            warnings.warn(f"{e}\nModel '{name}' runs on the CPU instead.", RuntimeWarning, stacklevel=2)
    target = jit_target(target)
    with phase("lowering"):
        module, manifest = build_module(programs, pool.layout(), target, name, static_batch=static_batch,
                                        c_interface=False)
    jit = JitModule(module, target)
    return NativeExecutable(manifest, jit.address, pool, owner=jit)


def load_built(directory, name=None):
    """The library `kcompile build` wrote in `directory`, as an Executable with its own state
    (initialized by NAME_init_state, or from NAME.state when the weights were written to a file)."""
    directory = os.fspath(directory)
    if name is None:
        found = [f[:-len("_manifest.json")] for f in os.listdir(directory) if f.endswith("_manifest.json")]
        if len(found) != 1:
            raise ValueError(f"{directory!r} holds {len(found)} kcompile manifests ({found}); pass name=")
        name = found[0]
    manifest = Manifest.load(os.path.join(directory, f"{name}_manifest.json"))
    lib = ctypes.CDLL(os.path.join(os.path.abspath(directory), f"lib{name}.so"))
    pool = StatePool.from_layout(manifest.slots)
    if pool.buffer.size < manifest.state_size:
        raise ValueError(f"state layout of {name!r} is inconsistent with its size {manifest.state_size}")
    init = lib[manifest.abi["init_state"]]
    init.restype, init.argtypes = ctypes.c_int, [ctypes.c_void_p]
    status = init(_address(pool.buffer))
    if status == 4:   # KC_ERR_NO_WEIGHTS: the weights live beside the library
        path = os.path.join(directory, f"{name}.state")
        with open(path, "rb") as f:
            blob = f.read()
        if len(blob) != manifest.state_size:
            raise ValueError(f"{path}: {len(blob)} bytes, but the state of {name!r} has {manifest.state_size}")
        pool.buffer[:len(blob)] = np.frombuffer(blob, np.uint8)
    elif status != 0:
        raise RuntimeError(f"{name}_init_state failed with status {status}")
    executable = NativeExecutable(manifest, lambda symbol: ctypes.cast(lib[symbol], ctypes.c_void_p).value, pool,
                                  owner=None)
    executable.library = lib
    return executable


def _address(array):
    return array.__array_interface__["data"][0]


def _aligned_bytes(nbytes):
    """A zeroed, 64-byte-aligned uint8 array of nbytes (a workspace)."""
    raw = np.zeros(nbytes + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + nbytes]
