"""Models saved by real Keras 3 and Keras 2 (tests/fixtures/conformance), loaded by kcompile from
every format in the corpus: predict, evaluate and one train_on_batch from the loaded state
(optimizer, loss and loss weights from the file) against Keras's goldens, then saved again and
reloaded; the file-format edge cases of formats/ and every weights-only file there. Tests
enumerate the manifests and folders, so a new corpus file adds tests. A model using a layer class
kcompile does not have yet must be listed in KNOWN_UNSUPPORTED with a reason, or the test fails."""
import json
import warnings

import h5py
import numpy as np
import pytest

import kcompile as keras
from kcompile.saving.config_dialects import normalize_training_config
from kcompile.saving.errors import KerasFileError
from kcompile.saving.h5_format import read_h5_model
from kcompile.saving.model_build import UnsupportedModelError

from conftest import CONFORMANCE
from golden_helpers import close as _close

@pytest.fixture(autouse=True)
def _seeded():
    """Dropout draws its seed from the global generator; seeding makes the generated code, and so
    its on-disk compile cache key, the same on every run."""
    keras.utils.set_random_seed(0)


CASES = [(dialect, name, fmt) for dialect in ("keras3", "keras2")
         for name, info in json.loads((CONFORMANCE / dialect / "manifest.json").read_text()).items()
         for fmt in info["formats"]]


# Layer classes of the corpus kcompile does not have yet, each with its reason: a file using any
# other unknown class fails (a blanket skip would hide a regression). Empty today.
KNOWN_UNSUPPORTED = {}


def _skip_if_known_unsupported(exc):
    unknown = set(exc.unknown_classes or ())
    if unknown and unknown <= set(KNOWN_UNSUPPORTED):
        pytest.skip("; ".join(f"{c}: {KNOWN_UNSUPPORTED[c]}" for c in sorted(unknown)))
    raise exc


def _load_or_skip(path, **kwargs):
    """load_model; a file needing only layers of KNOWN_UNSUPPORTED is skipped with their reasons."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.models.load_model(path, **kwargs)
    except UnsupportedModelError as exc:
        _skip_if_known_unsupported(exc)


def _compile_like(model, h5_path):
    """Compile with the training configuration Keras stored in the corpus .h5 (the .json files
    carry none), so every format of a model trains from the same configuration."""
    from kcompile.saving.api import _compile_from      # what load_model applies to the .h5 itself
    _compile_from(model, normalize_training_config(read_h5_model(h5_path).training_config), h5_path)


def _load(dialect, name, fmt):
    base = CONFORMANCE / dialect
    if fmt == ".h5":      # compiled from the file's own training config, optimizer state restored
        return _load_or_skip(base / f"{name}.h5")
    model = _load_or_skip(base / f"{name}{fmt}", compile=False)
    if fmt == ".json":    # structure only: weights from the .h5
        model.load_weights(base / f"{name}.h5")
    _compile_like(model, base / f"{name}.h5")
    return model


def _inputs(model, z, prefix=""):
    xs = [z[f"{prefix}x{i}"] for i in range(len(model.inputs))]
    return xs if len(xs) > 1 else xs[0]


def _as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("dialect,name,fmt", CASES, ids=[f"{d}-{n}{f}" for d, n, f in CASES])
def test_loaded_model_matches_keras(dialect, name, fmt, tmp_path):
    z = np.load(CONFORMANCE / dialect / f"{name}.npz")
    model = _load(dialect, name, fmt)
    preds = _as_list(model.predict(_inputs(model, z), verbose=0))
    for i, p in enumerate(preds):
        _close(p, z[f"y{i}"], 1e-5, 1e-4)
    if fmt == ".h5":     # saved again by kcompile (Keras 3's file as .keras, Keras 2's as .h5), reloaded
        again_path = tmp_path / ("again.keras" if dialect == "keras3" else "again.h5")
        model.save(again_path)
        again = keras.models.load_model(again_path)      # compiled like `model`: its native code is reused
        for p, q in zip(preds, _as_list(again.predict(_inputs(model, z), verbose=0))):
            np.testing.assert_array_equal(p, q)
    if "loss_step" not in z:
        return
    ys = [z[f"ty{i}"] for i in range(len(model.outputs))]
    ys = ys if len(ys) > 1 else ys[0]
    before = _as_list(model.evaluate(_inputs(model, z, "t"), ys, verbose=0))[0]
    _close(before, z["loss_before"], 0, 1e-4 * abs(float(z["loss_before"])) + 1e-6)
    loss = _as_list(model.train_on_batch(_inputs(model, z, "t"), ys))[0]
    _close(loss, z["loss_step"], 0, 1e-4 * abs(float(z["loss_step"])) + 1e-6)
    weights = model.get_weights()
    assert len(weights) == len([k for k in z.files if k.startswith("w_after_")])
    for i, w in enumerate(weights):
        _close(w, z[f"w_after_{i}"], 1e-5, 1e-3)


# ---------------------------------------------------------------- formats/ edge cases

FORMATS = CONFORMANCE / "formats"


def _stem(path):
    return path.name.split(".")[0].replace("_legacy_to_yaml", "").replace("_legacyweights", "").replace("_weights", "")


def _io(path):
    folder = path.parent if path.parent.name in ("k2", "k3") else path.parent.parent
    return np.load(folder / f"{_stem(path)}_io.npz")


def _predict_and_compare(model, z):
    xs = [z[k] for k in ("x0", "x1") if k in z] or [z["x"]]
    ys = [z[k] for k in ("y0", "y1") if k in z] or [z["y"]]
    preds = _as_list(model.predict(xs if len(xs) > 1 else xs[0], verbose=0))
    assert len(preds) == len(ys)
    for p, y in zip(preds, ys):
        _close(p, y, 1e-5, 1e-4)


MODEL_FILES = sorted(p for d in ("k3", "k2") for p in (FORMATS / d).iterdir()
                     if p.suffix in (".keras", ".h5", ".json", ".yaml") and "weights" not in p.name)


def _stored_optimizer_arrays(path):
    if path.suffix == ".h5":
        return [a for _, a in read_h5_model(path).optimizer_weights]
    if path.suffix == ".keras":
        from kcompile.saving.keras_zip import read_keras_zip
        weights = read_keras_zip(path).weights
        return list(weights.optimizer) if weights is not None else []
    return []


# Files whose optimizer state is checked after loading (compiling costs a training-graph build):
# Adam (interleaved slots) and RMSprop (slot blocks) as Keras 3, tf-keras and tf.keras <= 2.10 wrote them.
STATE_CHECKED = ("seq_cnn", "func_merge", "seq_mlp_legacyopt")


@pytest.mark.parametrize("path", MODEL_FILES, ids=[f"{p.parent.name}-{p.name}" for p in MODEL_FILES])
def test_format_edge_cases_predict_like_keras(path):
    if not (path.parent / f"{_stem(path)}_io.npz").exists():
        pytest.skip(f"{path.name} has no recorded outputs")
    compile = path.suffix in (".h5", ".keras") and _stem(path) in STATE_CHECKED
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.models.load_model(path, compile=compile)
    except UnsupportedModelError as exc:
        _skip_if_known_unsupported(exc)
    if path.suffix in (".json", ".yaml"):
        model.load_weights(path.parent / f"{_stem(path)}.h5")
    _predict_and_compare(model, _io(path))
    stored = _stored_optimizer_arrays(path)
    if compile and len(stored) > 1:      # trained before saving: the state comes back
        assert not [w for w in caught if "starts fresh" in str(w.message)], path
        assert int(model.optimizer.iterations.numpy()) == int(np.asarray(stored[0]))
        values = [v.numpy() for v in model.optimizer.variables]
        for a in stored[1:]:         # every stored slot is now some optimizer variable's value
            assert any(v.shape == np.shape(a) and np.array_equal(v, np.asarray(a, v.dtype)) for v in values)


WEIGHT_FILES = sorted(p for d in ("k3", "k2", "k3/sharded") for p in (FORMATS / d).iterdir()
                      if p.name.endswith(("weights.h5", "weights.json")) and "_0000" not in p.name)


@pytest.mark.parametrize("path", WEIGHT_FILES, ids=[str(p.relative_to(FORMATS)) for p in WEIGHT_FILES])
def test_weights_only_files_restore_keras_outputs(path):
    folder = path.parent if path.parent.name in ("k2", "k3") else path.parent.parent
    structure = next(p for p in (folder / f"{_stem(path)}.keras", folder / f"{_stem(path)}.h5",
                                 FORMATS / "k3" / f"{_stem(path)}.keras") if p.exists())
    model = _load_or_skip(structure, compile=False)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights(path)
    _predict_and_compare(model, _io(path))


def test_weights_only_files_are_refused_as_models():
    with pytest.raises(KerasFileError, match="not a saved model"):
        keras.models.load_model(FORMATS / "k3" / "seq_mlp.weights.h5")


def test_written_h5_names_follow_keras_layer_order():
    """The corpus .h5 layer_names equal the layer order kcompile builds from the same config."""
    for dialect in ("keras3", "keras2"):
        for name in json.loads((CONFORMANCE / dialect / "manifest.json").read_text()):
            with h5py.File(CONFORMANCE / dialect / f"{name}.h5", "r") as f:
                stored = [n.decode() if isinstance(n, bytes) else n for n in f["model_weights"].attrs["layer_names"]]
            try:
                model = keras.models.load_model(CONFORMANCE / dialect / f"{name}.h5", compile=False)
            except UnsupportedModelError:
                continue
            assert [layer.name for layer in model.layers] == stored, (dialect, name)
