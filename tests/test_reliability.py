"""Reliability (issue #13): sizes computed without wrap-around, bad data refused loudly and
clearly, weight loads that change all or nothing, and saves that tidy their temporary files."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kcompile as keras
from kcompile import activations, layers, losses
from kcompile.ir import graph as ir_graph
from kcompile.ir.passes import memory


def _classifier(loss="sparse_categorical_crossentropy", classes=10):
    model = keras.Sequential([keras.Input((3,)), layers.Dense(classes, activation="softmax")])
    model.compile(optimizer="adam", loss=loss)
    return model


@pytest.fixture(scope="module")
def classifier():
    return _classifier()


# ---------------------------------------------------------------- shape arithmetic

def test_reshape_target_size_does_not_wrap_around():
    # (2**62 + 1) * 4 is 4 modulo 2**64: an int64 product would accept it
    with pytest.raises(ValueError, match=r"reshape.*4611686018427387905"):
        keras.Sequential([keras.Input((4,)), layers.Reshape((2 ** 62 + 1, 4), name="reshape")])


def test_flatten_of_a_huge_input_is_refused():
    # 2**64 elements per sample: an int64 product makes that 0 and a Dense kernel of shape (0, 1)
    with pytest.raises(ValueError, match="18446744073709551616"):
        keras.Sequential([keras.Input((2 ** 32, 2 ** 32)), layers.Flatten(), layers.Dense(1)])


def test_a_weight_over_the_size_limit_is_refused_before_allocation():
    # a (2**40, 1) float32 kernel is 4 TiB
    with pytest.raises(ValueError, match=r"'big'.*kernel.*4398046511104 bytes"):
        keras.Sequential([keras.Input((2 ** 20, 2 ** 20)), layers.Flatten(), layers.Dense(1, name="big")])


def test_a_buffer_over_the_size_limit_fails_at_compile():
    model = keras.Sequential([keras.Input((2 ** 39,), name="wide"), layers.Activation("relu")])
    with pytest.raises(ValueError, match=r"wide.*2199023255552 bytes"):   # 2**39 float32 per sample
        model.compile(loss="mse")


def test_a_workspace_over_the_size_limit_fails_at_compile(monkeypatch):
    monkeypatch.setattr(memory, "MAX_BUFFER_BYTES", 1024)
    # every buffer within the limit (16 x 16 weight gradients: 1024 bytes), all of them together not
    model = keras.Sequential([keras.Input((8,))] + [layers.Dense(16, activation="relu") for _ in range(6)]
                             + [layers.Dense(1)])
    with pytest.raises(ValueError, match=r"workspace.*bytes.*1024"):
        model.compile(loss="mse")


def test_a_buffer_over_the_size_limit_fails_at_compile_naming_it(monkeypatch):
    monkeypatch.setattr(memory, "MAX_BUFFER_BYTES", 1024)
    model = keras.Sequential([keras.Input((8,)), layers.Dense(128, activation="relu"), layers.Dense(1)])
    with pytest.raises(ValueError, match=r"\(8, 128\) needs 4096 bytes, more than the limit of 1024 bytes for one buffer"):
        model.compile(loss="mse")


def test_static_size_uses_python_ints():
    assert ir_graph.static_size((ir_graph.BATCH, np.int64(2 ** 32), np.int64(2 ** 32))) == 2 ** 64


# ---------------------------------------------------------------- batch size

def test_batch_size_larger_than_the_data_is_one_batch():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((5, 3), "float32"), np.ones((5, 1), "float32")
    batches = []
    counter = keras.callbacks.LambdaCallback(on_test_batch_end=lambda b, logs: batches.append(b))
    history = model.fit(x, y, batch_size=1e9, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    model.evaluate(x, y, batch_size=10 ** 9, verbose=0, callbacks=[counter])
    assert batches == [0]
    assert model.predict(x, batch_size=1e9, verbose=0).shape == (5, 1)


@pytest.mark.parametrize("bad", [2.5, 0, -3, "32", True, -(10 ** 400), float("nan"), float("inf")])
def test_invalid_batch_size_is_refused(bad):
    model = keras.Sequential([keras.Input((3,)), layers.Dense(1)])
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        model.predict(np.ones((4, 3), "float32"), batch_size=bad, verbose=0)


def test_a_batch_size_too_large_for_a_float_is_one_batch():
    """10**400 is a valid (if odd) integer: the whole data in one batch, not an OverflowError."""
    model = keras.Sequential([keras.Input((3,)), layers.Dense(1)])
    assert model.predict(np.ones((4, 3), "float32"), batch_size=10 ** 400, verbose=0).shape == (4, 1)


# ---------------------------------------------------------------- data adapters (found by fuzzing)

@pytest.mark.parametrize("x, y, pattern", [
    (np.array(3.0), np.zeros((0, 10)), "batch dimension"),                # a 0-d array x
    (np.ones((4, 3)), np.zeros((3,)), "cardinality"),                     # y of another length
    ([[1.0, 2, 3], [1, 2]], np.zeros((2,)), "ragged"),
    (np.array(["a", "b"]), np.zeros((2,)), "numbers"),
])
def test_validation_split_of_unusable_data_is_a_clear_error(classifier, x, y, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        classifier.fit(x, y, validation_split=0.5, verbose=0)


@pytest.mark.parametrize("split", [0.0, 1.0, -0.5, float("nan"), True, "0.5"])
def test_validation_split_outside_0_1_is_refused(classifier, split):
    x, y = np.ones((8, 3), "float32"), np.zeros((8,), "int32")
    if not split and split is not True and split == split:
        classifier.fit(x, y, validation_split=split, verbose=0)        # 0.0: no split, as Keras
        return
    with pytest.raises(ValueError, match="validation_split"):
        classifier.fit(x, y, validation_split=split, verbose=0)


def test_validation_split_of_nested_lists_splits_them():
    model = _classifier()
    x = [[float(i), 0.0, 1.0] for i in range(10)]
    history = model.fit(x, list(range(10)), validation_split=0.2, epochs=1, verbose=0)
    assert "val_loss" in history.history


@pytest.mark.parametrize("labels, class_weight, pattern", [
    (np.array([0.0, np.inf]), {0: 1.0}, "whole-number class labels"),
    (np.array([0.0, np.nan]), {0: 1.0}, "whole-number class labels"),
    (np.array([0.0, 2.5]), {0: 1.0}, "whole-number class labels"),
    (np.array([0, 1]), {"a": 1.0}, "class indices"),
    (np.array([0, 1]), {0.5: 1.0}, "class indices"),
    (np.array([0, 1]), {0: "heavy"}, "numbers"),
    (np.array([0, 1]), [1.0, 2.0], "dict"),
])
def test_class_weight_with_unusable_labels_or_keys_is_a_clear_error(classifier, labels, class_weight, pattern):
    x = np.ones((2, 3), "float32")
    with pytest.raises((ValueError, TypeError), match=pattern):
        classifier.fit(x, labels, class_weight=class_weight, verbose=0)


def test_class_weight_weights_each_sample_by_its_class():
    from kcompile.data.adapters import class_weights_to_sample_weights
    weights = class_weights_to_sample_weights(np.array([0, 1, 2, 1]), {1: 3.0, 2: 0.5, 10 ** 20: 7.0})
    np.testing.assert_array_equal(weights, [1.0, 3.0, 0.5, 3.0])
    one_hot = np.eye(3)[[2, 0]]
    np.testing.assert_array_equal(class_weights_to_sample_weights(one_hot, {np.int64(2): 4.0}), [4.0, 1.0])
    with pytest.raises(ValueError, match="rank 1 or 2"):
        class_weights_to_sample_weights(np.zeros((2, 3, 4)), {0: 1.0})


# ---------------------------------------------------------------- integer inputs

@pytest.fixture(scope="module")
def embedding_model():
    return keras.Sequential([keras.Input((1,), dtype="int32", name="tokens"), layers.Embedding(10, 2)])


@pytest.mark.parametrize("value", [2 ** 32 + 3, -(2 ** 31) - 1, 1e10])
def test_integer_inputs_outside_int32_are_refused(embedding_model, value):
    x = np.array([[1], [value]], dtype=np.int64 if isinstance(value, int) else np.float64)
    with pytest.raises(ValueError, match=rf"'tokens'.*{int(value)}.*int32"):
        embedding_model.predict(x, verbose=0)


def test_integer_inputs_inside_int32_are_accepted(embedding_model):
    out = embedding_model.predict(np.array([[0], [9]], np.int64), verbose=0)
    assert out.shape == (2, 1, 2)


# ---------------------------------------------------------------- transactional loads

def _stack(last_units, stateful=False):
    return keras.Sequential([keras.Input(batch_shape=(2, 3, 4)), layers.SimpleRNN(5, stateful=stateful),
                             layers.Dense(4), layers.Dense(last_units)])


@pytest.mark.parametrize("filename", ["other.weights.h5", "other.h5"])
def test_a_failed_load_changes_nothing(tmp_path, filename):
    model = _stack(2, stateful=True)
    model.compile(optimizer="adam", loss="mse")
    x, y = np.random.rand(2, 3, 4).astype("float32"), np.random.rand(2, 2).astype("float32")
    model.train_on_batch(x, y)                     # optimizer slots and RNN states are non-zero
    weights = model.get_weights()
    optimizer_state = [v.numpy() for v in model.optimizer.variables]
    rnn_state = model.layers[0].states[0].numpy()
    assert np.abs(rnn_state).sum() > 0

    other = _stack(3)                              # differs only in its last layer
    other.save_weights(tmp_path / filename)
    with pytest.raises(ValueError, match="dense"):
        model.load_weights(tmp_path / filename)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    for before, v in zip(optimizer_state, model.optimizer.variables):
        np.testing.assert_array_equal(before, v.numpy())
    np.testing.assert_array_equal(rnn_state, model.layers[0].states[0].numpy())


def test_a_failed_load_by_name_changes_nothing(tmp_path):
    model = _stack(2)
    other = _stack(3)
    for mine, theirs in zip(model.layers, other.layers):
        theirs.name = mine.name                    # same names, the last layer's shapes differ
    other.save_weights(tmp_path / "other.h5")
    weights = model.get_weights()
    with pytest.raises(ValueError, match=model.layers[-1].name):
        model.load_weights(tmp_path / "other.h5", by_name=True)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------- bad data

def test_no_samples_is_an_error(classifier):
    x, y = np.zeros((0, 3), "float32"), np.zeros((0,), "float32")
    with pytest.raises(ValueError, match="Expected input data to be non-empty"):
        classifier.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="Expected input data to be non-empty"):
        classifier.evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match="Expected input data to be non-empty"):
        classifier.predict(x, verbose=0)


@pytest.mark.parametrize("label", [10, -1, 1e6, 3.5, np.nan])
def test_sparse_labels_outside_the_classes_are_refused(classifier, label):
    x, y = np.ones((3, 3), "float32"), np.array([0.0, 9.0, label])
    pattern = rf"sparse_categorical_crossentropy.*{label}.*\[0, 10\)"
    with pytest.raises(ValueError, match=pattern):
        classifier.evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match=pattern):
        classifier.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=pattern):
        classifier.train_on_batch(x, y[:, None])


def test_sparse_labels_through_the_loss_class():
    model = _classifier(loss=losses.SparseCategoricalCrossentropy(), classes=4)
    x = np.ones((2, 3), "float32")
    assert np.isfinite(model.evaluate(x, np.array([0, 3]), verbose=0))
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy.*4.*\[0, 4\)"):
        model.evaluate(x, np.array([0, 4]), verbose=0)


def test_check_sparse_labels_accepts_valid_labels():
    loss = losses.get("sparse_categorical_crossentropy")
    losses.check_sparse_labels(loss, np.array([[0], [4], [2]], np.float32), 5)
    losses.check_sparse_labels(losses.get("mse"), np.array([7.5]), 5)     # other losses: no check


# ---------------------------------------------------------------- messages

@pytest.mark.parametrize("x, pattern", [
    (np.float32(1.0), r"Unrecognized data type: x=1\.0.*batch dimension"),
    (1.0, r"Unrecognized data type: x=1\.0.*batch dimension"),
    ([[1, 2, 3], [1, 2]], r"ragged"),
    ([], r"Expected input data to be non-empty"),
])
def test_unusable_data_gives_a_clear_message(classifier, x, pattern):
    with pytest.raises(ValueError, match=pattern):
        classifier.predict(x, verbose=0)


def test_activation_configs():
    # Keras 3 writes a function as {"class_name": "function", "config": name}
    assert activations.get({"module": "keras.activations", "class_name": "function", "config": "relu",
                            "registered_name": "relu"}) is activations.relu
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        activations.get({"class_name": "Activation", "config": "relu"})
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        layers.Dense(2, activation={"config": 3})
    with pytest.raises(ValueError, match="'config' of a 'Activation' must be a dict"):
        keras.saving.deserialize_keras_object({"class_name": "Activation", "config": "relu"})


# ---------------------------------------------------------------- temporary files of a save

def _small_model():
    return keras.Sequential([keras.Input((3,)), layers.Dense(2)])


class Noted(layers.Layer):
    """A layer with an asset file, which notes the folder a save hands it."""
    folders = []

    def save_assets(self, dir_path):
        Noted.folders.append(os.path.dirname(dir_path))
        with open(os.path.join(dir_path, "note.txt"), "w") as fh:
            fh.write("noted")


def test_save_writes_its_temporary_files_beside_the_target(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-system-temp"))
    target = tmp_path / "out" / "model.keras"
    target.parent.mkdir()
    keras.Sequential([keras.Input((3,)), layers.Dense(2), Noted()]).save(target)
    assert os.listdir(target.parent) == ["model.keras"]
    assert Noted.folders == [str(target.parent)]
    monkeypatch.undo()
    loaded = keras.models.load_model(target, custom_objects={"Noted": Noted})
    assert loaded.get_weights()[0].shape == (3, 2)


def test_leftovers_of_an_interrupted_save_are_removed_by_the_next(tmp_path):
    target = tmp_path / "model.keras"
    # a save whose process dies just before the final rename
    child = textwrap.dedent(f"""
        import os
        import kcompile as keras
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        os.replace = lambda *args: os._exit(3)
        model.save({str(target)!r})
    """)
    result = subprocess.run([sys.executable, "-c", child], cwd=os.getcwd(), capture_output=True)
    assert result.returncode == 3, result.stderr.decode()
    leftovers = os.listdir(tmp_path)
    assert leftovers and "model.keras" not in leftovers
    (tmp_path / "model.keras.notes").write_text("not a temporary file")
    _small_model().save(target)
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "model.keras.notes"]


def test_sparse_labels_that_are_no_class_score_nan_inside_compiled_code(tmp_path):
    """Labels that reach compiled code unchecked (a built C library, a native pipeline) give a NaN
    loss for that sample, never the loss 0 of "no class"."""
    import shutil
    if shutil.which("cc") is None:
        pytest.skip("no C compiler to link the built library")
    model = keras.Sequential([keras.layers.Dense(4, activation="softmax", input_shape=(3,))], name="sparse")
    model.compile("sgd", "sparse_categorical_crossentropy")
    keras.build(model, tmp_path, entries=["evaluate"])
    library = keras.load_built(tmp_path)
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    ones = np.ones(4, np.float32)
    good = library.run("evaluate", 4, [x, np.array([0, 1, 2, 3], np.float32), ones])[0]
    assert np.isfinite(good)
    for bad in (4.0, -1.0, 1e6, 2.5):
        labels = np.array([0, 1, bad, 3], np.float32)
        assert np.isnan(library.run("evaluate", 4, [x, labels, ones])[0]), bad


# ---------------------------------------------------------------- memory of compile/delete cycles

_CYCLES = textwrap.dedent("""
    import gc, os, sys
    import numpy as np
    import kcompile as keras
    from kcompile import layers

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    x = np.random.default_rng(0).random((16, 8), dtype=np.float32)

    def cycle():
        model = keras.Sequential([layers.Dense(16, activation="relu", input_shape=(8,)),
                                  layers.Dense(4, activation="softmax")])
        model.compile(loss="categorical_crossentropy", optimizer="adam")   # train and evaluate entries too
        model.predict(x, verbose=0)
        del model
        gc.collect()

    warmup, cycles = int(sys.argv[1]), int(sys.argv[2])
    for _ in range(warmup):
        cycle()
    start = rss()
    for _ in range(cycles):
        cycle()
    print((rss() - start) / cycles)
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident set size from /proc")
def test_compile_predict_delete_cycles_keep_the_memory_flat():
    """Each cycle builds, compiles and runs a model, then deletes it: the JIT engine, its module,
    the workspaces and the Python objects must all go. The compile cache is off, so a repeated
    model skips LLVM's optimizer only through the in-memory object cache (each optimizer run
    keeps ~0.3 MiB inside llvmlite: 0.47 MiB/cycle before, 0 after; with the disk cache on,
    the default, 0 before and after)."""
    env = dict(os.environ, KCOMPILE_CACHE="0")
    done = subprocess.run([sys.executable, "-c", _CYCLES, "3", "14"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    per_cycle = float(done.stdout.split()[-1])
    assert per_cycle < 0.15 * 2 ** 20, f"resident memory grew {per_cycle / 1024:.0f} KiB per cycle"


def test_closing_an_executable_frees_its_workspaces_and_native_code():
    import weakref
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    model.predict(np.ones((4, 3), "float32"), verbose=0)
    (variant,) = model._compiled_model._variants.values()
    if not hasattr(variant, "_local"):
        pytest.skip(f"the model runs on a {type(variant).__name__}, not the CPU JIT")
    workspace = weakref.ref(variant._local.workspace.base)
    jit = variant._owner
    variant.close()
    import gc
    gc.collect()
    assert workspace() is None and variant._owner is None
    assert jit._engine is None and jit._mod is None and jit._text is None


# ---------------------------------------------------------------- denormals

def test_compiled_code_flushes_denormals_and_leaves_the_callers_fp_mode_alone():
    """Entries run with denormals flushed to zero (as TensorFlow and XLA run Keras models: an
    optimizer state decaying into denormals would otherwise crawl through microcode assists) and
    give the caller its floating-point mode back: numpy keeps its denormals afterwards."""
    import platform
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Lambda(lambda t: t * 1e-30)(inputs))
    x = np.full((2, 4), 1e-10, np.float32)                # x * 1e-30 = 1e-40: a float32 denormal
    got = model.predict_on_batch(x)
    if platform.machine() in ("x86_64", "AMD64", "i686"):
        assert np.all(got == 0)
    tiny = np.float32(1e-38) / np.float32(100)            # numpy in this thread, after the call
    assert tiny != 0 and tiny < np.finfo(np.float32).tiny
