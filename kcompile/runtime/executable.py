"""The one protocol the training loops talk to, whatever runs the model.

An `Executable` holds a model's entries (predict, train, evaluate) over one state pool:

  manifest                  the entries' inputs, outputs and state layout (codegen/manifest.py)
  has(entry)                whether the entry exists
  run(entry, n, inputs)     one call on a batch of n rows; returns the output arrays
  run_one(entry, x)         the same for an entry of one input, x its whole batch (the small-call path)
  run_loop(entry, batch, arrays)
                            consecutive batches of the full arrays, one step each; returns each
                            step's scalar output
  close()                   frees native code

Implementations: the in-process JIT and a library built by `kcompile build` (native.py), and the
numpy reference interpreter for run_eagerly=True (here).
"""
from __future__ import annotations

import numpy as np

from ..ir.interpreter import evaluate as interpret


class Executable:
    manifest = None

    def has(self, entry):
        return entry in self.manifest.entries

    def run(self, entry, n, inputs):
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def run_one(self, entry, x):
        """run() of an entry with one input, x of that input's dtype and shape (any layout): the
        latency path of predict_on_batch. Returns output arrays the caller owns (no later call
        writes into them). Native executables prebind small calls (native.py)."""
        return self.run(entry, x.shape[0], [np.ascontiguousarray(x)])

    def run_loop(self, entry, batch, arrays):
        """The portable loop: one run() per batch (native executables run it in one call)."""
        rows = arrays[0].shape[0]
        steps = -(-rows // batch)
        per_step = np.empty(steps, np.float32)
        for s in range(steps):
            part = [a[s * batch:(s + 1) * batch] for a in arrays]
            per_step[s] = np.asarray(self.run(entry, part[0].shape[0], part)[0]).reshape(())
        return per_step

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InterpreterExecutable(Executable):
    """Runs the same graphs on the numpy reference interpreter (run_eagerly=True)."""

    def __init__(self, graphs, pool, manifest):
        self.graphs, self.pool, self.manifest = graphs, pool, manifest

    def run(self, entry, n, inputs):
        graph = self.graphs[entry]
        feeds = {node.attrs["name"]: arr for node, arr in zip(graph.inputs, inputs)}
        lock = self.pool.lock.write() if self.manifest.entries[entry].writes_state else self.pool.lock.read()
        with lock:
            state = {name: self.pool.view(name) for name in self.pool.slots}
            outputs, updates = interpret(graph, feeds, state, batch=n)
            for name, value in updates.items():
                self.pool.view(name)[...] = value
        return [outputs[k] for k in graph.outputs]
