"""Benchmark of recurrent layers: an LSTM compiles in the same time for 10 or 100 steps (one scan
node, not an unrolled graph), and its training throughput against the reference interpreter
(and PyTorch when importable), in the same process.

Model: LSTM(32) over (steps, 16) inputs then Dense(1), Adam, MSE, 256 samples, batch 32.
Usage: python bench/recurrent.py [--write]   (--write updates the section in bench/RESULTS.md)
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

SAMPLES, BATCH, FEATURES, UNITS = 256, 32, 16, 32


def bench_kcompile(steps, run_eagerly=False, epochs=3):
    import kcompile as keras
    from kcompile import layers
    rng = np.random.default_rng(0)
    x = rng.standard_normal((SAMPLES, steps, FEATURES)).astype(np.float32)
    y = rng.standard_normal((SAMPLES, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((steps, FEATURES)), layers.LSTM(UNITS), layers.Dense(1)])
    os.environ["KCOMPILE_CACHE"] = "0"
    t = time.perf_counter()
    model.compile(optimizer="adam", loss="mse", run_eagerly=run_eagerly)
    model.train_on_batch(x[:BATCH], y[:BATCH])      # the train entry is built on first use
    compile_s = time.perf_counter() - t
    os.environ.pop("KCOMPILE_CACHE", None)
    t = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0)
    return compile_s, SAMPLES * epochs / (time.perf_counter() - t)


def bench_torch(steps, epochs=3):
    import torch
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((SAMPLES, steps, FEATURES)).astype(np.float32))
    y = torch.from_numpy(rng.standard_normal((SAMPLES, 1)).astype(np.float32))
    lstm, head = torch.nn.LSTM(FEATURES, UNITS, batch_first=True), torch.nn.Linear(UNITS, 1)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()))
    t = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, SAMPLES, BATCH):
            opt.zero_grad()
            out, _ = lstm(x[i:i + BATCH])
            torch.nn.functional.mse_loss(head(out[:, -1]), y[i:i + BATCH]).backward()
            opt.step()
    return SAMPLES * epochs / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table to bench/RESULTS.md")
    args = parser.parse_args()
    lines = ["| system | steps | compile + first step (s) | train samples/s |", "|---|---|---|---|"]
    base = None
    for steps in (10, 100):
        c, sps = bench_kcompile(steps)
        base = sps if steps == 100 else base
        lines.append(f"| kcompile (native) | {steps} | {c:.2f} | {sps:,.0f} |")
    c, sps = bench_kcompile(100, run_eagerly=True, epochs=1)
    lines.append(f"| reference interpreter | 100 | {c:.2f} | {sps:,.0f} ({base / sps:.1f}x slower) |")
    try:
        sps = bench_torch(100)
        lines.append(f"| PyTorch eager | 100 | - | {sps:,.0f} ({base / sps:.1f}x) |")
    except ImportError:
        pass
    text = (f"LSTM({UNITS}) on (steps, {FEATURES}) + Dense(1), Adam, {SAMPLES} samples, batch {BATCH}; "
            f"{platform.machine()}, {os.cpu_count()} cores\n\n" + "\n".join(lines) + "\n")
    print(text)
    if args.write:
        from results_file import write_section
        write_section("bench/recurrent.py", "## Recurrent (`python bench/recurrent.py --write`)\n\n" + text)


if __name__ == "__main__":
    main()
