"""A readable text dump of a graph, one node per line (used by KCOMPILE_DUMP_IR and `inspect`)."""
from __future__ import annotations

import numpy as np

from .graph import Graph, format_shape


def _attr_text(attrs):
    parts = []
    for k, v in attrs.items():
        if isinstance(v, Graph):
            v = f"<{v.name}, below>"
        elif isinstance(v, np.ndarray):
            v = f"{v.item():g}" if v.size == 1 else f"array{v.shape}"
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def format_graph(graph, title=None):
    lines = [f"# {title or graph.name}"] if (title or graph.name) else []
    for node in graph.nodes():
        args = ", ".join(f"%{i.id}" for i in node.inputs)
        attrs = _attr_text(node.attrs)
        lines.append(f"%{node.id} = {node.op}({args}{'; ' + attrs if attrs else ''})"
                     f" : {node.dtype}{format_shape(node.shape)}")
        for value in node.attrs.values():
            if isinstance(value, Graph):   # a loop body (scan): printed indented under its node
                lines += ["    " + line for line in format_graph(value).rstrip("\n").split("\n")]
    for k, n in graph.outputs.items():
        lines.append(f"output {k} = %{n.id}")
    for k, n in graph.updates.items():
        lines.append(f"update {k} <- %{n.id}")
    return "\n".join(lines) + "\n"
