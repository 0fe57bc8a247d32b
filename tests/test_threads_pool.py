"""The thread pool of the in-process JIT (runtime/kc_threads.c, issue #11).

GEMM row panels run on persistent threads; each C element is computed by one thread with the
serial code, so predictions and training are bit-identical for any thread count. Concurrent
callers fall back to serial execution in their own scratch; without the pool (no C compiler,
KCOMPILE_THREADS=0) the code is serial and still works. Built libraries (AOT) stay serial.
"""
import ctypes
import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import run_in_threads
from llvmlite import ir

import kcompile as keras
from kcompile import config, layers
from kcompile.codegen import gemm, jit
from kcompile.codegen.llvm_util import F32, I64, PTR, for_range, gep_f

pytestmark = pytest.mark.skipif(jit.thread_pool() is None, reason="no C compiler: the thread pool is unavailable")

SIG = ctypes.CFUNCTYPE(None, *([ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] * 2 +
                               [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p,
                                ctypes.c_int64, ctypes.c_void_p]))


@pytest.fixture
def threads():
    """Set the thread count inside a test; restored afterwards."""
    before = config.get_num_threads()
    yield config.set_num_threads
    config.set_num_threads(before)


def test_set_num_threads_round_trips_and_clamps(threads):
    assert threads(2) == 2 and config.get_num_threads() == 2
    assert threads(1) == 1 and config.get_num_threads() == 1
    assert threads(1000) == gemm.KC_MAX_WORKERS == config.get_num_threads()
    with pytest.raises(ValueError):
        config.set_num_threads(0)
    with pytest.raises(TypeError):
        config.set_num_threads(1.5)
    assert jit.jit_target().executor == "threads"


def test_default_thread_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("KCOMPILE_NUM_THREADS", "3")
    assert jit.default_num_threads() == 3
    monkeypatch.delenv("KCOMPILE_NUM_THREADS")
    assert jit.default_num_threads() == len(os.sched_getaffinity(0))


# --- the gemm template on the pool ------------------------------------------------------------

_KERNEL = {}


def _threaded_gemm():
    """An exported threaded gemm whose epilogue doubles each finished row panel of C (N columns)."""
    if "f" not in _KERNEL:
        m = ir.Module()
        m.kc_executor = "threads"

        def epilogue(b, r0, r1, extra):
            n_cols, c = extra
            with for_range(b, r0, r1, "er") as r:
                with for_range(b, 0, n_cols, "ec") as j:
                    p = gep_f(b, c, b.add(b.mul(r, n_cols), j))
                    b.store(b.fmul(b.load(p, typ=F32), ir.Constant(F32, 2.0)), p)
        gemm.define_gemm(m, "g", epilogue=epilogue, extra_arg_types=[I64, PTR], exported=True)
        assert "kc_parallel_for" in str(m) and "kc_worker_scratch" in str(m)
        module = jit.JitModule(m)
        _KERNEL["jit"], _KERNEL["f"] = module, SIG(module.address("g"))
    return _KERNEL["f"]


def _gemm(m, n, k, seed=0, scratch=None):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    c = np.full((m, n), np.nan, np.float32)
    if scratch is None:
        scratch = np.zeros(gemm.scratch_floats(k, n) + 16, np.float32)
    _threaded_gemm()(m, n, k, a.ctypes.data, k, 1, w.ctypes.data, n, 1, c.ctypes.data, n, 0,
                     scratch.ctypes.data, n, c.ctypes.data)
    return c, 2 * (a.astype(np.float64) @ w.astype(np.float64))


@pytest.mark.parametrize("m,n,k", [(1000, 70, 300), (300, 49, 513), (145, 16, 2000), (20, 20, 20), (6, 5, 4)])
def test_threaded_gemm_is_bit_identical_for_every_thread_count(threads, m, n, k):
    results = []
    for count in (1, 2, 3, 8):
        threads(count)
        got, want = _gemm(m, n, k, seed=m + n + k)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
        results.append(got)
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])


def test_concurrent_gemm_callers_fall_back_to_serial_in_their_own_scratch(threads):
    threads(2)
    serial = {s: _gemm(600, 64, 300, seed=s)[0] for s in range(4)}

    def caller(s):
        scratch = np.zeros(gemm.scratch_floats(300, 64) + 16, np.float32)
        for _ in range(15):
            got, _ = _gemm(600, 64, 300, seed=s, scratch=scratch)
            np.testing.assert_array_equal(got, serial[s])
    run_in_threads(4, [lambda s=s: caller(s) for s in range(4)])


# --- whole models -----------------------------------------------------------------------------

def _dense_model():
    keras.set_random_seed(5)
    model = keras.Sequential([layers.Dense(512, activation="relu", input_shape=(256,)),
                              layers.Dense(512, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
    return model


def _conv_model():
    keras.set_random_seed(6)
    model = keras.Sequential([keras.Input((20, 20, 3)), layers.Conv2D(16, (3, 3), activation="relu"),
                              layers.Conv2D(16, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
                              layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _predict_and_train(make, x, y, steps=5):
    model = make()
    out = [model.predict_on_batch(x)]
    for _ in range(steps):
        out.append(np.asarray(model.train_on_batch(x, y)))
    return out + model.get_weights() + [model.predict_on_batch(x)]


@pytest.mark.parametrize("make,shape", [(_dense_model, (300, 256)), (_conv_model, (24, 20, 20, 3))],
                         ids=["dense", "conv"])
def test_models_are_bit_identical_with_one_and_two_threads(threads, make, shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, shape[0])]
    threads(1)
    one = _predict_and_train(make, x, y)
    threads(2)
    two = _predict_and_train(make, x, y)
    assert np.isfinite(one[0]).all()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_python_threads_predicting_on_one_model_get_the_serial_result(threads):
    model = _dense_model()
    rng = np.random.default_rng(1)
    inputs = [rng.random((n, 256), dtype=np.float32) for n in (300, 150, 1, 600)]
    threads(1)
    want = [model.predict_on_batch(x) for x in inputs]
    threads(2)

    def reader(k):
        for rep in range(12):
            i = (k + rep) % len(inputs)
            np.testing.assert_array_equal(model.predict_on_batch(inputs[i]), want[i], err_msg=f"thread {k}, call {rep}")
    run_in_threads(4, [lambda k=k: reader(k) for k in range(4)])


def test_kcompile_threads_0_compiles_serial_code_with_the_same_results(threads, monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.random((300, 256), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 300)]
    threads(2)
    threaded = _predict_and_train(_dense_model, x, y, steps=2)
    monkeypatch.setenv("KCOMPILE_THREADS", "0")
    assert jit.thread_pool() is None and jit.jit_target().executor == "serial"
    serial = _predict_and_train(_dense_model, x, y, steps=2)
    for a, b in zip(threaded, serial):
        np.testing.assert_array_equal(a, b)


def test_without_a_c_compiler_models_run_serially(tmp_path):
    script = textwrap.dedent("""
        import warnings
        import numpy as np
        import kcompile as keras
        from kcompile import config, layers
        from kcompile.codegen import jit
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert jit.thread_pool() is None
        assert any("thread pool is unavailable" in str(w.message) for w in caught), caught
        assert jit.jit_target().executor == "serial" and config.get_num_threads() == 1
        assert config.set_num_threads(4) == 1
        model = keras.Sequential([layers.Dense(300, activation="relu", input_shape=(200,)), layers.Dense(3)])
        model.compile(optimizer="sgd", loss="mse")
        x = np.ones((400, 200), np.float32)
        model.train_on_batch(x, np.zeros((400, 3), np.float32))
        assert np.isfinite(model.predict_on_batch(x)).all()
        print("ok")
    """)
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), KCOMPILE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("KCOMPILE_THREADS", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_a_built_library_stays_serial(tmp_path):
    keras.set_random_seed(0)
    model = keras.Sequential([layers.Dense(512, activation="relu", input_shape=(256,)), layers.Dense(10)])
    model.compile(optimizer="sgd", loss="mse")
    manifest = keras.build(model, tmp_path, name="m", entries=["predict"])
    assert manifest.target["executor"] == "serial"
    obj = (tmp_path / "m.o").read_bytes()
    assert b"kc_parallel_for" not in obj and b"kc_worker_scratch" not in obj


def test_the_pool_library_is_cached_verified_and_rebuilt_when_damaged(tmp_path):
    script = ("from kcompile.codegen import jit; from kcompile import config; "
              "assert jit.thread_pool() is not None; config.set_num_threads(2); "
              "assert config.get_num_threads() == 2; print('ok')")
    env = dict(os.environ, KCOMPILE_CACHE_DIR=str(tmp_path))
    env.pop("KCOMPILE_THREADS", None)

    def run():
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    run()
    (library,) = [p for p in tmp_path.iterdir() if p.suffix == ".so"]
    built = library.stat().st_mtime_ns
    run()
    assert library.stat().st_mtime_ns == built            # the second process reused it
    library.write_bytes(library.read_bytes()[:1000])      # damaged: rebuilt, never loaded
    run()
    digest = library.with_name(library.name + ".sha256").read_text()
    assert digest == hashlib.sha256(library.read_bytes()).hexdigest()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


POOL_STRESS_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
typedef void (*kc_task)(void *ctx, int64_t begin, int64_t end, int64_t worker);
void kc_parallel_for(kc_task task, void *ctx, int64_t count);
int kc_set_num_threads(int n);
static void task(void *ctx, int64_t b, int64_t e, int64_t w) {
    int *a = ctx;
    (void)w;
    for (int64_t i = b; i < e; i++) __atomic_add_fetch(&a[i], 1, __ATOMIC_RELAXED);
    if ((b * 7 + e) % 5 == 0) { volatile int spin = 0; for (int k = 0; k < 2000; k++) spin += k; }
}
static void *caller(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    int a[300];
    for (int it = 0; it < 3000; it++) {
        int count = 2 + rand_r(&seed) % 290;
        for (int i = 0; i < count; i++) a[i] = 0;
        kc_parallel_for(task, a, count);
        for (int i = 0; i < count; i++)
            if (a[i] != 1) { printf("index %d of %d ran %d times\n", i, count, a[i]); exit(1); }
    }
    return NULL;
}
int main(void) {
    int counts[] = {2, 3, 8, 2};
    for (int t = 0; t < 4; t++) {
        kc_set_num_threads(counts[t]);
        pthread_t th[3];
        for (int k = 0; k < 3; k++) pthread_create(&th[k], NULL, caller, (void *)(uintptr_t)(k + 1 + 10 * t));
        for (int k = 0; k < 3; k++) pthread_join(th[k], NULL);
        caller((void *)(uintptr_t)99);
    }
    printf("ok\n");
    return 0;
}
"""


def test_every_chunk_runs_exactly_once_with_concurrent_callers_and_changing_thread_counts(tmp_path):
    """kc_parallel_for's chunks are claimed as the threads come: each index of each call must run
    once, with three other threads calling at once and the thread count lowered under started workers."""
    cc = jit._c_compiler()
    source = tmp_path / "stress.c"
    source.write_text(POOL_STRESS_C)
    pool_c = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime", "kc_threads.c")
    exe = tmp_path / "stress"
    subprocess.run([cc, "-O2", "-pthread", "-o", str(exe), str(source), pool_c], check=True, timeout=120)
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout[-2000:]
