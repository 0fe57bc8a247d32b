"""Saving and loading live models: round trips through every format kcompile writes (identical
predictions, identical continued training), the structure of the written files, weights-only
files (by_name, skip_mismatch), configs of every layer, custom objects, safe mode, bad files,
`kcompile inspect` and `kcompile.from_keras`."""
import inspect
import json
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import kcompile as keras
from kcompile.saving.errors import KerasFileError
from kcompile.saving.json_yaml import dumps_json
from kcompile.saving.model_build import UnsupportedModelError
from kcompile.saving.optimizer_state import keras_optimizer_variables, restore_optimizer_state

from conftest import CONFORMANCE


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)     # same generated code every run: the compile cache applies


def _trained_model():
    rng = np.random.default_rng(0)
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Dense(5, activation="relu")(a)
    merged = keras.layers.Concatenate()([h, keras.layers.BatchNormalization()(b)])
    out1 = keras.layers.Dense(1, name="main_output")(merged)
    out2 = keras.layers.Dense(2, activation="softmax", name="aux_output")(h)
    model = keras.Model([a, b], [out1, out2])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=["mse", "categorical_crossentropy"],
                  loss_weights=[1.0, 0.5], metrics=[["mae"], ["accuracy"]])
    x = [rng.normal(size=(16, 6)).astype(np.float32), rng.normal(size=(16, 4)).astype(np.float32)]
    y = [rng.normal(size=(16, 1)).astype(np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    return model, x, y


@pytest.fixture(scope="module")
def trained():
    """One trained two-input two-output model shared by the tests that only read it."""
    keras.utils.set_random_seed(0)
    return _trained_model()


def _same_predictions(a, b, x):
    for p, q in zip(a.predict(x, verbose=0), b.predict(x, verbose=0)):
        np.testing.assert_array_equal(p, q)


# ---------------------------------------------------------------- whole models

@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_round_trip_resumes_training_identically(tmp_path, suffix):
    model, x, y = _trained_model()
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = keras.models.load_model(path)
    _same_predictions(model, loaded, x)
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 4
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    for w1, w2 in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=1e-7)


def test_written_files_have_the_layout_keras_reads(tmp_path, trained):
    model, _, _ = trained
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5") as f:
        assert {"model_config", "training_config", "keras_version", "backend"} <= set(f.attrs)
        names = [n.decode() if isinstance(n, bytes) else n for n in f["model_weights"].attrs["layer_names"]]
        assert names == [layer.name for layer in model.layers]
        opt_names = list(f["optimizer_weights"].attrs["weight_names"])
        opt_names = [n.decode() if isinstance(n, bytes) else n for n in opt_names]
        # Keras 3's names and order: iteration, learning_rate, then momentum/velocity per variable
        assert opt_names[:4] == ["adam/iteration", "adam/learning_rate", opt_names[2], opt_names[3]]
        assert opt_names[2].endswith("_kernel_momentum") and opt_names[3].endswith("_kernel_velocity")
        assert len(opt_names) == 2 + 2 * len(model.trainable_weights)
        training = json.loads(f.attrs["training_config"])
        assert training["loss_weights"] == [1.0, 0.5] and "optimizer_config" in training
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert zf.namelist()[:3] == ["metadata.json", "config.json", "model.weights.h5"]
        config = json.loads(zf.read("config.json"))
        assert config["class_name"] == "Functional" and config["compile_config"]["loss_weights"] == [1.0, 0.5]
        with h5py.File(zf.open("model.weights.h5")) as f:
            assert "vars" in f and len(f["optimizer/vars"]) == len(opt_names)
            assert sorted(f["layers"]) == ["batch_normalization", "concatenate", "dense", "dense_1", "dense_2",
                                           "input_layer", "input_layer_1"]


def test_include_optimizer_false_and_overwrite(tmp_path, trained):
    model, x, _ = trained
    path = tmp_path / "m.h5"
    model.save(path, include_optimizer=False)
    with h5py.File(path) as f:
        assert "optimizer_weights" not in f and "training_config" not in f.attrs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.models.load_model(path)
    assert loaded.optimizer is None
    _same_predictions(model, loaded, x)
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)
    with pytest.raises(ValueError, match="extension"):
        model.save(tmp_path / "m.pkl")


OPTIMIZERS = [lambda: keras.optimizers.SGD(0.1, momentum=0.9),
              lambda: keras.optimizers.RMSprop(momentum=0.5, centered=True),
              lambda: keras.optimizers.Adam(amsgrad=True), lambda: keras.optimizers.Nadam(),
              lambda: keras.optimizers.Adagrad(), lambda: keras.optimizers.Adamax()]


@pytest.mark.parametrize("make", OPTIMIZERS, ids=["sgd", "rmsprop", "adam_amsgrad", "nadam", "adagrad", "adamax"])
def test_optimizer_state_layouts_round_trip(make):
    """Written in Keras 3's order; read back from that order, from tf-keras's (no learning rate)
    and from legacy tf.keras's (each slot kind as a block)."""
    rng = np.random.default_rng(1)
    variables = [keras.Variable(rng.normal(size=s).astype(np.float32), name=n)
                 for s, n in (((3, 2), "kernel"), ((2,), "bias"))]
    source = make()
    named = keras_optimizer_variables(source, variables)
    for _, v in named:
        v.assign(rng.normal(size=v.shape).astype(v.dtype) if v.dtype != "int32" else np.int32(7))
    stored = [v.numpy() for _, v in named]
    assert named[0][0].endswith("/iteration") and len({n for n, _ in named}) == len(named)

    def restored(arrays):
        target = make()
        assert restore_optimizer_state(target, arrays, variables, "test")
        return [v.numpy() for _, v in keras_optimizer_variables(target, variables)]

    for got, want in zip(restored(stored), stored):
        np.testing.assert_array_equal(got, want)
    without_lr = restored([stored[0]] + stored[2:])
    for got, want in zip(without_lr[2:], stored[2:]):
        np.testing.assert_array_equal(got, want)
    slots = [(n, v.numpy()) for n, v in named[2:] if not n.endswith("u_product")]
    kinds = list(dict.fromkeys(n.rsplit("_", 1)[-1] for n, _ in slots))
    blocked = [a for kind in kinds for n, a in slots if n.rsplit("_", 1)[-1] == kind]
    extras = [v.numpy() for n, v in named[2:] if n.endswith("u_product")]
    legacy = restored([stored[0]] + blocked + extras)
    for got, want in zip(legacy[2:], stored[2:]):
        np.testing.assert_array_equal(got, want)
    with pytest.warns(UserWarning, match="starts fresh"):
        assert not restore_optimizer_state(make(), stored[:3], variables, "test")


# ---------------------------------------------------------------- weights only

@pytest.mark.parametrize("name,save_format", [("w.weights.h5", None), ("w.h5", None), ("weights/my_model", None),
                                              ("w.hdf5", "h5")])
def test_weights_round_trip(tmp_path, trained, name, save_format):
    model, x, _ = trained
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    model.save_weights(path, save_format=save_format)
    clone = keras.models.model_from_json(model.to_json())
    clone.load_weights(path)
    _same_predictions(model, clone, x)


def test_sharded_weights_and_optimizer_state_in_weights_files(tmp_path, trained):
    model, x, _ = trained
    index = tmp_path / "w.weights.json"
    model.save_weights(index, max_shard_size=2e-7)          # 200 bytes: several shards
    shards = sorted(p.name for p in tmp_path.glob("w_*.weights.h5"))
    assert len(shards) > 2 and shards[0] == "w_00000.weights.h5"
    weight_map = json.loads(index.read_text())["weight_map"]
    assert set(weight_map["/optimizer/vars"]) <= set(shards) and "/layers/dense/vars" in weight_map
    clone = keras.models.model_from_json(model.to_json())      # compiled from the compile config
    clone.load_weights(index)
    _same_predictions(model, clone, x)
    assert int(clone.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) > 0
    with pytest.raises(ValueError, match=r"\.weights\.json"):
        model.save_weights(tmp_path / "w.weights.h5", max_shard_size=1.0)
    with pytest.raises(TypeError, match="not supported"):
        model.save_weights(tmp_path / "w.weights.h5", compression="gzip")


def test_load_weights_from_full_model_file_and_by_name(tmp_path, trained):
    model, x, _ = trained
    model.save(tmp_path / "m.h5")
    clone = keras.models.model_from_json(model.to_json())
    clone.load_weights(tmp_path / "m.h5")
    _same_predictions(model, clone, x)
    # by_name: only layers whose names match are loaded, in any order, others keep their values
    part = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name=model.layers[2].name),
                             keras.layers.Dense(3, name="not_in_file")])
    keep = part.layers[1].get_weights()
    part.load_weights(tmp_path / "m.h5", by_name=True)
    for got, want in zip(part.layers[0].get_weights(), model.layers[2].get_weights()):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(part.layers[1].get_weights(), keep):
        np.testing.assert_array_equal(got, want)
    model.save_weights(tmp_path / "k3.weights.h5")
    with pytest.raises(ValueError, match="by_name"):          # Keras 3 files match by path, never by name
        part.load_weights(tmp_path / "k3.weights.h5", by_name=True)


def test_mismatched_weights_name_layer_and_shapes(tmp_path, trained):
    model, _, _ = trained
    model.save_weights(tmp_path / "w.h5")
    model.save_weights(tmp_path / "w.weights.h5")
    first = model.layers[2].name
    wider = keras.models.model_from_json(model.to_json().replace('"units": 5', '"units": 7'))
    with pytest.raises(KerasFileError, match=rf"(?s)layer '{first}'.*\(6, 7\).*\(6, 5\)"):
        wider.load_weights(tmp_path / "w.h5")
    with pytest.raises(KerasFileError, match=r"(?s)layers/dense/vars.*\(6, 7\).*\(6, 5\)"):
        wider.load_weights(tmp_path / "w.weights.h5")
    before = wider.get_weights()
    for path in ("w.h5", "w.weights.h5"):     # skip_mismatch: the mismatched layers keep their values
        with pytest.warns(UserWarning, match="Skipping"):
            wider.load_weights(tmp_path / path, skip_mismatch=True)
        np.testing.assert_array_equal(wider.layers[2].get_weights()[0], before[0])
        for got, want in zip(wider.get_layer(model.layers[3].name).get_weights(), model.layers[3].get_weights()):
            np.testing.assert_array_equal(got, want)        # the batch normalization matched and loaded
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    with pytest.raises(KerasFileError, match="layers with weights"):
        other.load_weights(tmp_path / "w.h5")


# ---------------------------------------------------------------- configs, JSON and YAML

def _nested_model():
    inner_seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh")], name="inner_seq")
    i = keras.Input((3,))
    inner_func = keras.Model(i, keras.layers.Dense(2)(i), name="inner_func")
    x = keras.Input((4,), name="x")
    shared = keras.layers.Dense(3, name="shared")
    h = inner_seq(x)
    a, b = shared(h), shared(keras.layers.Dense(3, name="side")(x))
    return keras.Model(x, inner_func(keras.layers.Add()([a, b])), name="outer")


def test_json_yaml_configs_rebuild_nested_models_with_shared_layers():
    model = _nested_model()
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    for text, reader in ((model.to_json(), keras.models.model_from_json),
                         (model.to_yaml(), keras.models.model_from_yaml)):
        clone = reader(text)
        assert [type(l).__name__ for l in clone.layers] == [type(l).__name__ for l in model.layers]
        clone.set_weights(model.get_weights())
        np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    seq = keras.Sequential([keras.Input((3, 4)), keras.layers.LSTM(3, return_sequences=True),
                            keras.layers.Bidirectional(keras.layers.GRU(2)), keras.layers.Dense(1)])
    again = keras.Sequential.from_config(seq.get_config())
    assert again.get_config() == seq.get_config()
    assert [w.shape for w in again.get_weights()] == [w.shape for w in seq.get_weights()]


def test_model_from_json_compiles_from_its_compile_config(trained):
    model, _, _ = trained
    config = json.loads(model.to_json())
    assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
    clone = keras.models.model_from_json(model.to_json())
    assert type(clone.optimizer).__name__ == "Adam" and clone.optimizer.learning_rate == pytest.approx(0.01)
    assert clone._compile_args["loss_weights"] == [1.0, 0.5]


_REQUIRED = {"units": 2, "filters": 2, "kernel_size": 2, "rate": 0.5, "activation": "relu", "axes": 1,
             "input_dim": 5, "output_dim": 2, "height": 2, "width": 2, "dims": (1,), "n": 2, "scale": 0.5,
             "target_shape": (2,), "stddev": 0.1, "num_bins": 4, "equation": "ab,bc->ac", "output_shape": 2,
             "num_heads": 2, "key_dim": 2, "output_size": 2}
# arguments that have a default in the signature but that the layer needs in practice
_NEEDED = {"CategoryEncoding": {"num_tokens": 4}}


def _layer_classes():
    out = []
    for name in keras.layers.__all__:
        cls = getattr(keras.layers, name)
        if isinstance(cls, type) and issubclass(cls, keras.layers.Layer) and name not in ("Layer", "Lambda"):
            out.append(cls)
    return list(dict.fromkeys(out))        # aliases (AvgPool2D) once


def _instance(cls):
    if cls is keras.layers.InputLayer:
        return cls(shape=(3,))
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    kwargs = {}
    for p in params:
        if p.default is not p.empty or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.name == "cell":
            kwargs[p.name] = keras.layers.SimpleRNNCell(2)
        elif p.name == "layer":            # Bidirectional wraps an RNN, other wrappers any layer
            kwargs[p.name] = keras.layers.GRU(2) if cls.__name__ == "Bidirectional" else keras.layers.Dense(2)
        elif p.name in _REQUIRED:
            kwargs[p.name] = _REQUIRED[p.name]
        else:
            pytest.fail(f"{cls.__name__} requires argument {p.name!r}: add a value for it to _REQUIRED")
    return cls(**{**kwargs, **_NEEDED.get(cls.__name__, {})})


@pytest.mark.parametrize("cls", _layer_classes(), ids=lambda c: c.__name__)
def test_every_layer_config_round_trips(cls):
    """get_config is JSON-serializable, from_config rebuilds an equal layer, and the class is found
    by name when a saved model is loaded (layers added later are covered automatically)."""
    from kcompile.layers.serialization import serialize_layer
    layer = _instance(cls)
    config = layer.get_config()
    text = dumps_json(config)
    clone = cls.from_config(json.loads(text))
    assert type(clone) is cls and json.loads(dumps_json(clone.get_config())) == json.loads(text)
    if cls.__name__ == "InputLayer":
        return
    seq_config = {"module": "keras", "class_name": "Sequential",
                  "config": {"name": "s", "layers": [serialize_layer(layer)]}}
    rebuilt = keras.models.model_from_config(json.loads(dumps_json(seq_config)))
    assert type(rebuilt.layers[0]) is cls


def test_objects_in_configs_deserialize(tmp_path):
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, activation="gelu", kernel_initializer=keras.initializers.HeNormal(seed=3),
                           kernel_regularizer=keras.regularizers.L2(0.01), bias_initializer="ones"),
        keras.layers.Dense(1)])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.5), loss=keras.losses.Huber(delta=2.0),
                  metrics=[keras.metrics.MeanAbsoluteError(), "mse"])
    for suffix in (".keras", ".h5"):
        model.save(tmp_path / f"m{suffix}")
        loaded = keras.models.load_model(tmp_path / f"m{suffix}")
        assert loaded.layers[0].get_config() == model.layers[0].get_config()
        assert loaded.optimizer.get_config() == model.optimizer.get_config()
        assert loaded._compile_args["loss"].get_config() == model._compile_args["loss"].get_config()
        assert [type(m).__name__ for m in loaded._compile_args["metrics"][:1]] == ["MeanAbsoluteError"]


def test_serialize_and_deserialize_keras_objects():
    objects = [keras.losses.Huber(delta=2.0), keras.optimizers.Adam(0.1, amsgrad=True), keras.layers.Dense(3),
               keras.initializers.HeNormal(seed=1), keras.regularizers.L1L2(l1=0.1, l2=0.2),
               keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5), keras.metrics.MeanAbsoluteError(),
               keras.activations.relu, _nested_model(), Scale(4.0), scaled_tanh]
    for obj in objects:
        config = keras.utils.serialize_keras_object(obj)
        json.dumps(config)                                          # plain JSON data
        back = keras.utils.deserialize_keras_object(json.loads(json.dumps(config)))
        assert type(back) is type(obj) and keras.utils.serialize_keras_object(back) == config
    # Keras 2 envelopes carry no module: the family is found by class name
    assert keras.saving.deserialize_keras_object({"class_name": "RMSprop", "config": {"rho": 0.8}}).rho == 0.8
    assert isinstance(keras.saving.deserialize_keras_object({"class_name": "GlorotUniform", "config": {}}),
                      keras.initializers.GlorotUniform)
    local = type("Local", (Scale,), {})
    entry = keras.utils.serialize_keras_object(local(2.0))
    with pytest.raises(UnsupportedModelError, match="Local"):
        keras.utils.deserialize_keras_object(entry)
    assert type(keras.utils.deserialize_keras_object(entry, custom_objects={"Local": local})) is local
    keras.utils.get_custom_objects()["Local"] = local          # the global table, updated directly
    try:
        assert type(keras.utils.deserialize_keras_object(entry)) is local
    finally:
        del keras.utils.get_custom_objects()["Local"]


# ---------------------------------------------------------------- custom objects, safety, pre-flight

@keras.utils.register_keras_serializable(package="Tests")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.utils.register_keras_serializable(package="Tests")
def scaled_tanh(x):
    return keras.ops.tanh(x) * 2.0


def test_custom_objects_by_registration_scope_or_argument(tmp_path):
    def my_loss(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)

    model = keras.Sequential([keras.Input((2,)), Scale(3.0), keras.layers.Dense(1, activation=scaled_tanh)])
    model.compile(optimizer="sgd", loss=my_loss)
    model.save(tmp_path / "m.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))
    assert config["config"]["layers"][1]["registered_name"] == "Tests>Scale"
    assert "Tests>scaled_tanh" in json.dumps(config["config"]["layers"][2]["config"]["activation"])
    with pytest.raises(KerasFileError, match="my_loss"):
        keras.models.load_model(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", custom_objects={"my_loss": my_loss})
    assert loaded._compile_args["loss"] is my_loss and loaded.layers[1].activation is scaled_tanh
    x = np.ones((1, 2), np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert keras.utils.get_registered_object("Tests>Scale") is Scale
    assert keras.utils.get_registered_name(scaled_tanh) == "Tests>scaled_tanh"

    class Unregistered(Scale):
        pass

    class AlsoUnknown(Scale):
        pass
    other = keras.Sequential([keras.Input((2,)), Unregistered(name="first"), AlsoUnknown(name="second")])
    other.save(tmp_path / "u.keras")
    with pytest.raises(UnsupportedModelError, match="(?s)first.*Unregistered.*second.*AlsoUnknown") as info:
        keras.models.load_model(tmp_path / "u.keras")
    assert info.value.unknown_classes == ["Unregistered", "AlsoUnknown"]
    objects = {"Unregistered": Unregistered, "AlsoUnknown": AlsoUnknown}
    assert keras.models.load_model(tmp_path / "u.keras", custom_objects=objects) is not None
    with keras.utils.custom_object_scope(objects):
        assert keras.models.load_model(tmp_path / "u.keras") is not None
    with pytest.raises(ValueError, match="get_config"):
        keras.utils.register_keras_serializable("Tests")(type("NoConfig", (), {}))


@keras.utils.register_keras_serializable(package="Tests")
class Offsets(keras.layers.Layer):
    """Keeps its table outside weights and config, in an asset file, as lookup layers do."""

    def __init__(self, table=None, **kwargs):
        super().__init__(**kwargs)
        self.table = list(table or [])

    def call(self, x):
        # the model is assembled (and called symbolically) before its assets are loaded
        return x + np.asarray(self.table, np.float32) if self.table else x

    def save_assets(self, dir_path):
        with open(f"{dir_path}/table.txt", "w") as fh:
            fh.write("\n".join(str(v) for v in self.table))

    def load_assets(self, dir_path):
        with open(f"{dir_path}/table.txt") as fh:
            self.table = [float(v) for v in fh.read().split()]


def test_layer_assets_travel_in_keras_archives(tmp_path):
    model = keras.Sequential([keras.Input((2,)), Offsets([1.0, 2.0]), keras.layers.Dense(1), Offsets([5.0])])
    model.save(tmp_path / "a.keras")
    with zipfile.ZipFile(tmp_path / "a.keras") as zf:
        assert zf.read("assets/layers/offsets/table.txt") == b"1.0\n2.0"
        assert zf.read("assets/layers/offsets_1/table.txt") == b"5.0"
    loaded = keras.models.load_model(tmp_path / "a.keras")
    assert loaded.layers[0].table == [1.0, 2.0] and loaded.layers[2].table == [5.0]
    x = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_lambda_bytecode_refused_in_safe_mode(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda t: t * 2.0)])
    model.save(tmp_path / "l.keras")
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.models.load_model(tmp_path / "l.keras")
    loaded = keras.models.load_model(tmp_path / "l.keras", safe_mode=False)
    np.testing.assert_allclose(loaded.predict(np.ones((1, 2)), verbose=0), [[2.0, 2.0]])


def test_bad_files_name_the_problem(tmp_path, trained):
    text = tmp_path / "model.h5"
    text.write_text("not an hdf5 file")
    with pytest.raises(KerasFileError, match="model.h5"):
        keras.models.load_model(text)
    broken = tmp_path / "cut.keras"
    trained[0].save(tmp_path / "whole.keras")
    broken.write_bytes((tmp_path / "whole.keras").read_bytes()[:300])
    with pytest.raises(KerasFileError, match="cut.keras"):
        keras.models.load_model(broken)
    trained[0].save_weights(tmp_path / "only.weights.h5")
    with pytest.raises(KerasFileError, match="not a saved model"):
        keras.models.load_model(tmp_path / "only.weights.h5")
    with pytest.raises((KerasFileError, FileNotFoundError)):
        keras.models.load_model(tmp_path / "missing.keras")
    subclassed = type("Sub", (keras.Model,), {"call": lambda self, x: x})()
    with pytest.raises(KerasFileError, match="subclassed"):
        subclassed.save(tmp_path / "sub.keras")


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch, trained):
    model, _, _ = trained
    path = tmp_path / "m.keras"
    model.save(path)
    before = path.read_bytes()
    from kcompile.saving import keras_zip

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(keras_zip, "_write_weights_file", broken)
    with pytest.raises(KerasFileError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


# ---------------------------------------------------------------- inspect CLI, from_keras, real Keras

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
def test_keras_loads_what_kcompile_wrote(tmp_path, trained, suffix):
    keras_real = pytest.importorskip("keras")
    model, x, _ = trained
    model.save(tmp_path / f"m{suffix}")
    theirs = keras_real.models.load_model(tmp_path / f"m{suffix}")
    for p, q in zip(model.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
