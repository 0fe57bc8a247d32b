"""Benchmark of the ahead-of-time library: the guide MLP's predict from C and through load_built.

Builds the guide MLP (20-64-64-10) with `kcompile.build`, compiles a C timing program against
NAME.o with the system C compiler, and times NAME_predict at batch 1 and batch 1000 (median of
repeats, each averaging many calls). The same entries are then timed from Python through
`kcompile.load_built` and through the model's own `predict_on_batch`, and ONNX Runtime when it
is installed (pip install -e ".[bench]").
Usage: python bench/aot.py [--write]   (--write updates bench/RESULTS.md)
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import median_time  # noqa: E402

TIMER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "guide_mlp.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    int64_t batch = atoll(argv[1]);
    int calls = atoi(argv[2]);
    void *state = aligned_alloc(64, (guide_mlp_state_size() + 63) / 64 * 64);
    void *ws = aligned_alloc(64, (guide_mlp_workspace_size(batch) + 63) / 64 * 64);
    float *x = aligned_alloc(64, (batch * 20 * 4 + 63) / 64 * 64), *y = aligned_alloc(64, (batch * 10 * 4 + 63) / 64 * 64);
    for (int64_t i = 0; i < batch * 20; i++) x[i] = (float)(i % 13) / 13.0f;
    if (guide_mlp_init_state(state)) return 1;
    const void *in[1] = {x};
    void *out[1] = {y};
    double runs[9];
    for (int r = 0; r < 9; r++) {
        double t = now();
        for (int c = 0; c < calls; c++)
            if (guide_mlp_predict(state, batch, in, out, ws)) return 1;
        runs[r] = (now() - t) / calls;
    }
    qsort(runs, 9, sizeof(double), cmp);
    printf("%.9f\n", runs[4]);
    free(state); free(ws); free(x); free(y);
    return 0;
}
"""


def guide_mlp():
    import kcompile as keras
    from kcompile import layers
    model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)), layers.Dropout(0.5),
                              layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(10, activation="softmax")], name="guide_mlp")
    model.compile(loss="categorical_crossentropy", optimizer="sgd")
    return model


def onnxruntime_times(model, xs):
    """ORT on the same weights (an ONNX graph written by hand: 3 Gemm + Relu + Softmax)."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    w = model.get_weights()
    nodes, inits, prev = [], [], "x"
    for i in range(3):
        inits += [numpy_helper.from_array(w[2 * i], f"W{i}"), numpy_helper.from_array(w[2 * i + 1], f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [f"g{i}"]))
        prev = f"g{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["y"], axis=1))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])], inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    return {n: median_time(lambda x=x: session.run(None, {"x": x}), 7, calls=2000 if n == 1 else 50) for n, x in xs.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    import kcompile as keras
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("bench/aot.py needs a C compiler (cc)")
    model = guide_mlp()
    xs = {n: np.random.default_rng(0).random((n, 20), dtype=np.float32) for n in (1, 1000)}
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        t = time.perf_counter()
        keras.build(model, directory, entries=["predict"])
        build_s = time.perf_counter() - t
        with open(os.path.join(directory, "timer.c"), "w") as f:
            f.write(TIMER_C)
        subprocess.run([cc, "-O2", f"-I{directory}", os.path.join(directory, "timer.c"),
                        os.path.join(directory, "guide_mlp.o"), "-o", os.path.join(directory, "timer"), "-lm"],
                       check=True)
        c_times = {n: float(subprocess.run([os.path.join(directory, "timer"), str(n), "200000" if n == 1 else "500"],
                                           capture_output=True, text=True, check=True).stdout) for n in xs}
        rows.append(("C: NAME_predict (kcompile build)", c_times))
        built = keras.load_built(directory)
        rows.append(("Python: load_built(...).run", {n: median_time(lambda x=x, n=n: built.run("predict", n, [x]), 7,
                                                                     calls=5000 if n == 1 else 100)
                                                     for n, x in xs.items()}))
        model.predict_on_batch(xs[1])
        rows.append(("Python: model.predict_on_batch", {n: median_time(lambda x=x: model.predict_on_batch(x), 7,
                                                                        calls=5000 if n == 1 else 100)
                                                        for n, x in xs.items()}))
    ort_times = onnxruntime_times(model, xs)
    if ort_times:
        rows.append(("ONNX Runtime (Python)", ort_times))
    base = rows[0][1]
    lines = ["## Ahead-of-time library (`python bench/aot.py --write`)", "",
             f"Guide MLP (20-64-64-10) predict; `kcompile build` took {build_s:.1f} s; {platform.machine()}, "
             f"{os.cpu_count()} cores, one thread; medians", "",
             "| caller | batch 1 (µs) | batch 1000 (µs) | batch 1 vs C |", "|---|---|---|---|"]
    for name, times in rows:
        lines.append(f"| {name} | {times[1] * 1e6:.2f} | {times[1000] * 1e6:.1f} | {times[1] / base[1]:.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        from results_file import write_section
        write_section("bench/aot.py", text)


if __name__ == "__main__":
    main()
