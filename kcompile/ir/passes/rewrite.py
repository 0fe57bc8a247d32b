"""The one traversal every rewriting pass uses: rebuild a graph node by node."""
from __future__ import annotations

from ..graph import Graph, Node


def rewrite(graph, rule):
    """Apply `rule(node) -> replacement or None` bottom-up; returns a new Graph.

    Nodes whose inputs were replaced are re-created with the new inputs before `rule` sees them.
    """
    mapping = {}
    for node in graph.nodes():
        new_inputs = tuple(mapping.get(i.id, i) for i in node.inputs)
        current = node
        if any(a is not b for a, b in zip(new_inputs, node.inputs)):
            current = Node(node.op, new_inputs, node.attrs, node.shape, node.dtype, node.name)
        replacement = rule(current)
        if replacement is not None:
            assert replacement.shape == node.shape and replacement.dtype == node.dtype, (node, replacement)
            current = replacement
        if current is not node:
            mapping[node.id] = current
    new = Graph(graph.inputs, graph.outputs, graph.slots.values(), graph.updates, graph.name)
    new.replace_roots({old_id_node: mapping[old_id_node.id] for old_id_node in graph.roots()
                       if old_id_node.id in mapping})
    return new
