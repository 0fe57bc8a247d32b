"""Strided slicing (`x[a:b:s]`, negative steps included) on numpy values, on symbolic tensors in
compiled models, in saved files, and through the gradient: always against numpy's own slicing."""
import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

import kcompile as keras
from kcompile import layers, ops
from kcompile.ir import builder as b
from kcompile.ir.autodiff import grad
from kcompile.ir.graph import BATCH, Graph
from kcompile.ir.interpreter import evaluate
from kcompile.ir.passes.pipeline import lower_to_kernels
from kcompile.runtime.native import jit_executable
from kcompile.runtime.state import StatePool
from kcompile.tracing import KerasTensor

bounds = st.one_of(st.none(), st.integers(-12, 12))          # out-of-range bounds included
steps = st.one_of(st.none(), st.integers(-4, 4).filter(lambda s: s != 0))


@st.composite
def shape_and_key(draw, max_rank=3):
    """A shape and a basic-indexing key for it: slices with any start/stop/step, some integers,
    None (new axes) and at most one Ellipsis."""
    shape = tuple(draw(st.integers(1, 8)) for _ in range(draw(st.integers(1, max_rank))))
    items = []
    for d in shape:
        if draw(st.integers(0, 4)) == 0:
            items.append(draw(st.integers(-d, d - 1)))
        else:
            items.append(slice(draw(bounds), draw(bounds), draw(steps)))
    # leave out a run of axes: written as an Ellipsis, or (at the end) simply not indexed
    i = draw(st.integers(0, len(items)))
    j = draw(st.integers(i, len(items)))
    if draw(st.booleans()):
        items[i:j] = [Ellipsis]
    elif j == len(items) and i > 0:
        del items[i:]
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), None)
    return shape, tuple(items)


@given(case=shape_and_key(max_rank=4))
def test_eager_slicing_matches_numpy(case):
    shape, key = case
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    got = ops._getitem(x, key)
    np.testing.assert_array_equal(got, x[key])


def _model_key(key):
    """The key applied after the batch axis (which keeps its full extent)."""
    return (slice(None),) + key if Ellipsis not in key or key[0] is not Ellipsis else key


@given(case=shape_and_key(), batch=st.sampled_from([1, 3]))
def test_compiled_model_slicing_matches_numpy(case, batch):
    shape, key = case
    key = _model_key(key)
    inp = keras.Input(shape)
    model = keras.Model(inp, inp[key])
    x = np.random.default_rng(0).standard_normal((batch,) + shape).astype(np.float32)
    want = x[key]
    assert model.output_shape == (None,) + want.shape[1:]
    np.testing.assert_array_equal(model.predict(x, verbose=0), want)


def _run_compiled(graph, feeds, batch):
    module = jit_executable({"f": lower_to_kernels(graph)}, StatePool())
    try:
        got = module.run("f", batch, [np.ascontiguousarray(feeds[i.attrs["name"]]) for i in graph.inputs])
    finally:
        module.close()
    return dict(zip(graph.outputs, got))


@given(case=shape_and_key(), data=st.data())
def test_gradient_scatters_the_cotangent_back(case, data):
    """d sum(x[key] * c) / dx puts c where x[key] read and 0 elsewhere (a selection is linear, so
    this is its exact finite difference); checked on the interpreter and in compiled code."""
    shape, key = case
    key = _model_key(key)
    x_node = b.input("x", (BATCH,) + shape)
    out = ops._getitem(KerasTensor(x_node), key).node
    cot = b.input("cot", out.shape, index=1)
    (dx,) = grad(b.reduce_sum(b.mul(out, cot)), [x_node])
    batch = data.draw(st.integers(1, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    c = rng.standard_normal(x[key].shape).astype(np.float32)
    want = np.zeros_like(x)
    want[key] = c
    graph = Graph([x_node, cot], {"y": out, "dx": dx}, [])
    feeds = {"x": x, "cot": c}
    reference, _ = evaluate(graph, feeds, {}, batch=batch)
    np.testing.assert_array_equal(reference["y"], x[key])
    np.testing.assert_array_equal(reference["dx"], want)
    compiled = _run_compiled(graph, feeds, batch)
    np.testing.assert_array_equal(compiled["y"], x[key])
    np.testing.assert_array_equal(compiled["dx"], want)


def test_training_through_strided_slices_matches_the_interpreter():
    inp = keras.Input((6, 5))
    h = layers.Dense(8)(inp)
    y = layers.Flatten()(h[:, ::-2, 1:7:3] * 2.0 + h[:, 5:0:-2, ::4])
    out = layers.Dense(1)(y)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 6, 5)).astype(np.float32)
    t = rng.standard_normal((10, 1)).astype(np.float32)
    model = keras.Model(inp, out)
    initial = model.get_weights()
    results = []
    for eager in (False, True):
        model.set_weights(initial)
        model.compile(optimizer="sgd", loss="mse", run_eagerly=eager)
        model.fit(x, t, epochs=2, batch_size=4, verbose=0, shuffle=False)
        results.append(model.get_weights())
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_strided_get_item_saves_and_loads_as_keras_writes_it(tmp_path):
    inp = keras.Input((6, 7))
    model = keras.Model(inp, layers.Dense(2)(inp[:, ::2, 5:1:-2]))
    config = json.loads(model.to_json())
    (entry,) = [e for e in config["config"]["layers"] if e["class_name"] == "GetItem"]
    assert entry["inbound_nodes"][0]["args"][1][1:] == [
        {"class_name": "__slice__", "config": {"start": None, "stop": None, "step": 2}},
        {"class_name": "__slice__", "config": {"start": 5, "stop": 1, "step": -2}}]
    x = np.random.default_rng(2).standard_normal((3, 6, 7)).astype(np.float32)
    w, bias = model.get_weights()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    loaded.compile(loss="mse", run_eagerly=True)          # the reference interpreter: no native build
    np.testing.assert_allclose(loaded.predict(x, verbose=0), x[:, ::2, 5:1:-2] @ w + bias, rtol=1e-5, atol=1e-6)
    # a key written by Keras with an Ellipsis, a negative step and out-of-range bounds
    entry["inbound_nodes"][0]["args"][1] = [{"class_name": "__ellipsis__", "config": {}},
                                            {"class_name": "__slice__", "config": {"start": 40, "stop": -40, "step": -4}}]
    rebuilt = keras.models.model_from_json(json.dumps(config))
    rebuilt.set_weights(model.get_weights())
    rebuilt.compile(loss="mse", run_eagerly=True)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), x[..., 40:-40:-4] @ w + bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key, message", [
    ((slice(None, None, 2),), "batch axis \\(axis 0\\) with step 2"),
    ((slice(None, None, -1), 0), "batch axis \\(axis 0\\) with step -1"),
    ((slice(None), slice(None, None, 0)), "step cannot be zero"),
    ((slice(None), slice(0, 2.5)), "slice bound must be an integer"),
    ((slice(None), 0, 0, 0), "too many indices"),
    ((Ellipsis, 1, Ellipsis), "single ellipsis"),
    ((slice(None), 9), "index 9 is out of bounds for axis 1 with size 4"),
])
def test_unsupported_or_invalid_keys_are_named(key, message):
    inp = keras.Input((4, 5))
    with pytest.raises((ValueError, IndexError, TypeError), match=message):
        inp[key]


@given(data=st.data())
def test_ops_slice_matches_numpy_and_saves_as_keras_slice(data):
    """keras.ops.slice(inputs, start_indices, shape): eagerly, and in a model that round-trips
    through the config Keras writes for its Slice operation (start indices as a call argument)."""
    shape = tuple(data.draw(st.integers(1, 6)) for _ in range(data.draw(st.integers(1, 3))))
    starts = [data.draw(st.integers(0, d - 1)) for d in shape]
    sizes = [data.draw(st.integers(0, d - s)) for d, s in zip(shape, starts)]
    x = np.arange(2 * np.prod(shape), dtype=np.float32).reshape((2,) + shape)
    want = x[(slice(None),) + tuple(slice(s, s + n) for s, n in zip(starts, sizes))]
    np.testing.assert_array_equal(ops.slice(x, [0] + starts, [2] + sizes), want)
    inp = keras.Input(shape)
    model = keras.Model(inp, ops.slice(inp, [0] + starts, [None] + sizes))
    config = json.loads(model.to_json())
    (entry,) = [e for e in config["config"]["layers"] if e["class_name"] == "Slice"]
    assert entry["module"] == "keras.src.ops.core" and entry["config"]["shape"] == [None] + sizes
    assert entry["inbound_nodes"][0]["args"][1] == [0] + starts
    rebuilt = keras.models.model_from_json(json.dumps(config))
    rebuilt.compile(loss="mse", run_eagerly=True)
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), want)


@pytest.mark.parametrize("starts, sizes, message", [
    ([1, 0], [None, 2], "batch axis \\(axis 0\\)"),
    ([0, 3], [None, 2], "\\[3:5\\] is out of range for axis 1 of size 4"),
    ([0], [None], "one entry per dimension"),
])
def test_ops_slice_errors_name_the_problem(starts, sizes, message):
    with pytest.raises(ValueError, match=message):
        ops.slice(keras.Input((4,)), starts, sizes)
