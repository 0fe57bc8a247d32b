"""Keras file layer (kcompile.saving) against files written by real Keras 3.15.1 and tf-keras 2.21.

Every corpus file is detected by content, read, and its configs normalised; weights agree across
the formats of one model and with the `.npz` goldens; reading, writing with our writers and
reading again gives identical configs and weights; written files have the structure Keras reads.
"""
import json
import os
import pathlib
import zipfile

import h5py
import numpy as np
import pytest

from conftest import CONFORMANCE
from kcompile.saving import config_dialects as cd
from kcompile.saving.atomic import atomic_h5, atomic_write
from kcompile.saving.errors import KerasFileError, UnsafeFileError
from kcompile.saving.h5_format import (Keras3Weights, read_h5_model, read_h5_weights,
                                       read_keras3_weights, read_sharded_weights, write_h5_model,
                                       write_h5_weights, write_keras3_weights)
from kcompile.saving.json_yaml import (dumps_json, dumps_yaml, read_json_config,
                                       read_yaml_config)
from kcompile.saving.keras_zip import read_keras_zip, read_keras_zip_asset, write_keras_zip
from kcompile.saving.sniff import detect_format

DIRS = ["keras3", "keras2", "formats/k3", "formats/k2", "formats/k3/sharded"]


def corpus_files():
    files = []
    for d in DIRS:
        for p in sorted((CONFORMANCE / d).iterdir()):
            if p.is_file() and p.suffix not in (".npz", ".md") and p.name != "manifest.json":
                files.append(p)
    return files


FILES = corpus_files()
IDS = [str(p.relative_to(CONFORMANCE)) for p in FILES]


def expected_format(p: pathlib.Path) -> str:
    name = p.name
    if name.endswith(".keras"):
        return "keras_zip"
    if name.endswith(".weights.json"):
        return "weights_sharded"
    if name.endswith(".weights.h5"):
        return "h5_weights_keras3"
    if name.endswith(("_weights.h5", "_legacyweights.h5")):
        return "h5_weights_legacy"
    if name.endswith(".h5"):
        return "h5_model"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".yaml"):
        return "yaml"
    raise AssertionError(name)


def flat(layer_weights):
    return [a for _, ws in layer_weights for _, a in ws]


def arrays_key(arrays):
    return sorted((a.shape, str(a.dtype), a.tobytes()) for a in arrays)


def model_arrays(weights: Keras3Weights):
    return [a for path, arrays in weights.vars.items() if path.startswith("layers/") for a in arrays]


def read_any(p):
    """Detect, read and normalise a corpus file; returns (format, payload)."""
    fmt = detect_format(p)
    if fmt == "h5_model":
        m = read_h5_model(p)
        cd.normalize_model_config(m.model_config, source=p)
        if m.training_config is not None:
            cd.normalize_training_config(m.training_config, source=p)
        return fmt, m
    if fmt == "h5_weights_legacy":
        return fmt, read_h5_weights(p)
    if fmt == "h5_weights_keras3":
        return fmt, read_keras3_weights(p)
    if fmt == "weights_sharded":
        return fmt, read_sharded_weights(p)
    if fmt == "keras_zip":
        z = read_keras_zip(p)
        cd.normalize_model_config(z.config, source=p)
        return fmt, z
    cfg = read_json_config(p) if fmt == "json" else read_yaml_config(p)
    return fmt, cd.normalize_model_config(cfg, source=p)


# ------------------------------------------------------------------------------ corpus reading

def test_corpus_is_complete():
    assert len(FILES) >= 110
    kinds = {expected_format(p) for p in FILES}
    assert kinds == {"keras_zip", "h5_model", "h5_weights_legacy", "h5_weights_keras3",
                     "weights_sharded", "json", "yaml"}


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_detect_read_normalize(path):
    fmt, payload = read_any(path)
    assert fmt == expected_format(path)
    if fmt == "h5_model":
        assert payload.keras_version in ("2.21.0", "3.15.1")
        assert payload.backend in ("tensorflow", "jax")
        assert all(isinstance(a, np.ndarray) for a in flat(payload.layer_weights))
    elif fmt == "keras_zip":
        assert payload.weights is not None and "vars" in payload.weights.vars
        assert payload.metadata["keras_version"] in ("2.21.0", "3.15.1")
        if payload.config.get("compile_config"):
            cd.normalize_training_config(payload.config["compile_config"])


@pytest.mark.parametrize("path", sorted((CONFORMANCE / "keras3").glob("*.h5"))
                         + sorted((CONFORMANCE / "keras2").glob("*.h5")), ids=lambda p: p.name)
def test_h5_weights_match_npz_golden(path):
    """The file holds the weights before one training step; `w_after_*` (Keras get_weights order)
    after it: same count, order, shapes, dtypes, and values within about one update."""
    m = read_h5_model(path)
    weights = flat(m.layer_weights)
    golden = np.load(path.with_suffix(".npz"), allow_pickle=False)
    after = sorted((k for k in golden.files if k.startswith("w_after_")),
                   key=lambda k: int(k.rsplit("_", 1)[1]))
    if not after:
        pytest.skip("no training golden (model with Dropout)")
    assert len(weights) == len(after)
    for w, key in zip(weights, after):
        g = golden[key]
        assert w.shape == g.shape and w.dtype == g.dtype, key
        assert float(np.abs(w - g).mean()) < 0.02, key


@pytest.mark.parametrize("path", sorted((CONFORMANCE / "keras3").glob("*.h5")), ids=lambda p: p.name)
def test_keras3_h5_and_keras_zip_hold_same_weights(path):
    m = read_h5_model(path)
    z = read_keras_zip(path.with_suffix(".keras"))
    assert arrays_key(flat(m.layer_weights)) == arrays_key(model_arrays(z.weights))
    # Per layer where Keras >= 3.6 recorded the layer name on the vars group.
    by_layer = dict(m.layer_weights)
    matched = 0
    for vpath, name in z.weights.names.items():
        arrays = z.weights.vars[vpath]
        if name in by_layer and arrays and vpath.startswith("layers/"):
            expected = [a for _, a in by_layer[name]]
            assert len(arrays) == len(expected)
            for a, b in zip(arrays, expected):
                np.testing.assert_array_equal(a, b)
            matched += 1
    direct = [v for k, v in z.weights.vars.items() if k.count("/") == 2 and k.startswith("layers/") and v]
    assert matched == len(direct)


FORMAT_MODELS = [p for d in ("formats/k3", "formats/k2") for p in sorted((CONFORMANCE / d).glob("*.h5"))
                 if expected_format(p) == "h5_model"]


@pytest.mark.parametrize("path", FORMAT_MODELS, ids=lambda p: str(p.relative_to(CONFORMANCE)))
def test_weights_only_files_match_full_model(path):
    m = read_h5_model(path)
    base = str(path)[:-3]
    checked = 0
    for suffix in ("_weights.h5", "_legacyweights.h5"):
        if os.path.exists(base + suffix):
            w = read_h5_weights(base + suffix)
            assert [n for n, _ in w.layer_weights] == [n for n, _ in m.layer_weights]
            for (_, a), (_, b) in zip(w.layer_weights, m.layer_weights):
                assert [n for n, _ in a] == [n for n, _ in b]
                for (_, x), (_, y) in zip(a, b):
                    np.testing.assert_array_equal(x, y)
            checked += 1
    for suffix, reader in ((".weights.h5", read_keras3_weights),
                           (".keras", lambda p: read_keras_zip(p).weights)):
        if os.path.exists(base + suffix):
            assert arrays_key(model_arrays(reader(base + suffix))) == arrays_key(flat(m.layer_weights))
            checked += 1
    # a full-model file also serves as a weights file (Keras descends into model_weights)
    w = read_h5_weights(path)
    assert arrays_key(flat(w.layer_weights)) == arrays_key(flat(m.layer_weights))
    if path.stem not in ("frozen_nested", "seq_input_shape_kw", "slash_names"):
        assert checked >= 2


def test_specific_corpus_facts():
    # layer order follows layer_names, weight order weight_names (kernel before bias)
    m = read_h5_model(CONFORMANCE / "formats/k2/seq_mlp.h5")
    assert [n for n, _ in m.layer_weights] == ["dense", "dropout", "dense_1"]
    assert [n for n, _ in m.layer_weights[0][1]] == ["dense/kernel:0", "dense/bias:0"]
    # frozen sub-layer: trainable block first, then non-trainable (spec 5)
    m = read_h5_model(CONFORMANCE / "formats/k2/frozen_nested.h5")
    assert [n for n, _ in m.layer_weights[1][1]] == [
        "bn/gamma:0", "bn/beta:0", "d2/kernel:0", "d2/bias:0", "d1/kernel:0", "d1/bias:0",
        "bn/moving_mean:0", "bn/moving_variance:0"]
    # '/' in layer names: addressed through layer_names, never by iterating groups
    m = read_h5_model(CONFORMANCE / "formats/k2/slash_names.h5")
    assert [n for n, _ in m.layer_weights] == ["in", "conv1/conv", "conv1/bn"]
    # optimizer weights in file order; Keras 3 iteration is int32, tf-keras int64
    m3 = read_h5_model(CONFORMANCE / "formats/k3/seq_cnn.h5")
    assert m3.optimizer_weights[0][0].endswith("iteration") and m3.optimizer_weights[0][1].dtype == np.int32
    assert len(m3.optimizer_weights) == 18
    m2 = read_h5_model(CONFORMANCE / "formats/k2/seq_cnn.h5")
    assert m2.optimizer_weights[0] [0] == "iteration:0" and m2.optimizer_weights[0][1].dtype == np.int64
    # Keras 3 .weights.h5: RNN cell under layers/<rnn>/cell, optimizer vars, @name attributes
    w = read_keras3_weights(CONFORMANCE / "formats/k3/func_gru.weights.h5")
    assert [a.shape for a in w.vars["layers/gru/cell/vars"]] == [(3, 15), (5, 15), (2, 15)]
    assert w.vars["layers/gru/vars"] == []
    assert w.names["layers/gru/cell/vars"] == "gru_cell"
    assert len(w.optimizer) == 12 and w.optimizer[0].shape == ()
    # sharded weights equal the single-file weights of the same model
    s = read_sharded_weights(CONFORMANCE / "formats/k3/sharded/seq_mlp.weights.json")
    single = read_keras3_weights(CONFORMANCE / "formats/k3/seq_mlp.weights.h5")
    assert set(s.vars) <= set(single.vars)
    for path, arrays in s.vars.items():
        assert arrays_key(arrays) == arrays_key(single.vars[path])
    # .keras assets
    z = read_keras_zip(CONFORMANCE / "formats/k3/assets_stringlookup.keras")
    assert z.assets == ["assets/layers/string_lookup/vocabulary.txt"]
    text = read_keras_zip_asset(CONFORMANCE / "formats/k3/assets_stringlookup.keras", z.assets[0])
    assert text.decode().splitlines()[0] == "[UNK]"


# ------------------------------------------------------------------------ canonical configs

def raw_configs():
    out = []
    for p in FILES:
        fmt = expected_format(p)
        if fmt == "h5_model":
            with h5py.File(p, "r") as f:
                out.append((p, json.loads(f.attrs["model_config"]), True))
        elif fmt == "keras_zip":
            with zipfile.ZipFile(p) as z:
                out.append((p, json.loads(z.read("config.json")), False))
        elif fmt == "json":
            out.append((p, read_json_config(p), False))
        elif fmt == "yaml":
            out.append((p, read_yaml_config(p), True))
    return out


RAW = raw_configs()


def without(obj, keys):
    if isinstance(obj, dict):
        return {k: without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without(v, keys) for v in obj]
    return obj


@pytest.mark.parametrize("path,raw,for_h5", RAW, ids=[str(p.relative_to(CONFORMANCE)) for p, _, _ in RAW])
def test_config_round_trip(path, raw, for_h5):
    can = cd.normalize_model_config(raw)
    assert can["class_name"] in ("Sequential", "Functional")
    if can["dialect"] == "keras3":
        # exactly what Keras 3 wrote (shared_object_id is optional and dropped)
        assert cd.to_keras3_config(can, for_h5=for_h5) == without(raw, {"shared_object_id"})
        assert cd.normalize_model_config(cd.to_keras3_config(can, for_h5=for_h5)) == can
    else:
        again = cd.normalize_model_config(cd.to_keras2_config(can))
        ignore = {"module", "registered_name", "build_config", "keras_version", "backend",
                  "compile_config"}
        assert without(again, ignore) == without(can, ignore)
    # cross-dialect output normalises to the same graph
    k3 = cd.normalize_model_config(cd.to_keras3_config(can))
    strip = {"module", "registered_name", "build_config", "dialect", "shape", "dtype",
             "keras_version", "backend", "compile_config"}
    assert without(k3, strip) == without(can, strip)


def canon_of(rel):
    p = CONFORMANCE / rel
    if p.suffix == ".keras":
        with zipfile.ZipFile(p) as z:
            return cd.normalize_model_config(json.loads(z.read("config.json")))
    with h5py.File(p, "r") as f:
        return cd.normalize_model_config(json.loads(f.attrs["model_config"]))


def test_canonical_form_details():
    k2 = canon_of("formats/k2/func_nested.h5")
    k3 = canon_of("formats/k3/func_nested.keras")
    assert k2["dialect"] == "keras2" and k3["dialect"] == "keras3"
    layers2 = {e["name"]: e for e in k2["config"]["layers"]}
    # Keras 2 references nested models at node 1; canonical node indices start at 0
    (node,) = layers2["cls"]["inbound_nodes"]
    assert node == {"args": [cd.tensor_ref("inner_func", 0, 0)], "kwargs": {}}
    (node,) = layers2["inner_func"]["inbound_nodes"]
    assert node["args"][0]["layer"] == "subnet" and node["args"][0]["node_index"] == 0
    assert layers2["subnet"]["config"]["layers"][2]["config"]["axis"] == 1   # [1] -> 1
    # Keras 3 tensors carry shape/dtype; DTypePolicy reduced to its name
    layers3 = {e["name"]: e for e in k3["config"]["layers"]}
    ref = layers3["cls"]["inbound_nodes"][0]["args"][0]
    assert ref == cd.tensor_ref("subnet", 0, 0, [None, 4], "float32")
    assert layers3["cls"]["config"]["dtype"] == "float32"
    assert layers3["raw"]["config"] == {"batch_shape": [None, 6], "dtype": "float32", "sparse": False,
                                        "ragged": False, "name": "raw", "optional": False}
    assert k3["config"]["input_layers"] == cd.tensor_ref("raw", 0, 0)
    assert k3["compile_config"]["optimizer"]["class_name"] == "Adam"
    # merge layer: several inputs become one list argument
    merge = {e["name"]: e for e in canon_of("formats/k2/func_merge.h5")["config"]["layers"]}
    assert [r["layer"] for r in merge["concat"]["inbound_nodes"][0]["args"][0]] == ["dense_a", "dense_b"]
    # shared layer: two nodes, referenced as node 0 and 1
    shared = {e["name"]: e for e in canon_of("keras2/siamese_shared_lstm.h5")["config"]["layers"]}
    assert len(shared["lstm_1"]["inbound_nodes"]) == 2
    assert [r["node_index"] for r in shared["concatenate_1"]["inbound_nodes"][0]["args"][0]] == [0, 1]
    # Keras 2 Sequential: InputLayer kept, duplicate batch_input_shape dropped, time_major dropped
    seq = canon_of("formats/k2/seq_input_shape_kw.h5")["config"]["layers"]
    assert seq[0]["config"]["name"] == "d1_input" and "batch_input_shape" not in seq[1]["config"]
    gru = {e["name"]: e for e in canon_of("formats/k2/func_gru.h5")["config"]["layers"]}
    assert "time_major" not in gru["gru_ra"]["config"]
    assert gru["td"]["config"]["layer"]["config"]["dtype"] == "float32"


def test_training_configs():
    with h5py.File(CONFORMANCE / "formats/k2/func_merge.h5", "r") as f:
        tc2 = cd.normalize_training_config(json.loads(f.attrs["training_config"]))
    assert tc2["optimizer"]["class_name"] == "RMSprop"                       # Custom>RMSprop
    assert "jit_compile" not in tc2["optimizer"]["config"]
    assert tc2["metrics"] == [["mae"], []]                                   # out1_mae / null
    assert tc2["loss"] == {"out1": "mse", "out2": "mae"}
    with h5py.File(CONFORMANCE / "formats/k2/seq_mlp_legacyopt.h5", "r") as f:
        tc = cd.normalize_training_config(json.loads(f.attrs["training_config"]))
    assert tc["optimizer"]["config"] == {"name": "SGD", "learning_rate": 0.009999999776482582,
                                         "momentum": 0.8999999761581421, "nesterov": True}
    assert tc["metrics"] == ["accuracy"]
    with h5py.File(CONFORMANCE / "formats/k3/func_merge.h5", "r") as f:
        raw3 = json.loads(f.attrs["training_config"])
    tc3 = cd.normalize_training_config(raw3)
    assert cd.to_keras3_training_config(tc3)["loss"] == {"out1": "mean_squared_error",
                                                         "out2": "mean_absolute_error"}
    assert cd.normalize_training_config(cd.to_keras3_compile_config(tc3)) == tc3
    k2 = cd.to_keras2_training_config(tc3)
    assert set(k2) == {"loss", "metrics", "weighted_metrics", "loss_weights", "optimizer_config"}
    assert "loss_scale_factor" not in k2["optimizer_config"]["config"]
    # legacy optimizer spellings
    legacy = cd.normalize_optimizer_config({"class_name": "keras.optimizers.legacy.Adam",
                                            "config": {"lr": 0.01, "decay": 0.5, "epsilon": None}})
    assert legacy["class_name"] == "Adam" and legacy["config"]["epsilon"] == 1e-7
    schedule = legacy["config"]["learning_rate"]
    assert schedule["class_name"] == "InverseTimeDecay"
    assert schedule["config"]["initial_learning_rate"] == 0.01 and schedule["config"]["decay_rate"] == 0.5
    assert cd.normalize_optimizer_config({"class_name": "Custom>Adam", "config": {}})["class_name"] == "Adam"
    assert cd.normalize_optimizer_config("rmsprop")["class_name"] == "RMSprop"
    custom = cd.normalize_optimizer_config({"class_name": "mypkg>Fancy", "config": {"lr": 1.0}})
    assert custom == {"class_name": "Fancy", "config": {"learning_rate": 1.0},
                      "registered_name": "mypkg>Fancy"}


def test_keras2_legacy_forms():
    """Older Keras 2 dialects: bare-list Sequential with batch_input_shape on the first layer,
    'Model' class, kwargs and constants in nodes, input_dim kwargs, 'pkg>Name' classes."""
    seq = cd.normalize_model_config({"class_name": "Sequential", "config": [
        {"class_name": "Dense", "config": {"name": "d", "units": 2, "dtype": "float32",
                                          "batch_input_shape": [4, 3]}},
        {"class_name": "my>Custom", "config": {"name": "c"}}]})
    first, dense, custom = seq["config"]["layers"]
    assert first["class_name"] == "InputLayer" and first["config"]["batch_shape"] == [4, 3]
    assert first["config"]["name"] == "d_input" and "batch_input_shape" not in dense["config"]
    assert custom["class_name"] == "Custom" and custom["registered_name"] == "my>Custom"
    kw = cd.normalize_model_config({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Dense", "config": {"name": "d", "units": 2, "input_dim": 7}}]}})
    assert kw["config"]["layers"][0]["config"]["input_shape"] == [7]
    model = cd.normalize_model_config({"class_name": "Model", "config": {
        "name": "m", "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "a"},
             "name": "a", "inbound_nodes": []},
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "mask"},
             "name": "mask", "inbound_nodes": []},
            {"class_name": "Custom", "config": {"name": "c"}, "name": "c", "inbound_nodes": [
                [["a", 0, 0, {"training": False, "mask": ["mask", 0, 0]}],
                 ["_CONSTANT_VALUE", -1, 2.5, {"training": False, "mask": ["mask", 0, 0]}]]]}],
        "input_layers": [["a", 0, 0], ["mask", 0, 0]], "output_layers": [["c", 0, 0]]}})
    assert model["class_name"] == "Functional"
    (node,) = model["config"]["layers"][2]["inbound_nodes"]
    assert node["args"] == [[cd.tensor_ref("a"), 2.5]]
    assert node["kwargs"] == {"training": False, "mask": cd.tensor_ref("mask")}
    assert isinstance(model["config"]["input_layers"], list)
    assert model["config"]["output_layers"] == cd.tensor_ref("c")
    back = cd.to_keras2_config(model)
    assert back["config"]["layers"][2]["inbound_nodes"] == [[
        ["a", 0, 0, {"training": False, "mask": ["mask", 0, 0]}],
        ["_CONSTANT_VALUE", -1, 2.5, {"training": False, "mask": ["mask", 0, 0]}]]]


def test_keras3_dict_outputs_and_nested_functional_offset():
    kt = lambda name, n=0: {"class_name": "__keras_tensor__", "config": {  # noqa: E731
        "shape": [None, 2], "dtype": "float32", "keras_history": [name, n, 0]}}
    inner = {"module": "keras.src.models.functional", "class_name": "Functional",
             "config": {"name": "inner", "trainable": True, "layers": [
                 {"class_name": "InputLayer", "config": {"batch_shape": [None, 2], "name": "ii"},
                  "name": "ii", "inbound_nodes": []},
                 {"class_name": "Dense", "config": {"name": "dd", "units": 2}, "name": "dd",
                  "inbound_nodes": [{"args": [kt("ii")], "kwargs": {}}]}],
                 "input_layers": ["ii", 0, 0], "output_layers": ["dd", 0, 0]},
             "registered_name": "Functional", "name": "inner",
             "inbound_nodes": [{"args": [kt("x")], "kwargs": {}}]}
    cfg = {"module": "keras.src.models.functional", "class_name": "Functional", "config": {
        "name": "outer", "trainable": True, "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, 2], "name": "x"},
             "name": "x", "inbound_nodes": []}, inner],
        "input_layers": ["x", 0, 0],
        "output_layers": {"a": ["inner", 1, 0], "b": ["x", 0, 0]}}}
    can = cd.normalize_model_config(cfg)
    assert can["config"]["output_layers"] == {"a": cd.tensor_ref("inner", 0, 0),
                                              "b": cd.tensor_ref("x", 0, 0)}
    back = cd.to_keras3_config(can)
    assert back["config"]["output_layers"] == {"a": ["inner", 1, 0], "b": ["x", 0, 0]}
    with pytest.raises(KerasFileError, match="structured output_layers"):
        cd.to_keras2_config(can)


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c["config"]["layers"][2].update(bogus=1), "dense_a.*unknown key 'bogus'"),
    (lambda c: c["config"]["layers"][2].pop("inbound_nodes"), "dense_a.*missing key 'inbound_nodes'"),
    (lambda c: c["config"]["layers"][2].pop("class_name"), "dense_a.*missing key 'class_name'"),
    (lambda c: c["config"]["layers"][2]["inbound_nodes"][0][0].__setitem__(0, "ghost"),
     "unknown layer 'ghost'"),
    (lambda c: c["config"]["layers"][2]["inbound_nodes"][0][0].__setitem__(1, 5), "out of range"),
    (lambda c: c["config"]["layers"][0]["config"].update(wat=2), "unknown InputLayer key 'wat'"),
    (lambda c: c["config"]["layers"][0]["config"].pop("batch_input_shape"), "no 'batch_shape'"),
    (lambda c: c["config"].update(extra=1), "unknown config key 'extra'"),
    (lambda c: c["config"].pop("output_layers"), "missing key 'output_layers'"),
    (lambda c: c.update(class_name="MyModel"), "not Sequential/Functional"),
    (lambda c: c["config"]["layers"][2]["inbound_nodes"][0][0].__setitem__(0, "dense_a"),
     "consumes its own output|can never be computed"),
    (lambda c: c["config"]["layers"][0]["config"].__setitem__("batch_input_shape", [None, 1e12]),
     "absurd|more than"),
])
def test_config_errors_name_key_and_layer(mutate, match):
    with h5py.File(CONFORMANCE / "formats/k2/func_merge.h5", "r") as f:
        cfg = json.loads(f.attrs["model_config"])
    mutate(cfg)
    with pytest.raises(KerasFileError, match=match):
        cd.normalize_model_config(cfg, source="x.h5")


def test_cycle_is_refused():
    cfg = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 2]}, "name": "i",
         "inbound_nodes": []},
        {"class_name": "Add", "config": {"name": "a"}, "name": "a",
         "inbound_nodes": [[["i", 0, 0, {}], ["b", 0, 0, {}]]]},
        {"class_name": "Add", "config": {"name": "b"}, "name": "b",
         "inbound_nodes": [[["i", 0, 0, {}], ["a", 0, 0, {}]]]}],
        "input_layers": [["i", 0, 0]], "output_layers": [["b", 0, 0]]}}
    with pytest.raises(KerasFileError, match="can never be computed"):
        cd.normalize_model_config(cfg)


def test_check_declared_shapes():
    ok = {"class_name": "InputLayer", "config": {"name": "i", "batch_shape": [None, 224, 224, 3]}}
    assert cd.check_declared_shapes(ok, 10 ** 8) is None
    for bad in ({"class_name": "InputLayer", "config": {"name": "i", "batch_shape": [1e12, 1e12]}},
                {"class_name": "Dense", "config": {"name": "d", "units": 10 ** 13}},
                {"class_name": "Embedding", "config": {"name": "e", "input_dim": 10 ** 6,
                                                      "output_dim": 10 ** 6}},
                {"class_name": "Reshape", "config": {"name": "r", "target_shape": [-1, 2 ** 40]}},
                {"class_name": "Dense", "config": {"name": "d", "units": float("inf")}}):
        with pytest.raises(UnsafeFileError, match=bad["config"]["name"].join("''")):
            cd.check_declared_shapes(bad, 10 ** 8)


def test_yaml_config():
    cfg = read_yaml_config(CONFORMANCE / "formats/k2/seq_cnn_legacy_to_yaml.yaml")
    can = cd.normalize_model_config(cfg)
    layers = can["config"]["layers"]
    assert layers[0]["config"]["batch_shape"] == [None, 8, 8, 3]
    assert layers[1]["config"]["kernel_size"] == [3, 3]
    assert layers[2]["config"]["axis"] == 3                     # ListWrapper([3]) -> [3] -> 3
    assert read_yaml_config(dumps_yaml(cfg)) == cfg
    with pytest.raises(KerasFileError, match="unsupported YAML tag"):
        read_yaml_config("class_name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(KerasFileError):
        read_yaml_config("class_name: !!python/object:builtins.object {}\n")


def test_json_helpers():
    text = dumps_json({"a": (1, 2), "b": np.float32(0.5), "c": np.int64(3), "d": np.arange(2),
                       "e": np.dtype("float32"), "f": b"x", "g": Ellipsis})
    assert json.loads(text) == {"a": [1, 2], "b": 0.5, "c": 3, "d": [0, 1], "e": "float32",
                                "f": {"class_name": "__bytes__", "value": "x"},
                                "g": {"class_name": "__ellipsis__"}}
    assert read_json_config('{"k": {"class_name": "__tuple__", "items": [1, 2]}}') == {"k": [1, 2]}
    with pytest.raises(KerasFileError, match="nests"):
        read_json_config("{\"a\": " + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(KerasFileError, match="truncated"):
        read_json_config('{"class_name": "Sequential", "config": {')
    with pytest.raises(KerasFileError):
        dumps_json({"x": object()})


# ------------------------------------------------------------------------------ round trips

def assert_layers_equal(a, b):
    assert [n for n, _ in a] == [n for n, _ in b]
    for (_, wa), (_, wb) in zip(a, b):
        assert [n for n, _ in wa] == [n for n, _ in wb]
        for (_, x), (_, y) in zip(wa, wb):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


def structure(path):
    """Everything Keras's HDF5 loaders look at, except values: object paths and kinds, every
    attribute's HDF5 type class, charset, vlen-ness and shape, dataset dtype/shape/layout."""
    out = []
    with h5py.File(path, "r") as f:
        def attrs(obj):
            found = []
            for key in sorted(obj.attrs):
                aid = obj.attrs.get_id(key)
                tid = aid.get_type()
                is_str = tid.get_class() == h5py.h5t.STRING
                found.append((key, tid.get_class(), tid.get_cset() if is_str else None,
                              tid.is_variable_str() if is_str else None, aid.shape))
            return found

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out.append((name, "dataset", str(obj.dtype), obj.shape, obj.chunks,
                            obj.compression, attrs(obj)))
            else:
                out.append((name, "group", attrs(obj)))

        out.append(("/", "root", attrs(f)))
        f.visititems(visit)
    return out


H5_MODELS = [p for p in FILES if expected_format(p) == "h5_model"]


@pytest.mark.parametrize("path", H5_MODELS, ids=lambda p: str(p.relative_to(CONFORMANCE)))
def test_h5_model_round_trip(path, tmp_path):
    m = read_h5_model(path)
    out = tmp_path / "m.h5"
    write_h5_model(out, m.model_config, m.training_config, m.layer_weights, m.optimizer_weights,
                   top_level_weights=m.top_level_weights, keras_version=m.keras_version,
                   backend=m.backend)
    r = read_h5_model(out)
    assert r.model_config == m.model_config and r.training_config == m.training_config
    assert (r.keras_version, r.backend) == (m.keras_version, m.backend)
    assert_layers_equal(r.layer_weights, m.layer_weights)
    assert_layers_equal([("opt", r.optimizer_weights)], [("opt", m.optimizer_weights)])
    assert detect_format(out) == "h5_model"
    assert structure(out) == structure(path)          # same layout, attribute types, datasets
    with h5py.File(out, "r") as mine, h5py.File(path, "r") as theirs:
        for key in ("model_config", "training_config"):
            assert mine.attrs.get(key) == theirs.attrs.get(key)      # byte-identical JSON text
    w = tmp_path / "w.h5"
    write_h5_weights(w, m.layer_weights, keras_version=m.keras_version, backend=m.backend)
    assert detect_format(w) == "h5_weights_legacy"
    assert_layers_equal(read_h5_weights(w).layer_weights, m.layer_weights)


LEGACY_WEIGHTS = [p for p in FILES if expected_format(p) == "h5_weights_legacy"]


@pytest.mark.parametrize("path", LEGACY_WEIGHTS, ids=lambda p: str(p.relative_to(CONFORMANCE)))
def test_legacy_weights_round_trip(path, tmp_path):
    w = read_h5_weights(path)
    out = tmp_path / "w.h5"
    write_h5_weights(out, w.layer_weights, top_level_weights=w.top_level_weights,
                     keras_version=w.keras_version, backend=w.backend)
    assert structure(out) == structure(path)
    assert_layers_equal(read_h5_weights(out).layer_weights, w.layer_weights)


K3_WEIGHTS = [p for p in FILES if expected_format(p) in ("h5_weights_keras3", "keras_zip")]


@pytest.mark.parametrize("path", K3_WEIGHTS, ids=lambda p: str(p.relative_to(CONFORMANCE)))
def test_keras3_weights_and_zip_round_trip(path, tmp_path):
    if expected_format(path) == "keras_zip":
        z = read_keras_zip(path)
        assets = {n: read_keras_zip_asset(path, n) for n in z.assets}
        out = tmp_path / "m.keras"
        write_keras_zip(out, z.config, z.metadata, z.weights, assets=assets)
        r = read_keras_zip(out)
        assert (r.config, r.metadata, r.assets) == (z.config, z.metadata, z.assets)
        assert {n: read_keras_zip_asset(out, n) for n in r.assets} == assets
        with zipfile.ZipFile(path) as theirs, zipfile.ZipFile(out) as mine:
            assert [(i.filename, i.compress_type) for i in mine.infolist()] == \
                [(i.filename, i.compress_type) for i in theirs.infolist()]
            for name, zf in (("theirs.h5", theirs), ("mine.h5", mine)):
                (tmp_path / name).write_bytes(zf.read("model.weights.h5"))
            assert mine.read("config.json") == theirs.read("config.json")
        assert structure(tmp_path / "mine.h5") == structure(tmp_path / "theirs.h5")
        w0, w1 = z.weights, r.weights
    else:
        w0 = read_keras3_weights(path)
        out = tmp_path / "x.weights.h5"
        write_keras3_weights(out, w0)
        assert detect_format(out) == "h5_weights_keras3"
        assert structure(out) == structure(path)
        w1 = read_keras3_weights(out)
    assert list(w0.vars) == list(w1.vars) and w0.names == w1.names
    for key in w0.vars:
        assert len(w0.vars[key]) == len(w1.vars[key])
        for a, b in zip(w0.vars[key], w1.vars[key]):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_canonical_config_through_keras_zip(tmp_path):
    """A config read from Keras 2 can be written as a Keras 3 archive and read back."""
    m = read_h5_model(CONFORMANCE / "formats/k2/func_merge.h5")
    can = cd.normalize_model_config(m.model_config)
    can["compile_config"] = cd.normalize_training_config(m.training_config)
    out = tmp_path / "m.keras"
    write_keras_zip(out, cd.to_keras3_config(can), weights={"layers/dense/vars": [np.ones((6, 5))]})
    z = read_keras_zip(out)
    again = cd.normalize_model_config(z.config)
    assert again["config"]["output_layers"] == can["config"]["output_layers"]
    assert again["compile_config"] == can["compile_config"]


# ------------------------------------------------------------------ structure of written files

def test_written_h5_structure(tmp_path):
    out = tmp_path / "m.h5"
    layers = [("in", []), ("conv1", [("conv1/kernel:0", np.ones((3, 2), np.float32))]),
              ("conv1/conv", [("conv1/conv/kernel:0", np.ones((2, 2), np.float32)),
                              ("conv1/conv/bias:0", np.zeros(2, np.float32))]),
              ("norm", [("count:0", np.array(5, np.int64))])]
    write_h5_model(out, {"class_name": "Functional", "config": {"t": (1, 2)}}, None, layers,
                   [("iteration:0", np.array(3, np.int64))])
    with h5py.File(out, "r") as f:
        assert f.attrs["keras_version"] == "2.21.0" and f.attrs["backend"] == "tensorflow"
        assert f.attrs.get_id("keras_version").get_type().get_cset() == h5py.h5t.CSET_UTF8
        assert f.attrs.get_id("model_config").get_type().is_variable_str()
        assert json.loads(f.attrs["model_config"]) == {"class_name": "Functional", "config": {"t": [1, 2]}}
        assert "training_config" not in f.attrs
        mw = f["model_weights"]
        assert list(mw.attrs["layer_names"]) == ["in", "conv1", "conv1/conv", "norm"]
        assert mw.attrs.get_id("layer_names").get_type().is_variable_str()
        assert mw.attrs["keras_version"] == "2.21.0" and mw.attrs["backend"] == "tensorflow"
        empty = mw["in"].attrs["weight_names"]
        assert empty.dtype == np.float64 and empty.shape == (0,)
        assert list(mw["conv1/conv"].attrs["weight_names"]) == ["conv1/conv/kernel:0", "conv1/conv/bias:0"]
        assert mw["conv1/conv/conv1/conv/kernel:0"].shape == (2, 2)
        assert mw["norm/count:0"].shape == () and mw["norm/count:0"].dtype == np.int64
        ds = mw["conv1/conv1/kernel:0"]
        assert ds.chunks is None and ds.compression is None
        assert "top_level_model_weights" in mw
        assert mw["top_level_model_weights"].attrs["weight_names"].shape == (0,)
        assert list(f["optimizer_weights"].attrs["weight_names"]) == ["iteration:0"]
    m = read_h5_model(out)
    assert_layers_equal(m.layer_weights, layers)


def test_chunked_name_attributes(tmp_path):
    names = [f"a_layer_with_a_rather_long_name_for_chunks_{i:04d}" for i in range(1500)]  # 72 kB
    out = tmp_path / "w.h5"
    write_h5_weights(out, [(n, []) for n in names])
    with h5py.File(out, "r") as f:
        assert "layer_names" not in f.attrs and "layer_names0" in f.attrs and "layer_names1" in f.attrs
        assert all(f.attrs[k].nbytes <= 64512 for k in f.attrs if k.startswith("layer_names"))
    assert [n for n, _ in read_h5_weights(out).layer_weights] == names


def test_keras3_numeric_order_and_root_vars(tmp_path):
    arrays = [np.full((2,), i, np.float32) for i in range(12)]
    out = tmp_path / "x.weights.h5"
    write_keras3_weights(out, {"layers/dense/vars": arrays}, names={"layers/dense/vars": "d"})
    with h5py.File(out, "r") as f:
        assert list(f["layers/dense/vars"].keys())[:3] == ["0", "1", "10"]     # HDF5 order
        assert "vars" in f and f["layers/dense/vars"].attrs["name"] == "d"
    w = read_keras3_weights(out)
    assert [int(a[0]) for a in w.vars["layers/dense/vars"]] == list(range(12))
    assert w.vars["vars"] == []


def test_written_keras_zip_structure(tmp_path):
    out = tmp_path / "m.keras"
    write_keras_zip(out, {"module": "keras", "class_name": "Sequential", "config": {}},
                    weights=lambda f: f.create_group("layers/dense/vars").create_dataset("0", data=[1.0]),
                    assets={"layers/string_lookup/vocabulary.txt": b"[UNK]\na"})
    with zipfile.ZipFile(out) as z:
        infos = z.infolist()
        assert [i.filename for i in infos] == ["metadata.json", "config.json", "model.weights.h5",
                                               "assets/layers/string_lookup/vocabulary.txt"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        meta = json.loads(z.read("metadata.json"))
        assert set(meta) == {"keras_version", "date_saved"}
    w = read_keras_zip(out).weights
    assert "vars" in w.vars and w.vars["layers/dense/vars"][0].tolist() == [1.0]


def test_atomic_writes_keep_previous_file(tmp_path):
    target = tmp_path / "model.h5"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write(b"partial")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"previous"
    with pytest.raises(RuntimeError):
        with atomic_h5(target) as f:
            f.create_group("x")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"previous"
    with pytest.raises(KerasFileError):                      # invalid data: nothing replaced
        write_h5_weights(target, [("a", [("k", np.array(["str"]))])])
    with pytest.raises(KerasFileError, match="duplicate"):
        write_h5_weights(target, [("a", [("k", np.ones(1)), ("k", np.ones(1))])])
    assert target.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["model.h5"]       # no temporary files left
    with atomic_write(target, "w") as fh:
        fh.write("new")
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["model.h5"]
