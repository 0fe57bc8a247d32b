"""plot_model: draw a model's layer graph as Graphviz DOT (and PNG/SVG/... through the `dot` program).

The graph is read from what the model already records: a Sequential model is a chain of its
layers; a functional model is the list of calls (layers and ops) between its inputs and outputs,
an edge joining the call that produced a tensor to each call that consumed it. A subclassed model
has no recorded graph, so it is drawn as one node, as Keras does.
"""
from __future__ import annotations

import os
import shutil
import subprocess


def _op_names():
    from .. import ops
    return {id(v): k for k, v in vars(ops).items() if callable(v)}


def _graph(model):
    """(nodes, edges): nodes is an ordered dict-like list of (key, info) with info holding the name,
    class name, the object, and its input/output shapes; edges are (src_key, dst_key) pairs."""
    from ..layers.base import Layer, flatten
    from ..layers.core import InputLayer
    from ..tracing import KerasTensor
    nodes, edges = {}, []
    if getattr(model, "_functional", False):
        op_names, used = _op_names(), {}

        def key_of(record):
            return id(record.fn) if isinstance(record.fn, Layer) else id(record)

        def add(record):
            k = key_of(record)
            if k in nodes:
                return k
            fn = record.fn
            if isinstance(fn, Layer):
                name, cls = fn.name, type(fn).__name__
            else:   # an op (keras.ops.add, ...) called while defining the model
                base = op_names.get(id(fn), getattr(fn, "__name__", "op"))
                used[base] = used.get(base, -1) + 1
                name, cls = (base if used[base] == 0 else f"{base}_{used[base]}"), base
            ins = [t.shape for t in flatten(list(record.args) + list(record.kwargs.values()))
                   if isinstance(t, KerasTensor)]
            outs = [t.shape for t in record.outputs]
            nodes[k] = dict(name=name, cls=cls, obj=fn, inputs=ins or outs, outputs=outs)
            return k
        for t in model.inputs:
            add(t._history[0])
        for record in model._records:
            k = add(record)
            for a in flatten(list(record.args) + list(record.kwargs.values())):
                if isinstance(a, KerasTensor) and a._history is not None:
                    edge = (add(a._history[0]), k)
                    if edge not in edges:
                        edges.append(edge)
        return list(nodes.items()), edges
    stack = getattr(model, "_stack", None)
    if stack is not None:
        if not model.built:
            raise ValueError(f"This model has not yet been built. Build the model first by calling `build()` "
                             f"or by calling the model on a batch of data (model '{model.name}').")
        inp = model._input_layer
        prev, prev_shape = None, None
        if inp is not None and isinstance(inp, InputLayer):
            prev, prev_shape = id(inp), tuple(inp.batch_shape)
            nodes[prev] = dict(name=inp.name, cls="InputLayer", obj=inp, inputs=[prev_shape], outputs=[prev_shape])
        for layer in stack:
            out = layer.output_shape
            k = id(layer)
            nodes[k] = dict(name=layer.name, cls=type(layer).__name__, obj=layer, inputs=[prev_shape],
                            outputs=[out])
            if prev is not None:
                edges.append((prev, k))
            prev, prev_shape = k, out
        return list(nodes.items()), edges
    if not model.built:
        raise ValueError(f"This model has not yet been built. Build the model first by calling `build()` or by "
                         f"calling the model on a batch of data (model '{model.name}').")
    nodes[id(model)] = dict(name=model.name, cls=type(model).__name__, obj=model, inputs=[None], outputs=[None])
    return list(nodes.items()), edges


def layer_edges(model):
    """(names in order, [(src_name, dst_name)], {name: class name}) of a model's layer graph."""
    nodes, edges = _graph(model)
    info = dict(nodes)
    names = [n["name"] for _, n in nodes]
    return names, [(info[a]["name"], info[b]["name"]) for a, b in edges], {n["name"]: n["cls"] for _, n in nodes}


def _fmt_shapes(shapes):
    if not shapes or all(s is None for s in shapes):
        return "?"
    text = [str(tuple(s)) if s is not None else "?" for s in shapes]
    return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_to_dot_text(model, show_shapes=False, show_dtype=False, show_layer_names=False, rankdir="TB",
                      expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False):
    """The DOT source of the layer graph."""
    from ..layers.base import Layer
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"plot_model: rankdir must be 'TB' or 'LR'; got {rankdir!r}")
    nodes, edges = _graph(model)
    nested = [n["name"] for _, n in nodes if n["obj"] is not model and hasattr(n["obj"], "_compile_args")]
    if expand_nested and nested:
        raise NotImplementedError("plot_model(expand_nested=True) is not supported for models containing "
                                  f"nested models ({nested})")
    lines = [f"digraph {_quote(model.name)} {{", f"  graph [rankdir={rankdir}, dpi={int(dpi)}];",
             "  node [shape=box, fontname=Helvetica];"]
    ids = {}
    for i, (k, n) in enumerate(nodes):
        ids[k] = f"n{i}"
        title = f"{n['name']} ({n['cls']})" if show_layer_names else n["cls"]
        parts = [title]
        obj = n["obj"]
        if show_layer_activations and isinstance(obj, Layer) and getattr(obj, "activation", None) is not None:
            act = obj.activation
            parts.append("Activation: " + getattr(act, "__name__", str(act)))
        if show_dtype and isinstance(obj, Layer):
            parts.append(f"dtype: {getattr(obj, 'dtype', 'float32')}")
        if show_shapes:
            parts.append(f"Input shape: {_fmt_shapes(n['inputs'])}")
            parts.append(f"Output shape: {_fmt_shapes(n['outputs'])}")
        if show_trainable and isinstance(obj, Layer):
            parts.append("Trainable: " + ("Y" if obj.trainable else "N"))
        label = "\\n".join(p.replace('"', "'") for p in parts)
        lines.append(f'  {ids[k]} [label="{label}"];')
    for a, b in edges:
        lines.append(f"  {ids[a]} -> {ids[b]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=False,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               **kwargs):
    """Write the model's layer graph to `to_file`: DOT text for a `.dot` file, otherwise the format named by
    the extension (png when there is none), rendered by Graphviz's `dot` program."""
    layer_range = kwargs.pop("layer_range", None)
    if layer_range is not None:
        raise NotImplementedError("plot_model(layer_range=...) is not supported by kcompile")
    if kwargs:
        raise TypeError(f"plot_model got unexpected keyword arguments {sorted(kwargs)}")
    text = model_to_dot_text(model, show_shapes=show_shapes, show_dtype=show_dtype,
                             show_layer_names=show_layer_names, rankdir=rankdir, expand_nested=expand_nested,
                             dpi=dpi, show_layer_activations=show_layer_activations, show_trainable=show_trainable)
    to_file = os.fspath(to_file)
    ext = os.path.splitext(to_file)[1][1:].lower() or "png"
    if ext in ("dot", "gv"):
        with open(to_file, "w") as fh:
            fh.write(text)
        return None
    dot = shutil.which("dot")
    if dot is None:
        raise ImportError(f"plot_model needs Graphviz's `dot` program to write a .{ext} file, and it was not found "
                          f"on PATH. Install Graphviz (e.g. `apt install graphviz`), or pass a to_file ending in "
                          f".dot to get the DOT source.")
    proc = subprocess.run([dot, f"-T{ext}", "-o", to_file], input=text.encode(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"plot_model: `dot -T{ext}` failed: {proc.stderr.decode(errors='replace').strip()}")
    return None
