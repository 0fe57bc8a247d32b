"""Each Keras version's own semantics (issue #15 part 2): one tiny model per layer class (and per
activation function) that tf-keras 2.x and Keras 3 export, saved by that version with non-default
arguments (tests/fixtures/version_semantics/make_fixtures.py says how). kcompile loads every file,
predicts Keras's numbers and, from the file's training configuration, makes the same
train_on_batch step (the weights after it are recorded in the fixture).

A fixture whose layer kcompile does not support must fail to load with an error naming that
layer, and only if the layer is listed, with its reason, in UNSUPPORTED below; a listed layer
that loads is an error too (remove it from the table). Coverage (layer classes covered / exported
per version) is printed at the end of the module.

Models are compiled with run_eagerly=True (the reference interpreter runs the same IR graphs as
native code does): this checks the loaders' and layers' semantics, not the code generator, and
keeps the ~450 files within a minute.
"""
import json
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import kcompile as keras
from kcompile.saving.config_dialects import normalize_training_config
from kcompile.saving.errors import KerasFileError
from kcompile.saving.model_build import UnsupportedModelError

from conftest import FIXTURES

HERE = FIXTURES / "version_semantics"
VERSIONS = ("k2", "k3")
MANIFESTS = {v: json.loads((HERE / v / "manifest.json").read_text()) for v in VERSIONS}

_RANDOM_AUG = "random image augmentation/preprocessing layer: kcompile has no such layer class"
_K3_IMAGE = "Keras 3 image preprocessing layer: kcompile has no such layer class"

# class name -> reason, per version. A fixture of a listed class must fail to load with an error
# naming the class (or the argument given here as "name: reason" before the colon).
_NO_CLASS = "kcompile has no such layer class"
_COMMON = {
    "ConvLSTM1D": _NO_CLASS + " (convolutional recurrent cells are not implemented)",
    "ConvLSTM2D": _NO_CLASS + " (convolutional recurrent cells are not implemented)",
    "ConvLSTM3D": _NO_CLASS + " (convolutional recurrent cells are not implemented)",
    "StackedRNNCells": _NO_CLASS + " (RNN takes one built-in cell)",
    "RandomBrightness": _RANDOM_AUG, "RandomContrast": _RANDOM_AUG, "RandomCrop": _RANDOM_AUG,
    "RandomFlip": _RANDOM_AUG, "RandomRotation": _RANDOM_AUG, "RandomTranslation": _RANDOM_AUG,
    "RandomZoom": _RANDOM_AUG,
    "HashedCrossing": _NO_CLASS + " (needs TensorFlow's FarmHash to match)",
    "SpectralNormalization": _NO_CLASS + " (its power iteration updates weights in call)",
    "Normalization": "normalization: kcompile's Normalization makes mean/variance weights even when the "
                     "config gives them; Keras then stores none, so the file's weights do not match",
}
UNSUPPORTED = {
    "k2": dict(_COMMON, **{
        "LocallyConnected1D": _NO_CLASS + " (tf-keras only, removed in Keras 3)",
        "LocallyConnected2D": _NO_CLASS + " (tf-keras only, removed in Keras 3)",
        "RandomHeight": _RANDOM_AUG, "RandomWidth": _RANDOM_AUG,
    }),
    "k3": dict(_COMMON, **{
        "GroupedQueryAttention": _NO_CLASS + " (attention layers are not implemented)",
        "MelSpectrogram": _NO_CLASS + " (audio preprocessing: STFT)",
        "STFTSpectrogram": _NO_CLASS + " (audio preprocessing: STFT)",
        "Pipeline": _NO_CLASS,
        "ReversibleEmbedding": _NO_CLASS,
        **{c: _K3_IMAGE for c in (
            "AugMix", "AutoContrast", "ContrastLimitedAdaptiveHistogramEqualization", "CutMix",
            "MixUp", "RandAugment", "RandomColorDegeneration", "RandomColorJitter",
            "RandomElasticTransform", "RandomErasing", "RandomGaussianBlur", "RandomGrayscale",
            "RandomHue", "RandomInvert", "RandomPerspective", "RandomPosterization",
            "RandomSaturation", "RandomSharpness", "RandomShear", "Solarization")},
    }),
}


# Fixtures kcompile loads but computes differently from Keras: expected to fail (strict xfail,
# so a fix shows up), listed so the count is visible. (version, fixture) -> reason.
MISMATCH = {
    ("k2", "Resizing"): "Resizing(interpolation='nearest', crop_to_aspect_ratio=True) differs from TF's resize",
    ("k3", "Resizing"): "Resizing(interpolation='nearest', crop_to_aspect_ratio=True, channels_first) differs",
    ("k3", "CenterCrop"): "CenterCrop of an input smaller than the target (the resize path) differs from Keras 3",
}


def _cases():
    out = []
    for version in VERSIONS:
        for fixture, info in sorted(MANIFESTS[version]["fixtures"].items()):
            for fname in info["files"]:
                if not fname.endswith(".npz"):
                    out.append((version, fixture, fname))
    return out


CASES = _cases()
# classes whose fixture wraps them (the saved model holds the wrapper and the cell)
_WRAPPED = ("SimpleRNNCell", "LSTMCell", "GRUCell", "StackedRNNCells")
RESULTS = {}                  # (version, class) -> list of "ok" / "unsupported"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("version_semantics")
    for version in VERSIONS:
        with zipfile.ZipFile(HERE / version / "fixtures.zip") as zf:
            zf.extractall(root / version)
    yield root
    _report(request.config)


def _report(config):
    lines = []
    for version in VERSIONS:
        manifest = MANIFESTS[version]
        total = sorted(manifest["exported"])
        covered = sorted(c for c in total if RESULTS.get((version, c)) and
                         all(r == "ok" for r in RESULTS[(version, c)]))
        unsupported = sorted(c for c in total if "unsupported" in RESULTS.get((version, c), ()))
        acts = manifest["activations"]
        acts_ok = [a for a in acts if RESULTS.get((version, "activation:" + a)) == ["ok"] * len(
            RESULTS.get((version, "activation:" + a), [None]))]
        lines.append(f"version semantics {version} (Keras {manifest['keras_version']}): layer classes "
                     f"covered {len(covered)}/{len(total)}, unsupported {len(unsupported)}, "
                     f"not built by Keras {len(manifest['not_built'])}; activations "
                     f"{len(acts_ok)}/{len(acts)}")
    # printed when pytest ends (after the progress lines, which would overwrite a line written now)
    config.add_cleanup(lambda: print("\n" + "\n".join(lines)))


def _training_config(path):
    if path.suffix == ".h5":
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("training_config")
        raw = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    else:
        with zipfile.ZipFile(path) as zf:
            raw = json.loads(zf.read("config.json"))["compile_config"]
    return normalize_training_config(raw, source=path)


def _compile_eagerly(model, path):
    """The file's optimizer and loss, compiled for the reference interpreter."""
    tc = _training_config(path)
    opt = tc["optimizer"]
    model.compile(optimizer=keras.optimizers.get({"class_name": opt["class_name"], "config": opt["config"]}),
                  loss=keras.losses.get(tc["loss"]), run_eagerly=True)


def _unsupported_reason(version, info):
    table = UNSUPPORTED[version]
    for cls in info.get("layer_classes", []):
        if cls in table:
            return cls, table[cls]
    if "activation" in info and "activation:" + info["activation"] in table:
        return info["activation"], table["activation:" + info["activation"]]
    return None, None


def _close(got, want, atol, rtol, what):
    got, want = np.asarray(got, "float64"), np.asarray(want, "float64")
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want) - (atol + rtol * np.abs(want))
    assert np.all(err <= 1e-12), f"{what}: max |diff| {np.max(np.abs(got - want)):.3g} beyond tolerance"


@pytest.mark.parametrize("version,fixture,fname", CASES, ids=[f"{v}-{f}" for v, _, f in CASES])
def test_version_semantics(version, fixture, fname, extracted, request):
    info = MANIFESTS[version]["fixtures"][fixture]
    key = (version, "activation:" + info["activation"]) if "activation" in info else (version, info["class"])
    path = extracted / version / fname
    z = np.load(extracted / version / (fixture + ".npz"))
    listed, reason = _unsupported_reason(version, info)
    if (version, fixture) in MISMATCH:
        request.node.add_marker(pytest.mark.xfail(reason=MISMATCH[(version, fixture)], strict=True))
    if "activation" not in info and info["class"] not in info["layer_classes"] and info["class"] not in _WRAPPED:
        key = (version, "dropped-by-keras:" + info["class"])     # Keras saved the model without it
    keras.utils.set_random_seed(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, compile=False, safe_mode=False)
    except (UnsupportedModelError, KerasFileError, ValueError, TypeError, NotImplementedError) as exc:
        if listed is None:
            raise
        named = reason.split(":")[0] if ":" in reason and " " not in reason.split(":")[0] else listed
        assert named in str(exc) or listed in str(exc), f"the error does not name {named!r}: {exc}"
        RESULTS.setdefault(key, []).append("unsupported")
        return
    assert listed is None, f"{listed} is listed in UNSUPPORTED ({reason}) but loads: remove it from the table"
    _compile_eagerly(model, path)
    xs = [z[f"x{i}"] for i in range(len([k for k in z.files if k.startswith("x")]))]
    x_in = xs if len(xs) > 1 else xs[0]
    _close(model.predict(x_in, verbose=0), z["y0"], 1e-5, 1e-4, "predictions")
    if "loss_step" in z:
        loss = model.train_on_batch(x_in, z["ty"])
        loss = loss[0] if isinstance(loss, list) else loss
        _close(loss, z["loss_step"], 1e-6, 1e-4, "train_on_batch loss")
        weights = model.get_weights()
        want = [z[f"w_after_{i}"] for i in range(len([k for k in z.files if k.startswith("w_after_")]))]
        assert len(weights) == len(want), f"{len(weights)} weights, Keras has {len(want)}"
        for i, (w, ww) in enumerate(zip(weights, want)):
            _close(w, ww, 1e-5, 1e-3, f"weight {i} after one step")
    RESULTS.setdefault(key, []).append("ok")
