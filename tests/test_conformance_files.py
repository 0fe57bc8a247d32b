"""Models saved by real Keras 3 and Keras 2, loaded from every format in the corpus: predict,
evaluate and one train_on_batch from the loaded state (optimizer, loss and loss weights from the
file) against Keras's goldens; the file-format edge cases of formats/; and round trips through
every format kcompile writes. Tests enumerate the manifests, so a new corpus model adds tests."""
import json
import warnings

import h5py
import numpy as np
import pytest

import kcompile as keras
from kcompile.saving.errors import KerasFileError

from conftest import CONFORMANCE
from test_keras_goldens import _close

CASES = [(dialect, name, fmt) for dialect in ("keras3", "keras2")
         for name, info in json.loads((CONFORMANCE / dialect / "manifest.json").read_text()).items()
         for fmt in info["formats"]]


def _load(dialect, name, fmt):
    base = CONFORMANCE / dialect
    model = keras.models.load_model(base / f"{name}{fmt}")
    if fmt == ".json":     # structure only: weights from the .h5
        model.load_weights(base / f"{name}.h5")
    if fmt in (".json", ".keras"):   # these corpus files carry no optimizer: take the .h5's training config
        ref = keras.models.load_model(base / f"{name}.h5")
        model.compile(optimizer=type(ref.optimizer).from_config(ref.optimizer.get_config()),
                      loss=ref._compile_args["loss"], loss_weights=ref._compile_args["loss_weights"])
    return model


def _io(model, z, prefix):
    n_in = len(model.inputs)
    xs = [z[f"{prefix}x{i}"] for i in range(n_in)]
    return xs if n_in > 1 else xs[0]


@pytest.mark.parametrize("dialect,name,fmt", CASES, ids=[f"{d}-{n}{f}" for d, n, f in CASES])
def test_loaded_model_matches_keras(dialect, name, fmt):
    z = np.load(CONFORMANCE / dialect / f"{name}.npz")
    model = _load(dialect, name, fmt)
    preds = model.predict(_io(model, z, ""), verbose=0)
    for i, p in enumerate(preds if isinstance(preds, list) else [preds]):
        _close(p, z[f"y{i}"], 1e-5, 1e-4)
    if "loss_step" not in z:
        return
    n_out = len(model.outputs)
    ys = [z[f"ty{i}"] for i in range(n_out)]
    ys = ys if n_out > 1 else ys[0]
    before = model.evaluate(_io(model, z, "t"), ys, verbose=0)
    before = before[0] if isinstance(before, list) else before
    _close(before, z["loss_before"], 0, 1e-4 * abs(float(z["loss_before"])) + 1e-6)
    loss = model.train_on_batch(_io(model, z, "t"), ys)
    loss = loss[0] if isinstance(loss, list) else loss
    _close(loss, z["loss_step"], 0, 1e-4 * abs(float(z["loss_step"])) + 1e-6)
    for i, w in enumerate(model.get_weights()):
        _close(w, z[f"w_after_{i}"], 1e-5, 1e-3)


# ---------------------------------------------------------------- formats/ edge cases

FORMAT_FILES = sorted(p for d in ("k3", "k2") for p in (CONFORMANCE / "formats" / d).iterdir()
                      if p.suffix in (".keras", ".h5", ".json", ".yaml") and "weights" not in p.name
                      and (p.parent / (p.name.split(".")[0].replace("_legacy_to_yaml", "") + "_io.npz")).exists())


@pytest.mark.parametrize("path", FORMAT_FILES, ids=[f"{p.parent.name}-{p.name}" for p in FORMAT_FILES])
def test_format_edge_cases_predict_like_keras(path):
    stem = path.name.split(".")[0].replace("_legacy_to_yaml", "")
    z = np.load(path.parent / f"{stem}_io.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras.models.load_model(path)
    if path.suffix in (".json", ".yaml"):
        model.load_weights(path.parent / f"{stem}.h5")
    xs = [z[k] for k in ("x0", "x1") if k in z] or [z["x"]]
    preds = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    ys = [z[k] for k in ("y0", "y1") if k in z] or [z["y"]]
    for p, y in zip(preds if isinstance(preds, list) else [preds], ys):
        _close(p, y, 1e-5, 1e-4)


@pytest.mark.parametrize("weights_file", ["k3/func_gru.weights.h5", "k3/func_gru_legacyweights.h5",
                                          "k2/func_gru_weights.h5", "k3/sharded/seq_mlp.weights.json"])
def test_weights_only_files(weights_file):
    path = CONFORMANCE / "formats" / weights_file
    stem = path.name.split(".")[0].replace("_legacyweights", "").replace("_weights", "")
    model = keras.models.load_model(CONFORMANCE / "formats" / weights_file.split("/")[0] / f"{stem}.keras") \
        if (CONFORMANCE / "formats" / weights_file.split("/")[0] / f"{stem}.keras").exists() else None
    if model is None:
        model = keras.models.load_model(CONFORMANCE / "formats" / "k3" / f"{stem}.keras")
    z = np.load(CONFORMANCE / "formats" / weights_file.split("/")[0] / f"{stem}_io.npz") \
        if (CONFORMANCE / "formats" / weights_file.split("/")[0] / f"{stem}_io.npz").exists() else \
        np.load(CONFORMANCE / "formats" / "k3" / f"{stem}_io.npz")
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights(path)
    xs = [z[k] for k in ("x0", "x1") if k in z] or [z["x"]]
    preds = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    ys = [z[k] for k in ("y0", "y1") if k in z] or [z["y"]]
    for p, y in zip(preds if isinstance(preds, list) else [preds], ys):
        _close(p, y, 1e-5, 1e-4)


# ---------------------------------------------------------------- round trips

def _trained_model():
    rng = np.random.default_rng(0)
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Dense(5, activation="relu")(a)
    merged = keras.layers.Concatenate()([h, keras.layers.BatchNormalization()(b)])
    out1 = keras.layers.Dense(1, name="main_output")(merged)
    out2 = keras.layers.Dense(2, activation="softmax", name="aux_output")(h)
    model = keras.Model([a, b], [out1, out2])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=["mse", "categorical_crossentropy"],
                  loss_weights=[1.0, 0.5])
    x = [rng.normal(size=(16, 6)).astype(np.float32), rng.normal(size=(16, 4)).astype(np.float32)]
    y = [rng.normal(size=(16, 1)).astype(np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    return model, x, y


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_round_trip_resumes_training_identically(tmp_path, suffix):
    model, x, y = _trained_model()
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = keras.models.load_model(path)
    for p, q in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_array_equal(p, q)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    for w1, w2 in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["w.weights.h5", "w.h5", "weights/my_model"])
def test_weights_round_trip(tmp_path, name):
    model, x, _ = _trained_model()
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    model.save_weights(path)
    clone = keras.models.model_from_json(model.to_json())
    clone.load_weights(path)
    for p, q in zip(model.predict(x, verbose=0), clone.predict(x, verbose=0)):
        np.testing.assert_array_equal(p, q)


def test_json_yaml_and_sequential_round_trips():
    seq = keras.Sequential([keras.Input((3, 4)), keras.layers.LSTM(3, return_sequences=True),
                            keras.layers.Bidirectional(keras.layers.GRU(2)), keras.layers.Dense(1)])
    for text, reader in ((seq.to_json(), keras.models.model_from_json), (seq.to_yaml(), keras.models.model_from_yaml)):
        clone = reader(text)
        assert [type(l).__name__ for l in clone.layers] == [type(l).__name__ for l in seq.layers]
        assert [w.shape for w in clone.get_weights()] == [w.shape for w in seq.get_weights()]


def test_written_files_have_the_layout_keras_reads(tmp_path):
    model, _, _ = _trained_model()
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        assert {"model_config", "training_config", "keras_version", "backend"} <= set(f.attrs)
        assert "model_weights" in f and "optimizer_weights" in f
        names = [n.decode() if isinstance(n, bytes) else n for n in f["model_weights"].attrs["layer_names"]]
        assert names == [l.name for l in model._layers]
    model.save(tmp_path / "m.keras")
    import zipfile
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert zf.namelist()[:3] == ["metadata.json", "config.json", "model.weights.h5"]
        config = json.loads(zf.read("config.json"))
        assert config["class_name"] == "Functional" and "compile_config" in config


# ---------------------------------------------------------------- custom objects, safety, pre-flight

def test_custom_layers_need_registration_or_custom_objects(tmp_path):
    @keras.utils.register_keras_serializable(package="Tests")
    class Scale(keras.layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    model = keras.Sequential([keras.Input((2,)), Scale(3.0), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(np.ones((1, 2)), verbose=0), model.predict(np.ones((1, 2)), verbose=0))

    class Unregistered(Scale):
        pass
    other = keras.Sequential([keras.Input((2,)), Unregistered(), Unregistered(name="second")])
    other.save(tmp_path / "u.keras")
    with pytest.raises(ValueError, match="(?s)unknown layer class.*second"):
        keras.models.load_model(tmp_path / "u.keras")
    assert keras.models.load_model(tmp_path / "u.keras", custom_objects={"Unregistered": Unregistered}) is not None
    with keras.utils.custom_object_scope({"Unregistered": Unregistered}):
        assert keras.models.load_model(tmp_path / "u.keras") is not None


def test_lambda_bytecode_refused_in_safe_mode(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda t: t * 2.0)])
    model.save(tmp_path / "l.keras")
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.models.load_model(tmp_path / "l.keras")
    loaded = keras.models.load_model(tmp_path / "l.keras", safe_mode=False)
    np.testing.assert_allclose(loaded.predict(np.ones((1, 2)), verbose=0), [[2.0, 2.0]])


def test_bad_files_name_the_problem(tmp_path):
    text = tmp_path / "model.h5"
    text.write_text("not an hdf5 file")
    with pytest.raises(KerasFileError, match="model.h5"):
        keras.models.load_model(text)
    model, _, _ = _trained_model()
    model.save(tmp_path / "m.h5")
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    with pytest.raises(KerasFileError, match="layers with weights"):
        other.load_weights(tmp_path / "m.h5")
    small = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(1), keras.layers.Dense(2),
                              keras.layers.BatchNormalization()])
    with pytest.raises(KerasFileError, match="expects 2 weights"):
        small.load_weights(tmp_path / "m.h5")


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model, x, _ = _trained_model()
    path = tmp_path / "m.keras"
    model.save(path)
    before = path.read_bytes()
    from kcompile.saving import keras_zip

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(keras_zip, "_write_weights_file", broken)
    with pytest.raises(Exception):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


# ---------------------------------------------------------------- inspect CLI and from_keras

def test_inspect_cli_prints_summary_ir_and_support(capsys, tmp_path):
    from kcompile.cli import main
    assert main(["inspect", str(CONFORMANCE / "keras3" / "gru_stack.keras")]) == 0
    out = capsys.readouterr().out
    assert "gru (GRU)" in out and "scan(" in out and "# kernels of" in out and "unsupported features: none" in out
    config = json.loads((CONFORMANCE / "keras3" / "mlp_softmax.json").read_text())
    config["config"]["layers"][1]["class_name"] = "FancyDense"
    config["config"]["layers"][2]["config"]["kernel_constraint"] = {"class_name": "MaxNorm", "config": {}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config))
    assert main(["inspect", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FancyDense" in out and "kernel_constraint" in out        # both problems, one report


def test_from_keras_converts_a_live_model():
    keras_real = pytest.importorskip("keras")
    model = keras_real.Sequential([keras_real.Input((4,)), keras_real.layers.Dense(3, activation="relu"),
                                   keras_real.layers.Dense(1)])
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    converted = keras.from_keras(model)
    np.testing.assert_allclose(converted.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_loads_what_kcompile_wrote(tmp_path, suffix):
    keras_real = pytest.importorskip("keras")
    model, x, _ = _trained_model()
    model.save(tmp_path / f"m{suffix}")
    theirs = keras_real.models.load_model(tmp_path / f"m{suffix}")
    for p, q in zip(model.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
