"""`kcompile build`: the C library of a model computes what Python computes.

For each model a C driver (tests/c/kc_driver.c) is compiled against the built object with the
system C compiler and run in a subprocess: its predictions, 5 train steps (dropout included,
sample weights on every other step), an evaluate call and the final state must equal Python's
predict / train_on_batch / test_on_batch and weights. The ABI's error codes, other targets, the
CLI's exit codes and the sanitizers are checked too.
"""
import ctypes
import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers
from kcompile.codegen.c_abi import status_codes

from conftest import CONFORMANCE
from model_suites import INTERPRETER_SUITE, MODELS, guide_mlp, two_in_two_out

CC = shutil.which("cc") or shutil.which("gcc")
DRIVER = pathlib.Path(__file__).parent / "c" / "kc_driver.c"
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on this machine")
CODES = {k: v[0] for k, v in status_codes().items()}
BATCH, STEPS = 6, 5


def _data(manifest, rng):
    entry = manifest.entries["train"]
    def make(t):
        shape = (BATCH,) + tuple(t.shape[1:])
        if t.dtype == "int32":
            return rng.integers(0, 20, size=shape).astype(np.int32)
        return rng.random(shape, dtype=np.float32)
    xs = [make(t) for t in entry.role("x")]
    ys = []
    for t in entry.role("y"):
        y = np.zeros((BATCH,) + tuple(t.shape[1:]), np.float32)
        if y.shape[-1] > 1:
            y[np.arange(BATCH), rng.integers(0, y.shape[-1], BATCH)] = 1
        else:
            y[:] = rng.random(y.shape) > 0.5
        ys.append(y)
    return xs, ys, rng.random(BATCH, dtype=np.float32) + 0.5


def _compile_driver(directory, name, sanitize=False):
    exe = directory / ("driver_asan" if sanitize else "driver")
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"] if sanitize else ["-O1"]
    subprocess.run([CC, *flags, "-std=c11", "-Wall", "-Werror", f"-I{directory}", f"-DKC_NAME={name}",
                    f'-DKC_HEADER="{name}.h"', "-DKC_TRAIN", str(DRIVER), str(directory / f"{name}.o"),
                    "-o", str(exe), "-lm", "-lpthread"], check=True)
    return exe


def _run_driver(exe, directory, xs, ys, weights):
    (directory / "in.bin").write_bytes(b"".join(a.tobytes() for a in xs + ys) + weights.tobytes())
    subprocess.run([str(exe), str(directory / "in.bin"), str(directory / "out.bin"), str(BATCH), str(STEPS)],
                   check=True, timeout=120)
    return (directory / "out.bin").read_bytes()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each model built once: (model, manifest, directory); the Python model is still untrained."""
    cache = {}

    def get(key):
        if key not in cache:
            model = MODELS[key]()
            directory = tmp_path_factory.mktemp(key)
            cache[key] = (model, keras.build(model, directory), directory)
        return cache[key]
    return get


@pytest.mark.parametrize("key", list(MODELS))
def test_c_library_predicts_and_trains_as_python(built, key):
    model, manifest, directory = built(key)
    name = manifest.name
    xs, ys, weights = _data(manifest, np.random.default_rng(0))
    out = _run_driver(_compile_driver(directory, name), directory, xs, ys, weights)

    predictions = model.predict_on_batch(xs if len(xs) > 1 else xs[0])
    predictions = predictions if isinstance(predictions, list) else [predictions]
    offset = 0
    for want in predictions:
        got = np.frombuffer(out, np.float32, want.size, offset).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        offset += want.nbytes
    c_losses = np.frombuffer(out, np.float32, STEPS + 1, offset)
    offset += 4 * (STEPS + 1)
    py_losses = []
    for step in range(STEPS):
        logs = model.train_on_batch(xs if len(xs) > 1 else xs[0], ys if len(ys) > 1 else ys[0],
                                    sample_weight=weights if step % 2 else None, return_dict=True)
        py_losses.append(logs["loss"])
    py_losses.append(model.test_on_batch(xs if len(xs) > 1 else xs[0], ys if len(ys) > 1 else ys[0],
                                         return_dict=True)["loss"])
    np.testing.assert_allclose(c_losses, py_losses, rtol=1e-6, atol=1e-6)
    state = out[offset:]
    assert len(state) == manifest.state_size
    trained = MODELS[key]()
    trained.set_weights(model.get_weights())          # a second model, weights to be replaced from C's state
    keras.models.load_state(trained, np.zeros(manifest.state_size, np.uint8), manifest)
    keras.models.load_state(trained, state, manifest)
    for got, want in zip(trained.get_weights(), model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("key", list(INTERPRETER_SUITE))
def test_jit_interpreter_and_built_library_are_one_protocol(tmp_path, key):
    """The same model through the three Executables: equal predictions and two train steps."""
    model = keras.Sequential(INTERPRETER_SUITE[key]())
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    rng = np.random.default_rng(5)
    x = rng.random((6,) + tuple(model.inputs[0].shape[1:]), dtype=np.float32)
    y = rng.random((6, 1), dtype=np.float32)
    library = keras.build(model, tmp_path) and keras.load_built(tmp_path)
    start = model.get_weights()
    results = []
    for executable in ("jit", "interpreter", "library"):
        if executable == "library":
            preds = library.run("predict", 6, [x])[0]
            losses = [library.run("train", 6, [x, y, np.ones(6, np.float32)])[0] for _ in range(2)]
            keras.models.load_state(model, library.pool.buffer, library.manifest)
            weights = model.get_weights()
        else:
            model.set_weights(start)
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=executable == "interpreter")
            preds = model.predict_on_batch(x)
            losses = [model.train_on_batch(x, y) for _ in range(2)]
            weights = model.get_weights()
        results.append((preds, losses, weights))
    for preds, losses, weights in results[1:]:
        np.testing.assert_allclose(preds, results[0][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.ravel(losses), np.ravel(results[0][1]), rtol=1e-4, atol=1e-6)
        for a, b in zip(weights, results[0][2]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_built_library_loads_back_as_an_executable(tmp_path):
    model = two_in_two_out()
    manifest = keras.build(model, tmp_path)
    executable = keras.load_built(tmp_path)
    assert executable.manifest.to_json() == manifest.to_json()
    xs, ys, _ = _data(manifest, np.random.default_rng(1))
    for g, w in zip(executable.run("predict", BATCH, xs), model.predict_on_batch(xs)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
    losses = executable.run_loop("train", 2, xs + ys + [np.ones(BATCH, np.float32)] * 2)   # 3 steps of 2 rows
    assert losses.shape == (3,) and np.isfinite(losses).all()
    keras.models.load_state(model, executable.pool.buffer, manifest)   # the trained weights back in Python
    for g, w in zip(executable.run("predict", BATCH, xs), model.predict_on_batch(xs)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_weights_trained_in_c_save_as_keras(built, tmp_path):
    model, manifest, directory = built("guide_mlp")
    xs, ys, weights = _data(manifest, np.random.default_rng(2))
    out = _run_driver(_compile_driver(directory, manifest.name), directory, xs, ys, weights)
    state = out[-manifest.state_size:]
    fresh = guide_mlp()
    keras.models.load_state(fresh, state, manifest)
    fresh.save(tmp_path / "from_c.keras")
    again = keras.models.load_model(tmp_path / "from_c.keras")
    np.testing.assert_array_equal(again.predict_on_batch(xs[0]), fresh.predict_on_batch(xs[0]))


def test_every_error_code(built):
    _, manifest, directory = built("guide_mlp")
    lib = ctypes.CDLL(str(directory / f"lib{manifest.name}.so"))
    n = manifest.name
    size = getattr(lib, f"{n}_workspace_size")
    size.restype, size.argtypes = ctypes.c_int64, [ctypes.c_int64]
    assert size(0) == -1 and size(-3) == -1 and size(manifest.max_batch + 1) == -1 and size(4) > 0
    state_size = getattr(lib, f"{n}_state_size")
    state_size.restype = ctypes.c_int64
    assert state_size() == manifest.state_size

    def aligned(nbytes):
        raw = np.zeros(nbytes + 128, np.uint8)
        start = (-raw.ctypes.data) % 64
        return raw[start:start + nbytes + 64]
    state, ws = aligned(manifest.state_size), aligned(size(4))
    init = getattr(lib, f"{n}_init_state")
    assert init(None) == CODES["KC_ERR_NULL_POINTER"]
    assert init(ctypes.c_void_p(state.ctypes.data + 4)) == CODES["KC_ERR_MISALIGNED"]
    assert init(ctypes.c_void_p(state.ctypes.data)) == CODES["KC_OK"]
    x = np.ones((4, 20), np.float32)
    y = np.zeros((4, 10), np.float32)
    ins = (ctypes.c_void_p * 1)(x.ctypes.data)
    outs = (ctypes.c_void_p * 1)(y.ctypes.data)
    predict = getattr(lib, f"{n}_predict")
    predict.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    s, w = state.ctypes.data, ws.ctypes.data
    assert predict(s, 4, ins, outs, w) == CODES["KC_OK"] and np.allclose(y.sum(axis=1), 1, atol=1e-5)
    for batch in (0, -1, -2 ** 63, manifest.max_batch + 1):
        assert predict(s, batch, ins, outs, w) == CODES["KC_ERR_BAD_BATCH"]
    assert predict(None, 4, ins, outs, w) == CODES["KC_ERR_NULL_POINTER"]
    assert predict(s, 4, None, outs, w) == CODES["KC_ERR_NULL_POINTER"]
    assert predict(s, 4, ins, None, w) == CODES["KC_ERR_NULL_POINTER"]
    assert predict(s, 4, ins, outs, None) == CODES["KC_ERR_NULL_POINTER"]
    assert predict(s, 4, (ctypes.c_void_p * 1)(None), outs, w) == CODES["KC_ERR_NULL_POINTER"]
    assert predict(s, 4, ins, outs, w + 8) == CODES["KC_ERR_MISALIGNED"]
    assert predict(s + 32, 4, ins, outs, w) == CODES["KC_ERR_MISALIGNED"]
    assert predict(s, 4, (ctypes.c_void_p * 1)(x.ctypes.data + 1), outs, w) == CODES["KC_ERR_MISALIGNED"]
    train = getattr(lib, f"{n}_train_step")
    train.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                      ctypes.c_void_p, ctypes.c_void_p]
    loss = ctypes.c_float()
    targets = (ctypes.c_void_p * 1)(y.ctypes.data)
    ws_train = aligned(size(4))
    assert train(s, 4, ins, targets, None, ctypes.byref(loss), ws_train.ctypes.data) == CODES["KC_OK"]
    assert np.isfinite(loss.value)
    assert train(s, 4, ins, targets, None, None, ws_train.ctypes.data) == CODES["KC_ERR_NULL_POINTER"]
    assert train(s, 4, ins, None, None, ctypes.byref(loss), ws_train.ctypes.data) == CODES["KC_ERR_NULL_POINTER"]
    assert train(s, 0, ins, targets, None, ctypes.byref(loss), ws_train.ctypes.data) == CODES["KC_ERR_BAD_BATCH"]
    assert train(s, 4, ins, targets, x.ctypes.data + 2, ctypes.byref(loss), ws_train.ctypes.data) == \
        CODES["KC_ERR_MISALIGNED"]


@pytest.mark.parametrize("key", ["guide_mlp", "vgg_like", "lstm_model"])
def test_example_and_driver_run_clean_under_sanitizers(built, key):
    """Dense GEMMs (GEMV and packed paths), convolutions (direct micro-kernels reading their input
    in place, B read in place), a scan with slices read as views: no out-of-bounds access."""
    model, manifest, directory = built(key)
    done = subprocess.run(["make", "-s", "-C", str(directory), "CFLAGS=-O1 -g -fsanitize=address,undefined "
                           "-fno-sanitize-recover=all"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = subprocess.run([str(directory / "example")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr
    xs, ys, weights = _data(manifest, np.random.default_rng(3))
    _run_driver(_compile_driver(directory, manifest.name, sanitize=True), directory, xs, ys, weights)


def test_other_targets(tmp_path):
    model = keras.Sequential([layers.Dense(16, activation="tanh", input_shape=(8,)), layers.Dense(3)], name="small")
    host = keras.build(model, tmp_path / "host", entries=["predict"])
    arm = keras.build(model, tmp_path / "arm", target="aarch64-linux-gnu", entries=["predict"])
    assert arm.target["triple"].startswith("aarch64")
    readelf = shutil.which("readelf")
    if readelf:
        header = subprocess.run([readelf, "-h", str(tmp_path / "arm" / "small.o")], capture_output=True, text=True)
        assert "AArch64" in header.stdout
    else:
        assert (tmp_path / "arm" / "small.o").read_bytes()[18] == 183   # e_machine EM_AARCH64
    assert not (tmp_path / "arm" / "libsmall.so").exists()             # not linkable on this machine
    keras.build(model, tmp_path / "base", target="x86-64", entries=["predict"])
    x = np.random.default_rng(4).random((7, 8), dtype=np.float32)
    want = keras.load_built(tmp_path / "host").run("predict", 7, [x])[0]
    got = keras.load_built(tmp_path / "base").run("predict", 7, [x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert host.max_batch > 10 ** 9


def test_two_threads_predict_on_one_state(built):
    """The ABI's promise: predict only reads the state, so threads share it, each with its own workspace."""
    _, manifest, directory = built("vgg_like")
    exe = directory / "threads"
    subprocess.run([CC, "-O1", "-std=c11", "-pthread", f"-I{directory}", f"-DKC_NAME={manifest.name}",
                    f'-DKC_HEADER="{manifest.name}.h"', str(DRIVER.parent / "kc_threads.c"),
                    str(directory / f"{manifest.name}.o"), "-o", str(exe), "-lm"], check=True)
    done = subprocess.run([str(exe), "3", "40"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_object_needs_only_libc_and_libm(built):
    """No allocation, no Python, no LLVM at run time: the only undefined symbols are libc's memory
    routines and libm's functions."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm is not installed")
    _, manifest, directory = built("lstm_model")
    undefined = subprocess.run([nm, "-u", str(directory / f"{manifest.name}.o")], capture_output=True, text=True,
                               check=True).stdout.split()
    names = {u for u in undefined if u != "U"}
    allowed = {"memcpy", "memset", "memmove", "expf", "logf", "tanhf", "powf", "sqrtf", "exp", "log"}
    assert names <= allowed, names - allowed
    assert not names & {"malloc", "calloc", "realloc", "free", "aligned_alloc"}


def test_weights_in_a_file(tmp_path):
    model = keras.Sequential([layers.Dense(4, input_shape=(3,))], name="filed")
    keras.build(model, tmp_path, weights="file", entries=["predict"])
    assert (tmp_path / "filed.state").stat().st_size == json.loads((tmp_path / "filed_manifest.json").read_text())[
        "state_size"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(keras.load_built(tmp_path).run("predict", 2, [x])[0], model.predict_on_batch(x),
                               rtol=1e-6)


def test_cli_build_exit_codes(tmp_path, capsys):
    from kcompile.cli import main
    assert main(["build", str(CONFORMANCE / "keras3" / "mlp_softmax.keras"), "-o", str(tmp_path / "ok"),
                 "--name", "mlp", "--entries", "predict"]) == 0
    assert (tmp_path / "ok" / "mlp.h").exists() and (tmp_path / "ok" / "libmlp.so").exists()
    config = json.loads((CONFORMANCE / "keras3" / "mlp_softmax.json").read_text())
    config["config"]["layers"][1]["class_name"] = "FancyDense"
    config["config"]["layers"][2]["config"]["kernel_constraint"] = {"class_name": "MaxNorm", "config": {}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["build", str(bad), "-o", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "FancyDense" in err and "kernel_constraint" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(bad)])                 # no -o: a usage error
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(bad), "-o", str(tmp_path), "--target", "sparc"])
    assert exit_info.value.code == 2


def test_the_readme_demo_trains_saves_and_exports(tmp_path, capsys):
    from kcompile.cli import main
    assert main(["demo", "--epochs", "1", "--samples", "256", "--save-to", str(tmp_path / "d.keras"),
                 "--build-to", str(tmp_path / "lib")]) == 0
    out = capsys.readouterr().out
    assert "reloaded: identical" in out and "its predictions: identical" in out
    assert (tmp_path / "lib" / "libdemo_mlp.so").exists() and (tmp_path / "lib" / "demo_mlp.h").exists()
