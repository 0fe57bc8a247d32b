"""`kcompile build --target nvptx-sm_90` (aot.py's nvptx branch, codegen/nvptx_host.py): the folder
holds NAME.ptx (assembled here by ptxas), NAME.h identical to the CPU library's header, and a host
library (NAME.o, libNAME.so) that links without CUDA. A C program calling it where there is no
CUDA driver gets KC_ERR_NO_DEVICE and a message, not a crash; bad arguments get kcompile.h's
statuses first. Through the fake libcuda of test_nvptx.py (its "kernels" the host-emulated
ones) the library's C launch schedule (an LSTM's scan as a C loop of launches, dense layers)
predicts and trains as the interpreter does."""
import ctypes
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers
from kcompile.aot import build, header_text
from kcompile.codegen.module import build_module
from kcompile.codegen.nvptx import flat_launches
from kcompile.ir.graph import Graph
from kcompile.ir.interpreter import evaluate
from kcompile.ir.passes.pipeline import lower_to_kernels
from kcompile.models.compiled import CompiledModel

from test_nvptx import FAKE_LIBCUDA, PTXAS, HostGrid, assert_close, needs_gpu, register_fake

CC = shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None or PTXAS is None, reason="needs a C compiler and ptxas (CUDA toolkit)")

MAIN_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "seq_cuda.h"
int main(void) {
    void *state = aligned_alloc(64, 4096), *ws = aligned_alloc(64, 4096);
    float x[20] = {0};
    const void *inputs[1] = {x};
    float y[10];
    void *outputs[1] = {y};
    printf("null %d\n", seq_predict(NULL, 1, inputs, outputs, ws));
    printf("batch %d\n", seq_predict(state, 0, inputs, outputs, ws));
    printf("misaligned %d\n", seq_predict((char *)state + 4, 1, inputs, outputs, ws));
    printf("workspace %lld %lld\n", (long long)seq_workspace_size(0), (long long)seq_workspace_size(8) > 0);
    int s = seq_predict(state, 1, inputs, outputs, ws);
    printf("predict %d %s: %s\n", s, kc_cuda_status_string(s), seq_last_error());
    float loss;
    s = seq_train_step(state, 1, inputs, inputs, NULL, &loss, ws);
    printf("train %d\n", s);
    printf("init %d\n", seq_init_state(state));
    return 0;
}
"""


def _seq_model():
    """An LSTM (a scan: the C host loops over its time steps) under dense layers (tiled matmuls)."""
    inputs = keras.Input(shape=(5, 4), name="steps")
    h = layers.LSTM(8, name="lstm")(inputs)
    h = layers.Dense(16, activation="relu", name="dense")(h)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(h)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model = _seq_model()
    out = tmp_path_factory.mktemp("gpu_lib")
    manifest = build(model, out, name="seq", target="nvptx-sm_90")
    specs, spec, y_shapes = model._training_setup()
    compiled = CompiledModel(model, specs, spec)
    graphs = compiled.entry_graphs(y_shapes)
    g = graphs["evaluate"]     # as aot.build: the C evaluate keeps no metric sums
    graphs["evaluate"] = Graph(g.inputs, g.outputs, [], {}, name="evaluate")
    return model, out, manifest, compiled, graphs


def test_the_gpu_folder_assembles_and_matches_the_cpu_header(built, tmp_path):
    model, out, manifest, compiled, graphs = built
    for f in ("seq.ptx", "seq.h", "seq_cuda.h", "seq.o", "libseq.so", "seq_host.c", "seq_manifest.json",
              "seq_launches.json", "kcompile.h", "kcompile_cuda.h", "kc_cuda_host.h"):
        assert (out / f).exists(), f
    ptx = (out / "seq.ptx").read_text()
    assert ".target sm_90" in ptx
    r = subprocess.run([PTXAS, "-arch=sm_90", str(out / "seq.ptx"), "-o", str(tmp_path / "seq.cubin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert set(manifest.abi) >= {"predict", "train", "evaluate", "init_state"} and manifest.abi["device"] == "cuda"
    # the header of the CPU library for the same programs, but for its first (target) line
    programs = {e: lower_to_kernels(g) for e, g in graphs.items()}
    _, cpu = build_module(programs, compiled.pool.layout(), "host", "seq")
    gpu_header = (out / "seq.h").read_text().splitlines()
    cpu_header = header_text(cpu).splitlines()
    assert gpu_header[1:] == cpu_header[1:] and "nvptx-sm_90" in gpu_header[0]
    launches = json.loads((out / "seq_launches.json").read_text())
    kinds = [l["kind"] for l in launches["predict"]]
    assert kinds.count("scan") == 1 and kinds.count("matmul") >= 3
    # the library links without CUDA: no libcuda in its dependencies
    nm = subprocess.run(["nm", "-u", str(out / "libseq.so")], capture_output=True, text=True).stdout
    assert "cuLaunchKernel" not in nm and "dlopen" in nm


def test_calls_without_a_gpu_return_a_status(built, tmp_path):
    _, out, *_ = built
    (tmp_path / "main.c").write_text(MAIN_C)
    exe = tmp_path / "main"
    subprocess.run([CC, "-I", str(out), str(tmp_path / "main.c"), str(out / "seq.o"), "-ldl", "-lpthread", "-o",
                    str(exe)], check=True)
    env = dict(os.environ, KCOMPILE_LIBCUDA=str(tmp_path / "no_such_libcuda.so"))
    r = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert (lines["null"], lines["batch"], lines["misaligned"]) == ("1", "2", "3")
    assert lines["workspace"] == "-1 1"
    assert lines["predict"].startswith("16 no CUDA driver or no GPU: seq: no CUDA driver: dlopen(")
    assert "no_such_libcuda.so" in lines["predict"]
    assert lines["train"] == "16" and lines["init"] == "16"


@pytest.fixture(scope="module")
def fake_libcuda(tmp_path_factory):
    d = tmp_path_factory.mktemp("fakecuda_aot")
    (d / "fake.c").write_text(FAKE_LIBCUDA)
    subprocess.run([CC, "-shared", "-fPIC", "-O1", "-o", str(d / "libcuda.so.1"), str(d / "fake.c")], check=True)
    return d / "libcuda.so.1"


def _aligned(nbytes):
    raw = np.zeros(nbytes + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + nbytes]


def test_the_host_library_runs_the_schedule_through_a_fake_driver(built, fake_libcuda, monkeypatch):
    model, out, manifest, compiled, graphs = built
    programs = {e: lower_to_kernels(g) for e, g in graphs.items()}
    host = HostGrid(programs, name="seq")
    launches = json.loads((out / "seq_launches.json").read_text())
    def symbols(ls):                                # the JSON schedule, scan bodies flattened
        for l in ls:
            yield from symbols(l["body"]) if l["kind"] == "scan" else [l["symbol"]]
    assert {e: list(symbols(ls)) for e, ls in launches.items()} == \
        {e: [l.symbol for l in flat_launches(ls)] for e, ls in host.launches.items()}
    fake = ctypes.CDLL(str(fake_libcuda))
    register_fake(fake, host)
    monkeypatch.setenv("KCOMPILE_LIBCUDA", str(fake_libcuda))
    lib = ctypes.CDLL(str(out / "libseq.so"))
    P = ctypes.c_void_p
    lib.seq_workspace_size.restype = ctypes.c_int64
    lib.seq_workspace_size.argtypes = [ctypes.c_int64]
    lib.seq_state_size.restype = ctypes.c_int64
    state = _aligned(lib.seq_state_size())
    assert lib.seq_init_state(P(state.ctypes.data)) == 0
    assert state.tobytes() == compiled.pool.buffer[:state.size].tobytes()
    rng = np.random.default_rng(4)
    batch = 9
    ws = _aligned(lib.seq_workspace_size(batch))
    x = rng.standard_normal((batch, 5, 4)).astype(np.float32)
    y = np.full((batch, 10), 7, np.float32)
    ins, outs = (P * 1)(x.ctypes.data), (P * 1)(y.ctypes.data)
    assert lib.seq_predict(P(state.ctypes.data), ctypes.c_int64(batch), ins, outs, P(ws.ctypes.data)) == 0
    want, _ = evaluate(graphs["predict"], {"steps": x}, compiled.pool.values(), batch=batch)
    assert_close(y, want["y0"], "predict through the host library")
    target = rng.integers(0, 10, batch).astype(np.float32)
    loss = np.zeros(1, np.float32)
    before = compiled.pool.values()
    status = lib.seq_train_step(P(state.ctypes.data), ctypes.c_int64(batch), ins, (P * 1)(target.ctypes.data), None,
                                P(loss.ctypes.data), P(ws.ctypes.data))
    assert status == 0
    train = graphs["train"]
    feeds = {"steps": x, "target_0": target, "sample_weight_0": np.ones(batch, np.float32)}
    want, updates = evaluate(train, feeds, before, batch=batch)
    assert_close(loss[0], np.float32(np.asarray(want[next(iter(train.outputs))]).reshape(())), "train loss")
    for slot, value in updates.items():
        off = compiled.pool.offsets[slot]            # the same layout as the library's (init_state matched)
        got = state[off:off + 4 * value.size].view(np.asarray(value).dtype).reshape(np.shape(value))
        assert_close(got, np.asarray(value), f"update {slot}")


@needs_gpu
def test_the_host_library_predicts_and_trains_on_the_gpu(built, tmp_path):
    """On a real device: the library's entries on device memory against the interpreter."""
    from kcompile.runtime.cuda import Context
    model, out, manifest, compiled, graphs = built
    lib = ctypes.CDLL(str(out / "libseq.so"))
    P = ctypes.c_void_p
    lib.seq_workspace_size.restype = ctypes.c_int64
    lib.seq_workspace_size.argtypes = [ctypes.c_int64]
    lib.seq_state_size.restype = ctypes.c_int64
    lib.seq_last_error.restype = ctypes.c_char_p
    rng = np.random.default_rng(8)
    batch = 33
    with Context() as ctx:
        state = ctx.alloc(lib.seq_state_size())
        ws = ctx.alloc(lib.seq_workspace_size(batch))
        assert lib.seq_init_state(P(state)) == 0, lib.seq_last_error()
        x = rng.standard_normal((batch, 5, 4)).astype(np.float32)
        dx, dy = ctx.to_device(x), ctx.alloc(4 * batch * 10)
        status = lib.seq_predict(P(state), ctypes.c_int64(batch), (P * 1)(dx), (P * 1)(dy), P(ws))
        assert status == 0, lib.seq_last_error()
        want, _ = evaluate(graphs["predict"], {"steps": x}, compiled.pool.values(), batch=batch)
        assert_close(ctx.from_device(dy, (batch, 10), np.float32), want["y0"], "predict on the GPU")
        target = rng.integers(0, 10, batch).astype(np.float32)
        dt, dloss = ctx.to_device(target), ctx.alloc(4)
        status = lib.seq_train_step(P(state), ctypes.c_int64(batch), (P * 1)(dx), (P * 1)(dt), None, P(dloss), P(ws))
        assert status == 0, lib.seq_last_error()
        feeds = {"steps": x, "target_0": target, "sample_weight_0": np.ones(batch, np.float32)}
        want, updates = evaluate(graphs["train"], feeds, compiled.pool.values(), batch=batch)
        loss = ctx.from_device(dloss, (), np.float32)
        assert_close(loss, np.asarray(want[next(iter(graphs["train"].outputs))], np.float32).reshape(()), "loss")
        raw = ctx.from_device(state, (manifest.state_size,), np.uint8)
        for slot, value in updates.items():
            off = compiled.pool.offsets[slot]
            got = raw[off:off + 4 * np.size(value)].view(np.asarray(value).dtype).reshape(np.shape(value))
            assert_close(got, np.asarray(value), f"update {slot} on the GPU")
