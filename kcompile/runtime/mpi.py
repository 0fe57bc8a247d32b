"""MPI, the engine of data-parallel training: the process group, host collectives, and the
all-reduce function compiled train steps call.

`world()` is this job's communicator (mpi4py's COMM_WORLD), or None when the process runs alone.
The compiled step calls `int allreduce(void *ctx, const float *send, float *recv, int64 count)`
(codegen/collective.py); `native_allreduce()` JIT-compiles that function as a few lines of LLVM IR
calling `MPI_Allreduce` with this MPI's own handle values (MPICH's are ints, Open MPI's pointers:
they are read from mpi4py, never written as constants), in buckets of at most 2^28 floats
(MPI counts are C ints).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import socket
import sys
import threading
import time

import numpy as np

BUCKET = 1 << 28
WATCHDOG_PERIOD_S = 0.1
LOST_WORKER_EXIT = 70     # the exit status of a worker stopped because another one died
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE")
_lock = threading.Lock()
_world = []          # [Communicator or None] once decided


def launched_with_several_ranks():
    """True when an MPI launcher started this process as one of several ranks."""
    for var in _LAUNCHER_SIZE_VARS:
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            pass
    return False


def world():
    """The job's Communicator, or None for a process running alone (one rank, or no mpi4py outside
    an MPI launch). Under `mpiexec -n N` without mpi4py: ImportError naming the `kcompile[mpi]` extra."""
    with _lock:
        if not _world:
            try:
                from mpi4py import MPI
            except ImportError:
                if launched_with_several_ranks():
                    raise ImportError("kcompile: this process was started by an MPI launcher with several ranks, "
                                      "but mpi4py is not installed: pip install 'kcompile[mpi]' (mpi4py + mpich)") \
                        from None
                _world.append(None)
            else:
                comm = MPI.COMM_WORLD
                _world.append(Communicator(MPI, comm) if comm.Get_size() > 1 else None)
        return _world[0]


class Communicator:
    """One MPI communicator: rank, size, host collectives on numpy arrays, the native all-reduce."""

    def __init__(self, MPI, comm):
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._native = None
        # (host, pid) of every rank: a watchdog notices a worker on this host that died (below)
        self.peers = comm.allgather((socket.gethostname(), os.getpid()))
        self._watching = 0
        self._watchdog = None

    @contextlib.contextmanager
    def watch(self):
        """While inside, a worker of this host that dies ends this one too, with a message naming
        it (instead of a collective waiting for it forever; workers on other hosts are the
        launcher's to stop). Native steps release the GIL, so the watchdog thread runs meanwhile."""
        with _lock:
            self._watching += 1
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch_peers, name="kcompile-mpi-watchdog",
                                                  daemon=True)
                self._watchdog.start()
        try:
            yield
        finally:
            with _lock:
                self._watching -= 1

    def _watch_peers(self):
        here = socket.gethostname()
        local = [(r, pid) for r, (host, pid) in enumerate(self.peers) if host == here and r != self.rank]
        while True:
            time.sleep(WATCHDOG_PERIOD_S)
            if not self._watching:
                continue
            for r, pid in local:
                if not _alive(pid):
                    sys.stderr.write(f"kcompile: worker rank {r} (pid {pid} on {here}) stopped during data-parallel "
                                     f"training; stopping rank {self.rank} too\n")
                    sys.stderr.flush()
                    os._exit(LOST_WORKER_EXIT)

    def allreduce_sum(self, x):
        """The element-wise sum over ranks of a float32/float64/int array (a new array)."""
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        self.comm.Allreduce(x, out, op=self.MPI.SUM)
        return out

    def broadcast_(self, array, root=0):
        """Overwrite `array` (contiguous) on every rank with root's."""
        self.comm.Bcast(array, root=root)
        return array

    def broadcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def barrier(self):
        self.comm.Barrier()

    def native_allreduce(self):
        """(address of the compiled all-reduce function, its context pointer) for NAME_set_allreduce."""
        with _lock:
            if self._native is None:
                self._native = _compile_allreduce(self.MPI, self.comm)
            return self._native.address("kc_mpi_allreduce"), None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a dead process not yet reaped by its launcher is a zombie
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _libmpi_path():
    """The MPI library mpi4py loaded (its symbols are local to mpi4py, so found by path)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if "/libmpi" in path and ".so" in path and "abi" not in os.path.basename(path):
                    return path
    except OSError:
        pass
    found = ctypes.util.find_library("mpi")
    if found is None:
        raise OSError("kcompile: cannot find the MPI library mpi4py uses (libmpi)")
    return found


def _compile_allreduce(MPI, comm):
    from llvmlite import ir
    import llvmlite.binding as llvm
    from ..codegen.jit import JitModule
    from ..codegen.llvm_util import I32, I64, PTR, byte_offset, i64

    lib = ctypes.CDLL(_libmpi_path(), mode=ctypes.RTLD_GLOBAL)
    llvm.add_symbol("MPI_Allreduce", ctypes.cast(lib.MPI_Allreduce, ctypes.c_void_p).value)
    handle = ir.IntType(8 * MPI._sizeof(MPI.Comm))      # MPICH: int handles; Open MPI: pointers
    values = [ir.Constant(handle, MPI._handleof(h)) for h in (MPI.FLOAT, MPI.SUM, comm)]
    module = ir.Module(name="kcompile_mpi")
    mpi_allreduce = ir.Function(module, ir.FunctionType(I32, [PTR, PTR, I32, handle, handle, handle]),
                                "MPI_Allreduce")
    fn = ir.Function(module, ir.FunctionType(I32, [PTR, PTR, PTR, I64]), "kc_mpi_allreduce")
    _, send, recv, count = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    done = fn.append_basic_block("done")
    loop = fn.append_basic_block("bucket")
    start = b.block
    b.branch(loop)
    b.position_at_end(loop)
    offset = b.phi(I64)
    offset.add_incoming(i64(0), start)
    left = b.sub(count, offset)
    n = b.select(b.icmp_signed("<", left, i64(BUCKET)), left, i64(BUCKET))
    at = b.mul(offset, i64(4))
    status = b.call(mpi_allreduce, [byte_offset(b, send, at), byte_offset(b, recv, at), b.trunc(n, I32), *values])
    after = b.add(offset, n)
    offset.add_incoming(after, loop)
    more = b.and_(b.icmp_signed("==", status, ir.Constant(I32, 0)), b.icmp_signed("<", after, count))
    b.cbranch(more, loop, done)
    b.position_at_end(done)
    b.ret(status)
    return JitModule(module)
