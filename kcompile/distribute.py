"""`kcompile.distribute`: the tf.distribute strategy API that Keras code uses around model building.

`MultiWorkerMirroredStrategy` is data-parallel training over MPI (runtime/mpi.py): run the
script under `mpiexec -n N python train.py`; every rank builds the same model in `scope()`,
`fit` splits each global batch over the ranks, and the compiled train step all-reduces the
gradients before the update, so every rank holds the same weights. With one rank (or no MPI
launcher) it is the single-replica strategy. `MirroredStrategy` (several devices of one machine)
runs as a single replica on one device: variables are not mirrored and each batch is processed
whole.
"""
from __future__ import annotations

import contextlib
import sys
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

    communicator = None   # the MPI communicator of a data-parallel strategy with several ranks

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


class _ClusterResolver:
    """What `strategy.cluster_resolver` tells a script: its task in the job."""

    def __init__(self, rank, size):
        self.task_type, self.task_id, self.num_workers = "worker", rank, size

    def __repr__(self):
        return f"<ClusterResolver task_type='worker' task_id={self.task_id} num_workers={self.num_workers}>"


class MultiWorkerMirroredStrategy(Strategy):
    """Synchronous data-parallel training over MPI, one replica per rank (`mpiexec -n N`).

    `fit`'s batch_size is the global batch: rank r trains on its share of every batch, the train
    step all-reduces the gradients (inside the compiled step), metrics and losses in the logs are
    those of the global batch, and only rank 0 prints progress and writes callback files.
    `cluster_resolver` and `communication_options` are accepted for TF compatibility: the MPI
    launcher, not a TF_CONFIG, defines the cluster.
    """

    def __init__(self, cluster_resolver=None, communication_options=None):
        super().__init__(None)
        from .runtime import mpi
        self.communicator = mpi.world()
        rank, size = (0, 1) if self.communicator is None else (self.communicator.rank, self.communicator.size)
        self.cluster_resolver = _ClusterResolver(rank, size)
        if rank == 0 and size > 1:   # which process is which rank: launchers report a lost worker by pid
            workers = ", ".join(f"rank {r} = pid {pid} on {host}" for r, (host, pid) in
                                enumerate(self.communicator.peers))
            print(f"kcompile: MultiWorkerMirroredStrategy with {size} workers: {workers}", file=sys.stderr,
                  flush=True)
        self.communication_options = communication_options

    @property
    def num_replicas_in_sync(self):
        return 1 if self.communicator is None else self.communicator.size

    @property
    def worker_devices(self):
        return (f"/job:worker/replica:0/task:{self.cluster_resolver.task_id}/device:CPU:0",)

    def __repr__(self):
        return (f"<MultiWorkerMirroredStrategy task_id={self.cluster_resolver.task_id} "
                f"num_replicas_in_sync={self.num_replicas_in_sync}>")


_DEFAULT = Strategy()
_global = []     # the strategy of keras.distribution.set_distribution, if any


def get_strategy():
    """The strategy whose scope() is active, else the one set with kcompile.distribution.set_distribution,
    else the default single-replica strategy."""
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    return _global[-1] if _global else _DEFAULT


def has_strategy():
    return bool(getattr(_local, "stack", None)) or bool(_global)


def set_global_strategy(strategy):
    _global[:] = [] if strategy is None else [strategy]


__all__ = ["Strategy", "MirroredStrategy", "MultiWorkerMirroredStrategy", "get_strategy", "has_strategy"]
