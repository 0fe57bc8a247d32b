"""The Layer base class: config + weights + `build` + a `call` that emits IR through ops.

Calling a layer on symbolic tensors runs `call` on them (emitting IR into the active trace);
while a functional model is being defined the call is also recorded, so the model can replay
it later for training or inference. Calling a layer on numpy arrays traces it on placeholders
and evaluates the result with the reference interpreter, as an eager Keras call would.
"""
from __future__ import annotations

import contextlib
import inspect

import numpy as np

from .. import initializers, regularizers
from ..ir import builder as irb
from ..ir.graph import BATCH, MAX_BUFFER_BYTES, Graph, static_size
from ..ir.interpreter import evaluate
from ..ir.primitives import ShapeError
from ..naming import to_snake_case, unique_name  # noqa: F401  (re-exported for layers)
from ..tree import flatten, map_structure  # noqa: F401  (re-exported for layers)
from ..tracing import CallRecord, KerasTensor, Trace, current_trace, trace_scope
from ..variables import Variable

class InputSpec:
    """Constraints a layer places on its input: ndim, min_ndim, max_ndim, axes {axis: size}."""

    def __init__(self, dtype=None, shape=None, ndim=None, max_ndim=None, min_ndim=None, axes=None,
                 allow_last_axis_squeeze=False, name=None, optional=False):
        self.ndim = len(shape) if shape is not None else ndim
        self.shape, self.max_ndim, self.min_ndim = shape, max_ndim, min_ndim
        self.axes = axes or {}


# Keyword arguments every layer accepts (Keras's base Layer); anything else is an error.
_BASE_KWARGS = {"input_shape", "batch_input_shape", "batch_size", "input_dim", "weights",
                "activity_regularizer", "autocast", "dynamic", "input_length", "batch_shape"}


class Layer:
    def __init__(self, trainable=True, name=None, dtype=None, activity_regularizer=None, **kwargs):
        for arg in ("quantization_config", "lora_alpha"):      # Keras 3 extras, written as None by default
            if kwargs.pop(arg, None) is not None:
                raise ValueError(f"{type(self).__name__}: argument {arg} is not supported")
        unknown = set(kwargs) - _BASE_KWARGS
        if unknown:
            raise TypeError(f"Keyword argument not understood: {sorted(unknown)[0]!r} "
                            f"(in {type(self).__name__})")
        object.__setattr__(self, "_layers", [])
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.built = False
        self._own_weights = []
        self._created_trainable = []       # variables created trainable (frozen with the layer)
        self._regularized = []             # (variable, regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.input_spec = None
        self._inbound = []                 # CallRecords made while defining models
        self.supports_masking = False
        self._check_dtype(dtype)
        self.dtype = "float32"
        batch_shape = kwargs.get("batch_shape") or kwargs.get("batch_input_shape")
        if batch_shape is None and kwargs.get("input_shape") is not None:
            batch_shape = (kwargs.get("batch_size"),) + tuple(kwargs["input_shape"])
        if batch_shape is None and kwargs.get("input_dim") is not None:
            batch_shape = (kwargs.get("batch_size"), int(kwargs["input_dim"]))
        self._batch_input_shape = tuple(batch_shape) if batch_shape is not None else None
        self._initial_weights = kwargs.get("weights")

    @staticmethod
    def _check_dtype(dtype):
        if isinstance(dtype, dict):  # a Keras 3 DTypePolicy config
            dtype = dtype.get("config", {}).get("name", "float32")
        if dtype is not None and str(dtype) not in ("float32", "float64"):
            raise ValueError(f"dtype {dtype!r} is not supported: kcompile computes in float32")

    # ------------------------------------------------------------ tracking
    def __setattr__(self, name, value):
        if isinstance(value, Layer) and name not in ("_outbound_model",):
            if value not in self.__dict__.get("_layers", []):
                self.__dict__.setdefault("_layers", []).append(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value) \
                and not name.startswith("_"):
            for v in value:
                if v not in self.__dict__.setdefault("_layers", []):
                    self._layers.append(v)
        object.__setattr__(self, name, value)

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        # As in Keras 3, freezing a layer freezes its variables and its sublayers.
        self._trainable = bool(value)
        for v in self._created_trainable:
            v.trainable = self._trainable
        for layer in self._layers:
            layer.trainable = value

    # ------------------------------------------------------------ weights
    def add_weight(self, *args, shape=None, initializer=None, dtype=None, trainable=True,
                   regularizer=None, constraint=None, name=None, autocast=True, aggregation="none",
                   use_resource=None, synchronization=None, partitioner=None, **kwargs):
        if kwargs:
            raise TypeError(f"add_weight() got unexpected keyword arguments {sorted(kwargs)}")
        if args and isinstance(args[0], str):     # Keras 2 order: add_weight(name, shape, ...)
            name, args = args[0], args[1:]
        if args:
            shape = args[0]
        if constraint is not None:
            raise ValueError(f"Layer '{self.name}': weight constraints are not supported yet "
                             f"(constraint={constraint!r})")
        shape = () if shape is None else tuple(int(d) for d in shape)
        _check_weight_size(self.name, name, shape, dtype)
        init = initializers.get(initializer if initializer is not None else
                                ("zeros" if dtype and "int" in str(dtype) else "glorot_uniform"))
        var = Variable(init, shape=shape, dtype=dtype or "float32", trainable=trainable,
                       name=name or f"variable_{len(self._own_weights)}",
                       path=f"{self.name}/{name or 'variable_%d' % len(self._own_weights)}")
        self._own_weights.append(var)
        if trainable:
            self._created_trainable.append(var)
            var.trainable = self._trainable
        reg = regularizers.get(regularizer)
        if reg is not None:
            self._regularized.append((var, reg))
        return var

    def _persistent_state(self):
        """Variables outside the weights that compiled steps read and update (stateful RNN states)."""
        return []

    def _all_layers(self):
        seen, out = set(), []

        def visit(layer):
            for sub in layer._layers:
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out.append(sub)
                    visit(sub)
        visit(self)
        return out

    @property
    def variables(self):
        """Own variables (created-trainable first), then sublayers', without duplicates."""
        own = [w for w in self._own_weights if w in self._created_trainable] + \
              [w for w in self._own_weights if w not in self._created_trainable]
        return _dedupe(own + [v for layer in self._layers for v in layer.variables])

    @property
    def trainable_weights(self):
        return [v for v in self.variables if v.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self):
        return [v for v in self.variables if not v.trainable] if self.trainable else self.variables

    @property
    def weights(self):
        # layer by layer, each layer's own weights in creation order (trainable-created first), as
        # both Keras 2 and Keras 3 order them: weight files and get_weights() rely on it
        return self.variables

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_variables(self):
        return self.non_trainable_weights

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        params = self.weights
        if len(weights) != len(params):
            raise ValueError(f"You called `set_weights(weights)` on layer '{self.name}' with a weight list "
                             f"of length {len(weights)}, but the layer was expecting {len(params)} weights.")
        for var, value in zip(params, weights):
            value = np.asarray(value)
            if value.shape != var.shape:
                raise ValueError(f"Layer {self.name} weight shape {var.shape} is not compatible with provided "
                                 f"weight shape {value.shape}.")
        with params[0].writing() if params else contextlib.nullcontext():   # readers see old or new, never both
            for var, value in zip(params, weights):
                var.assign(value)

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer '{self.name}', but the layer isn't "
                             "built. You can build it manually via: `layer.build(input_shape)`.")
        return sum(static_size(w.shape) for w in self.weights)

    def regularization_losses(self):
        """IR-emitting penalties of every regularized weight (this layer and sublayers)."""
        out = [(v, r) for v, r in self._regularized]
        for l in self._all_layers():
            out += l._regularized
        seen, result = set(), []
        for v, r in out:
            if id(v) not in seen:
                seen.add(id(v))
                result.append((v, r))
        return result

    # ------------------------------------------------------------ build and call
    def build(self, input_shape):
        self.built = True

    def _maybe_build(self, input_shape):
        if not self.built:
            sig = inspect.signature(self.build)
            if sig.parameters:
                self.build(input_shape)
            else:
                self.build()
            self.built = True
            if self._initial_weights is not None:
                self.set_weights(self._initial_weights)
                self._initial_weights = None

    def call(self, inputs, *args, **kwargs):
        return inputs

    def _call_accepts(self, name):
        params = inspect.signature(self.call).parameters
        return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())

    def __call__(self, *args, **kwargs):
        if not args and "inputs" in kwargs:
            args = (kwargs.pop("inputs"),)
        if not args:
            raise ValueError(f"Layer '{self.name}' was called without inputs")
        inputs = args[0]
        flat = flatten(inputs)
        if not any(isinstance(t, KerasTensor) for t in flat):
            return self._eager_call(*args, **kwargs)
        trace = current_trace()
        training = kwargs.pop("training", None)
        if training is None:
            training = trace.training
        mask = self._input_mask(inputs, kwargs.pop("mask", None))
        shapes = map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else np.shape(t), inputs)
        try:
            self._maybe_build(shapes)
        except ShapeError as exc:
            raise ValueError(f"Exception encountered when calling layer '{self.name}' "
                             f"({type(self).__name__}): {exc}") from None
        self._check_input_spec(inputs)
        call_kwargs = dict(kwargs)
        if self._call_accepts("training"):
            call_kwargs["training"] = training
        if mask is not None and "mask" in inspect.signature(self.call).parameters:
            call_kwargs["mask"] = mask
        try:
            outputs = self.call(inputs, *args[1:], **call_kwargs)
        except ShapeError as exc:
            raise ValueError(f"Exception encountered when calling layer '{self.name}' "
                             f"({type(self).__name__}): {exc}. Input shape: {shapes}") from None
        if self.activity_regularizer is not None:
            for out in flatten(outputs):
                penalty = _as_node(self.activity_regularizer(out))
                if out.ndim > 0:       # Keras 3 divides by the batch size (same strength at any batch size)
                    penalty = irb.div(penalty, irb.batch_size())
                trace.add_loss(penalty)
        _set_mask(outputs, self.compute_mask(inputs, mask))
        self._last_input_shape = shapes
        self._last_output_shape = map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else None, outputs)
        if trace.recording:
            outputs = self._record(args, kwargs, training, outputs)
        return outputs

    @staticmethod
    def _input_mask(inputs, explicit):
        """The mask a call sees: the `mask` argument, else the inputs' `_keras_mask` (Keras's rule)."""
        if explicit is not None:
            return explicit
        masks = [getattr(t, "_keras_mask", None) for t in flatten(inputs)]
        if all(m is None for m in masks):
            return None
        return masks[0] if len(masks) == 1 else masks

    def compute_mask(self, inputs, mask=None):
        """The output mask: passed through by layers that support masking, dropped otherwise."""
        return mask if self.supports_masking else None

    def _record(self, args, kwargs, training, outputs):
        fresh = map_structure(lambda t: _fresh(t) if isinstance(t, KerasTensor) else t, outputs)
        flat = [t for t in flatten(fresh) if isinstance(t, KerasTensor)]
        record = CallRecord(self, args, dict(kwargs), flat)
        record.structure = fresh
        for i, t in enumerate(flat):
            t._history = (record, i)
        self._inbound.append(record)
        return fresh

    def _check_input_spec(self, inputs):
        spec = self.input_spec
        if spec is None or isinstance(spec, list):
            return
        x = flatten(inputs)[0]
        shape = x.shape
        where = f'Input 0 of layer "{self.name}" is incompatible with the layer: '
        if spec.ndim is not None and len(shape) != spec.ndim:
            raise ValueError(where + f"expected ndim={spec.ndim}, found ndim={len(shape)}. Full shape received: {shape}")
        if spec.min_ndim is not None and len(shape) < spec.min_ndim:
            raise ValueError(where + f"expected min_ndim={spec.min_ndim}, found ndim={len(shape)}. "
                             f"Full shape received: {shape}")
        if spec.max_ndim is not None and len(shape) > spec.max_ndim:
            raise ValueError(where + f"expected max_ndim={spec.max_ndim}, found ndim={len(shape)}. "
                             f"Full shape received: {shape}")
        for axis, size in spec.axes.items():
            if size is not None and shape[axis] not in (size, None):
                raise ValueError(where + f"expected axis {axis} of input shape to have value {size}, "
                                 f"but received input with shape {shape}")

    def _eager_call(self, *args, **kwargs):
        """Run the layer on concrete arrays: trace on placeholders, evaluate with the interpreter."""
        training = bool(kwargs.pop("training", False))
        inputs = args[0]
        placeholders, feeds = [], {}

        def to_placeholder(x):
            arr = np.asarray(x)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"Layer '{self.name}' expects numeric inputs, got dtype {arr.dtype}")
            dtype = "int32" if arr.dtype.kind in "iu" else "float32"
            name = f"eager_input_{len(placeholders)}"
            node = irb.input(name, (BATCH,) + arr.shape[1:] if arr.ndim else (), dtype, len(placeholders))
            placeholders.append(node)
            feeds[name] = arr.astype(dtype)
            return KerasTensor(node)
        symbolic = map_structure(to_placeholder, inputs)
        # tensor-valued keyword arguments (mask, initial_state, ...) are batch inputs too
        kwargs = {k: map_structure(lambda v: to_placeholder(v) if isinstance(v, np.ndarray) and v.ndim else v, v)
                  for k, v in kwargs.items()}
        batch = next((np.shape(v)[0] for v in feeds.values() if np.ndim(v)), 1)
        trace = Trace(training=training, executes=True, static_batch=batch)
        trace.step = irb.const(0, "int32")
        with trace_scope(trace):
            out = self(symbolic, *args[1:], training=training, **kwargs)
        flat = flatten(out)
        graph = Graph(placeholders, {str(i): t.node for i, t in enumerate(flat)}, [], trace.updates)
        variables = {}
        for layer in [self] + self._all_layers():
            for v in list(layer._own_weights) + layer._persistent_state():
                variables[v.slot.name] = v
        state = {name: v.numpy() for name, v in variables.items()}
        values, updates = evaluate(graph, feeds, state, batch=batch)
        # as in Keras, a call updates the layer's state (BatchNormalization's moving statistics
        # when training, a stateful RNN's states)
        for name, value in updates.items():
            variables[name].assign(np.asarray(value, variables[name].dtype))
        results = iter([values[str(i)] for i in range(len(flat))])
        return map_structure(lambda t: next(results), out)

    def compute_output_shape(self, input_shape):
        def placeholder(shape):
            shape = tuple(BATCH if d is None else d for d in shape)
            return KerasTensor(irb.input("shape_probe", shape))
        is_single = isinstance(input_shape, tuple) and all(d is None or isinstance(d, int) for d in input_shape)
        probe = placeholder(input_shape) if is_single else [placeholder(s) for s in input_shape]
        with trace_scope(Trace(training=False)):
            out = self(probe)
        return map_structure(lambda t: t.shape, out)

    # ------------------------------------------------------------ nodes (functional API)
    def _single(self, what):
        if not self._inbound:
            raise AttributeError(f"Layer {self.name} is not connected, no input to return.")
        if len(self._inbound) > 1:
            raise AttributeError(f"Layer {self.name} has multiple inbound nodes, hence the notion of "
                                 f'"layer {what}" is ill-defined. Use `get_{what}_at(node_index)` instead.')
        return self._inbound[0]

    def _unwrap(self, values):
        return values[0] if len(values) == 1 else list(values)

    @property
    def input(self):
        record = self._single("input")
        return self._unwrap([t for t in flatten(record.args[0]) if isinstance(t, KerasTensor)])

    @property
    def output(self):
        return self._unwrap(self._single("output").outputs)

    def get_input_at(self, node_index):
        return self._unwrap([t for t in flatten(self._inbound[node_index].args[0]) if isinstance(t, KerasTensor)])

    def get_output_at(self, node_index):
        return self._unwrap(self._inbound[node_index].outputs)

    def get_input_shape_at(self, node_index):
        v = self.get_input_at(node_index)
        return [t.shape for t in v] if isinstance(v, list) else v.shape

    def get_output_shape_at(self, node_index):
        v = self.get_output_at(node_index)
        return [t.shape for t in v] if isinstance(v, list) else v.shape

    @property
    def input_shape(self):
        if getattr(self, "_last_input_shape", None) is not None and not self._inbound:
            return self._last_input_shape
        if self._inbound:
            shapes = {str(self.get_input_shape_at(i)) for i in range(len(self._inbound))}
            if len(shapes) > 1:
                raise AttributeError(f'The layer "{self.name}" has multiple inbound nodes, with different '
                                     "input shapes. Hence the notion of \"input shape\" is ill-defined for the layer.")
            return self.get_input_shape_at(0)
        if self._batch_input_shape is not None:
            return self._batch_input_shape
        raise AttributeError(f"The layer {self.name} has never been called and thus has no defined input shape.")

    @property
    def output_shape(self):
        if self._inbound:
            return self.get_output_shape_at(0)
        if getattr(self, "_last_output_shape", None) is not None:
            return self._last_output_shape
        raise AttributeError(f"The layer {self.name} has never been called and thus has no defined output shape.")

    # ------------------------------------------------------------ config
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._batch_input_shape is not None:
            config["batch_shape"] = list(self._batch_input_shape)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**_NESTED_CONFIGS["builder"](config))       # wrappers hold layer configs

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


# Wrappers (TimeDistributed, Bidirectional, RNN) hold the configs of the layers they wrap; building
# those needs the config reader of kcompile/saving, a floor above the layers, which registers it here.
_NESTED_CONFIGS = {"builder": None}


def register_nested_config_builder(builder):
    """`builder(config) -> config` with nested layer configs turned into layers (saving/model_build.py)."""
    _NESTED_CONFIGS["builder"] = builder


def _fresh(tensor):
    out = KerasTensor(tensor.node)
    out._keras_mask = tensor._keras_mask
    return out


def _set_mask(outputs, mask):
    """Attach `mask` (a KerasTensor or one per output) to symbolic outputs as `_keras_mask`."""
    flat = [t for t in flatten(outputs) if isinstance(t, KerasTensor)]
    masks = mask if isinstance(mask, (list, tuple)) else [mask] * len(flat)
    for t, m in zip(flat, masks):
        if m is not None or t._keras_mask is None:
            t._keras_mask = m if m is None or isinstance(m, KerasTensor) else None


def _dedupe(weights):
    seen, out = set(), []
    for w in weights:
        if id(w) not in seen:
            seen.add(id(w))
            out.append(w)
    return out


def _as_node(x):
    if isinstance(x, KerasTensor):
        return x.node
    return irb.as_node(np.float32(x) if np.ndim(x) == 0 else np.asarray(x, np.float32))


def _check_weight_size(layer_name, weight_name, shape, dtype):
    """Refuse a weight larger than a compiled model may hold before its initializer allocates it
    (a shape gone wrong upstream would otherwise end in a MemoryError, or an hour of swapping)."""
    nbytes = static_size(shape) * np.dtype(dtype or "float32").itemsize
    if nbytes > MAX_BUFFER_BYTES:
        raise ValueError(f"Layer '{layer_name}': weight '{weight_name}' of shape {shape} needs {nbytes} bytes, "
                         f"more than the limit of {MAX_BUFFER_BYTES} bytes for one buffer")
