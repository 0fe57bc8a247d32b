"""Benchmark of the Keras guide's VGG-like convnet on 100x100x3 images: compile time, training
and inference images/s, against the reference interpreter (and PyTorch when importable) in the
same process.

Usage: python bench/convnet.py [--write]   (--write updates the section in bench/RESULTS.md)
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

BATCH = 32


def build(keras, layers):
    return keras.Sequential([
        keras.Input((100, 100, 3)),
        layers.Conv2D(32, (3, 3), activation="relu"), layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)), layers.Dropout(0.25),
        layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")])


def bench_kcompile(images, run_eagerly=False):
    import kcompile as keras
    from kcompile import layers
    rng = np.random.default_rng(0)
    x = rng.random((images, 100, 100, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, images)]
    model = build(keras, layers)
    os.environ["KCOMPILE_CACHE"] = "0"
    t = time.perf_counter()
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  run_eagerly=run_eagerly)
    model.train_on_batch(x[:BATCH], y[:BATCH])
    compile_s = time.perf_counter() - t
    os.environ.pop("KCOMPILE_CACHE", None)
    t = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    train = images / (time.perf_counter() - t)
    model.predict(x[:BATCH], verbose=0)
    t = time.perf_counter()
    model.predict(x, batch_size=BATCH, verbose=0)
    return compile_s, train, images / (time.perf_counter() - t)


def torch_threads():
    import torch
    return torch.get_num_threads()


def bench_torch(images):
    import torch
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Dropout(0.25), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(), nn.Linear(64 * 22 * 22, 256), nn.ReLU(),
                          nn.Dropout(0.5), nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(images, 3, 100, 100)
    y = torch.randint(0, 10, (images,))
    t = time.perf_counter()
    for i in range(0, images, BATCH):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + BATCH]), y[i:i + BATCH]).backward()
        opt.step()
    train = images / (time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        t = time.perf_counter()
        for i in range(0, images, BATCH):
            model(x[i:i + BATCH])
    return train, images / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table to bench/RESULTS.md")
    parser.add_argument("--images", type=int, default=128, help="images per timed epoch (default 128)")
    args = parser.parse_args()
    c, train, infer = bench_kcompile(args.images)
    lines = ["| system | compile + first step (s) | train images/s | predict images/s |", "|---|---|---|---|",
             f"| kcompile (native) | {c:.2f} | {train:.1f} | {infer:.1f} |"]
    c2, train2, infer2 = bench_kcompile(BATCH, run_eagerly=True)
    lines.append(f"| reference interpreter | {c2:.2f} | {train2:.2f} ({train / train2:.0f}x slower) | "
                 f"{infer2:.2f} ({infer / infer2:.0f}x slower) |")
    try:
        t3, i3 = bench_torch(args.images)
        lines.append(f"| PyTorch eager ({torch_threads()} threads) | - | {t3:.1f} (kcompile {train / t3:.2f}x) | "
                     f"{i3:.1f} (kcompile {infer / i3:.2f}x) |")
    except ImportError:
        pass
    from kcompile import config
    text = (f"Keras guide VGG-like convnet, 100x100x3 inputs, batch {BATCH}, SGD nesterov; {platform.machine()}, "
            f"{os.cpu_count()} cores, kcompile on {config.get_num_threads()} threads\n\n" + "\n".join(lines) + "\n")
    print(text)
    if args.write:
        from results_file import write_section
        write_section("bench/convnet.py", "## Convnet (`python bench/convnet.py --write`)\n\n" + text)


if __name__ == "__main__":
    main()
