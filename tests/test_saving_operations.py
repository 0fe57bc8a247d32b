"""Keras 3 operations applied to symbolic tensors in functional models (`keras.ops.concatenate`,
`a + b`, ...): loaded from a file real Keras wrote with Keras's numbers, and saved the way Keras
writes them (module keras.src.ops.*, constructor arguments as the config, tensors as call args)."""
import json

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers, ops
from kcompile.saving.model_build import UnsupportedModelError

from conftest import FIXTURES

OPS_FIXTURE = FIXTURES / "keras3_ops"


def test_a_keras_file_with_ops_loads_with_keras_numbers(tmp_path):
    golden = np.load(OPS_FIXTURE / "ops_functional.npz")
    model = keras.models.load_model(OPS_FIXTURE / "ops_functional.keras")
    x = [golden["a"], golden["b"]]
    np.testing.assert_allclose(model.predict(x, verbose=0), golden["y"], rtol=1e-5, atol=1e-6)
    assert model.evaluate(x, golden["y"], verbose=0) < 1e-10          # compiled from the file's config
    for suffix in (".keras", ".h5"):
        model.save(tmp_path / f"again{suffix}")
        again = keras.models.load_model(tmp_path / f"again{suffix}")
        np.testing.assert_allclose(again.predict(x, verbose=0), golden["y"], rtol=1e-5, atol=1e-6)


def _ops_model():
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    h = layers.Dense(4, activation="tanh")(a)
    joined = ops.concatenate([h, b], axis=-1)                       # (None, 7)
    scaled = ops.where(ops.greater(joined, 0.0), joined * 2.0, ops.exp(joined))
    mixed = ops.einsum("bi,bj->bij", scaled, joined)                 # (None, 7, 7)
    pooled = ops.mean(mixed, axis=1) + ops.sum(joined, axis=1, keepdims=True)
    stacked = ops.stack([pooled, ops.square(pooled)], axis=1)        # (None, 2, 7)
    out = layers.Dense(2)(ops.reshape(stacked, (-1, 14)))
    return keras.Model([a, b], out)


def test_ops_in_a_functional_model_save_as_keras_writes_them(tmp_path):
    model = _ops_model()
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)]
    want = model.predict(x, verbose=0)
    config = json.loads(model.to_json())["config"]
    entries = {e["name"]: e for e in config["layers"]}
    concat = entries["concatenate"]
    assert (concat["module"], concat["class_name"], concat["config"]) == \
        ("keras.src.ops.numpy", "Concatenate", {"name": "concatenate", "axis": -1})
    assert len(concat["inbound_nodes"][0]["args"][0]) == 2                # [h, b]: one call argument
    multiply = entries["multiply"]
    assert multiply["inbound_nodes"][0]["args"][1] == 2.0                # the constant is a call argument
    einsum = entries["einsum"]
    assert einsum["config"] == {"name": "einsum", "subscripts": "bi,bj->bij"} and \
        len(einsum["inbound_nodes"][0]["args"]) == 2
    for suffix in (".keras", ".h5", ".json"):
        path = tmp_path / f"m{suffix}"
        if suffix == ".json":
            path.write_text(model.to_json())
            loaded = keras.models.model_from_json(path.read_text())
            loaded.set_weights(model.get_weights())
        else:
            model.save(path)
            loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_slicing_saves_as_keras_get_item(tmp_path):
    a = keras.Input((4, 5))
    model = keras.Model(a, layers.Dense(1)(a[:, 1:, 2:4] * a[..., :1, 0:2]))
    x = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
    config = json.loads(model.to_json())
    get_items = [e for e in config["config"]["layers"] if e["class_name"] == "GetItem"]
    assert get_items[0]["inbound_nodes"][0]["args"][1] == [
        {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": None}},
        {"class_name": "__slice__", "config": {"start": 1, "stop": None, "step": None}},
        {"class_name": "__slice__", "config": {"start": 2, "stop": 4, "step": None}}]
    assert get_items[1]["inbound_nodes"][0]["args"][1][0] == {"class_name": "__ellipsis__", "config": {}}
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    # Keras writes strided slices too: a[:, 1:, 2:4:2] loads as that slice
    get_items[0]["inbound_nodes"][0]["args"][1][2]["config"]["step"] = 2
    strided = keras.models.model_from_json(json.dumps(config))
    direct = keras.Model(a, layers.Dense(1)(a[:, 1:, 2:4:2] * a[..., :1, 0:2]))
    direct.set_weights(model.get_weights())
    strided.set_weights(model.get_weights())
    np.testing.assert_allclose(strided.predict(x, verbose=0), direct.predict(x, verbose=0), rtol=1e-6)


def test_unsupported_operation_arguments_are_named_before_building():
    model = _ops_model()
    config = json.loads(model.to_json())
    for entry in config["config"]["layers"]:
        if entry["name"] == "concatenate":
            entry["config"]["dtype_policy"] = "mixed_float16"
        if entry["name"] == "exp":
            entry["class_name"] = "Exp2"
    with pytest.raises(UnsupportedModelError) as info:
        keras.models.model_from_json(json.dumps(config))
    message = str(info.value)
    assert "'concatenate' (Concatenate)" in message and "dtype_policy" in message
    assert "Exp2 is not supported by kcompile.ops" in message
