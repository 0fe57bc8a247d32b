"""model.summary() in Keras 3's table format (keras/src/utils/summary_utils.py's rules).

A functional model lists its *operations*: the layers and, as Keras 3 does, every `kcompile.ops`
call or tensor operator applied between them (`x * 2` is a row `multiply (Multiply)` with 0
params), ordered as Keras orders `model._operations`: by decreasing depth from the outputs, ties
in the order a depth-first walk from the outputs first meets them. A functional model whose graph
is a chain (one node per depth, each with one input tensor, no shared layer) prints like a
Sequential one, without the "Connected to" column, as Keras does.
"""
from __future__ import annotations

from ..ir.graph import static_size
from ..layers.base import Layer
from ..layers.core import InputLayer
from ..tracing import KerasTensor
from ..tree import flatten


def _fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024.0


def _format_shape(shape):
    """Keras's shape text: `(None, 4)`, and `(None)` for rank 1 (it joins the dims itself)."""
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _format_outputs(structure):
    """One output: its shape; several: the structure's brackets around the shapes, as Keras prints
    `str()` of the structure of shape strings with the quotes removed."""
    flat = [t for t in flatten(structure) if isinstance(t, KerasTensor)]
    if len(flat) == 1:
        return _format_shape(flat[0].shape)

    def fmt(s):
        if isinstance(s, KerasTensor):
            return _format_shape(s.shape)
        if isinstance(s, dict):
            return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in s.items()) + "}"
        if isinstance(s, tuple):
            return "(" + ", ".join(fmt(v) for v in s) + ("," if len(s) == 1 else "") + ")"
        if isinstance(s, list):
            return "[" + ", ".join(fmt(v) for v in s) + "]"
        return str(s)
    return fmt(structure)


def _layer_shape_text(layer, records):
    """The output shape of the layer's last call (Keras reads its last inbound node, in any model)."""
    if records:
        record = records[-1]
        return _format_outputs(getattr(record, "structure", record.outputs))
    try:
        shape = layer.output_shape
    except AttributeError:
        return "?"
    if isinstance(shape, list) and shape and isinstance(shape[0], tuple):
        return "[" + ", ".join(_format_shape(s) for s in shape) + "]"
    return _format_shape(shape)


def _params(layer):
    if isinstance(layer, InputLayer):
        return "0"
    if not layer.built:
        return "0 (unbuilt)"
    return f"{sum(static_size(w.shape) for w in layer.weights):,}"


# ---------------------------------------------------------------- the functional graph as Keras sees it

def _inputs_of(record):
    return [t for t in flatten([list(record.args), list(record.kwargs.values())]) if isinstance(t, KerasTensor)]


def _operation_key(record):
    """A layer is one operation however often it is called; each op call is an operation of its own."""
    return id(record.fn) if isinstance(record.fn, Layer) else id(record)


def functional_operations(model):
    """(operations, nodes_by_depth) of a functional model as Keras's `map_graph` computes them:
    operations are [(key, first record)] in `model._operations` order, nodes are CallRecords."""
    input_ids = {id(t) for t in model.inputs}
    finished, in_order, first_seen = set(), [], {}

    def walk(t):                                        # keras.src.ops.function._build_map_helper
        if t._history is None:
            return
        record = t._history[0]
        if id(record) in finished:
            return
        is_input = isinstance(record.fn, InputLayer)
        if not is_input and id(t) in input_ids:
            finished.add(id(record))
            return
        first_seen.setdefault(_operation_key(record), (len(first_seen), record))
        if not is_input:
            for a in _inputs_of(record):
                walk(a)
        finished.add(id(record))
        in_order.append(record)
    for t in model.outputs:
        walk(t)
    in_graph = {id(r) for r in in_order}
    node_depth, op_depth = {}, {}
    for record in reversed(in_order):
        depth = max(node_depth.setdefault(id(record), 0), op_depth.get(_operation_key(record), 0))
        op_depth[_operation_key(record)] = node_depth[id(record)] = depth
        if isinstance(record.fn, InputLayer):
            continue
        for a in _inputs_of(record):
            parent = a._history[0] if a._history is not None else None
            if parent is not None and id(parent) in in_graph:
                node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for t in model.inputs:                              # inputs no output depends on
        record = t._history[0]
        if _operation_key(record) not in op_depth:
            op_depth[_operation_key(record)], node_depth[id(record)] = 0, 0
            first_seen[_operation_key(record)] = (-1, record)
            in_order.append(record)
    operations = sorted(((key, rec) for key, (_, rec) in first_seen.items()),
                        key=lambda item: (-op_depth[item[0]], first_seen[item[0]][0]))
    nodes_by_depth = {}
    for record in in_order:
        nodes_by_depth.setdefault(node_depth[id(record)], []).append(record)
    return operations, nodes_by_depth


def _sequential_like(nodes_by_depth, layer_records):
    """Keras's test: one node per depth, each with at most one input tensor, and no layer called
    twice in the graph."""
    for nodes in nodes_by_depth.values():
        if len(nodes) > 1 or (len(nodes) == 1 and len(_inputs_of(nodes[0])) > 1):
            return False
    return all(len(records) <= 1 for records in layer_records.values())


def _node_index(record):
    """`tensor._keras_history.node_index` of the tensors a call made."""
    fn = record.fn
    if not isinstance(fn, Layer):
        return 0
    index = next((i for i, r in enumerate(fn._inbound) if r is record), 0)
    # a nested functional model's node 0 is its own construction in Keras 3
    return index + 1 if type(fn).__name__ == "Model" and getattr(fn, "_functional", False) else index


def _connected(records, names):
    """Keras's "Connected to" column: producer[node index][tensor index] for every input tensor of
    every call of the operation within this model."""
    parts = []
    for record in records:
        for t in _inputs_of(record):
            if t._history is None:
                continue
            src, index = t._history
            parts.append(f"{names.get(_operation_key(src), getattr(src.fn, 'name', '?'))}"
                         f"[{_node_index(src)}][{index}]")
    return ", ".join(parts) if parts else "-"


def _functional_rows(model, show_trainable):
    from ..saving.operations import operation_names     # the names a saved file gives ops
    from ..saving.operations import operation_class, operation_name
    operations, nodes_by_depth = functional_operations(model)
    graph_records = [r for nodes in nodes_by_depth.values() for r in nodes]
    by_operation = {}
    for record in graph_records:
        by_operation.setdefault(_operation_key(record), []).append(record)
    for records in by_operation.values():       # a layer's calls in its own call order
        records.sort(key=lambda r: _node_index(r))
    op_names = operation_names(model, model._records)
    names = {key: (op_names[id(rec)] if id(rec) in op_names else rec.fn.name) for key, rec in operations}
    layer_records = {k: v for k, v in by_operation.items() if isinstance(v[0].fn, Layer)
                     and not isinstance(v[0].fn, InputLayer)}
    sequential_like = _sequential_like(nodes_by_depth, layer_records)
    rows = []
    for key, record in operations:
        fn = record.fn
        if isinstance(fn, Layer):
            row = [f"{fn.name} ({_class_label(fn)})", _layer_shape_text(fn, fn._inbound), _params(fn)]
        else:
            row = [f"{names[key]} ({operation_class(operation_name(fn))})",
                   _format_outputs(getattr(record, "structure", record.outputs)), "0"]
        if not sequential_like:
            row.append(_connected(by_operation[key], names))
        if show_trainable:
            row.append(_trainable(fn))
        rows.append(row)
    return rows, not sequential_like


def _trainable(fn):
    if isinstance(fn, Layer) and fn.weights:
        return "Y" if fn.trainable else "N"
    return "-"


def _wrap(text, width):
    """A cell's lines as rich wraps it: at spaces, a word longer than the cell ends in '…'."""
    lines, line = [], ""
    for word in text.split(" "):
        if len(word) > width:
            word = word[:width - 1] + "…"
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines


def print_summary(model, line_length=None, print_fn=None, show_trainable=False):
    print_fn = print_fn or print
    if getattr(model, "_functional", False):
        rows, connected = _functional_rows(model, show_trainable)
    else:
        connected = False
        rows = []
        for layer in model.layers:
            row = [f"{layer.name} ({_class_label(layer)})", _layer_shape_text(layer, []), _params(layer)]
            if show_trainable:
                row.append(_trainable(layer))
            rows.append(row)
    headers = ["Layer (type)", "Output Shape", "Param #"]
    widths = [33, 26, 13]
    if connected:
        headers.append("Connected to")
        widths = [31, 24, 11, 20]
    right = {2}
    if show_trainable:
        headers.append("Trainable")
        widths.append(9)
    if line_length:
        scale = line_length / (sum(widths) + len(widths) + 1)
        widths = [max(8, int(w * scale)) for w in widths]
    centered = {len(widths) - 1} if show_trainable else set()

    def line(left, mid, right_, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right_

    def align(v, i, w):
        return v.rjust(w) if i in right else v.center(w) if i in centered else v.ljust(w)

    def cells(values):
        wrapped = [_wrap(v, w) for v, w in zip(values, widths)]
        for k in range(max(len(c) for c in wrapped)):
            print_fn("│" + "│".join(" " + align(c[k] if k < len(c) else "", i, w) + " "
                                    for i, (c, w) in enumerate(zip(wrapped, widths))) + "│")

    print_fn(f'Model: "{model.name}"')
    print_fn(line("┏", "┳", "┓", "━"))
    print_fn("┃" + "┃".join(" " + align(h, i, w) + " " for i, (h, w) in enumerate(zip(headers, widths))) + "┃")
    print_fn(line("┡", "╇", "┩", "━"))
    for i, row in enumerate(rows):
        cells(row)
        print_fn(line("├", "┼", "┤", "─") if i < len(rows) - 1 else line("└", "┴", "┘", "─"))
    if not rows:
        print_fn(line("└", "┴", "┘", "─"))
    total = sum(static_size(w.shape) for w in model.weights) if model.built else 0
    trainable = sum(static_size(w.shape) for w in model.trainable_weights) if model.built else 0
    opt = _optimizer_params(model)
    print_fn(f" Total params: {total + opt:,} ({_fmt_bytes(4 * (total + opt))})")
    print_fn(f" Trainable params: {trainable:,} ({_fmt_bytes(4 * trainable)})")
    print_fn(f" Non-trainable params: {total - trainable:,} ({_fmt_bytes(4 * (total - trainable))})")
    if opt:
        print_fn(f" Optimizer params: {opt:,} ({_fmt_bytes(4 * opt)})")


def _optimizer_params(model):
    """Keras counts the optimizer's variables (in the total too) once the optimizer is built, which
    Keras does at the first training step or when loading its state: here, once it has stepped."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or getattr(model, "_compiled_model", None) is None \
            or int(optimizer.iterations.numpy()) == 0:
        return 0
    return sum(static_size(v.shape) for v in optimizer.variables)


def _class_label(layer):
    """The class column: Keras labels graph-built models "Functional" whatever their Python class."""
    if type(layer).__name__ == "Model" and getattr(layer, "_functional", False):   # the Model class itself
        return "Functional"
    return type(layer).__name__
