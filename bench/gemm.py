"""GEMM kernel benchmark: GFLOP/s of kcompile's gemm template vs numpy (OpenBLAS), 1 or N threads.

C = A @ B, square float32, row-major (and optionally transposed operands). Both sides run
interleaved in the same process with the same thread count (OPENBLAS_NUM_THREADS is set before
numpy is imported; kcompile's gemm runs on its thread pool for N > 1). The table shows medians over
--repeat timings; each timing loops until ~0.2 s, counted as this thread's CPU time on one thread
(other processes on a shared machine count less) and as wall-clock time on several.
Usage: python bench/gemm.py [--sizes 256 512 1024 2048] [--repeat 7] [--trans] [--threads N]
"""
from __future__ import annotations

import os
import sys

# the thread count must be known before numpy (OpenBLAS) is imported
THREADS = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv[:-1] else 1
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import argparse  # noqa: E402
import ctypes  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from llvmlite import ir  # noqa: E402

from kcompile.codegen import gemm  # noqa: E402
from kcompile.codegen.jit import JitModule  # noqa: E402

SIG = ctypes.CFUNCTYPE(None, *([ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] * 2 +
                               [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p]))


def build(threads):
    from kcompile.codegen.target import host_target
    m = ir.Module()
    m.kc_vector_bits = host_target().vector_bits     # as build_module sets it for a model
    if threads > 1:
        from kcompile import config
        if config.set_num_threads(threads) != threads:
            raise SystemExit(f"kcompile's thread pool cannot run {threads} threads here")
        m.kc_executor = "threads"
    gemm.define_gemm(m, "bench_gemm", exported=True)
    jit = JitModule(m)
    return jit, SIG(jit.address("bench_gemm"))


def timed(fn, min_time=0.2):
    """Seconds per call, looping until min_time has passed, after one warm-up call: this thread's
    CPU time on one thread (time other processes take is not counted), wall-clock time on several."""
    clock = time.thread_time if THREADS == 1 else time.perf_counter
    fn()
    reps, elapsed = 0, 0.0
    t0 = clock()
    while elapsed < min_time:
        fn()
        reps += 1
        elapsed = clock() - t0
    return elapsed / reps


def run(sizes, repeat, trans):
    jit, f = build(THREADS)
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        a = rng.standard_normal((n, n)).astype(np.float32)
        w = rng.standard_normal((n, n)).astype(np.float32)
        c = np.empty((n, n), np.float32)
        want = np.empty((n, n), np.float32)
        scratch = np.empty(gemm.scratch_floats(n, n) + 16, np.float32)
        sp = (scratch.ctypes.data + 63) // 64 * 64
        a_st, b_st = ((1, n) if trans else (n, 1)), (n, 1)
        a_np = a.T if trans else a

        def ours():
            f(n, n, n, a.ctypes.data, a_st[0], a_st[1], w.ctypes.data, b_st[0], b_st[1], c.ctypes.data, n, 0, sp)

        def ref():
            np.matmul(a_np, w, out=want)

        ours()
        ref()
        err = np.abs(c - want).max() / (np.abs(a_np) @ np.abs(w)).max()
        assert err < 1e-5, (n, err)
        ts_ours, ts_ref = [], []
        for _ in range(repeat):     # interleaved, so load from other processes hits both alike
            ts_ours.append(timed(ours))
            ts_ref.append(timed(ref))
        flop = 2.0 * n ** 3
        g_ours, g_ref = flop / statistics.median(ts_ours) / 1e9, flop / statistics.median(ts_ref) / 1e9
        rows.append((n, g_ours, g_ref, flop / min(ts_ours) / 1e9, flop / min(ts_ref) / 1e9))
    jit.close()
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--trans", action="store_true", help="A transposed (strides 1, n)")
    p.add_argument("--threads", type=int, default=1, help="threads for both sides (read before numpy loads)")
    args = p.parse_args()
    rows = run(args.sizes, args.repeat, args.trans)
    layout = "A transposed, " if args.trans else ""
    count = "one thread" if THREADS == 1 else f"{THREADS} threads (wall clock)"
    print(f"GEMM float32, {count}, {layout}medians of {args.repeat} (best in parens)\n")
    print(f"| n | kcompile GFLOP/s | numpy (OpenBLAS, {THREADS} thread{'s' if THREADS > 1 else ''}) GFLOP/s | ratio |")
    print("|---:|---:|---:|---:|")
    for n, ours, ref, best_ours, best_ref in rows:
        print(f"| {n} | {ours:.1f} ({best_ours:.1f}) | {ref:.1f} ({best_ref:.1f}) | {ours / ref:.0%} |")


if __name__ == "__main__":
    main()
