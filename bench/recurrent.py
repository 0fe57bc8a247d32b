"""Benchmark of recurrent layers: an LSTM compiles in the same time for 10 or 100 steps (one scan
node, not an unrolled graph), and its training throughput against the reference interpreter
(and PyTorch when importable), in the same process.

Models: LSTM(32) over (steps, 16) inputs then Dense(1), Adam, MSE, 256 samples, batch 32; and the
Keras guide's headline model (Embedding 10000->512 on 100 tokens, LSTM(32), auxiliary input and
output, loss_weights 1.0/0.2, RMSprop), 256 samples, batch 32.
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


def bench_headline(run_eagerly=False, epochs=2):
    """(compile + first step s, train samples/s) of the functional API guide's two-input model."""
    import kcompile as keras
    from kcompile import layers
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 10000, size=(SAMPLES, 100))
    aux = rng.random((SAMPLES, 5)).astype(np.float32)
    labels = rng.integers(0, 2, size=(SAMPLES, 1)).astype(np.float32)
    main_input = keras.Input(shape=(100,), dtype="int32", name="main_input")
    lstm_out = layers.LSTM(32)(layers.Embedding(output_dim=512, input_dim=10000)(main_input))
    aux_output = layers.Dense(1, activation="sigmoid", name="aux_output")(lstm_out)
    aux_input = keras.Input(shape=(5,), name="aux_input")
    x = layers.concatenate([lstm_out, aux_input])
    x = layers.Dense(64, activation="relu")(layers.Dense(64, activation="relu")(x))
    main_output = layers.Dense(1, activation="sigmoid", name="main_output")(x)
    model = keras.Model([main_input, aux_input], [main_output, aux_output])
    os.environ["KCOMPILE_CACHE"] = "0"
    t = time.perf_counter()
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", loss_weights=[1.0, 0.2],
                  run_eagerly=run_eagerly)
    model.train_on_batch([tokens[:BATCH], aux[:BATCH]], [labels[:BATCH]] * 2)
    compile_s = time.perf_counter() - t
    os.environ.pop("KCOMPILE_CACHE", None)
    t = time.perf_counter()
    model.fit([tokens, aux], [labels, labels], batch_size=BATCH, epochs=epochs, verbose=0)
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
    head = ["| system | compile + first step (s) | train samples/s |", "|---|---|---|"]
    c, base = bench_headline()
    head.append(f"| kcompile (native) | {c:.2f} | {base:,.0f} |")
    c, sps = bench_headline(run_eagerly=True, epochs=1)
    head.append(f"| reference interpreter | {c:.2f} | {sps:,.0f} ({base / sps:.1f}x slower) |")
    text = (f"LSTM({UNITS}) on (steps, {FEATURES}) + Dense(1), Adam, {SAMPLES} samples, batch {BATCH}; "
            f"{platform.machine()}, {os.cpu_count()} cores\n\n" + "\n".join(lines) + "\n\n"
            f"The functional API guide's headline model (Embedding 10000->512 on 100 tokens, LSTM(32), "
            f"auxiliary input and output, loss_weights 1.0/0.2, RMSprop), {SAMPLES} samples, batch {BATCH}\n\n"
            + "\n".join(head) + "\n")
    print(text)
    if args.write:
        from results_file import write_section
        write_section("bench/recurrent.py", "## Recurrent (`python bench/recurrent.py --write`)\n\n" + text)


if __name__ == "__main__":
    main()
