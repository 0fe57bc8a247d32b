"""A compiled model shared by threads, and the on-disk compile cache under corruption.

Readers (predict, predict_on_batch, __call__) run at once, each with its own workspace; writers
(fit, train_on_batch) run alone, so a reader sees the weights of one whole step. Cache entries
that do not verify are discarded with a warning and compiled again — never loaded as code.
"""
import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers
from kcompile.codegen import jit

from conftest import run_in_threads


def _model(seed=0):
    keras.set_random_seed(seed)
    model = keras.Sequential([layers.Dense(32, activation="relu", input_shape=(16,)),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model


def test_concurrent_readers_of_different_batch_sizes_match_serial_results():
    model = _model()
    rng = np.random.default_rng(0)
    inputs = [rng.random((n, 16), dtype=np.float32) for n in (1, 3, 64, 500, 7, 1000, 2, 33)]
    want = [model.predict_on_batch(x) for x in inputs]
    results = {}

    def reader(k):
        def job():
            for rep in range(25):
                x = inputs[(k + rep) % len(inputs)]
                how = rep % 3
                got = model.predict_on_batch(x) if how == 0 else \
                    model.predict(x, verbose=0, batch_size=128) if how == 1 else np.asarray(model(x))
                results.setdefault(k, []).append(((k + rep) % len(inputs), got))
        return job
    run_in_threads(8, [reader(k) for k in range(8)])
    for runs in results.values():
        for index, got in runs:
            np.testing.assert_allclose(got, want[index], rtol=1e-6, atol=1e-7)


def test_training_while_others_predict_sees_whole_steps_and_matches_serial_training():
    rng = np.random.default_rng(1)
    x = rng.random((256, 16), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]
    serial, shared = _model(3), _model(3)
    shared.set_weights(serial.get_weights())
    for _ in range(20):
        serial.train_on_batch(x[:32], y[:32])
    stop = threading.Event()

    def train():
        try:
            for _ in range(20):
                shared.train_on_batch(x[:32], y[:32])
        finally:
            stop.set()

    def predict():
        while not stop.is_set():
            out = shared.predict_on_batch(x[:50])
            assert np.isfinite(out).all() and np.allclose(out.sum(axis=1), 1, atol=1e-5)
    run_in_threads(4, [train, predict, predict, predict])
    for a, b in zip(shared.get_weights(), serial.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_in_one_thread_and_predict_in_others():
    rng = np.random.default_rng(2)
    x = rng.random((512, 16), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 512)]
    model = _model(4)
    done = threading.Event()

    def fit():
        try:
            model.fit(x, y, epochs=3, batch_size=32, verbose=0)
        finally:
            done.set()

    def predict():
        while not done.is_set():
            assert np.isfinite(model.predict_on_batch(x[:100])).all()
    run_in_threads(3, [fit, predict, predict])
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_set_weights_while_predicting_is_never_seen_half_done():
    model = _model(6)
    x = np.random.default_rng(3).random((20, 16), dtype=np.float32)
    a = model.get_weights()
    b = [w * 0.5 + 0.1 for w in a]
    want_a = model.predict_on_batch(x)
    model.set_weights(b)
    want_b = model.predict_on_batch(x)
    done = threading.Event()

    def flip():
        try:
            for k in range(200):
                model.set_weights(a if k % 2 else b)
        finally:
            done.set()

    def read():
        while not done.is_set():
            out = model.predict_on_batch(x)
            assert np.array_equal(out, want_a) or np.array_equal(out, want_b)
    run_in_threads(3, [flip, read, read])


# ------------------------------------------------------------------ the compile cache
def _compile_and_predict():
    model = _model(5)
    return model.predict_on_batch(np.ones((2, 16), np.float32))


def _entries(directory):
    return sorted(p for p in directory.iterdir() if p.suffix == ".o")


@pytest.mark.parametrize("damage", ["truncate", "random", "flip", "header"])
def test_a_damaged_cache_entry_is_discarded_and_recompiled(compile_cache_dir, damage):
    want = _compile_and_predict()
    entries = _entries(compile_cache_dir)
    assert entries and oct(compile_cache_dir.stat().st_mode & 0o777) == "0o700"
    for path in entries:
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            data = data[:len(data) // 2]
        elif damage == "random":
            data = bytearray(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
        elif damage == "flip":
            data[-100] ^= 0xFF            # in the machine code, past the header
        else:
            data = data.replace(b'"sha256"', b'"sha257"', 1)
        path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _compile_and_predict()
    assert any("corrupt compile-cache entry" in str(w.message) for w in caught)
    np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # the entry was rewritten: no warning the next time
        np.testing.assert_array_equal(_compile_and_predict(), want)


def test_a_cache_folder_others_can_write_is_not_used(compile_cache_dir):
    compile_cache_dir.mkdir(mode=0o777)
    os.chmod(compile_cache_dir, 0o777)
    with pytest.warns(RuntimeWarning, match="other users can write"):
        assert jit.cache_dir() is None


def test_two_processes_compiling_the_same_model_share_the_cache(compile_cache_dir):
    code = ("import numpy as np, kcompile as k; from kcompile import layers; k.set_random_seed(5);"
            "m = k.Sequential([layers.Dense(32, activation='relu', input_shape=(16,)), layers.Dense(10, "
            "activation='softmax')]); m.compile(optimizer='sgd', loss='categorical_crossentropy');"
            "print(float(m.predict_on_batch(np.ones((2, 16), np.float32)).sum()))")
    env = dict(os.environ, KCOMPILE_CACHE_DIR=str(compile_cache_dir))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert all("corrupt" not in o[1] for o in outs)
    assert not [p for p in compile_cache_dir.iterdir() if p.suffix == ".tmp"]


def test_compile_phase_timings_are_reported(monkeypatch, capfd):
    """KCOMPILE_TIMINGS=1: each compiled variant says where its compile time went."""
    import re
    monkeypatch.setenv("KCOMPILE_TIMINGS", "1")
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(4,))], name="timed")
    model.compile(loss="mse", optimizer="sgd")
    line = [l for l in capfd.readouterr().err.splitlines() if l.startswith("kcompile: compiled 'timed'")]
    assert len(line) == 1, line
    for phase in ("trace", "passes", "lowering", "llvm-parse", "llvm-codegen"):
        assert re.search(rf"\b{phase} \d+\.\d\d\b", line[0]), (phase, line[0])
    assert re.search(r"object cache: (hit|miss)", line[0])


def test_the_state_pool_reserves_once_and_keeps_values():
    """reserve() makes room for slots in one allocation; adding them then never reallocates, and
    values already in the pool survive a reservation."""
    from kcompile.runtime.state import Slot, StatePool
    pool = StatePool()
    pool.add(Slot("a", (3,), "float32"), initial=np.arange(3, dtype=np.float32))
    slots = [Slot(f"s{i}", (1000,), "float32") for i in range(5)]
    pool.reserve(slots + [Slot("a", (3,), "float32")])
    buffer = pool.buffer
    for i, slot in enumerate(slots):
        pool.add(slot, initial=np.full(1000, i, np.float32))
    assert pool.buffer is buffer
    np.testing.assert_array_equal(pool.view("a"), [0, 1, 2])
    assert [float(pool.view(f"s{i}")[0]) for i in range(5)] == [0, 1, 2, 3, 4]
