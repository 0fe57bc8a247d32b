"""Data-parallel training over MPI (kcompile.distribute.MultiWorkerMirroredStrategy).

Runs tests/distributed/worker.py under `mpiexec -n 2` and `-n 4` (oversubscribed on this machine,
fine for correctness) and alone: every rank must end with bit-identical weights, equal to the
single process trained on the same global batches (dropout included: random numbers follow the
global sample), the same History and evaluate() figures, and only rank 0 writes callback files.
A worker killed mid-epoch stops the others. In-process tests cover the pieces without MPI: the
all-reduce hook of compiled code, the row offset of the random numbers, the strategy API.
"""
import ctypes
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers
from kcompile.ir import builder as irb
from kcompile.ir.graph import BATCH, Graph
from kcompile.ir.interpreter import evaluate
from kcompile.ir.passes.pipeline import lower_to_kernels
from kcompile.models.compiled import CompiledModel
from kcompile.runtime.native import jit_executable
from kcompile.runtime.state import StatePool

from model_suites import guide_mlp, sync_bn

WORKER = pathlib.Path(__file__).parent / "distributed" / "worker.py"
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401
    HAVE_MPI = MPIEXEC is not None
except ImportError:
    HAVE_MPI = False
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="mpi4py and mpiexec are not installed (pip install -e '.[mpi]')")
TIMEOUT_S = 600


def _run(out, jobs, ranks=None):
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(WORKER), str(out), *jobs]
    if ranks is not None:
        command = [MPIEXEC, "-n", str(ranks)] + command
    env = dict(os.environ, KCOMPILE_NUM_THREADS="1")    # 2 cores: one thread per rank
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)


# every model and mode in one launch per rank count (start-up is most of a small run)
JOBS = {1: ["guide_mlp:fit", "guide_mlp:dataset", "vgg_like:fit", "lstm_model:fit", "two_io:fit", "sync_bn:fit"],
        2: ["guide_mlp:fit", "guide_mlp:dataset", "vgg_like:fit", "lstm_model:fit", "two_io:fit", "sync_bn:fit"],
        4: ["guide_mlp:fit"]}


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """ranks -> the folder of that launch's results (run on first use)."""
    folders = {}

    def get(ranks):
        if ranks not in folders:
            out = tmp_path_factory.mktemp(f"ranks{ranks}")
            done = _run(out, JOBS[ranks], None if ranks == 1 else ranks)
            assert done.returncode == 0, done.stderr[-3000:]
            folders[ranks] = out
        return folders[ranks]
    return get


@needs_mpi
@pytest.mark.parametrize("ranks,job", [(2, job) for job in JOBS[2]] + [(4, job) for job in JOBS[4]])
def test_replicas_agree_with_one_process(launched, ranks, job):
    folder = launched(ranks) / job.replace(":", "_")
    single = np.load(launched(1) / job.replace(":", "_") / "result_0.npz")
    results = [np.load(folder / f"result_{r}.npz") for r in range(ranks)]
    assert int(results[0]["replicas"]) == ranks
    weights = [k for k in single.files if k.startswith("arr_")]
    for r in results[1:]:                       # every replica holds exactly rank 0's weights
        for k in weights + ["history", "evaluated"]:
            assert np.array_equal(r[k], results[0][k]), (k, r)
    for k in weights:                           # ... which are one process's, up to summation order
        np.testing.assert_allclose(results[0][k], single[k], rtol=0, atol=1e-4, err_msg=k)
    assert list(results[0]["history_keys"]) == list(single["history_keys"])
    np.testing.assert_allclose(results[0]["history"], single["history"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0]["evaluated"], single["evaluated"], rtol=1e-5, atol=1e-6)
    written = sorted(p.name for p in folder.iterdir() if not p.name.startswith("result_"))
    assert written == ["ckpt_0.weights.h5", "log_0.csv"]      # only the chief wrote files
    assert len((folder / "log_0.csv").read_text().strip().splitlines()) == 1 + 3


@needs_mpi
def test_a_killed_worker_stops_the_others(tmp_path):
    started = time.monotonic()
    done = _run(tmp_path, ["guide_mlp:kill"], 2)
    assert done.returncode != 0
    assert time.monotonic() - started < 120
    text = done.stdout + done.stderr
    lost = re.search(r"rank 1 = pid (\d+)", text)        # the strategy names each rank's process
    assert lost, text[-2000:]
    assert lost.group(1) in text.replace(lost.group(0), "")  # ... and the launcher reports that one lost
    assert not (tmp_path / "guide_mlp_kill" / "result_0.npz").exists()


def test_the_watchdog_names_the_lost_worker():
    """A worker on this host that dies while the others wait in a collective ends them with a
    message naming it (launchers that do not stop the job themselves leave that to kcompile)."""
    code = ("import socket, subprocess, sys, threading, time\n"
            "from kcompile.runtime.mpi import Communicator\n"
            "peer = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "comm = Communicator.__new__(Communicator)\n"
            "comm.rank, comm.size, comm._watching, comm._watchdog = 0, 2, 0, None\n"
            "comm.peers = [(socket.gethostname(), 0), (socket.gethostname(), peer.pid)]\n"
            "threading.Timer(0.5, peer.kill).start()\n"
            "with comm.watch():\n"
            "    peer.wait(); time.sleep(30)\n"
            "print('not stopped')\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 70, done.stdout + done.stderr
    assert time.monotonic() - started < 20
    assert re.search(r"worker rank 1 \(pid \d+ on .*\) stopped during data-parallel training; stopping rank 0",
                     done.stderr), done.stderr


# ---------------------------------------------------------------- in process, without MPI

class _Replicas:
    """A communicator of `copies` identical replicas: the compiled all-reduce multiplies by copies."""

    def __init__(self, copies, status=0):
        self.rank, self.size = 0, copies
        self._fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_int64)(self._reduce)
        self.status, self.calls = status, 0

    def _reduce(self, ctx, send, recv, count):
        self.calls += 1
        src = np.ctypeslib.as_array(ctypes.cast(send, ctypes.POINTER(ctypes.c_float)), (count,))
        dst = np.ctypeslib.as_array(ctypes.cast(recv, ctypes.POINTER(ctypes.c_float)), (count,))
        dst[:] = src * self.size
        return self.status

    def native_allreduce(self):
        return ctypes.cast(self._fn, ctypes.c_void_p).value, None


def _train_through(communicator, build=guide_mlp, steps=3):
    keras.utils.set_random_seed(5)
    model = build()
    cm = model._compiled_model
    replicated = CompiledModel(model, cm.input_specs, cm.spec, communicator=communicator)
    features, classes = model.inputs[0].shape[-1], model.outputs[0].shape[-1]
    variant = replicated.variant([(None, classes)])
    rng = np.random.default_rng(1)
    for _ in range(steps):
        x = rng.standard_normal((16, features)).astype(np.float32)
        y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, 16)]
        replicated.sync_state()
        variant.run("train", 16, [x, y, np.ones(16, np.float32)])
    return model.get_weights()


# sync_bn: the gradients, the mean and variance forward, and their adjoints backward
@pytest.mark.parametrize("build,reductions", [(guide_mlp, 1), (sync_bn, 5)])
def test_compiled_step_calls_the_allreduce_it_was_handed(build, reductions):
    """Identical replicas sum to copies x (rows x gradient) over copies x rows: one process's step
    (and, for synchronized BatchNormalization, one process's batch statistics)."""
    replicas = _Replicas(3)
    with_hook = _train_through(replicas, build)
    assert replicas.calls == 3 * reductions        # all-reduces inside the native call, every step
    alone = _train_through(None, build)
    for a, b in zip(with_hook, alone):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_failed_allreduce_raises_and_poisons_the_update():
    with pytest.raises(RuntimeError, match="all-reduce failed .*MPI error code 5"):
        _train_through(_Replicas(2, status=5), steps=1)


@pytest.mark.parametrize("offset", [0, 3, 7])
def test_random_numbers_follow_the_global_row(offset):
    """Rows [offset, offset + n) of a replica draw what those rows draw in the whole batch."""
    step, row_offset = irb.const(4, "int32"), irb.const(offset, "int32")
    x = irb.input("x", (BATCH, 5), "float32")
    shard = irb.add(x, irb.random_uniform((BATCH, 5), 11, step, row_offset))
    whole = irb.add(x, irb.random_uniform((BATCH, 5), 11, step))
    zeros = np.zeros((12, 5), np.float32)
    shard_graph, whole_graph = Graph([x], {"y": shard}, [], {}), Graph([x], {"y": whole}, [], {})
    want = evaluate(whole_graph, {"x": zeros}, {})[0]["y"][offset:offset + 4]
    np.testing.assert_array_equal(evaluate(shard_graph, {"x": zeros[:4]}, {})[0]["y"], want)
    compiled = jit_executable({"predict": lower_to_kernels(shard_graph)}, StatePool(), name="shard")
    np.testing.assert_array_equal(compiled.run("predict", 4, [zeros[:4]])[0], want)


def test_one_process_strategy_is_a_single_replica():
    strategy = keras.distribute.MultiWorkerMirroredStrategy()
    assert strategy.num_replicas_in_sync == 1 and strategy.cluster_resolver.task_id == 0
    with strategy.scope():
        model = keras.Sequential([layers.Dense(2, input_shape=(3,))])
        model.compile(loss="mse", optimizer="sgd")
    history = model.fit(np.ones((8, 3), np.float32), np.ones((8, 2), np.float32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    dp = keras.distribution.DataParallel()
    keras.distribution.set_distribution(dp)
    try:
        assert keras.distribution.distribution() is dp
        assert keras.distribute.get_strategy() is dp.strategy
    finally:
        keras.distribution.set_distribution(None)
    with pytest.raises(ValueError, match="ModelParallel is not supported"):
        keras.distribution.ModelParallel()


def test_launched_without_mpi4py_names_the_extra():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import kcompile\n"
            "kcompile.distribute.MultiWorkerMirroredStrategy()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PMI_SIZE="2", PMI_RANK="0"))
    assert done.returncode != 0
    assert "pip install 'kcompile[mpi]'" in done.stderr


def test_a_built_library_trains_data_parallel_through_its_callback(tmp_path):
    """kcompile build --data-parallel: NAME_set_allreduce hands the C train step its all-reduce."""
    keras.utils.set_random_seed(5)
    model = guide_mlp()
    keras.build(model, tmp_path, name="dp", data_parallel=True)
    header = (tmp_path / "dp.h").read_text()
    assert "int dp_set_allreduce(kc_allreduce_fn fn, void *ctx);" in header
    assert "int dp_allreduce_status(void);" in header
    library = keras.load_built(tmp_path)
    replicas = _Replicas(4)
    library.set_allreduce(*replicas.native_allreduce())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 20)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
    library.run("train", 16, [x, y, np.ones(16, np.float32)])
    model.train_on_batch(x, y)            # 4 identical replicas train as one process does
    assert replicas.calls == 1
    for v in model.weights:
        np.testing.assert_allclose(library.pool.view(v.slot.name), v.numpy(), rtol=1e-6, atol=1e-7)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is not None:        # the declarations compile and link against the object
        (tmp_path / "main.c").write_text('#include "dp.h"\n'
                                         "static int sum(void *c, const float *s, float *r, int64_t n) {\n"
                                         "  for (int64_t i = 0; i < n; i++) r[i] = s[i]; return 0; }\n"
                                         "int main(void) { return dp_set_allreduce(sum, 0) | dp_allreduce_status(); }\n")
        subprocess.run([cc, "-o", str(tmp_path / "main"), str(tmp_path / "main.c"), str(tmp_path / "dp.o"), "-lm"],
                       check=True, cwd=tmp_path)
        assert subprocess.run([str(tmp_path / "main")]).returncode == 0
    with pytest.raises(ValueError, match="needs the train entry"):
        keras.build(model, tmp_path / "p", entries=["predict"], data_parallel=True)


def test_workers_other_than_rank_0_restore_backups_but_write_no_files(tmp_path):
    """CallbackList(chief=False): the file-writing hooks are skipped, BackupAndRestore still restores."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile(loss="mse", optimizer="sgd")
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[backup])          # the chief's backup
    saved = model.get_weights()
    fresh = keras.Sequential([layers.Dense(2, input_shape=(3,))])
    fresh.compile(loss="mse", optimizer="sgd")
    writers = [keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.weights.h5"), save_weights_only=True),
               keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
               keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))]
    callbacks = keras.callbacks.CallbackList(writers, model=fresh, chief=False)
    callbacks.on_train_begin()
    for a, b in zip(fresh.get_weights(), saved):
        np.testing.assert_array_equal(a, b)                             # restored from rank 0's backup
    callbacks.on_epoch_begin(2)
    callbacks.on_epoch_end(2, {"loss": 1.0})
    callbacks.on_train_end({"loss": 1.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup"]      # nothing written ...
    assert (tmp_path / "backup" / "training_state.npz").exists()        # ... nor deleted
