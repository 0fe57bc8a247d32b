"""The guide models on the GPU path: the predict, train and evaluate entries of a VGG-like
convnet (window, window_grad, max pooling, dropout), an LSTM (scan as a host loop of launches,
its reversed gradient scan) and an Embedding model (gather_rows, scatter_add_rows) lower
entirely to PTX, the predict and train entries assemble with ptxas for sm_80 and sm_90 (the
evaluate entries' kernel classes are theirs too), and every entry's emulated launch schedule
(nvptx_schedule.walk_launches over host-built grids) computes what the interpreter computes, state
updates included. (The guide MLP: test_nvptx.py.) Where a GPU is present (`-m gpu`), the same
models train on it through GpuExecutable and match the CPU; device choice (KCOMPILE_DEVICE,
set_device) is checked everywhere."""
import subprocess

import numpy as np
import pytest

import kcompile as keras
from kcompile import config, layers
from kcompile.codegen.nvptx import emit_ptx_programs, nvptx_target, unsupported_kernels
from kcompile.ir.interpreter import evaluate
from kcompile.ir.passes.pipeline import lower_to_kernels
from kcompile.models.compiled import CompiledModel
from kcompile.runtime import gpu_device

from test_nvptx import GPU, PTXAS, HostGrid, assert_close, needs_gpu, needs_ptxas

MODELS = {
    "vgg": lambda: [keras.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu", padding="same"),
                    layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2), layers.Dropout(0.25),
                    layers.Flatten(), layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")],
    "lstm": lambda: [keras.Input((5, 4)), layers.LSTM(6), layers.Dense(3, activation="softmax")],
    "embedding": lambda: [keras.Input((7,)), layers.Embedding(20, 8), layers.GlobalAveragePooling1D(),
                          layers.Dense(3, activation="softmax")],
}
INPUT_SHAPES = {"vgg": (8, 8, 3), "lstm": (5, 4), "embedding": (7,)}
# (the VGG-like model's windows are read in place: implicit GEMMs and strided views, checked below)
KINDS = {"vgg": {"window_grad"}, "lstm": {"scan"}, "embedding": {"gather_rows", "scatter_add_rows"}}


def _model(name, run_eagerly=False):
    model = keras.Sequential(MODELS[name]())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=run_eagerly)
    return model


def _feeds(name, graph, batch, rng):
    feeds = {}
    for node in graph.inputs:
        key = node.attrs["name"]
        shape = tuple(batch if not isinstance(d, int) else d for d in node.shape)
        if key.startswith("target"):
            feeds[key] = rng.integers(0, 3, shape).astype(np.float32)
        elif key.startswith("sample_weight"):
            feeds[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name == "embedding":
            feeds[key] = rng.integers(0, 20, shape).astype(np.float32)
        else:
            feeds[key] = rng.standard_normal(shape).astype(np.float32)
    return feeds


@pytest.fixture(scope="module")
def guide_models():
    out = {}
    for name in MODELS:
        model = _model(name, run_eagerly=True)      # the graphs only: no CPU code is generated
        specs, spec, y_shapes = model._training_setup()
        compiled = CompiledModel(model, specs, spec)
        graphs = compiled.entry_graphs(y_shapes)
        out[name] = (compiled, graphs, {e: lower_to_kernels(g) for e, g in graphs.items()})
    return out


def _ops(program):
    ops = set()
    for k in program.kernels:
        ops |= {n.op for n in k.computed()}
        if k.body is not None:
            ops |= _ops(k.body)
    return ops


@needs_ptxas
def test_guide_models_assemble_and_their_schedules_match_the_interpreter(guide_models, tmp_path):
    programs = {}
    for name, (_, graphs, progs) in guide_models.items():
        assert {e: unsupported_kernels(p, e) for e, p in progs.items()} == {e: [] for e in progs}
        assert KINDS[name] <= _ops(progs["train"]) | {k.kind for k in progs["train"].kernels}, name
        if name == "vgg":
            assert any(k.a_window is not None for k in progs["train"].kernels)
            assert any(k.views for k in progs["train"].kernels)
        programs.update({f"{name}_{e}": p for e, p in progs.items()})
    jobs = []
    assembled = {k: p for k, p in programs.items() if not k.endswith("_evaluate")}   # predict and train
    for arch in ("sm_80", "sm_90"):        # one module of the three models' entries per architecture
        ptx, launches = emit_ptx_programs(assembled, nvptx_target(arch), name="guide")
        assert f".target {arch}" in ptx
        (tmp_path / f"{arch}.ptx").write_text(ptx)
        jobs.append(subprocess.Popen([PTXAS, f"-arch={arch}", str(tmp_path / f"{arch}.ptx"), "-o",
                                      str(tmp_path / f"{arch}.cubin")], stderr=subprocess.PIPE, text=True))
    scans = [l for l in launches["lstm_train"] if l.kind == "scan"]
    assert len(scans) == 2 and {s.reverse for s in scans} == {False, True} and all(s.steps == 5 for s in scans)
    grid = HostGrid(programs, name="guide")
    rng = np.random.default_rng(11)
    for name, (compiled, graphs, _) in guide_models.items():
        for entry, graph in graphs.items():
            for batch in (1, 6):
                feeds = _feeds(name, graph, batch, rng)
                state = compiled.pool.values()
                want, updates = evaluate(graph, feeds, state, batch=batch)
                slots = {k: v.copy() for k, v in state.items()}
                got = grid.run(f"{name}_{entry}", batch, [feeds[i.attrs["name"]] for i in graph.inputs], slots)
                for key in want:
                    assert_close(got[key], want[key], f"{name} {entry} {key} at batch {batch}")
                for slot, value in updates.items():
                    assert_close(slots[slot], np.asarray(value).reshape(slots[slot].shape),
                                 f"{name} {entry} update {slot} at batch {batch}")
    for job in jobs:
        assert job.wait(timeout=300) == 0, f"ptxas rejected the guide models' PTX:\n{job.stderr.read()}"


def test_device_choice(monkeypatch):
    monkeypatch.setattr(gpu_device, "_choice", None)
    monkeypatch.delenv("KCOMPILE_DEVICE", raising=False)
    assert config.get_device() == ("gpu" if GPU else "cpu")
    monkeypatch.setenv("KCOMPILE_DEVICE", "cpu")
    assert config.get_device() == "cpu"
    monkeypatch.setenv("KCOMPILE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="KCOMPILE_DEVICE: expected one of"):
        config.get_device()
    monkeypatch.delenv("KCOMPILE_DEVICE")
    assert config.set_device("CPU") == "cpu" and gpu_device.requested_device() == "cpu"
    with pytest.raises(ValueError, match="set_device"):
        config.set_device("npu")
    assert config.set_device(None) == ("gpu" if GPU else "cpu")
    if not GPU:
        with pytest.raises(config.DeviceUnavailable, match=r"set_device\('gpu'\) asks for the GPU.*no CUDA|GPU"):
            config.set_device("gpu")
        monkeypatch.setenv("KCOMPILE_DEVICE", "gpu")
        with pytest.raises(config.DeviceUnavailable, match="KCOMPILE_DEVICE asks for the GPU"):
            config.get_device()
        # a model compiled now asks for the GPU it cannot have: a clear error, no silent CPU run
        with pytest.raises(config.DeviceUnavailable, match="KCOMPILE_DEVICE asks for the GPU"):
            _model("embedding").predict(np.zeros((2, 7), np.float32), verbose=0)
    # on the CPU the compiled model's executable is the native one
    monkeypatch.setenv("KCOMPILE_DEVICE", "cpu")
    model = _model("embedding")
    assert model.predict(np.zeros((2, 7), np.float32), verbose=0).shape == (2, 3)
    from kcompile.runtime.native import NativeExecutable
    assert isinstance(model._compiled_model.any_executable(), NativeExecutable)


@needs_gpu
def test_guide_models_train_on_the_gpu_as_on_the_cpu(monkeypatch):
    """fit/evaluate/predict with KCOMPILE_DEVICE=gpu against the same model on the CPU."""
    for name in MODELS:
        results = {}
        for device in ("cpu", "gpu"):
            monkeypatch.setenv("KCOMPILE_DEVICE", device)
            keras.utils.set_random_seed(3)
            model = _model(name)
            shape = (64,) + INPUT_SHAPES[name]
            x = (np.random.default_rng(1).integers(0, 20, shape) if name == "embedding"
                 else np.random.default_rng(1).standard_normal(shape)).astype(np.float32)
            y = np.random.default_rng(2).integers(0, 3, 64).astype(np.float32)
            history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
            results[device] = (history.history["loss"], model.evaluate(x, y, verbose=0), model.predict(x, verbose=0),
                               [w.copy() for w in model.get_weights()])
        cpu, gpu = results["cpu"], results["gpu"]
        np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-4, err_msg=f"{name} losses")
        np.testing.assert_allclose(gpu[2], cpu[2], rtol=1e-4, atol=1e-5, err_msg=f"{name} predictions")
        for a, b in zip(gpu[3], cpu[3]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{name} weights")
