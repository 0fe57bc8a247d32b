"""The one timing helper of the benchmarks: medians of wall-clock timings after a warm-up."""
from __future__ import annotations

import statistics
import time


def median_time(fn, repeat, calls=1, sync=None):
    """Median seconds per call of fn over `repeat` timings of `calls` calls each, after one warm-up
    call; `sync` (e.g. torch.cuda.synchronize) runs before each clock reading."""
    sync = sync or (lambda: None)
    fn()
    sync()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        runs.append((time.perf_counter() - t) / calls)
    return statistics.median(runs)
