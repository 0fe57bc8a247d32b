"""Process-wide settings of the compiled code.

set_num_threads(n) / get_num_threads(): the threads the in-process JIT's GEMMs use (the thread
pool of runtime/kc_threads.c: the caller and n - 1 persistent workers, at most 8 in all). The
default is KCOMPILE_NUM_THREADS, else the CPUs this process may run on. Results do not depend on
it: each output element is computed by one thread in a fixed order. Without the pool (no C
compiler, or KCOMPILE_THREADS=0) the code is serial and the count is 1.

set_device("cpu" | "gpu" | None) / get_device(): where models compiled from now on run
(runtime/gpu_device.py): set_device, else KCOMPILE_DEVICE=cpu|gpu, else the GPU when the CUDA
driver loads and reports one, else the CPU. Asking for "gpu" without one raises DeviceUnavailable.
"""
from __future__ import annotations

from .codegen.jit import thread_pool
from .runtime.gpu_device import DeviceUnavailable, get_device, set_device

__all__ = ["set_num_threads", "get_num_threads", "set_device", "get_device", "DeviceUnavailable"]


def set_num_threads(n):
    """Use n threads (clamped to 1..8) from now on; returns the count in effect."""
    if isinstance(n, bool) or not isinstance(n, int) and not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads expects an integer, got {n!r}")
    n = int(n.__index__())
    if n < 1:
        raise ValueError(f"set_num_threads expects at least 1 thread, got {n}")
    pool = thread_pool()
    if pool is None:
        return 1
    return pool.kc_set_num_threads(min(n, 1 << 20))


def get_num_threads():
    """The threads the compiled GEMMs use (1 without the thread pool)."""
    pool = thread_pool()
    return 1 if pool is None else pool.kc_get_num_threads()
