"""Which device a compiled model runs on: "cpu" (the in-process JIT) or "gpu" (runtime/cuda.py).

Order of precedence: `kcompile.config.set_device(...)`, then the environment variable
KCOMPILE_DEVICE=cpu|gpu, then the default: the GPU when the CUDA driver loads and reports a
device, else the CPU. Asking for "gpu" where there is none raises `DeviceUnavailable` with the
driver's reason; the automatic choice never raises.
"""
from __future__ import annotations

import os
import threading

DEVICES = ("cpu", "gpu")
_choice = None                 # set_device's value, None: not set
_lock = threading.Lock()


class DeviceUnavailable(RuntimeError):
    """The GPU was asked for (set_device or KCOMPILE_DEVICE) but none can be used."""


_status = None


def gpu_status():
    """(True, description) or (False, why not), probed once per process; never raises."""
    global _status
    if _status is None:
        from .cuda import cuda_available
        _status = cuda_available()
    return _status


def _check(device, where):
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"{where}: expected one of {list(DEVICES)}, got {device!r}")
    device = device.lower()
    if device == "gpu":
        ok, why = gpu_status()
        if not ok:
            raise DeviceUnavailable(f"{where} asks for the GPU, but no GPU can be used: {why}")
    return device


def set_device(device):
    """Run models compiled from now on on `device` ("cpu" or "gpu"; None: back to the default)."""
    global _choice
    with _lock:
        _choice = None if device is None else _check(device, f"set_device({device!r})")
    return get_device()


def requested_device():
    """The explicit choice (set_device, then KCOMPILE_DEVICE), or None for the default."""
    if _choice is not None:
        return _choice
    env = os.environ.get("KCOMPILE_DEVICE", "").strip()
    return env.lower() if env else None


def get_device():
    """The device models compiled now run on: "cpu" or "gpu" (raises if the GPU is asked for and absent)."""
    explicit = requested_device()
    if explicit is not None:
        return _check(explicit, "KCOMPILE_DEVICE" if _choice is None else f"set_device({explicit!r})")
    return "gpu" if gpu_status()[0] else "cpu"
