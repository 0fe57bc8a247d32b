"""A minimal CUDA driver API binding through ctypes (libcuda.so.1), and a runner for PTX programs.

Only what the GPU path needs: initialise, take device 0's primary context, load PTX, allocate and
copy memory, launch, synchronise. Every failing call raises `CudaError` naming the call (and the
kernel, for launches) with the driver's error name and string. Importing this module never
touches the driver; `cuda_available()` reports (False, reason) where there is no driver or GPU.

Symbols: `cuda.h` maps several functions to versioned ABIs with #define (cuMemAlloc ->
cuMemAlloc_v2, ...); the unversioned exports are the legacy 32-bit-size ABI, so the `_v2` names
are bound here.

`GpuProgram(ptx, launches, program)` runs the launches of one kernel program (codegen/nvptx.py)
on device buffers: inputs copied in, the schedule launched in order on the default stream,
outputs (and state updates) copied back.

`GpuExecutable(programs, pool)` (runtime/gpu_executable.py) is the Executable protocol over every
entry of a model (predict, train, evaluate) with the state resident on the device.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from ..codegen.nvptx import buffer_address, flat_launches, walk_launches, workspace_bytes
from ..ir.graph import concrete_shape

CUDA_SUCCESS = 0
CU_JIT_INFO_LOG_BUFFER = 3
CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4
CU_JIT_ERROR_LOG_BUFFER = 5
CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76

_c = ctypes
_P = _c.c_void_p
# name -> (symbol, argtypes)
_SIGNATURES = {
    "cuInit": ("cuInit", [_c.c_uint]),
    "cuDriverGetVersion": ("cuDriverGetVersion", [_c.POINTER(_c.c_int)]),
    "cuDeviceGetCount": ("cuDeviceGetCount", [_c.POINTER(_c.c_int)]),
    "cuDeviceGet": ("cuDeviceGet", [_c.POINTER(_c.c_int), _c.c_int]),
    "cuDeviceGetName": ("cuDeviceGetName", [_c.c_char_p, _c.c_int, _c.c_int]),
    "cuDeviceGetAttribute": ("cuDeviceGetAttribute", [_c.POINTER(_c.c_int), _c.c_int, _c.c_int]),
    "cuDevicePrimaryCtxRetain": ("cuDevicePrimaryCtxRetain", [_c.POINTER(_P), _c.c_int]),
    "cuDevicePrimaryCtxRelease": ("cuDevicePrimaryCtxRelease_v2", [_c.c_int]),
    "cuCtxSetCurrent": ("cuCtxSetCurrent", [_P]),
    "cuCtxSynchronize": ("cuCtxSynchronize", []),
    "cuModuleLoadDataEx": ("cuModuleLoadDataEx", [_c.POINTER(_P), _c.c_char_p, _c.c_uint,
                                                  _c.POINTER(_c.c_int), _c.POINTER(_P)]),
    "cuModuleGetFunction": ("cuModuleGetFunction", [_c.POINTER(_P), _P, _c.c_char_p]),
    "cuModuleUnload": ("cuModuleUnload", [_P]),
    "cuMemAlloc": ("cuMemAlloc_v2", [_c.POINTER(_c.c_uint64), _c.c_size_t]),
    "cuMemFree": ("cuMemFree_v2", [_c.c_uint64]),
    "cuMemcpyHtoD": ("cuMemcpyHtoD_v2", [_c.c_uint64, _P, _c.c_size_t]),
    "cuMemcpyDtoH": ("cuMemcpyDtoH_v2", [_P, _c.c_uint64, _c.c_size_t]),
    "cuMemsetD8": ("cuMemsetD8_v2", [_c.c_uint64, _c.c_ubyte, _c.c_size_t]),
    "cuLaunchKernel": ("cuLaunchKernel", [_P, _c.c_uint, _c.c_uint, _c.c_uint, _c.c_uint, _c.c_uint, _c.c_uint,
                                          _c.c_uint, _P, _c.POINTER(_P), _c.POINTER(_P)]),
    "cuGetErrorName": ("cuGetErrorName", [_c.c_int, _c.POINTER(_c.c_char_p)]),
    "cuGetErrorString": ("cuGetErrorString", [_c.c_int, _c.POINTER(_c.c_char_p)]),
}


class CudaError(RuntimeError):
    """A CUDA driver call failed: `.call`, `.code`, `.name` (e.g. CUDA_ERROR_INVALID_PTX), `.kernel`."""

    def __init__(self, call, code, name, text, kernel=None, log=""):
        self.call, self.code, self.name, self.kernel = call, code, name, kernel
        where = f" (kernel {kernel!r})" if kernel else ""
        msg = f"{call}{where} failed: {name} ({code}): {text}"
        if log:
            msg += "\n" + log
        super().__init__(msg)


class Driver:
    """The bound driver functions; `call(name, *args, kernel=None)` checks the result."""

    def __init__(self, path="libcuda.so.1"):
        self.lib = ctypes.CDLL(path)
        self.fns = {}
        for name, (symbol, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, symbol)
            fn.argtypes, fn.restype = argtypes, _c.c_int
            self.fns[name] = fn

    def error_name(self, code):
        name, text = _c.c_char_p(), _c.c_char_p()
        n = self.fns["cuGetErrorName"](code, _c.byref(name))
        s = self.fns["cuGetErrorString"](code, _c.byref(text))
        return (name.value.decode() if n == 0 and name.value else f"CUDA error {code}",
                text.value.decode() if s == 0 and text.value else "unknown error")

    def call(self, name, *args, kernel=None, log=""):
        code = self.fns[name](*args)
        if code != CUDA_SUCCESS:
            raise CudaError(name, code, *self.error_name(code), kernel=kernel, log=log)


_driver = None
_driver_lock = threading.Lock()


def driver():
    """The process-wide Driver, initialised (cuInit) once; raises OSError or CudaError."""
    global _driver
    with _driver_lock:
        if _driver is None:
            d = Driver()
            d.call("cuInit", 0)
            _driver = d
        return _driver


def cuda_available():
    """(True, 'device 0: NAME (sm_XY), driver V') or (False, why not) — never raises."""
    try:
        d = driver()
    except OSError as e:
        return False, f"no CUDA driver: cannot load libcuda.so.1 ({e})"
    except AttributeError as e:
        return False, f"the CUDA driver library lacks a needed symbol ({e})"
    except CudaError as e:
        return False, f"CUDA driver present but unusable: {e}"
    try:
        count = _c.c_int()
        d.call("cuDeviceGetCount", _c.byref(count))
        if count.value < 1:
            return False, "CUDA driver present but no GPU found"
        dev, name = _c.c_int(), _c.create_string_buffer(256)
        d.call("cuDeviceGet", _c.byref(dev), 0)
        d.call("cuDeviceGetName", name, 256, dev)
        version = _c.c_int()
        d.call("cuDriverGetVersion", _c.byref(version))
        return True, f"device 0: {name.value.decode()} ({device_arch(0)}), driver {version.value}"
    except CudaError as e:
        return False, str(e)


def device_arch(ordinal=0):
    """'sm_XY' of a device (its compute capability)."""
    d = driver()
    dev = _c.c_int()
    d.call("cuDeviceGet", _c.byref(dev), ordinal)
    major, minor = _c.c_int(), _c.c_int()
    d.call("cuDeviceGetAttribute", _c.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
    d.call("cuDeviceGetAttribute", _c.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
    return f"sm_{major.value}{minor.value}"


class Context:
    """Device `ordinal`'s primary context, made current on this thread; release() when done."""

    def __init__(self, ordinal=0, drv=None):
        self.d = drv or driver()
        self.dev = _c.c_int()
        self.d.call("cuDeviceGet", _c.byref(self.dev), ordinal)
        self.handle = _P()
        self.d.call("cuDevicePrimaryCtxRetain", _c.byref(self.handle), self.dev)
        self.d.call("cuCtxSetCurrent", self.handle)
        self.modules, self.allocations = [], set()

    def make_current(self):
        self.d.call("cuCtxSetCurrent", self.handle)

    def arch(self):
        """'sm_XY' of this context's device."""
        major, minor = _c.c_int(), _c.c_int()
        self.d.call("cuDeviceGetAttribute", _c.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.dev)
        self.d.call("cuDeviceGetAttribute", _c.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.dev)
        return f"sm_{major.value}{minor.value}"

    def unload(self, module):
        if module in self.modules:
            self.modules.remove(module)
            self.d.call("cuModuleUnload", module)

    def load_ptx(self, ptx):
        """Load a PTX module (JIT-compiled by the driver); JIT errors come back in the exception."""
        image = (ptx if isinstance(ptx, bytes) else ptx.encode()) + b"\0"
        log = _c.create_string_buffer(16384)
        options = (_c.c_int * 2)(CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
        values = (_P * 2)(_c.cast(log, _P), _P(len(log)))
        handle = _P()
        code = self.d.fns["cuModuleLoadDataEx"](_c.byref(handle), image, 2, options, values)
        if code != CUDA_SUCCESS:
            raise CudaError("cuModuleLoadDataEx", code, *self.d.error_name(code),
                            log=log.value.decode(errors="replace"))
        self.modules.append(handle)
        return handle

    def function(self, module, name):
        fn = _P()
        self.d.call("cuModuleGetFunction", _c.byref(fn), module, name.encode(), kernel=name)
        return fn

    def alloc(self, nbytes):
        ptr = _c.c_uint64()
        self.d.call("cuMemAlloc", _c.byref(ptr), max(int(nbytes), 4))
        self.allocations.add(ptr.value)
        return ptr.value

    def free(self, ptr):
        self.allocations.discard(ptr)
        self.d.call("cuMemFree", ptr)

    def to_device(self, array, ptr=None):
        array = np.ascontiguousarray(array)
        ptr = self.alloc(array.nbytes) if ptr is None else ptr
        if array.nbytes:
            self.d.call("cuMemcpyHtoD", ptr, array.ctypes.data, array.nbytes)
        return ptr

    def from_device(self, ptr, shape, dtype):
        out = np.empty(shape, dtype)
        if out.nbytes:
            self.d.call("cuMemcpyDtoH", out.ctypes.data, ptr, out.nbytes)
        return out

    def launch(self, fn, grid, block, args, kernel="?", shared=0):
        """Launch fn on a 1-D grid; args: ctypes scalars (c_int64, c_uint64, c_float, ...) in order."""
        params = (_P * max(len(args), 1))(*[_P(_c.addressof(a)) for a in args])
        self.d.call("cuLaunchKernel", fn, grid, 1, 1, block, 1, 1, shared, None, params, None, kernel=kernel)

    def synchronize(self, kernel=None):
        self.d.call("cuCtxSynchronize", kernel=kernel)

    def release(self):
        for ptr in list(self.allocations):
            self.free(ptr)
        for m in self.modules:
            self.d.call("cuModuleUnload", m)
        self.modules = []
        if self.handle:
            self.d.call("cuDevicePrimaryCtxRelease", self.dev)
            self.handle = _P()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class GpuProgram:
    """One kernel program's PTX and launches (codegen/nvptx.emit_ptx) loaded on a device."""

    def __init__(self, ptx, launches, program, context=None):
        self.ctx = context or Context()
        self.own_context = context is None
        self.program, self.launches = program, launches
        self.module = self.ctx.load_ptx(ptx)
        self.functions = {l.symbol: self.ctx.function(self.module, l.symbol) for l in flat_launches(launches)}

    def run(self, n, inputs, state=None, synchronize_each=False):
        """Outputs (in graph order) and state updates {slot: array} for a batch of n rows.

        inputs: arrays in graph-input order; state: slot name -> array (read, never modified).
        synchronize_each: synchronise after every launch so a fault names its kernel.
        """
        graph, plan = self.program.graph, self.program.memory
        ctx, temp = self.ctx, []
        try:
            ins = [ctx.to_device(np.ascontiguousarray(a, dtype=node.dtype)) for a, node in zip(inputs, graph.inputs)]
            temp += ins
            out_nodes = list(graph.outputs.values())
            outs = [ctx.alloc(4 * int(np.prod(concrete_shape(o.shape, n), dtype=np.int64))) for o in out_nodes]
            temp += outs
            needed = {buf.slot for launch in self.launches for buf in launch.buffers if buf.kind == "state"}
            missing = sorted(needed - set(state or {}))
            if missing:
                raise ValueError(f"GpuProgram.run: the program reads state slots {missing}; pass them in `state`")
            slots = {}
            for name, value in (state or {}).items():
                slots[name] = ctx.to_device(np.ascontiguousarray(value))
                temp.append(slots[name])
            workspace = ctx.alloc(workspace_bytes(plan, self.launches, n))
            temp.append(workspace)
            _launch_all(ctx, self.functions, self.launches, plan, n, ins, outs, slots, workspace, synchronize_each)
            outputs = [ctx.from_device(p, concrete_shape(o.shape, n), o.dtype) for p, o in zip(outs, out_nodes)]
            updates = {name: ctx.from_device(slots[name], np.shape(state[name]), np.asarray(state[name]).dtype)
                       for name in graph.updates if name in slots}
            return outputs, updates
        finally:
            for p in temp:
                ctx.free(p)

    def close(self):
        if self.own_context and self.ctx is not None:
            self.ctx.release()
        self.ctx = None


def _launch_all(ctx, functions, launches, plan, n, ins, outs, slots, workspace, synchronize_each=False):
    """Issue `launches` in order for batch n (empty grids skipped, scans walked step by step:
    codegen/nvptx_schedule.py), then synchronise."""
    def issue(launch, n, count, addresses):
        args = [_c.c_int64(n), _c.c_int64(count)] + [_c.c_uint64(a) for a in addresses]
        ctx.launch(functions[launch.symbol], launch.grid(n), launch.block, args, kernel=launch.symbol)
        if synchronize_each:
            ctx.synchronize(kernel=launch.symbol)
    walk_launches(launches, plan, n, ins, outs, slots, workspace, issue, buffer_address)
    ctx.synchronize()

