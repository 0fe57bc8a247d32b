"""`kcompile.distribution`: Keras 3's distribution API, on the data-parallel engine of
kcompile.distribute (MPI).

    keras.distribution.set_distribution(keras.distribution.DataParallel())

then models built and trained in the script run data-parallel over the ranks of `mpiexec -n N`.
Only data parallelism exists here: `ModelParallel` / layouts raise a clear error.
"""
from __future__ import annotations

from . import distribute


def list_devices(device_type=None):
    """The devices of this job: one CPU per MPI rank (or this process's CPU)."""
    if device_type not in (None, "cpu", "CPU"):
        return []
    from .runtime import mpi
    comm = mpi.world()
    return [f"cpu:{i}" for i in range(1 if comm is None else comm.size)]


def initialize(job_addresses=None, num_processes=None, process_id=None):
    """Keras's multi-process set-up; under MPI the launcher already did it (checked, not re-done)."""
    from .runtime import mpi
    comm = mpi.world()
    size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
    if num_processes is not None and int(num_processes) != size:
        raise ValueError(f"distribution.initialize(num_processes={num_processes}), but this MPI job has {size} ranks")
    if process_id is not None and int(process_id) != rank:
        raise ValueError(f"distribution.initialize(process_id={process_id}), but this process is MPI rank {rank}")


class DataParallel:
    """Replicate the model on every device (every MPI rank) and split each batch over them."""

    def __init__(self, device_mesh=None, devices=None, auto_shard_dataset=True):
        if device_mesh is not None:
            raise ValueError("DataParallel(device_mesh=...): device meshes are not supported by kcompile; "
                             "the ranks of the MPI job are the devices")
        self.devices = list_devices() if devices is None else list(devices)
        self.auto_shard_dataset = auto_shard_dataset
        self.strategy = distribute.MultiWorkerMirroredStrategy()

    def scope(self):
        return self.strategy.scope()


class ModelParallel:
    def __init__(self, *args, **kwargs):
        raise ValueError("kcompile.distribution.ModelParallel is not supported: kcompile distributes by data "
                         "parallelism only (DataParallel)")


_current = []


def set_distribution(value):
    """Make `value` (a DataParallel, or None) the distribution of models built and trained from now on."""
    if value is not None and not isinstance(value, DataParallel):
        raise ValueError(f"set_distribution expects a kcompile.distribution.DataParallel or None, got {value!r}")
    _current[:] = [] if value is None else [value]
    distribute.set_global_strategy(None if value is None else value.strategy)


def distribution():
    """The distribution set with set_distribution, or None."""
    return _current[0] if _current else None


__all__ = ["DataParallel", "ModelParallel", "set_distribution", "distribution", "list_devices", "initialize"]
