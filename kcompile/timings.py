"""Compile-phase timings: with KCOMPILE_TIMINGS=1 each compiled variant prints where its compile
time went, on stderr:

    kcompile: compiled 'v0' (predict, train, evaluate) in 1.42 s: trace 0.09, passes 0.21, lowering 0.18,
    llvm-optimize 0.61, llvm-codegen 0.33 (object cache: miss)

"llvm-library" is compiling the GEMM library functions models share (codegen/jit.split_library):
each is compiled once per process and kept in the object cache, so it is near 0.00 once the
functions a model calls were compiled for an earlier one.
"cache key" is the fingerprint of the entries' graphs (runtime/native.compile_graphs). When the
compile cache holds the whole compile of those graphs, the phases it skipped (passes, lowering,
llvm-parse) are listed as 0.00 and llvm-codegen is the loading of the cached object:

    kcompile: compiled 'v0' in 0.02 s: trace 0.01, cache key 0.00, passes 0.00, lowering 0.00,
    llvm-parse 0.00, llvm-codegen 0.00 (object cache: hit (a whole-compile entry: ...))

("cache key" includes reading and verifying the entry.)

`phase(name)` adds the time of its block to the compile in progress on this thread (a no-op
outside one); `compiling(label)` opens one and reports it.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

_local = threading.local()


def enabled():
    return os.environ.get("KCOMPILE_TIMINGS", "0") not in ("", "0")


@contextlib.contextmanager
def compiling(label):
    """Collect the phases of one compile (nested compiles join the outer one) and print them."""
    if getattr(_local, "phases", None) is not None:
        yield _local.phases
        return
    _local.phases = phases = {}
    start = time.perf_counter()
    try:
        yield phases
    finally:
        _local.phases = None
        if enabled():
            notes = phases.pop("_notes", [])
            parts = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            extra = f" ({'; '.join(notes)})" if notes else ""
            print(f"kcompile: compiled {label} in {time.perf_counter() - start:.2f} s: {parts}{extra}",
                  file=sys.stderr, flush=True)


@contextlib.contextmanager
def phase(name):
    phases = getattr(_local, "phases", None)
    start = time.perf_counter()
    try:
        yield
    finally:
        if phases is not None:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - start


def note(text):
    """A remark on the compile in progress (e.g. whether the object cache answered)."""
    phases = getattr(_local, "phases", None)
    if phases is not None:
        phases.setdefault("_notes", []).append(text)
