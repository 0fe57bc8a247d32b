"""model.summary() rows for functional models with ops between layers, as Keras 3 prints them
(keras/src/utils/summary_utils.py): every op call is a row `name (Class)` with its output shape,
0 params and its "Connected to" producers; rows follow Keras's `model._operations` order."""
import json
import zipfile

import numpy as np

import kcompile as keras
from kcompile import layers, ops

from conftest import FIXTURES


def summary_table(model, **kwargs):
    """(header cells, rows of cells) of the printed table; a cell wrapped over lines is re-joined."""
    lines = []
    model.summary(print_fn=lines.append, **kwargs)
    header = [c.strip() for c in next(l for l in lines if l.startswith("┃")).strip("┃").split("┃")]
    rows, current = [], None
    for line in lines[lines.index(next(l for l in lines if l.startswith("┡"))) + 1:]:
        if line.startswith(("├", "└")):
            rows.append([" ".join(part for part in cell if part) for cell in current])
            current = None
            if line.startswith("└"):
                break
            continue
        parts = [c.strip() for c in line.strip("│").split("│")]
        current = [[p] for p in parts] if current is None else [c + [p] for c, p in zip(current, parts)]
    return header, rows, lines


def test_ops_between_layers_are_rows_in_keras_order():
    inp = keras.Input((3,), name="x")
    x = layers.Dense(4, name="dense_a")(inp)
    y = x * 2 + ops.exp(x)
    model = keras.Model(inp, y)
    header, rows, _ = summary_table(model)
    assert header == ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    assert rows == [
        ["x (InputLayer)", "(None, 3)", "0", "-"],
        ["dense_a (Dense)", "(None, 4)", "16", "x[0][0]"],
        ["multiply (Multiply)", "(None, 4)", "0", "dense_a[0][0]"],
        ["exp (Exp)", "(None, 4)", "0", "dense_a[0][0]"],
        ["add (Add)", "(None, 4)", "0", "multiply[0][0], exp[0][0]"],
    ]


def test_operator_and_op_names_follow_keras_classes():
    inp = keras.Input((4,), name="x")
    h = layers.Dense(4, name="h")(inp)
    a, b = ops.split(h, 2, axis=-1)
    parts = [h / 2.0, abs(h), -h, h ** 3, ops.amax(h, axis=-1, keepdims=True), h * 3.0, h * 4.0,
             layers.Dense(4, name="g")(ops.concatenate([a, b[:, ::-1]], axis=-1))]
    out = ops.concatenate(parts[:4] + parts[5:], axis=-1) - parts[4]
    model = keras.Model(inp, out)
    _, rows, _ = summary_table(model)
    by_name = {r[0].split(" ")[0]: r for r in rows}
    assert [r[0] for r in rows if "(" in r[0]][:2] == ["x (InputLayer)", "h (Dense)"]
    expected = {
        "true_divide": ["true_divide (TrueDivide)", "(None, 4)", "0", "h[0][0]"],
        "absolute": ["absolute (Absolute)", "(None, 4)", "0", "h[0][0]"],
        "negative": ["negative (Negative)", "(None, 4)", "0", "h[0][0]"],
        "power": ["power (Power)", "(None, 4)", "0", "h[0][0]"],
        "amax": ["amax (Amax)", "(None, 1)", "0", "h[0][0]"],
        "multiply": ["multiply (Multiply)", "(None, 4)", "0", "h[0][0]"],
        "multiply_1": ["multiply_1 (Multiply)", "(None, 4)", "0", "h[0][0]"],
        "split": ["split (Split)", "[(None, 2), (None, 2)]", "0", "h[0][0]"],
        "get_item": ["get_item (GetItem)", "(None, 2)", "0", "split[0][1]"],
        "concatenate": ["concatenate (Concatenate)", "(None, 4)", "0", "split[0][0], get_item[0][0]"],
        "g": ["g (Dense)", "(None, 4)", "20", "concatenate[0][0]"],
        "subtract": ["subtract (Subtract)", "(None, 28)", "0", "concatenate_1[0][0], amax[0][0]"],
    }
    for name, row in expected.items():
        assert by_name[name] == row, name
    assert by_name["concatenate_1"][3] == ("true_divide[0][0], absolute[0][0], negative[0][0], power[0][0], "
                                           "multiply[0][0], multiply_1[0][0], g[0][0]")
    # the names are those a saved file gives the operations
    saved = [e["name"] for e in json.loads(model.to_json())["config"]["layers"]]
    assert sorted(saved) == sorted(r[0].split(" ")[0] for r in rows)


def test_rank_one_outputs_and_shared_layers_print_as_keras_does():
    a_in, b_in = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    shared = layers.Dense(2, name="shared")
    total = ops.sum(shared(a_in), axis=-1) + ops.sum(shared(b_in), axis=-1)
    model = keras.Model([a_in, b_in], total)
    _, rows, _ = summary_table(model)
    by_name = {r[0].split(" ")[0]: r for r in rows}
    assert by_name["shared"] == ["shared (Dense)", "(None, 2)", "8", "a[0][0], b[0][0]"]
    assert by_name["sum"] == ["sum (Sum)", "(None)", "0", "shared[0][0]"]      # Keras writes (None) for rank 1
    assert by_name["sum_1"] == ["sum_1 (Sum)", "(None)", "0", "shared[1][0]"]
    assert by_name["add"][3] == "sum[0][0], sum_1[0][0]"


def test_a_chain_of_layers_and_ops_prints_without_connections():
    """Keras prints a functional model whose graph is a chain like a Sequential one."""
    inp = keras.Input((3,), name="x")
    y = layers.Dense(2, name="d2")(ops.relu(layers.Dense(4, name="d1")(inp)) * 0.5)
    header, rows, _ = summary_table(keras.Model(inp, y), show_trainable=True)
    assert header == ["Layer (type)", "Output Shape", "Param #", "Trainable"]
    assert rows == [["x (InputLayer)", "(None, 3)", "0", "-"], ["d1 (Dense)", "(None, 4)", "16", "Y"],
                    ["relu (Relu)", "(None, 4)", "0", "-"], ["multiply (Multiply)", "(None, 4)", "0", "-"],
                    ["d2 (Dense)", "(None, 2)", "10", "Y"]]


def test_a_file_real_keras_saved_lists_its_operations_in_keras_order():
    """Keras 3 writes a functional model's `layers` in `model._operations` order, the summary's
    row order; each entry's inbound tensors give the "Connected to" column Keras prints."""
    path = FIXTURES / "keras3_ops" / "ops_functional.keras"
    entries = json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"]
    model = keras.models.load_model(path, compile=False)
    _, rows, lines = summary_table(model)
    assert [r[0] for r in rows] == [f"{e['name']} ({e['class_name']})" for e in entries]
    shapes = {}
    for entry in entries:
        for node in entry["inbound_nodes"]:
            for t in _keras_tensors(node):
                shapes[t["config"]["keras_history"][0]] = "(" + ", ".join(str(d) for d in t["config"]["shape"]) + ")"
    for row, entry in zip(rows, entries):
        sources = [t["config"]["keras_history"] for node in entry["inbound_nodes"] for t in _keras_tensors(node)]
        assert row[3] == (", ".join(f"{n}[{i}][{j}]" for n, i, j in sources) or "-"), entry["name"]
        if entry["name"] in shapes:
            assert row[1] == shapes[entry["name"]], entry["name"]
        if entry["module"].startswith("keras.src.ops"):
            assert row[2] == "0"
    weights = sum(int(np.prod(w.shape)) for w in model.weights)
    assert f" Trainable params: {weights:,} ({4 * weights:.2f} B)" in lines


def _keras_tensors(value):
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value]
        return [t for v in value.values() for t in _keras_tensors(v)]
    if isinstance(value, list):
        return [t for v in value for t in _keras_tensors(v)]
    return []
