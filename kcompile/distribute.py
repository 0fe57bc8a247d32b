"""`kcompile.distribute`: the tf.distribute strategy API that Keras code uses around model building.

kcompile runs every model as a single replica on one device for now: `MirroredStrategy` keeps
Keras's interface (`scope()`, `num_replicas_in_sync`) so multi-device scripts run unchanged, but
variables are not mirrored and each batch is processed whole on the one device.
"""
from __future__ import annotations

import contextlib
import threading

_local = threading.local()


class Strategy:
    """The default strategy: one replica on the default device."""

    def __init__(self, devices=None):
        if devices is not None:
            devices = [devices] if isinstance(devices, str) else list(devices)
            if not all(isinstance(d, str) for d in devices):
                raise ValueError(f"{type(self).__name__}: devices must be device name strings such as '/gpu:0'; "
                                 f"got {devices!r}")
        self._devices = tuple(devices) if devices else ("/cpu:0",)

    @property
    def num_replicas_in_sync(self):
        return 1   # a single replica, whatever `devices` lists (see the module docstring)

    @property
    def extended(self):
        return self

    @property
    def worker_devices(self):
        return self._devices[:1]

    @contextlib.contextmanager
    def scope(self):
        """Models, optimizers and metrics created inside belong to this strategy (nesting allowed)."""
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    def experimental_distribute_dataset(self, dataset, options=None):
        return dataset   # one replica consumes the whole batches

    def distribute_datasets_from_function(self, dataset_fn, options=None):
        return dataset_fn(None)

    def __repr__(self):
        return f"<{type(self).__name__} devices={list(self._devices)} num_replicas_in_sync=1>"


class MirroredStrategy(Strategy):
    """Keras's data-parallel strategy; runs as a single replica on one device in kcompile for now."""

    def __init__(self, devices=None, cross_device_ops=None):
        super().__init__(devices)
        self.cross_device_ops = cross_device_ops


_DEFAULT = Strategy()


def get_strategy():
    """The strategy whose scope() is active, or the default single-replica strategy."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else _DEFAULT


def has_strategy():
    return bool(getattr(_local, "stack", None))


__all__ = ["Strategy", "MirroredStrategy", "get_strategy", "has_strategy"]
