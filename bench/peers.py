"""Issue #11's table: every guide workload on kcompile, PyTorch (CPU) and ONNX Runtime in one run.

Each figure is the median of --repeat timings in this process; the ratio columns give kcompile's
speed relative to the peer (above 1.0x: kcompile is faster; for latencies and compile times the
inverse of the time ratio). A peer that is not importable shows "not installed"; a cell a peer
cannot fill (ONNX Runtime does not train) shows "-". Install the peers with
`pip install -e ".[bench]"`. Run through `python bench/run.py --all [--write]`.
"""
from __future__ import annotations

import os
import time

import numpy as np

from convnet import build as vgg_like   # the VGG-like model of bench/convnet.py (bench/ is on sys.path)
from timing import median_time

MLP_SAMPLES, MLP_BATCH = 1000, 128
CONV_BATCH = 32
LSTM_SAMPLES, LSTM_BATCH, LSTM_FEATURES, LSTM_UNITS = 256, 32, 16, 32
GEMM_N = 1024


def _threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ----------------------------------------------------------------------------- kcompile
def _kc():
    import kcompile as keras
    from kcompile import layers
    return keras, layers


def _mlp_kc(keras, layers):
    return keras.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)), layers.Dropout(0.5),
                             layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                             layers.Dense(10, activation="softmax")])


def _mlp_compile(keras, model):
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True))


def _vgg_compile(keras, model):
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))


def _timed_compile(fn, cold):
    """Seconds of fn() with the compile cache off (cold) or on."""
    saved = os.environ.get("KCOMPILE_CACHE")
    if cold:
        os.environ["KCOMPILE_CACHE"] = "0"
    try:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    finally:
        if saved is None:
            os.environ.pop("KCOMPILE_CACHE", None)
        else:
            os.environ["KCOMPILE_CACHE"] = saved


def kcompile_rows(repeat):
    keras, layers = _kc()
    out = {}
    rng = np.random.default_rng(0)
    # guide MLP
    x = rng.standard_normal((MLP_SAMPLES, 20)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, MLP_SAMPLES)]
    keras.utils.set_random_seed(0)
    mlp = _mlp_kc(keras, layers)
    out["mlp_compile_cold"] = _timed_compile(lambda: _mlp_compile(keras, mlp), cold=True)
    out["mlp_first_step"] = _timed_compile(lambda: mlp.train_on_batch(x[:MLP_BATCH], y[:MLP_BATCH]), cold=True)
    epochs = 5
    out["mlp_train"] = MLP_SAMPLES * epochs / median_time(
        lambda: mlp.fit(x, y, epochs=epochs, batch_size=MLP_BATCH, verbose=0), repeat)
    x1 = x[:1]
    out["mlp_p1"] = median_time(lambda: mlp.predict_on_batch(x1), repeat, calls=2000)
    out["mlp_p1000"] = median_time(lambda: mlp.predict_on_batch(x), repeat, calls=20)
    # warm compile: the same seeds give the same IR; the first compile fills the cache
    for _ in range(2):
        keras.utils.set_random_seed(0)
        again = _mlp_kc(keras, layers)
        out["mlp_compile_warm"] = _timed_compile(lambda: _mlp_compile(keras, again), cold=False)
    # VGG-like convnet
    xi = rng.random((CONV_BATCH, 100, 100, 3)).astype(np.float32)
    yi = np.eye(10, dtype=np.float32)[rng.integers(0, 10, CONV_BATCH)]
    keras.utils.set_random_seed(0)
    vgg = vgg_like(keras, layers)
    out["vgg_compile_cold"] = _timed_compile(lambda: _vgg_compile(keras, vgg), cold=True)
    out["vgg_first_step"] = _timed_compile(lambda: vgg.train_on_batch(xi, yi), cold=True)
    conv_repeat = max(3, repeat // 2)
    out["vgg_train"] = CONV_BATCH / median_time(lambda: vgg.train_on_batch(xi, yi), conv_repeat)
    out["vgg_infer"] = CONV_BATCH / median_time(lambda: vgg.predict_on_batch(xi), conv_repeat)
    for _ in range(2):
        keras.utils.set_random_seed(0)
        again = vgg_like(keras, layers)
        out["vgg_compile_warm"] = _timed_compile(lambda: _vgg_compile(keras, again), cold=False)
    # LSTM(32)
    for steps in (10, 100):
        xs = rng.standard_normal((LSTM_SAMPLES, steps, LSTM_FEATURES)).astype(np.float32)
        ys = rng.standard_normal((LSTM_SAMPLES, 1)).astype(np.float32)
        model = keras.Sequential([keras.Input((steps, LSTM_FEATURES)), layers.LSTM(LSTM_UNITS), layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        out[f"lstm{steps}"] = LSTM_SAMPLES / median_time(
            lambda: model.fit(xs, ys, batch_size=LSTM_BATCH, epochs=1, verbose=0), repeat)
    # SGEMM through a Dense layer
    a = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    dense = keras.Sequential([keras.Input((GEMM_N,)), layers.Dense(GEMM_N, use_bias=False)])
    out["sgemm"] = 2 * GEMM_N ** 3 / median_time(lambda: dense.predict_on_batch(a), repeat, calls=5) / 1e9
    return out


# ----------------------------------------------------------------------------- PyTorch
def _best_threads(torch, measure, higher=True):
    """The peer at its best: measured on one thread and on all of them (on a loaded machine
    torch's intra-op threads can cost it several times over on small ops)."""
    results = []
    for count in sorted({1, _threads()}):
        torch.set_num_threads(count)
        results.append(measure())
    torch.set_num_threads(_threads())
    return max(results) if higher else min(results)


def torch_rows(repeat):
    import torch
    torch.set_num_threads(_threads())
    nn = torch.nn
    out = {}
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((MLP_SAMPLES, 20)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, MLP_SAMPLES))
    mlp = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 64), nn.ReLU(),
                        nn.Dropout(0.5), nn.Linear(64, 10))
    opt = torch.optim.SGD(mlp.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def epoch():
        mlp.train()
        perm = torch.randperm(MLP_SAMPLES)
        for i in range(0, MLP_SAMPLES, MLP_BATCH):
            idx = perm[i:i + MLP_BATCH]
            opt.zero_grad()
            nn.functional.cross_entropy(mlp(x[idx]), y[idx]).backward()
            opt.step()
    out["mlp_train"] = _best_threads(torch, lambda: MLP_SAMPLES / median_time(epoch, repeat))
    mlp.eval()
    with torch.no_grad():
        x1 = x[:1]
        out["mlp_p1"] = _best_threads(torch, lambda: median_time(lambda: torch.softmax(mlp(x1), 1), repeat,
                                                                 calls=2000), higher=False)
        out["mlp_p1000"] = _best_threads(torch, lambda: median_time(lambda: torch.softmax(mlp(x), 1), repeat,
                                                                    calls=20), higher=False)
    vgg = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Dropout(0.25), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(), nn.Linear(64 * 22 * 22, 256), nn.ReLU(),
                        nn.Dropout(0.5), nn.Linear(256, 10))
    vopt = torch.optim.SGD(vgg.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    xi = torch.rand(CONV_BATCH, 3, 100, 100)
    yi = torch.randint(0, 10, (CONV_BATCH,))

    def vstep():
        vgg.train()
        vopt.zero_grad()
        nn.functional.cross_entropy(vgg(xi), yi).backward()
        vopt.step()
    conv_repeat = max(3, repeat // 2)
    out["vgg_train"] = CONV_BATCH / median_time(vstep, conv_repeat)
    vgg.eval()
    with torch.no_grad():
        out["vgg_infer"] = CONV_BATCH / median_time(lambda: torch.softmax(vgg(xi), 1), conv_repeat)
    for steps in (10, 100):
        xs = torch.from_numpy(rng.standard_normal((LSTM_SAMPLES, steps, LSTM_FEATURES)).astype(np.float32))
        ys = torch.from_numpy(rng.standard_normal((LSTM_SAMPLES, 1)).astype(np.float32))
        lstm, head = nn.LSTM(LSTM_FEATURES, LSTM_UNITS, batch_first=True), nn.Linear(LSTM_UNITS, 1)
        lopt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()))

        def lepoch():
            for i in range(0, LSTM_SAMPLES, LSTM_BATCH):
                lopt.zero_grad()
                seq, _ = lstm(xs[i:i + LSTM_BATCH])
                nn.functional.mse_loss(head(seq[:, -1]), ys[i:i + LSTM_BATCH]).backward()
                lopt.step()
        out[f"lstm{steps}"] = _best_threads(torch, lambda: LSTM_SAMPLES / median_time(lepoch, repeat))
    a = torch.from_numpy(rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32))
    with torch.no_grad():
        out["sgemm"] = 2 * GEMM_N ** 3 / median_time(lambda: a @ w, repeat, calls=5) / 1e9
    return out


# ----------------------------------------------------------------------------- ONNX Runtime
def _ort_session(nodes, inits, inputs, outputs):
    import onnxruntime as ort
    from onnx import helper
    graph = helper.make_graph(nodes, "bench", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_rows(repeat):
    """Inference rows on ONNX graphs written with onnx.helper (the same layers, random weights)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    f32 = lambda *s: (rng.standard_normal(s) * 0.05).astype(np.float32)  # noqa: E731
    out = {}
    # MLP: 3 Gemm (+ Relu) + Softmax
    nodes, inits, prev = [], [], "x"
    for i, (fan_in, fan_out) in enumerate([(20, 64), (64, 64), (64, 10)]):
        inits += [numpy_helper.from_array(f32(fan_in, fan_out), f"W{i}"),
                  numpy_helper.from_array(f32(fan_out), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [f"g{i}"]))
        prev = f"g{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["y"], axis=1))
    mlp = _ort_session(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 20])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])])
    x = rng.standard_normal((MLP_SAMPLES, 20)).astype(np.float32)
    x1 = x[:1].copy()
    out["mlp_p1"] = median_time(lambda: mlp.run(None, {"x": x1}), repeat, calls=2000)
    out["mlp_p1000"] = median_time(lambda: mlp.run(None, {"x": x}), repeat, calls=20)
    # VGG-like convnet, NCHW
    nodes, inits, prev = [], [], "x"
    channels = 3
    for i, c in enumerate([32, 32, 64, 64]):
        inits += [numpy_helper.from_array(f32(c, channels, 3, 3), f"K{i}"), numpy_helper.from_array(f32(c), f"kb{i}")]
        nodes += [helper.make_node("Conv", [prev, f"K{i}", f"kb{i}"], [f"c{i}"], kernel_shape=[3, 3]),
                  helper.make_node("Relu", [f"c{i}"], [f"cr{i}"])]
        prev, channels = f"cr{i}", c
        if i % 2:
            nodes.append(helper.make_node("MaxPool", [prev], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            prev = f"p{i}"
    nodes.append(helper.make_node("Flatten", [prev], ["flat"], axis=1))
    inits += [numpy_helper.from_array(f32(64 * 22 * 22, 256), "D0"), numpy_helper.from_array(f32(256), "d0"),
              numpy_helper.from_array(f32(256, 10), "D1"), numpy_helper.from_array(f32(10), "d1")]
    nodes += [helper.make_node("Gemm", ["flat", "D0", "d0"], ["h"]), helper.make_node("Relu", ["h"], ["hr"]),
              helper.make_node("Gemm", ["hr", "D1", "d1"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    vgg = _ort_session(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 100, 100])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])])
    xi = rng.random((CONV_BATCH, 3, 100, 100)).astype(np.float32)
    out["vgg_infer"] = CONV_BATCH / median_time(lambda: vgg.run(None, {"x": xi}), max(3, repeat // 2))
    # SGEMM: one MatMul node against a constant weight
    w = numpy_helper.from_array(f32(GEMM_N, GEMM_N), "W")
    mm = _ort_session([helper.make_node("MatMul", ["a", "W"], ["c"])], [w],
                      [helper.make_tensor_value_info("a", TensorProto.FLOAT, [GEMM_N, GEMM_N])],
                      [helper.make_tensor_value_info("c", TensorProto.FLOAT, [GEMM_N, GEMM_N])])
    a = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    out["sgemm"] = 2 * GEMM_N ** 3 / median_time(lambda: mm.run(None, {"a": a}), repeat, calls=5) / 1e9
    return out


def numpy_sgemm(repeat):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    w = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    return 2 * GEMM_N ** 3 / median_time(lambda: a @ w, repeat, calls=5) / 1e9


# ----------------------------------------------------------------------------- the table
# (label, key, unit, higher is better, format)
ROWS = [
    ("guide MLP train, batch 128", "mlp_train", "samples/s", True, "{:,.0f}"),
    ("MLP predict_on_batch, batch 1", "mlp_p1", "µs", False, "{:.1f}"),
    ("MLP predict_on_batch, batch 1000", "mlp_p1000", "µs", False, "{:.0f}"),
    ("VGG-like train, batch 32", "vgg_train", "images/s", True, "{:.1f}"),
    ("VGG-like inference, batch 32", "vgg_infer", "images/s", True, "{:.1f}"),
    ("LSTM(32) train, 10 steps", "lstm10", "samples/s", True, "{:,.0f}"),
    ("LSTM(32) train, 100 steps", "lstm100", "samples/s", True, "{:,.0f}"),
    ("SGEMM 1024³ (Dense / matmul)", "sgemm", "GFLOP/s", True, "{:.1f}"),
    ("compile() cold: guide MLP", "mlp_compile_cold", "s", False, "{:.2f}"),
    ("first train step after compile: guide MLP", "mlp_first_step", "s", False, "{:.2f}"),
    ("compile() warm cache: guide MLP", "mlp_compile_warm", "s", False, "{:.3f}"),
    ("compile() cold: VGG-like", "vgg_compile_cold", "s", False, "{:.2f}"),
    ("first train step after compile: VGG-like", "vgg_first_step", "s", False, "{:.2f}"),
    ("compile() warm cache: VGG-like", "vgg_compile_warm", "s", False, "{:.3f}"),
]
_SCALE = {"µs": 1e6}


def _cell(values, key, unit, fmt):
    if values is None:
        return "not installed"
    if key not in values:
        return "-"
    return fmt.format(values[key] * _SCALE.get(unit, 1))


def _ratio(mine, theirs, key, higher):
    if theirs is None or key not in theirs or key not in mine:
        return ""
    r = mine[key] / theirs[key] if higher else theirs[key] / mine[key]
    return f"{r:.2f}x"


def _try(fn, repeat):
    try:
        return fn(repeat)
    except ImportError:
        return None


def table(repeat=5):
    """(markdown text, raw dict) of every row for kcompile and the peers, measured in this process."""
    from kcompile import config
    mine = kcompile_rows(repeat)
    torch_v = _try(torch_rows, repeat)
    ort_v = _try(ort_rows, repeat)
    np_gemm = numpy_sgemm(repeat)
    lines = ["| workload | unit | kcompile | PyTorch (CPU) | kcompile vs PyTorch | ONNX Runtime | kcompile vs ORT |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for label, key, unit, higher, fmt in ROWS:
        lines.append(f"| {label} | {unit} | {_cell(mine, key, unit, fmt)} | {_cell(torch_v, key, unit, fmt)} | "
                     f"{_ratio(mine, torch_v, key, higher)} | {_cell(ort_v, key, unit, fmt)} | "
                     f"{_ratio(mine, ort_v, key, higher)} |")
    versions = []
    for mod in ("torch", "onnxruntime"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    head = (f"kcompile on {config.get_num_threads()} thread(s), ONNX Runtime on {_threads()}, PyTorch on "
            f"{_threads()} (MLP and LSTM rows: the better of 1 and {_threads()}); medians of {repeat} "
            f"timings (VGG: {max(3, repeat // 2)}); {', '.join(versions)}; numpy (OpenBLAS) SGEMM 1024³: "
            f"{np_gemm:.1f} GFLOP/s (kcompile at {mine['sgemm'] / np_gemm:.0%} of it). Ratios are kcompile's "
            f"speed over the peer's (above 1.00x: kcompile faster).")
    return head + "\n\n" + "\n".join(lines) + "\n", {"kcompile": mine, "torch": torch_v, "ort": ort_v,
                                                      "numpy_sgemm": np_gemm}


def main():
    """Run in a process of its own (bench/run.py --all does): cold compiles are then really cold."""
    import argparse
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the table to bench/RESULTS.md")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--notes", default="", help="text to append under the table")
    args = parser.parse_args()
    text, _ = table(repeat=args.repeat)
    print(text)
    if args.write:
        from results_file import write_section
        write_section("bench/peers.py", "## Issue #11's table: kcompile, PyTorch and ONNX Runtime "
                      "(`python bench/run.py --all --write`)\n\n" + text + args.notes)


if __name__ == "__main__":
    main()
