"""Data-parallel scaling on this machine: the VGG-like convnet (bench/convnet.py, 100x100x3,
global batch 32) and the guide MLP (batch 128), trained by 1 rank and by 2 ranks, one thread each
(KCOMPILE_NUM_THREADS=1), on the same global batches.

Usage: python bench/distributed.py [--ranks 2] [--repeat 3]
Each configuration runs under `mpiexec -n R` (this file is also the worker: --worker); the
figure is the median over repeats of the training throughput of whole epochs after a warm-up
epoch, and the time of one gradient all-reduce of the model's size measured alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

MODELS = {"vgg_like": (32, 96), "guide_mlp": (128, 8192)}     # global batch, samples per epoch


def build(name, keras, layers):
    if name == "vgg_like":
        from convnet import build as vgg
        model = vgg(keras, layers)
        model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        return model, (100, 100, 3)
    model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)), layers.Dropout(0.5),
                              layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    return model, (20,)


def worker(name):
    import kcompile as keras
    from kcompile import layers
    keras.utils.set_random_seed(0)
    strategy = keras.distribute.MultiWorkerMirroredStrategy()
    batch, samples = MODELS[name]
    with strategy.scope():
        model, shape = build(name, keras, layers)
    rng = np.random.default_rng(0)
    x = rng.random((samples,) + shape, dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, samples)]
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)          # compile + warm-up
    t = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=2, verbose=0)
    seconds = time.perf_counter() - t
    comm = strategy.communicator
    reduce_ms = None
    if comm is not None:                     # the all-reduce of one step's gradient vector, alone
        vector = np.ones(sum(int(np.prod(w.shape)) for w in model.trainable_weights) + 1, np.float32)
        comm.barrier()
        t = time.perf_counter()
        for _ in range(10):
            comm.allreduce_sum(vector)
        reduce_ms = (time.perf_counter() - t) / 10 * 1e3
    if strategy.cluster_resolver.task_id == 0:
        print(json.dumps({"samples_per_s": 2 * samples / seconds, "steps": 2 * samples // batch,
                          "allreduce_ms": reduce_ms, "params": int(sum(np.prod(w.shape) for w in model.trainable_weights))}))


def run(name, ranks):
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    env = dict(os.environ, KCOMPILE_NUM_THREADS="1")
    done = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker", name],
                          capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    for name in MODELS:
        one = [run(name, 1) for _ in range(args.repeat)]
        many = [run(name, args.ranks) for _ in range(args.repeat)]
        a = statistics.median(r["samples_per_s"] for r in one)
        b = statistics.median(r["samples_per_s"] for r in many)
        reduce_ms = statistics.median(r["allreduce_ms"] for r in many)
        step_ms = 1e3 * MODELS[name][0] / b
        print(f"{name}: {one[0]['params']} parameters; 1 rank {a:.1f} samples/s, {args.ranks} ranks {b:.1f} "
              f"samples/s: {b / a:.2f}x; all-reduce {reduce_ms:.2f} ms of a {step_ms:.1f} ms step")


if __name__ == "__main__":
    main()
