"""The whole-compile cache (runtime/native.compile_graphs): keyed by the entries' graphs before
the passes, a hit loads the manifest and the object and skips the passes, the lowering and LLVM.
No timing assertions: what is skipped is observed by counting build_module calls."""
from __future__ import annotations

import re

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers
from kcompile.codegen import jit
from kcompile.ir import builder as irb
from kcompile.ir.graph import BATCH, Graph
from kcompile.runtime import native
from kcompile.runtime.state import StatePool


@pytest.fixture
def lowerings(monkeypatch):
    """How many times a module was lowered (build_module: every compile that is not a hit)."""
    calls = []
    real = native.build_module

    def counting(*args, **kwargs):
        calls.append(kwargs.get("name"))
        return real(*args, **kwargs)
    monkeypatch.setattr(native, "build_module", counting)
    return calls


def _mlp(units=64, rate=0.5):
    keras.set_random_seed(3)
    model = keras.Sequential([keras.Input((20,)), layers.Dense(units, activation="relu"), layers.Dropout(rate),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.random((8, 20), dtype=np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]


def _run(model):
    x, y = _data()
    loss = model.train_on_batch(x, y)
    return np.asarray(loss), model.predict_on_batch(x)


def test_a_warm_hit_skips_the_lowering_and_llvm(compile_cache_dir, lowerings, monkeypatch, capfd):
    want = _run(_mlp())
    assert len(lowerings) == 1
    monkeypatch.setenv("KCOMPILE_TIMINGS", "1")
    capfd.readouterr()
    got = _run(_mlp())                      # another model object: other node ids and slot uids
    assert len(lowerings) == 1
    line = [l for l in capfd.readouterr().err.splitlines() if l.startswith("kcompile: compiled")]
    assert len(line) == 1 and "whole-compile entry" in line[0], line
    assert re.search(r"\bcache key \d+\.\d\d\b", line[0])
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_a_changed_graph_misses(compile_cache_dir, lowerings):
    _run(_mlp())
    _run(_mlp(units=32))                   # other shapes
    _run(_mlp(rate=0.25))                  # the same shapes, another constant
    assert len(lowerings) == 3
    _run(_mlp(rate=0.25))
    assert len(lowerings) == 3


def test_a_changed_target_or_source_misses(compile_cache_dir, lowerings, monkeypatch):
    _run(_mlp())
    if jit.thread_pool() is not None:
        monkeypatch.setenv("KCOMPILE_THREADS", "0")     # the executor "serial": another target
        _run(_mlp())
        assert len(lowerings) == 2
        monkeypatch.delenv("KCOMPILE_THREADS")
    before = len(lowerings)
    monkeypatch.setattr(jit, "_source_digest", "edited sources")
    _run(_mlp())
    assert len(lowerings) == before + 1


def _scaled(factor):
    """y = x * [factor, ...]: graphs that differ in a constant array's values alone."""
    x = irb.input("x", (BATCH, 4), "float32", 0)
    y = irb.mul(x, irb.const(np.full(4, factor, np.float32)))
    return {"predict": Graph([x], {"y0": y}, [], {}, name="predict")}


def test_constant_values_are_part_of_the_key(compile_cache_dir, lowerings):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    outs = []
    for factor in (2.0, 3.0, 2.0):
        with native.compile_graphs(_scaled(factor), StatePool(), device="cpu") as exe:
            outs.append(exe.run("predict", 2, [x])[0])
    assert len(lowerings) == 2
    np.testing.assert_array_equal(outs[0], x * 2)
    np.testing.assert_array_equal(outs[1], x * 3)
    np.testing.assert_array_equal(outs[2], x * 2)


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_a_corrupt_entry_is_discarded_with_a_warning_and_recompiled(compile_cache_dir, lowerings, damage):
    want = _run(_mlp())
    (path,) = [p for p in compile_cache_dir.iterdir() if p.suffix == ".o"]
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        data[-100] ^= 0xFF
    else:
        at = data.index(b'"state_size"')
        data[at + 1] ^= 0x20                # in the manifest: the checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="corrupt compile-cache entry"):
        got = _run(_mlp())
    assert len(lowerings) == 2
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    _run(_mlp())                            # rewritten: a hit again
    assert len(lowerings) == 2


def test_results_equal_with_and_without_the_cache(compile_cache_dir, monkeypatch):
    x, y = _data()
    runs = []
    for setting in ("0", "1", "1"):          # off, then on: a miss, then a hit
        monkeypatch.setenv("KCOMPILE_CACHE", setting)
        model = _mlp()
        losses = [np.asarray(model.train_on_batch(x, y)) for _ in range(3)]
        runs.append((losses, model.predict(x, verbose=0), model.evaluate(x, y, verbose=0)))
    for other in runs[1:]:
        for a, b in zip(runs[0][0], other[0]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(runs[0][1], other[1])
        np.testing.assert_array_equal(np.asarray(runs[0][2]), np.asarray(other[2]))


def test_the_memory_cache_serves_when_the_disk_cache_is_off(monkeypatch, lowerings):
    monkeypatch.setenv("KCOMPILE_CACHE", "0")
    want = _run(_mlp(units=48))
    got = _run(_mlp(units=48))
    assert len(lowerings) == 1
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_the_train_entry_is_compiled_once(compile_cache_dir, lowerings, monkeypatch, capfd):
    """compile() builds predict, train and evaluate together; the first fit, train_on_batch,
    predict and evaluate after it compile nothing more (with or without a cache hit)."""
    monkeypatch.setenv("KCOMPILE_TIMINGS", "1")
    for expected in (1, 1):
        capfd.readouterr()
        model = _mlp(units=24)
        x, y = _data()
        model.train_on_batch(x, y)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        model.predict(x, verbose=0)
        model.predict_on_batch(x[:1])
        model.evaluate(x, y, verbose=0)
        lines = [l for l in capfd.readouterr().err.splitlines() if l.startswith("kcompile: compiled")]
        assert len(lines) == expected, lines
    assert len(lowerings) == 1


def test_a_changed_setting_or_patched_pass_misses(compile_cache_dir, lowerings, monkeypatch):
    """What a caller changes at run time is part of the key: a module setting (a size limit,
    a threshold) or a pass replaced by monkeypatching."""
    from kcompile.codegen import lower
    from kcompile.ir.passes import pipeline
    _run(_mlp())
    with monkeypatch.context() as patch:
        patch.setattr(lower, "PARALLEL_MIN_ELEMENTS", 1)
        _run(_mlp())
    assert len(lowerings) == 2
    _run(_mlp())
    assert len(lowerings) == 2
    real = pipeline.lower_to_kernels
    seen = []

    def record(graph, *args, **kwargs):
        seen.append(graph.name)
        return real(graph, *args, **kwargs)
    record.__qualname__ += str(np.random.default_rng().integers(1 << 60))   # not even an earlier run's
    monkeypatch.setattr(pipeline, "lower_to_kernels", record)
    _run(_mlp())
    assert seen, "the patched pass did not run: the compile came from the cache"


def test_split_library_declares_what_it_moves():
    """The GEMM's library functions leave the model's module as declarations, each in a module
    of its own; a library function that reads a global of the model's keeps the module whole."""
    text = "\n".join([
        '; ModuleID = "kcompile"',
        'target triple = "x86_64-unknown-linux-gnu"',
        '@"v0.table" = internal constant [1 x i64] [i64 7]',
        'define internal void @"kcompile.gemm.f"(i64 %".1") noinline nounwind',
        '{', 'entry:', '  ret void', '}',
        'define void @"v0__predict"(i64 %".1")',
        '{', 'entry:', '  call void @"kcompile.gemm.f"(i64 %".1")', '  ret void', '}', ''])
    model, parts = jit.split_library(text)
    assert [name for name, _ in parts] == ["kcompile.gemm.f"]
    assert 'declare void @"kcompile.gemm.f"(i64 %".1") noinline nounwind' in model
    assert "define void @\"kcompile.gemm.f\"" in parts[0][1] and "v0__predict" not in parts[0][1]
    reading = text.replace(
        'entry:\n  ret void\n}\ndefine void @"v0__predict"',
        'entry:\n  %"x" = load i64, ptr @"v0.table"\n  ret void\n}\ndefine void @"v0__predict"', 1)
    assert reading != text
    assert jit.split_library(reading) == (reading, [])


def test_another_process_hits_the_entry(compile_cache_dir):
    """The key holds nothing of one process's own (node ids, slot uids, addresses, the hash seed):
    a second process compiling the same model loads the first one's entry."""
    import os
    import subprocess
    import sys
    code = ("import numpy as np, kcompile as k; from kcompile import layers; k.set_random_seed(5);"
            "m = k.Sequential([k.Input((16,)), layers.Dense(32, activation='relu'), layers.Dropout(0.5),"
            "layers.Dense(10, activation='softmax')]);"
            "m.compile(optimizer='adam', loss='categorical_crossentropy');"
            "print(float(m.predict_on_batch(np.ones((2, 16), np.float32)).sum()))")
    lines = []
    for seed in ("1", "2"):
        env = dict(os.environ, KCOMPILE_CACHE_DIR=str(compile_cache_dir), KCOMPILE_TIMINGS="1", PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        lines.append([l for l in done.stderr.splitlines() if l.startswith("kcompile: compiled")])
    assert len(lines[0]) == 1 and "whole-compile entry" not in lines[0][0], lines
    assert len(lines[1]) == 1 and "whole-compile entry" in lines[1][0], lines
