"""GPU benchmark (issue #12): kcompile's PTX path against PyTorch CUDA eager, on one GPU.

  guide MLP (784-64-64-10, RMSprop, sparse CE)   train step at batch 128 and 4096
  VGG-like convnet (32x32x3, 2x[conv-conv-pool], dense 256, 10)   train step and inference at 32 and 256
  GEMM 4096 x 4096 x 4096 (float32)                 TFLOP/s of the tiled kernel vs torch.matmul (cuBLAS)

kcompile runs with KCOMPILE_DEVICE=gpu semantics (kcompile.config.set_device("gpu")): fit's steps
go through GpuExecutable with the state on the device. Times are medians of repeats after a warm-up.
PyTorch is optional (pip install torch with CUDA); without it only kcompile's numbers are printed.
Targets from the issue: MLP training >= 5x PyTorch eager, GEMM >= 50% of cuBLAS.

Usage: python bench/gpu.py [--quick] [--json FILE]
Exits 0 with a message where there is no GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import median_time  # noqa: E402


# --- models, written once for kcompile and once for torch
def kc_mlp():
    import kcompile as keras
    from kcompile import layers
    inputs = keras.Input(shape=(784,), name="digits")
    h = layers.Dense(64, activation="relu")(inputs)
    h = layers.Dense(64, activation="relu")(h)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(h))
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    return model


def kc_vgg():
    import kcompile as keras
    from kcompile import layers
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(32, 3, activation="relu", padding="same"), layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu", padding="same"), layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def torch_mlp(torch):
    nn = torch.nn
    return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).cuda()


def torch_vgg(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 6 * 6, 256), nn.ReLU(), nn.Linear(256, 10)).cuda()


def kc_train_step_time(model, x, y, batch, repeats):
    """Seconds per train step: one fit epoch over `repeats` batches (the state stays on the device)."""
    n = batch * repeats
    xs, ys = x[:n], y[:n]
    model.fit(xs[:batch], ys[:batch], batch_size=batch, epochs=1, verbose=0)        # warm-up (compile)
    start = time.perf_counter()
    model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / repeats


def kc_predict_time(model, x, batch, repeats):
    return median_time(lambda: model.predict_on_batch(x[:batch]), repeats)


def torch_train_step_time(torch, net, optimizer, x, y, batch, repeats):
    loss_fn = torch.nn.CrossEntropyLoss()
    xb, yb = torch.from_numpy(x[:batch]).cuda(), torch.from_numpy(y[:batch].astype(np.int64)).cuda()

    def step():
        optimizer.zero_grad()
        loss = loss_fn(net(xb), yb)
        loss.backward()
        optimizer.step()
    return median_time(step, repeats, sync=torch.cuda.synchronize)


def gemm_kcompile(size, repeats):
    """Seconds per launch of the tiled SGEMM kernel on device-resident operands."""
    from kcompile.codegen.nvptx import emit_ptx
    from kcompile.ir import builder as b
    from kcompile.ir.graph import BATCH, Graph
    from kcompile.ir.passes.pipeline import lower_to_kernels
    from kcompile.runtime.cuda import Context, _launch_all, device_arch
    x = b.input("x", (BATCH, size))
    w = b.input("w", (size, size), index=1)
    program = lower_to_kernels(Graph([x, w], {"y": b.matmul(x, w)}, []))
    arch = device_arch(0)
    ptx, launches = emit_ptx(program, arch if arch in ("sm_80", "sm_90") else "sm_80", name="gemm")
    rng = np.random.default_rng(0)
    with Context() as ctx:
        module = ctx.load_ptx(ptx)
        functions = {l.symbol: ctx.function(module, l.symbol) for l in launches}
        a = ctx.to_device(rng.standard_normal((size, size)).astype(np.float32))
        bm = ctx.to_device(rng.standard_normal((size, size)).astype(np.float32))
        out = ctx.alloc(4 * size * size)
        ws = ctx.alloc(program.memory.workspace_bytes(size))
        return median_time(lambda: _launch_all(ctx, functions, launches, program.memory, size, [a, bm], [out], {}, ws),
                           repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    from kcompile.runtime.cuda import cuda_available
    ok, why = cuda_available()
    if not ok:
        print(f"bench/gpu.py: no GPU to benchmark on ({why}); nothing to do.")
        return 0
    print(f"bench/gpu.py on {why}")
    import kcompile
    kcompile.config.set_device("gpu")
    try:
        import torch
        if not torch.cuda.is_available():
            print("PyTorch is installed without a usable CUDA device: kcompile numbers only")
            torch = None
    except ImportError:
        print("PyTorch is not installed: kcompile numbers only (pip install torch for the comparison)")
        torch = None
    repeats = 5 if args.quick else 20
    rng = np.random.default_rng(1)
    rows = []

    def record(name, kc, pt, unit="ms"):   # seconds in, milliseconds out
        ratio = pt / kc if pt else None
        rows.append({"case": name, "kcompile_ms": kc * 1e3, "torch_ms": pt * 1e3 if pt else None,
                     "speedup_vs_torch": ratio})
        print(f"{name:34s} kcompile {kc * 1e3:9.3f} {unit}" + (f"   torch {pt * 1e3:9.3f} {unit}   "
                                                              f"x{ratio:.2f}" if pt else ""), flush=True)

    x = rng.standard_normal((4096 * repeats, 784)).astype(np.float32)
    y = rng.integers(0, 10, 4096 * repeats).astype(np.float32)
    mlp = kc_mlp()
    for batch in (128, 4096):
        kc = kc_train_step_time(mlp, x, y, batch, repeats)
        pt = None
        if torch is not None:
            net = torch_mlp(torch)
            pt = torch_train_step_time(torch, net, torch.optim.RMSprop(net.parameters(), lr=1e-3), x, y, batch,
                                       repeats)
        record(f"MLP train step, batch {batch}", kc, pt)
    xi = rng.standard_normal((256 * repeats, 32, 32, 3)).astype(np.float32)
    yi = rng.integers(0, 10, 256 * repeats).astype(np.float32)
    vgg = kc_vgg()
    for batch in (32, 256):
        kc = kc_train_step_time(vgg, xi, yi, batch, repeats)
        kcp = kc_predict_time(vgg, xi, batch, repeats)
        pt = ptp = None
        if torch is not None:
            net = torch_vgg(torch)
            xt = np.ascontiguousarray(xi.transpose(0, 3, 1, 2))
            pt = torch_train_step_time(torch, net, torch.optim.SGD(net.parameters(), lr=1e-2), xt, yi, batch,
                                       repeats)
            with torch.no_grad():
                xb = torch.from_numpy(xt[:batch]).cuda()
                ptp = median_time(lambda: net(xb).cpu(), repeats, sync=torch.cuda.synchronize)
        record(f"VGG-like train step, batch {batch}", kc, pt)
        record(f"VGG-like inference, batch {batch}", kcp, ptp)
    size = 4096
    kc = gemm_kcompile(size, max(3, repeats // 4))
    pt = None
    if torch is not None:
        a = torch.randn(size, size, device="cuda")
        bm = torch.randn(size, size, device="cuda")
        torch.backends.cuda.matmul.allow_tf32 = False
        pt = median_time(lambda: torch.matmul(a, bm), max(3, repeats // 4), sync=torch.cuda.synchronize)
    record(f"GEMM {size}^3 float32", kc, pt)
    flops = 2 * size ** 3
    print(f"GEMM: kcompile {flops / kc / 1e12:.2f} TFLOP/s" + (f", cuBLAS {flops / pt / 1e12:.2f} TFLOP/s "
                                                               f"({100 * pt / kc:.0f}% of cuBLAS)" if pt else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": why, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
