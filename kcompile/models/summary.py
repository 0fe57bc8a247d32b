"""model.summary() in Keras 3's table format."""
from __future__ import annotations

from ..ir.graph import static_size
from ..layers.core import InputLayer
from ..tracing import KerasTensor
from ..tree import flatten


def _fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024.0


def _shape_text(layer):
    try:
        shape = layer.output_shape
    except AttributeError:
        return "?"
    if isinstance(shape, list) and shape and isinstance(shape[0], tuple):
        return ", ".join(str(s) for s in shape)
    return str(tuple(shape))


def _params(layer):
    return sum(static_size(w.shape) for w in layer.weights) if layer.built else 0


def print_summary(model, line_length=None, print_fn=None, show_trainable=False):
    print_fn = print_fn or print
    functional = getattr(model, "_functional", False)
    layers = model.layers if not functional else model.layers
    headers = ["Layer (type)", "Output Shape", "Param #"]
    widths = [33, 26, 13]
    if functional:
        headers.append("Connected to")
        widths = [31, 24, 11, 20]
    rows = []
    for layer in layers:
        row = [f"{layer.name} ({_class_label(layer)})", _shape_text(layer),
               f"{_params(layer):,}" if not isinstance(layer, InputLayer) else "0"]
        if functional:
            row.append(_connected(layer))
        rows.append(row)
    if line_length:
        scale = line_length / (sum(widths) + len(widths) + 1)
        widths = [max(8, int(w * scale)) for w in widths]

    def line(left, mid, right, fill):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(values, right_align=(2,)):
        out = []
        for i, (v, w) in enumerate(zip(values, widths)):
            v = v if len(v) <= w else v[:w - 1] + "…"
            out.append(" " + (v.rjust(w) if i in right_align else v.ljust(w)) + " ")
        return "│" + "│".join(out) + "│"

    print_fn(f'Model: "{model.name}"')
    print_fn(line("┏", "┳", "┓", "━"))
    print_fn("┃" + "┃".join(" " + (h.rjust(w) if i == 2 else h.ljust(w)) + " "
                            for i, (h, w) in enumerate(zip(headers, widths))) + "┃")
    print_fn(line("┡", "╇", "┩", "━"))
    for i, row in enumerate(rows):
        print_fn(cells(row))
        print_fn(line("├", "┼", "┤", "─") if i < len(rows) - 1 else line("└", "┴", "┘", "─"))
    if not rows:
        print_fn(line("└", "┴", "┘", "─"))
    total = sum(static_size(w.shape) for w in model.weights) if model.built else 0
    trainable = sum(static_size(w.shape) for w in model.trainable_weights) if model.built else 0
    opt = 0
    if getattr(model, "optimizer", None) is not None and getattr(model, "_compiled_model", None) is not None:
        opt = sum(static_size(v.shape) for v in model.optimizer.variables)
    print_fn(f" Total params: {total:,} ({_fmt_bytes(4 * total)})")
    print_fn(f" Trainable params: {trainable:,} ({_fmt_bytes(4 * trainable)})")
    print_fn(f" Non-trainable params: {total - trainable:,} ({_fmt_bytes(4 * (total - trainable))})")
    if opt:
        print_fn(f" Optimizer params: {opt:,} ({_fmt_bytes(4 * opt)})")


def _connected(layer):
    """Keras's "Connected to" column: source[node index][tensor index] for every call of the layer."""
    parts = []
    for record in layer._inbound:
        for t in flatten([list(record.args), list(record.kwargs.values())]):
            if isinstance(t, KerasTensor) and t._history is not None:
                src_record, index = t._history
                src = src_record.fn
                name = getattr(src, "name", getattr(src, "__name__", "op"))
                inbound = getattr(src, "_inbound", [src_record])
                node = next((i for i, r in enumerate(inbound) if r is src_record), 0)
                parts.append(f"{name}[{node}][{index}]")
    return ", ".join(parts) if parts else "-"


def _class_label(layer):
    """The class column: Keras labels graph-built models "Functional" whatever their Python class."""
    if type(layer).__name__ == "Model" and getattr(layer, "_functional", False):   # the Model class itself
        return "Functional"
    return type(layer).__name__
