"""The Keras training API: compile, fit, evaluate, predict and the *_on_batch calls.

compile() resolves optimizer, losses and metrics and generates native code as soon as the
model's input shapes are known (otherwise at the first batch). Each batch is then one native
call that runs forward, loss, backward, optimizer update and metric accumulation; Python only
slices data, calls that entry and drives callbacks.
"""
from __future__ import annotations

import numpy as np

from .. import callbacks as callbacks_module
from .. import distribute
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers
from ..data.adapters import ArrayAdapter, class_weights_to_sample_weights, make_adapter, train_validation_split
from ..layers.base import flatten
from .compiled import CompiledModel, TrainingSpec


class Trainer:
    def __init__(self):
        self.compiled = False
        self.optimizer = None
        self.stop_training = False
        self.history = None
        self._compiled_model = None
        self._compile_args = None
        self._run_eagerly = False
        # a model built in a strategy's scope belongs to it (as in tf.distribute); compile() in a scope too
        self._strategy = distribute.get_strategy() if distribute.has_strategy() else None

    # ------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True, **kwargs):
        unknown = set(kwargs) - {"sample_weight_mode", "target_tensors", "distribute"}
        if unknown:
            raise TypeError(f"compile() got unexpected keyword arguments {sorted(unknown)}")
        self._invalidate()
        if distribute.has_strategy():
            self._strategy = distribute.get_strategy()
        self.optimizer = optimizers.get(optimizer)
        self._compile_args = dict(loss=loss, loss_weights=loss_weights, metrics=metrics,
                                  weighted_metrics=weighted_metrics)
        self._run_eagerly = bool(run_eagerly)
        self.steps_per_execution = int(steps_per_execution)
        self.compiled = True
        if self._known_input_specs() is not None:
            self._ensure_compiled_model()

    @property
    def run_eagerly(self):
        return self._run_eagerly

    def _communicator(self):
        """The MPI communicator of this model's data-parallel strategy (several ranks), or None."""
        return getattr(getattr(self, "_strategy", None), "communicator", None)

    def _is_chief(self):
        comm = self._communicator()
        return comm is None or comm.rank == 0

    def _invalidate(self):
        """Drop native code (after recompiling or changing layers); frees the old module."""
        cm = getattr(self, "_compiled_model", None)
        if cm is not None:
            cm.close()
        self._compiled_model = None

    def _output_names_list(self):
        names = getattr(self, "output_names", None)
        return list(names) if names else ["output_0"]

    def _resolve_spec(self, y_shapes=None, out_shapes=None):
        args = self._compile_args
        names = self._output_names_list()
        k = len(names)
        loss = args["loss"]
        if isinstance(loss, dict):
            bad = set(loss) - set(names)
            if bad:
                raise ValueError(f"compile(loss=...) has keys {sorted(bad)} that are not output names {names}")
            losses = [losses_module.get(loss.get(n)) for n in names]
        elif isinstance(loss, (list, tuple)):
            if len(loss) != k:
                raise ValueError(f"compile(loss=...) got {len(loss)} losses for a model with {k} outputs {names}")
            losses = [losses_module.get(l) for l in loss]
        else:
            losses = [losses_module.get(loss)] * k if k == 1 else [losses_module.get(loss) for _ in names]
        weights = args["loss_weights"]
        if weights is None:
            weights = [1.0] * k
        elif isinstance(weights, dict):
            weights = [float(weights.get(n, 1.0)) for n in names]
        elif isinstance(weights, (int, float)):
            weights = [float(weights)] * k
        else:
            if len(weights) != k:
                raise ValueError(f"compile(loss_weights=...) has {len(weights)} entries for {k} outputs")
            weights = [float(w) for w in weights]

        def per_output(spec):
            if spec is None:
                return [[] for _ in names]
            if isinstance(spec, dict):
                return [_as_list(spec.get(n)) for n in names]
            if isinstance(spec, (list, tuple)) and k > 1 and len(spec) == k and \
                    all(isinstance(s, (list, tuple)) or s is None for s in spec):
                return [_as_list(s) for s in spec]
            return [_as_list(spec) for _ in names]

        def resolve(lists, prefix_names):
            out = []
            for i, ids in enumerate(lists):
                yt = y_shapes[i] if y_shapes else None
                yp = out_shapes[i] if out_shapes else None
                resolved = []
                for ident in ids:
                    m = metrics_module.get(ident, yt, yp, losses[i])
                    if k > 1 and prefix_names:
                        m.name = f"{names[i]}_{m.name}"
                    resolved.append(m)
                out.append(resolved)
            return out
        return TrainingSpec(losses, weights, resolve(per_output(args["metrics"]), True),
                            resolve(per_output(args["weighted_metrics"]), True), names)

    def _known_input_specs(self):
        specs_fn = getattr(self, "_model_input_specs", None)
        if specs_fn is not None:
            return specs_fn()
        if getattr(self, "_functional", False):
            return [(t._history[0].fn.name, t.shape, t.dtype) for t in self.inputs]
        return None

    def _declared_batch_size(self):
        """The batch size fixed by the model's inputs (`Input(batch_size=...)`); for a subclassed
        model, that of the first batch it was built on; or None."""
        if getattr(self, "_first_batch_size", None) is not None:
            return self._first_batch_size
        sizes = set()
        for t in getattr(self, "inputs", None) or []:
            history = getattr(t, "_history", None)
            shape = getattr(history[0].fn, "batch_shape", None) if history else None
            if shape and shape[0] is not None:
                sizes.add(int(shape[0]))
        if len(sizes) > 1:
            raise ValueError(f"Model '{self.name}': its inputs declare different batch sizes {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def reset_states(self):
        """Zero the states of every stateful layer (Keras 2's `Model.reset_states`)."""
        for layer in self._all_layers():
            if getattr(layer, "stateful", False) and hasattr(layer, "reset_states"):
                layer.reset_states()

    def _ensure_compiled_model(self, x_arrays=None, y_shapes=None):
        if self._compile_args is None:
            raise RuntimeError("You must call `compile()` before using the model.")
        if self._compiled_model is None:
            specs = self._known_input_specs()
            if specs is None:
                if x_arrays is None:
                    return None
                self._build_from_data(x_arrays)
                specs = self._known_input_specs()
            out_shapes = self._output_shapes()
            if y_shapes is None:
                y_shapes = [_default_target_shape(l, s) for l, s in
                            zip(self._resolve_spec(None, out_shapes).losses, out_shapes)]
            spec = self._resolve_spec(y_shapes, out_shapes)
            self._compiled_model = CompiledModel(self, specs, spec, run_eagerly=self._run_eagerly,
                                                 communicator=self._communicator())
            if not self._compiled_model.dynamic:
                self._compiled_model.variant(y_shapes)
        return self._compiled_model

    def _training_setup(self):
        """(input specs, TrainingSpec, target shapes) as compile() resolves them for a model whose
        input shapes are known; predict only (no losses) when the model was not compiled."""
        specs = self._known_input_specs()
        if specs is None:
            raise ValueError(f"Model '{self.name}' has no known input shapes: build it (or call it on data) first")
        names = self._output_names_list()
        if self._compile_args is None:
            return specs, TrainingSpec([None] * len(names), [1.0] * len(names), [[] for _ in names],
                                       [[] for _ in names], names), [None] * len(names)
        out_shapes = self._output_shapes()
        y_shapes = [_default_target_shape(l, s) for l, s in
                    zip(self._resolve_spec(None, out_shapes).losses, out_shapes)]
        return specs, self._resolve_spec(y_shapes, out_shapes), y_shapes

    def _build_from_data(self, x_arrays):
        builder = getattr(self, "_ensure_built_from_data", None)
        if builder is None:
            # a subclassed model: inputs take the data's shapes
            self._subclass_specs = [(f"input_{i}", (None,) + a.shape[1:], "int32" if a.dtype.kind in "iu" else "float32")
                                    for i, a in enumerate(x_arrays)]
            self._first_batch_size = int(x_arrays[0].shape[0])   # as Keras builds on the first batch
            self._model_input_specs = lambda: self._subclass_specs
            from ..tracing import KerasTensor, Trace, trace_scope
            from ..ir import builder as irb
            from ..ir.graph import BATCH
            xs = [KerasTensor(irb.input(n, (BATCH,) + tuple(s[1:]), d)) for n, s, d in self._subclass_specs]
            with trace_scope(Trace(training=False)):
                out = self(xs if len(xs) > 1 else xs[0])
            self._subclass_out_shapes = [t.shape for t in flatten(out)]
            self.built = True
        else:
            builder([a.shape for a in x_arrays], [a.dtype for a in x_arrays])

    def _output_shapes(self):
        if getattr(self, "_subclass_out_shapes", None) is not None:
            return self._subclass_out_shapes
        return [t.shape for t in self.outputs]

    # ------------------------------------------------------------ data plumbing
    def _x_list(self, x):
        specs = self._known_input_specs()
        if isinstance(x, dict):
            if specs is None:
                return [_as_array(v, k, text=True) for k, v in x.items()]
            names = [s[0] for s in specs]
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"Missing data for input {missing[0]!r}. You passed a data dictionary with keys "
                                 f"{sorted(x)}. Expected the following keys: {names}")
            extra = [k for k in x if k not in names]
            if extra:
                raise ValueError(f"Unexpected input name(s) {extra}: model '{self.name}' has inputs {names}")
            return [_as_array(x[n], n, text=True) for n in names]
        # a list of arrays is one array per input (as Keras reads it); a nested list of numbers is rows
        if isinstance(x, (list, tuple)) and (specs is None or len(specs) > 1 or
                                             any(isinstance(a, np.ndarray) and a.ndim for a in x)) and \
                not (len(x) and np.ndim(x[0]) == 0):
            return [_as_array(v, f"x[{i}]", text=True) for i, v in enumerate(x)]
        return [_as_array(x, "x", text=True)]

    def _check_x(self, xs):
        from ..data.adapters import as_int32
        from ..layers.preprocessing.host_stage import host_stages, is_string_input
        specs = self._known_input_specs()
        if specs is None:
            return [np.ascontiguousarray(_numeric(a, f"x[{i}]")) for i, a in enumerate(xs)]
        if len(xs) != len(specs):
            raise ValueError(f"Model '{self.name}' expects {len(specs)} input(s), but it received {len(xs)} "
                             f"input tensors.")
        # an input taken by a host-stage layer (strings, hashing) is fed that layer's numpy output
        stages = host_stages(self) or [None] * len(specs)
        out = []
        for i, (arr, (name, shape, dtype)) in enumerate(zip(xs, specs)):
            if stages[i] is not None:
                out.append(stages[i].host_feed(arr, shape, name, is_string_input(self.inputs[i])))
                continue
            arr = _numeric(arr, name)
            want = tuple(shape[1:])
            if arr.ndim != len(shape) or any(w is not None and w != g for w, g in zip(want, arr.shape[1:])):
                layer = self._first_layer_name(i)
                raise ValueError(f'Input {i} of layer "{layer}" is incompatible with the layer: expected shape='
                                 f"{tuple(shape)}, found shape={arr.shape}")
            out.append(as_int32(arr, name) if dtype == "int32" else np.ascontiguousarray(arr, dtype=np.float32))
        return out

    def _first_layer_name(self, i):
        stack = getattr(self, "_stack", None)
        if stack:
            return stack[0].name
        return self.name

    def _y_list(self, y):
        names = self._output_names_list()
        if y is None:
            return None
        if isinstance(y, dict):
            extra = [k for k in y if k not in names]
            if extra:
                raise ValueError(f"Target key(s) {extra} do not match any output; outputs are {names}")
            return [None if y.get(n) is None else _as_float(y[n], n) for n in names]
        if isinstance(y, (list, tuple)) and len(names) > 1:
            if len(y) != len(names):
                raise ValueError(f"Expected {len(names)} target arrays (one per output {names}), got {len(y)}")
            return [None if v is None else _as_float(v, names[i]) for i, v in enumerate(y)]
        return [_as_float(y, "y")]

    def _feeds(self, xs, ys, sws, n):
        feeds = list(xs)
        if ys is not None:
            # class labels are checked on the host: out-of-range ones would be scored as no class
            spec = self._compiled_model.spec
            for loss, y, shape in zip(spec.losses, ys, self._output_shapes()):
                if y is not None:
                    losses_module.check_sparse_labels(loss, y, shape[-1])
            sw_list = sws if isinstance(sws, list) else [sws] * len(ys)
            feeds += [y for y in ys if y is not None]
            for y, sw in zip(ys, sw_list):
                if y is None:
                    continue
                if sw is None:
                    feeds.append(np.ones(n, np.float32))
                else:
                    sw = np.ascontiguousarray(np.asarray(sw, np.float32).reshape(-1))
                    if sw.shape[0] != n:
                        raise ValueError(f"sample_weight has {sw.shape[0]} entries for a batch of {n} samples")
                    feeds.append(sw)
        return feeds

    def _batch_size_of(self, xs):
        sizes = {a.shape[0] for a in xs}
        if len(sizes) > 1:
            raise ValueError(f"Data cardinality is ambiguous: inputs have different numbers of samples {sorted(sizes)}")
        return sizes.pop()

    def _run(self, entry, x, y=None, sample_weight=None):
        xs = self._check_x(self._x_list(x) if not isinstance(x, list) or not _all_arrays(x) else x)
        n = self._batch_size_of(xs)
        ys = self._y_list(y) if y is not None else None
        if ys is not None:
            for yy in ys:
                if yy is not None and yy.shape[0] != n:
                    raise ValueError(f"Data cardinality is ambiguous: x has {n} samples, y has {yy.shape[0]}")
        cm = self._ensure_compiled_model(xs, [None if v is None else v.shape for v in ys] if ys else None)
        y_shapes = [None if v is None else (None,) + v.shape[1:] for v in ys] if ys else \
            [None] * len(self._output_names_list())
        variant = cm.variant(y_shapes, [a.shape for a in xs])
        if not variant.has(entry):
            if entry == "train" and ys is not None and not self.trainable_weights:
                raise ValueError(f"Model '{self.name}' has no trainable weights to train")
            raise ValueError(f"'{entry}' needs a loss and targets (compile the model with a loss and pass y)")
        feeds = self._feeds(xs, ys, sample_weight, n)
        if entry != "predict" and cm.communicator is not None:
            lo, hi = self._replica_share(n, entry)
            if hi == lo:
                return None          # an evaluation batch too small to reach this replica
            feeds, n = [a[lo:hi] for a in feeds], hi - lo
            if entry == "train":
                self._start_replica_step(cm, lo)
        cm.check_batch(n)
        cm.sync_state()
        if entry == "train" and cm.communicator is not None:
            with cm.communicator.watch():
                return variant.run(entry, n, feeds)
        return variant.run(entry, n, feeds)

    # ------------------------------------------------------------ data parallelism (distribute.py)
    def _replica_share(self, n, entry="train"):
        """(lo, hi): the rows of a global batch of n rows this replica processes (an even split)."""
        comm = self._communicator()
        if comm is None:
            return 0, n
        lo, hi = comm.rank * n // comm.size, (comm.rank + 1) * n // comm.size
        if entry == "train" and n < comm.size:
            raise ValueError(f"A training batch of {n} samples cannot be split over {comm.size} workers (every "
                             f"worker needs at least one sample per step): use a batch_size of at least "
                             f"{comm.size} and a number of samples whose last batch has at least {comm.size}")
        return lo, hi

    def _start_replica_step(self, cm, row_offset):
        """Before a data-parallel step: every replica starts from rank 0's state (once per fit and
        per compiled model), and random numbers follow this replica's first row of the global batch."""
        cm.sync_state()
        if not getattr(cm, "replicas_synced", False):
            _, size = cm.pool.layout()
            with cm.pool.lock.write():
                cm.communicator.broadcast_(cm.pool.buffer[:size])
            cm.replicas_synced = True
        cm.row_offset.assign(np.int32(row_offset))

    # ------------------------------------------------------------ metrics
    def _metric_objects(self):
        cm = self._compiled_model
        if cm is None:
            return []
        out = [cm.loss_tracker] + [t for t in cm.output_loss_trackers if t is not None]
        for ms, ws in zip(cm.spec.metrics, cm.spec.weighted_metrics):
            out += ms + ws
        return out

    @property
    def metrics(self):
        return self._metric_objects()

    @property
    def metrics_names(self):
        return [m.name for m in self._metric_objects()]

    def reset_metrics(self):
        for m in self._metric_objects():
            m.reset_state()

    def _logs(self):
        metrics = self._metric_objects()
        comm = self._communicator()
        if comm is None:
            return {m.name: m.result() for m in metrics}
        # data-parallel: the results of the global batches, from the metric states summed over replicas
        variables = [v for m in metrics for v in m.variables]
        local = [np.array(v.numpy()) for v in variables]
        with comm.watch():
            flat = comm.allreduce_sum(np.concatenate([a.astype(np.float64).ravel() for a in local] or [np.zeros(0)]))
        start = 0
        try:
            for v, a in zip(variables, local):
                v.assign(flat[start:start + a.size].reshape(a.shape).astype(a.dtype))
                start += a.size
            return {m.name: m.result() for m in metrics}
        finally:
            for v, a in zip(variables, local):
                v.assign(a)

    # ------------------------------------------------------------ batch API
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        if class_weight is not None:
            cw = class_weights_to_sample_weights(y, class_weight)
            sample_weight = cw if sample_weight is None else cw * np.asarray(sample_weight, np.float32).reshape(-1)
        self._ensure_trainable_compiled()
        self.reset_metrics()
        self._run("train", x, y, sample_weight)
        return self._return(self._logs(), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self.reset_metrics()
        self._run("evaluate", x, y, sample_weight)
        return self._return(self._logs(), return_dict)

    def predict_on_batch(self, x):
        fast = self._predict_fast(x)
        if fast is not None:
            return fast
        self._inference_model()
        outs = self._run("predict", x)
        return self._structure_outputs(outs)

    def _predict_fast(self, x):
        """The latency path: one float32 array of the right shape straight to native code (through
        the executable's prebound small call, runtime/native.py), or None for the general path
        (anything unusual: other types and dtypes, other shapes, nothing compiled yet). It skips
        only what cannot apply to such an array; the general path gives the same values."""
        cm = self._compiled_model
        if cm is None or type(x) is not np.ndarray or x.dtype != _FLOAT32:
            return None
        path = cm.predict_path()
        if path is None:
            return None
        executable, row_shape, check_batch = path
        n = x.shape[0]
        if n == 0 or x.shape[1:] != row_shape:
            return None
        if check_batch:
            cm.check_batch(n)
        cm.sync_state()
        return self._structure_outputs(executable.run_one("predict", x))

    def _structure_outputs(self, outs):
        struct = getattr(self, "_output_struct", None)
        if isinstance(struct, dict):
            return dict(zip(struct.keys(), outs))
        return outs[0] if len(outs) == 1 else list(outs)

    def _return(self, logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _ensure_trainable_compiled(self):
        if not self.compiled:
            raise RuntimeError("You must call `compile()` before training the model.")

    # ------------------------------------------------------------ loops
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1, **kwargs):
        unknown = set(kwargs) - {"max_queue_size", "workers", "use_multiprocessing"}
        if unknown:
            raise TypeError(f"fit() got unexpected keyword arguments {sorted(unknown)}")
        self._ensure_trainable_compiled()
        if x is None:
            raise ValueError("fit() needs training data `x`")
        verbose = _verbose(verbose) if self._is_chief() else 0
        if validation_split and validation_data is None:
            (x, y, sample_weight), validation_data = train_validation_split((x, y, sample_weight), validation_split)
        adapter = make_adapter(x, y, sample_weight, batch_size=batch_size, steps=steps_per_epoch,
                               shuffle=shuffle, class_weight=class_weight)
        val_adapter = None
        if validation_data is not None:
            vd = tuple(validation_data) if isinstance(validation_data, (list, tuple)) else (validation_data,)
            if isinstance(validation_data, (list, tuple)) and len(vd) in (2, 3):
                val_adapter = make_adapter(vd[0], vd[1], vd[2] if len(vd) == 3 else None,
                                           batch_size=validation_batch_size or batch_size, steps=validation_steps)
            else:
                val_adapter = make_adapter(validation_data, batch_size=validation_batch_size or batch_size,
                                           steps=validation_steps)
        cbs = callbacks_module.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                                            verbose=verbose, epochs=epochs, steps=adapter.num_batches,
                                            chief=self._is_chief())
        comm = self._communicator()
        if comm is not None:
            if self._compiled_model is not None:
                self._compiled_model.replicas_synced = False     # every fit starts from rank 0's state
            # every replica draws the same shuffles: rank 0's permutation of the global data
            adapter.permutation = lambda n: comm.broadcast_(np.random.permutation(n).astype(np.int64))
        self.stop_training = False
        cbs.on_train_begin()
        start_epoch = getattr(self, "_initial_epoch_override", None)
        start_epoch = initial_epoch if start_epoch is None else start_epoch
        self._initial_epoch_override = None
        epoch_logs = {}
        prepared = {}    # the whole-epoch path's checked feeds, made once per fit
        for epoch in range(start_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            if not self._fast_epoch(adapter, cbs, prepared):
                for step, (xb, yb, swb) in enumerate(adapter.epoch_iterator()):
                    cbs.on_train_batch_begin(step)
                    self._run("train", xb, yb, swb)
                    cbs.on_train_batch_end(step, self._logs())
                    if self.stop_training:
                        break
            adapter.on_epoch_end()
            epoch_logs = dict(self._logs()) if self._compiled_model is not None else {}
            if val_adapter is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_adapter(val_adapter, None)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end(epoch_logs)
        return self.history

    def _fast_epoch(self, adapter, cbs, prepared):
        """Train a whole epoch of array data in one run_loop call when nothing needs per-batch hooks.

        The arrays are permuted once (when shuffling) so batches are consecutive rows; the
        executable then runs every step (native code in one call). Returns False when the
        per-batch path must be used. `prepared` keeps the checked feeds between epochs.
        """
        cm = self._compiled_model
        if not isinstance(adapter, ArrayAdapter) or adapter.shuffle == "batch" or cm is None or cm.run_eagerly:
            return False
        if any(callbacks_module.uses_batch_hooks(c) for c in cbs.callbacks
               if not isinstance(c, (callbacks_module.ProgbarLogger, callbacks_module.History))):
            return False
        if not prepared:   # checked and converted once per fit, not once per epoch
            xs = self._check_x(self._x_list(adapter.x))
            ys = self._y_list(adapter.y)
            if ys is None or any(v is None for v in ys):
                return False
            variant = cm.variant([(None,) + v.shape[1:] for v in ys], [a.shape for a in xs])
            if not variant.has("train"):
                return False
            n = self._batch_size_of(xs)
            prepared.update(variant=variant, feeds=self._feeds(xs, ys, adapter.sw, n), n=n)
        variant, feeds, n = prepared["variant"], prepared["feeds"], prepared["n"]
        idx = adapter.epoch_indices()
        rows = min(n, adapter.num_batches * adapter.batch_size)
        if adapter.shuffle:
            feeds = [np.take(a, idx[:rows], axis=0) for a in feeds]   # (a contiguous copy, ~3x faster than a[idx])
        elif rows < n:
            feeds = [a[:rows] for a in feeds]
        cm.check_batch(adapter.batch_size)
        if rows % adapter.batch_size:
            cm.check_batch(rows % adapter.batch_size)
        cm.sync_state()
        cbs.on_train_batch_begin(0)
        if cm.communicator is None:
            variant.run_loop("train", adapter.batch_size, feeds)
        else:
            self._replica_epoch(cm, variant, adapter.batch_size, rows, feeds)
        cbs.on_train_batch_end(adapter.num_batches - 1, self._logs())
        return True

    def _replica_epoch(self, cm, variant, batch, rows, feeds):
        """This replica's share of every global batch of an epoch: the full batches in one native
        loop (the same share, hence the same row offset, in each), then the last, shorter batch."""
        with cm.communicator.watch():
            self._replica_epoch_steps(cm, variant, batch, rows, feeds)

    def _replica_epoch_steps(self, cm, variant, batch, rows, feeds):
        full = rows // batch
        lo, hi = self._replica_share(batch)
        if full:
            take = (np.arange(full)[:, None] * batch + np.arange(lo, hi)[None, :]).reshape(-1)
            self._start_replica_step(cm, lo)
            variant.run_loop("train", hi - lo, [np.ascontiguousarray(a[take]) for a in feeds])
        if rows > full * batch:
            lo, hi = self._replica_share(rows - full * batch)
            self._start_replica_step(cm, lo)
            start = full * batch
            variant.run("train", hi - lo, [np.ascontiguousarray(a[start + lo:start + hi]) for a in feeds])

    def _evaluate_adapter(self, adapter, cbs):
        self.reset_metrics()
        for step, (xb, yb, swb) in enumerate(adapter.epoch_iterator()):
            if cbs is not None:
                cbs.on_test_batch_begin(step)
            self._run("evaluate", xb, yb, swb)
            if cbs is not None:
                cbs.on_test_batch_end(step, self._logs())
        adapter.on_epoch_end()
        return self._logs()

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        unknown = set(kwargs) - {"max_queue_size", "workers", "use_multiprocessing"}
        if unknown:
            raise TypeError(f"evaluate() got unexpected keyword arguments {sorted(unknown)}")
        if not self.compiled:
            raise RuntimeError("You must call `compile()` before evaluating the model.")
        verbose = _verbose(verbose) if self._is_chief() else 0
        adapter = make_adapter(x, y, sample_weight, batch_size=batch_size, steps=steps)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=adapter.num_batches, chief=self._is_chief())
        cbs.on_test_begin()
        logs = self._evaluate_adapter(adapter, cbs)
        cbs.on_test_end(logs)
        return self._return(logs, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None, **kwargs):
        unknown = set(kwargs) - {"max_queue_size", "workers", "use_multiprocessing"}
        if unknown:
            raise TypeError(f"predict() got unexpected keyword arguments {sorted(unknown)}")
        verbose = _verbose(verbose)
        adapter = make_adapter(x, batch_size=batch_size, steps=steps)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                                            epochs=1, steps=adapter.num_batches)
        cbs.on_predict_begin()
        chunks = []
        for step, (xb, _, _) in enumerate(adapter.epoch_iterator()):
            cbs.on_predict_batch_begin(step)
            outs = self._predict_batch(xb)
            chunks.append(outs)
            cbs.on_predict_batch_end(step, {"outputs": outs})
        cbs.on_predict_end()
        if not chunks:
            raise ValueError("predict() received no data")
        merged = [np.concatenate([c[i] for c in chunks], axis=0) for i in range(len(chunks[0]))]
        return self._structure_outputs(merged)

    def _predict_batch(self, x):
        return self._inference_model()._run("predict", x)

    def _inference_model(self):
        """predict() without compile(): native code for inference only (the model stays uncompiled)."""
        if not self.compiled and self._compile_args is None:
            self._compile_args = dict(loss=None, loss_weights=None, metrics=None, weighted_metrics=None)
        return self

    def __call__(self, *args, **kwargs):
        from ..tracing import KerasTensor
        if args and not any(isinstance(t, KerasTensor) for t in flatten(args[0])) and \
                not kwargs.get("training"):
            x = args[0]
            self._inference_model()
            return self._structure_outputs(self._run("predict", x))
        return super().__call__(*args, **kwargs)

    # ------------------------------------------------------------ state for callbacks
    def get_training_state(self):
        cm = self._compiled_model
        if cm is None:
            return {f"w{i}": w for i, w in enumerate(self.get_weights())}
        return {v.slot.name: v.numpy() for v in cm._variables}

    def set_training_state(self, state):
        cm = self._compiled_model
        if cm is None:
            self.set_weights([state[f"w{i}"] for i in range(len(self.weights))])
            return
        for v in cm._variables:
            if v.slot.name in state:
                v.assign(state[v.slot.name])


_FLOAT32 = np.dtype(np.float32)


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _as_array(x, what, text=False):
    """x as an array; text=True lets strings through (for inputs taken by a host stage: _check_x)."""
    arr = np.asarray(x)
    if not (text and arr.dtype.kind in "USO"):
        _numeric(arr, what, x)
    if arr.ndim == 0:
        raise ValueError(f"Data for {what!r} must have a batch dimension; got a scalar")
    return arr


def _numeric(arr, what, source=None):
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Data for {what!r} must be numeric (numpy arrays of numbers); got dtype {arr.dtype} "
                        f"from {type(arr if source is None else source).__name__}")
    return arr


def _as_float(y, what):
    arr = _as_array(y, what)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _all_arrays(x):
    return all(isinstance(a, np.ndarray) for a in x)


def _verbose(v):
    if v == "auto":
        return 1
    return int(v)


def _default_target_shape(loss, out_shape):
    if loss is None:
        return None
    if getattr(loss, "fn", None) is losses_module.sparse_categorical_crossentropy:
        return tuple(out_shape[:-1])
    return tuple(out_shape)
