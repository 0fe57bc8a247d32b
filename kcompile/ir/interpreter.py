"""The numpy reference interpreter: runs any graph with each primitive's numpy reference.

It is `run_eagerly=True`, the debugging path, and the oracle every compiled result is tested
against. Leaves are resolved here: graph inputs from `feeds`, `param` from the state mapping,
`batch_size` from the batch dimension of the first input.
"""
from __future__ import annotations

import numpy as np

from .graph import concrete_shape
from .primitives import PRIMITIVES


def evaluate(graph, feeds, state, batch=None):
    """Evaluate `graph`; returns (outputs dict, updates dict) of numpy arrays.

    feeds: input node name -> array; state: slot name -> array (not modified).
    """
    if batch is None:
        batch = next((np.shape(feeds[i.attrs["name"]])[0] for i in graph.inputs
                      if i.attrs["name"] in feeds and np.ndim(feeds[i.attrs["name"]])), 1)
    values = {}
    for node in graph.nodes():
        if node.op == "input":
            v = np.asarray(feeds[node.attrs["name"]], dtype=node.dtype)
        elif node.op == "param":
            v = np.asarray(state[node.attrs["slot"]], dtype=node.dtype)
        elif node.op == "batch_size":
            v = np.float32(batch)
        else:
            args = [values[i.id] for i in node.inputs]
            v = PRIMITIVES[node.op].reference(args, node.attrs, concrete_shape(node.shape, batch))
        values[node.id] = np.asarray(v, dtype=node.dtype)
    outputs = {k: values[n.id] for k, n in graph.outputs.items()}
    updates = {k: values[n.id] for k, n in graph.updates.items()}
    return outputs, updates
