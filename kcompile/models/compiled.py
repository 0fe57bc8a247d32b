"""From a compiled Keras model to native entry points.

`CompiledModel` traces the model into three graphs — predict, train step, eval step — with the
loss, regularization, autodiff, optimizer update and metric accumulation all inside the graph,
runs the pass pipeline, and compiles all of them into one native module over one state pool.
With run_eagerly=True the same graphs run on the numpy reference interpreter instead.
Variants are cached by input signature (target shapes can differ between datasets).
"""
from __future__ import annotations

import numpy as np

from ..ir import builder as irb
from ..ir.autodiff import grad
from ..ir.graph import BATCH, Graph
from ..ir.primitives_collective import HOST_ALL_REDUCE
from ..layers.base import flatten
from ..layers.dynamic_shapes import concrete_input_shape
from ..metrics import Mean
from ..codegen.manifest import EntryInfo, Manifest
from ..runtime.executable import InterpreterExecutable
from ..runtime.native import compile_graphs
from ..runtime.state import StatePool
from ..timings import compiling, phase
from ..tracing import KerasTensor, Trace, trace_scope
from ..variables import Variable


# Counts the moves of variables between state pools. Variable.adopt_into, the only thing that
# moves one, is called from this module alone, and each call site bumps the count after its
# moves: a model that found all its variables in its pool at count c (read before looking) still
# has them there while the count is c, so sync_state need not look again.
_adoptions = [0]


def _ir_shape(batch_shape):
    return (BATCH,) + tuple(int(d) for d in batch_shape[1:])


class TrainingSpec:
    """What compile() resolved: losses/weights/metrics per output (lists aligned with outputs)."""

    def __init__(self, losses, loss_weights, metrics, weighted_metrics, output_names):
        self.losses, self.loss_weights = losses, loss_weights
        self.metrics, self.weighted_metrics = metrics, weighted_metrics
        self.output_names = output_names


class CompiledModel:
    def __init__(self, model, input_specs, spec, run_eagerly=False, communicator=None):
        self.model, self.input_specs, self.spec = model, input_specs, spec
        self.run_eagerly = run_eagerly
        self.pool = StatePool()
        self.seed_step = Variable(np.int32(0), shape=(), dtype="int32", name="seed_step",
                                  path=f"{model.name}/seed_generator_state", trainable=False, kind="rng")
        # data-parallel training (runtime/mpi.py): the train step all-reduces its gradients, and
        # random numbers follow each sample's row in the global batch (set per step by the trainer)
        self.communicator = communicator
        self.row_offset = None if communicator is None else Variable(
            np.int32(0), shape=(), dtype="int32", name="replica_row_offset",
            path=f"{model.name}/replica_row_offset", trainable=False, kind="rng")
        self.loss_tracker = Mean(name="loss")
        multi = len(spec.output_names) > 1
        self.output_loss_trackers = [Mean(name=f"{n}_loss") if (multi and l is not None) else None
                                     for n, l in zip(spec.output_names, spec.losses)]
        self._variants = {}
        self._x_shapes = None          # concrete input shapes of the variant being traced
        self.dynamic = any(d is None for _, shape, _ in input_specs for d in shape[1:])
        self.static_batch = model._declared_batch_size()   # rows of stateful layers' states
        self.native = None
        self._synced_at = None         # the _adoptions count at which all variables were in the pool
        self._predict_path = None      # Trainer._predict_fast's target (predict_path), once known

    # ------------------------------------------------------------ tracing
    def _inputs(self):
        from ..layers.preprocessing.host_stage import host_stages
        shapes = self._x_shapes or [shape for _, shape, _ in self.input_specs]
        stages = host_stages(self.model) or [None] * len(self.input_specs)
        self.host_staged = any(s is not None for s in stages)     # Trainer._predict_fast must not skip them
        xs = []
        for i, ((name, spec, dtype), shape) in enumerate(zip(self.input_specs, shapes)):
            if stages[i] is None:
                xs.append(KerasTensor(irb.input(name, _ir_shape(concrete_input_shape(spec, shape)), dtype, i)))
                continue
            # a host stage's input: the graph takes the stage's output, which Trainer._check_x
            # computes in numpy, and the stage layer passes it through (layers/preprocessing/host_stage.py)
            out_shape, out_dtype = stages[i].host_output_spec(spec)
            x = KerasTensor(irb.input(name, (BATCH,) + tuple(out_shape), out_dtype, i))
            x._host_fed = stages[i]
            xs.append(x)
        return xs

    def _forward(self, training):
        row_offset = self.row_offset.node() if self.row_offset is not None and training else None
        trace = Trace(training=training, step=self.seed_step.node(), executes=True,
                      static_batch=self.static_batch, row_offset=row_offset)
        xs = self._inputs()
        with trace_scope(trace):
            out = self.model(xs if len(xs) > 1 else xs[0], training=training)
        outs = flatten(out) if not isinstance(out, dict) else \
            [out[n] for n in self.spec.output_names]
        return xs, outs, trace

    def predict_graph(self):
        xs, outs, trace = self._forward(False)
        return Graph([x.node for x in xs], {f"y{i}": o.node for i, o in enumerate(outs)}, [],
                     trace.updates, name="predict")

    def _targets(self, y_shapes):
        ys, sws = [], []
        for i, shape in enumerate(y_shapes):
            if shape is None:
                ys.append(None)
                sws.append(None)
                continue
            ys.append(KerasTensor(irb.input(f"target_{i}", _ir_shape(shape), "float32")))
            sws.append(KerasTensor(irb.input(f"sample_weight_{i}", (BATCH,), "float32")))
        return ys, sws

    def _loss_and_metrics(self, outs, ys, sws, trace, training):
        """Total loss and the metric-state updates (dict Variable -> tensor), inside the trace."""
        from .. import ops
        total, updates, per_output = None, {}, []
        for i, (loss, weight) in enumerate(zip(self.spec.losses, self.spec.loss_weights)):
            if loss is None or ys[i] is None:
                per_output.append(None)
                continue
            try:
                value = loss(ys[i], outs[i], sws[i])
            except ValueError as exc:
                raise ValueError(f"Loss '{getattr(loss, 'name', loss)}' for output '{self.spec.output_names[i]}' "
                                 f"cannot be applied: {exc}") from None
            per_output.append(value)
            weighted = ops.multiply(value, float(weight)) if weight != 1 else value
            total = weighted if total is None else ops.add(total, weighted)
        if total is None:
            raise ValueError("The model has no loss to optimize: pass `loss` to compile() and targets to fit()")
        # Keras 3 adds weight penalties to the loss in training and evaluation alike
        for var, reg in self.model.regularization_losses():
            total = ops.add(total, reg(var))
        for extra in trace.losses:
            total = ops.add(total, KerasTensor(extra))
        batch = KerasTensor(irb.batch_size())
        updates.update(self.loss_tracker.mean_updates(ops.reshape(total, (1,)), ops.reshape(batch, (1,))))
        for tracker, value in zip(self.output_loss_trackers, per_output):
            if tracker is not None:
                updates.update(tracker.mean_updates(ops.reshape(value, (1,)), ops.reshape(batch, (1,))))
        for i, out in enumerate(outs):
            if ys[i] is None:
                continue
            for m in self.spec.metrics[i]:
                updates.update(m.update_nodes(ys[i], out, None))
            for m in self.spec.weighted_metrics[i]:
                updates.update(m.update_nodes(ys[i], out, sws[i]))
        return total, updates

    def train_graph(self, y_shapes):
        xs, outs, trace = self._forward(True)
        ys, sws = self._targets(y_shapes)
        with trace_scope(trace):
            total, updates = self._loss_and_metrics(outs, ys, sws, trace, training=True)
            trainable = self.model.trainable_weights
            if not trainable:
                raise ValueError(f"Model '{self.model.name}' has no trainable weights to train")
            grads = grad(total.node, [v.node() for v in trainable])
            if self.communicator is not None:
                grads = _all_reduce_mean(grads)
            optimizer = self.model.optimizer
            updates.update(optimizer.update_nodes(trainable, [KerasTensor(g) for g in grads]))
            from .. import ops
            updates[self.seed_step] = ops.add(self.seed_step, np.int32(1))
        return self._graph(xs, ys, sws, {"loss": total.node}, updates, trace, "train")

    def eval_graph(self, y_shapes):
        xs, outs, trace = self._forward(False)
        ys, sws = self._targets(y_shapes)
        with trace_scope(trace):
            total, updates = self._loss_and_metrics(outs, ys, sws, trace, training=False)
        return self._graph(xs, ys, sws, {"loss": total.node}, updates, trace, "evaluate")

    def _graph(self, xs, ys, sws, outputs, updates, trace, name):
        inputs = [x.node for x in xs] + [y.node for y in ys if y is not None] + [s.node for s in sws if s is not None]
        state_updates = {v.slot.name: irb.cast(t.node, v.dtype) for v, t in updates.items()}
        if trace is not None:
            state_updates.update(trace.updates)
        return Graph(inputs, outputs, [], state_updates, name=name)

    # ------------------------------------------------------------ variables and compilation
    def all_variables(self):
        vs = list(self.model.weights) + [self.seed_step] + ([self.row_offset] if self.row_offset is not None else [])
        for layer in self.model._all_layers():
            vs += layer._persistent_state()
        if self.model.optimizer is not None:
            vs += list(self.model.optimizer.variables)
        vs += self.loss_tracker.variables
        for t in self.output_loss_trackers:
            if t is not None:
                vs += t.variables
        for ms in self.spec.metrics + self.spec.weighted_metrics:
            for m in ms:
                vs += m.variables
        seen, out = set(), []
        for v in vs:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    def fixed_batch(self):
        """The one batch size every call must have (stateful layers keep a state row per sample), or None."""
        if self.static_batch is not None and any(layer._persistent_state() for layer in self.model._all_layers()):
            return self.static_batch
        return None

    def check_batch(self, n):
        """Stateful layers hold one state row per sample: every batch must have that many rows."""
        if self.static_batch is not None and n != self.static_batch and \
                any(layer._persistent_state() for layer in self.model._all_layers()):
            raise ValueError(f"Model '{self.model.name}' has stateful layers built for batches of "
                             f"{self.static_batch} samples, but received a batch of {n}: pass "
                             f"batch_size={self.static_batch} and a number of samples divisible by it")

    def sync_state(self):
        """Make sure every variable lives in this model's pool (a shared layer may have moved:
        another model compiled with it took it into its pool). Skipped while no variable moved."""
        count = _adoptions[0]
        if count == self._synced_at:
            return
        moved = False
        for v in self._variables:
            if v._pool is not self.pool:
                v.adopt_into(self.pool)
                moved = True
        if moved:
            _adoptions[0] += 1      # ...out of another model's pool, which must look again
        self._synced_at = count

    def variant(self, y_shapes, x_shapes=None):
        """The compiled entry points for these target (and, for inputs of unknown size, input)
        shapes, compiled on first use."""
        key = tuple(None if s is None else tuple(s[1:]) for s in y_shapes)
        if self.dynamic:
            if x_shapes is None:
                raise ValueError(f"Model '{self.model.name}' has inputs of unknown size "
                                 f"{[spec for _, spec, _ in self.input_specs]}: it is compiled when data arrives")
            key = (tuple(tuple(s[1:]) for s in x_shapes), key)
        if key not in self._variants and all(s is None for s in y_shapes):
            # predict alone: every variant of these input shapes has the same predict entry (the
            # predict graph does not depend on the targets), so one compiled for training serves
            for other, executable in list(self._variants.items()):
                if not self.dynamic or other[0] == key[0]:
                    return executable
        if key not in self._variants:
            with self.pool.lock.write():     # building moves variables into the pool: no call may run meanwhile
                if key not in self._variants:
                    self._x_shapes = x_shapes if self.dynamic else None
                    try:
                        self._build(y_shapes, key)
                    finally:
                        self._x_shapes = None
        return self._variants[key]

    def any_executable(self):
        """An already compiled variant (every variant has the predict entry), or None."""
        for executable in list(self._variants.values()):
            return executable
        return None

    def predict_path(self):
        """(executable, shape of one input row, whether batches are checked) for the latency
        path of predict_on_batch (Trainer._predict_fast), or None where it does not apply: several
        inputs, a non-float32 input, inputs of unknown size, host-staged inputs (strings...), or
        nothing compiled yet. Found once: none of these change while this model's variants live
        (close() forgets it; variants are only ever added, and any one of them serves)."""
        path = self._predict_path
        if path is None:
            executable = self.any_executable()
            if executable is None:
                return None
            usable = len(self.input_specs) == 1 and self.input_specs[0][2] == "float32" and not self.dynamic \
                and not getattr(self, "host_staged", True)
            path = self._predict_path = (executable, tuple(self.input_specs[0][1][1:]),
                                         self.static_batch is not None) if usable else False
        return path or None

    def entry_graphs(self, y_shapes):
        """The graphs of every entry these targets allow (predict; train and evaluate with targets),
        with every variable they touch moved into this model's state pool."""
        graphs = {"predict": self.predict_graph()}
        if any(s is not None for s in y_shapes):
            if self.model.optimizer is not None and self.model.trainable_weights:
                graphs["train"] = self.train_graph(y_shapes)
            graphs["evaluate"] = self.eval_graph(y_shapes)
        self._variables = self.all_variables()
        self.pool.reserve([v.slot for v in self._variables])
        for v in self._variables:
            v.adopt_into(self.pool)
        _adoptions[0] += 1      # variables may have left other models' pools (sync_state)
        self._synced_at = None
        return graphs

    def _build(self, y_shapes, key):
        name = f"v{len(self._variants)}"   # not the model name: identical models share cached code
        with compiling(f"'{self.model.name}' ({name})"):
            self._build_variant(y_shapes, key, name)

    def _build_variant(self, y_shapes, key, name):
        with phase("trace"):
            graphs = self.entry_graphs(y_shapes)
        if self.run_eagerly:
            manifest = Manifest(name, {"name": "interpreter"}, {k: EntryInfo.of_graph(g) for k, g in graphs.items()},
                                *self.pool.layout(), max_batch=2 ** 31, static_batch=self.fixed_batch())
            self._variants[key] = InterpreterExecutable(graphs, self.pool, manifest)
            if self.communicator is not None:   # the reference interpreter reduces through mpi4py
                HOST_ALL_REDUCE[0] = self.communicator.allreduce_sum
        else:
            # the GPU executable has no all-reduce hook yet: data-parallel training runs on the CPU
            device = "cpu" if self.communicator is not None else None
            # the passes run in there, unless the compile cache holds the whole compile of these graphs
            self._variants[key] = compile_graphs(graphs, self.pool, name=name, static_batch=self.fixed_batch(),
                                                 device=device)
            if self.communicator is not None and "train" in graphs:
                self._variants[key].set_allreduce(*self.communicator.native_allreduce())

    def close(self):
        self._predict_path = None
        for v in self._variants.values():
            v.close()
        self._variants = {}


def _all_reduce_mean(grads):
    """The gradients of the global batch from this replica's: each replica's mean gradient
    weighted by its rows, summed over replicas in one all-reduce of one contiguous vector (the
    rows ride along as its last element), divided by the global rows. Replicas with unequal
    shares (the last batch) then still give the gradient one process computes on the whole batch."""
    rows = irb.batch_size()
    flat = [irb.reshape(irb.mul(g, rows), (int(np.prod(g.shape, dtype=np.int64)),)) for g in grads]
    rows_vector = irb.mul(irb.const(np.ones(1, np.float32)), rows)   # computed into a buffer (a leaf has none)
    summed = irb.all_reduce_sum(irb.concat(flat + [rows_vector], axis=0))
    total = summed.shape[0] - 1
    scale = irb.div(1.0, irb.reshape(irb.slice(summed, [(total, total + 1)]), ()))
    out, start = [], 0
    for g, part in zip(grads, flat):
        size = part.shape[0]
        out.append(irb.reshape(irb.mul(irb.slice(summed, [(start, start + size)]), scale), g.shape))
        start += size
    return out
