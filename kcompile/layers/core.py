"""Core layers: InputLayer/Input, Dense, Activation, Dropout, Flatten, Reshape, Identity."""
from __future__ import annotations

import numpy as np

from .. import activations, initializers, ops, random_state, regularizers
from ..ir import builder as irb
from ..ir.graph import BATCH, ShapeError, static_size
from ..tracing import CallRecord, KerasTensor, current_trace
from ..naming import unique_name
from .base import InputSpec, Layer
from .dynamic_shapes import probe_shape


class InputLayer(Layer):
    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
                 input_tensor=None, name=None, ragged=None, **kwargs):
        if sparse or ragged:
            raise ValueError("InputLayer: sparse and ragged inputs are not supported")
        if input_tensor is not None:
            raise ValueError("InputLayer: input_tensor is not supported")
        if "input_shape" in kwargs and shape is None:
            shape = kwargs.pop("input_shape")
        if "batch_input_shape" in kwargs and batch_shape is None:
            batch_shape = kwargs.pop("batch_input_shape")
        kwargs.pop("trainable", None)
        if kwargs.pop("optional", False):
            raise ValueError("InputLayer: optional inputs are not supported")
        super().__init__(name=name or unique_name("input_layer"), **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError("You must pass a `shape` argument to Input/InputLayer.")
            batch_shape = (batch_size,) + tuple(shape)
        self._batch_input_shape = tuple(None if d is None else int(d) for d in batch_shape)
        self.input_dtype = _input_dtype(dtype)
        self.built = True
        # Unknown non-batch sizes (e.g. images of any size) are traced at a probe size while the
        # model is defined; compiled code is specialised per concrete input shape (dynamic_shapes.py).
        try:
            # a string input is a placeholder: its string layer replaces it before any computation
            dtype = "int32" if self.input_dtype == "string" else self.input_dtype
            node = irb.input(self.name, (BATCH,) + probe_shape(self._batch_input_shape[1:]), dtype)
        except ShapeError as exc:
            raise ValueError(f"Input '{self.name}' of shape {self._batch_input_shape}: {exc}") from None
        tensor = KerasTensor(node, name=self.name)
        record = CallRecord(self, (), {}, [tensor])
        tensor._history = (record, 0)
        self._inbound.append(record)
        self.output_tensor = tensor

    @property
    def batch_shape(self):
        return self._batch_input_shape

    def get_config(self):
        return {"batch_shape": list(self._batch_input_shape), "dtype": self.input_dtype,
                "sparse": False, "name": self.name}


def _input_dtype(dtype):
    if dtype is None:
        return "float32"
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    if str(dtype) == "string":   # taken by a string layer on the host (layers/preprocessing/host_stage.py)
        return "string"
    kind = np.dtype(dtype).kind if str(dtype) not in ("string", "bfloat16") else "O"
    if kind == "f":
        return "float32"
    if kind in "iub":
        return "int32"
    raise ValueError(f"Input dtype {dtype!r} is not supported (numeric dtypes are)")


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, ragged=None):
    """A symbolic input tensor, the start of a functional model."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                       batch_shape=batch_shape, name=name, input_tensor=tensor, ragged=ragged)
    return layer.output_tensor


class Dense(Layer):
    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 lora_rank=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for `units`, expected a positive integer. Received: units={units}")
        for arg, value in (("kernel_constraint", kernel_constraint), ("bias_constraint", bias_constraint),
                           ("lora_rank", lora_rank)):
            if value is not None:
                raise ValueError(f"Dense '{self.name}': argument {arg}={value!r} is not supported")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.input_spec = InputSpec(min_ndim=2)
        self.supports_masking = True

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"Dense '{self.name}': the last dimension of the inputs must be known, got {input_shape}")
        self.kernel = self.add_weight(name="kernel", shape=(input_dim, self.units),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer,
                                    regularizer=self.bias_regularizer) if self.use_bias else None
        self.input_spec = InputSpec(min_ndim=2, axes={-1: input_dim})
        self.built = True

    def call(self, inputs):
        x = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return self.activation(x)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units, "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": None, "bias_constraint": None,
        })
        return config


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self.supports_masking = True

    def call(self, inputs):
        return self.activation(inputs)

    def get_config(self):
        config = super().get_config()
        config["activation"] = activations.serialize(self.activation)
        return config


def dropout_mask(x, rate, seed, noise_shape=None):
    """Scaled keep-mask for x (1/(1-rate) where kept), from the counter-based RNG of the trace."""
    shape = tuple(x.node.shape) if noise_shape is None else noise_shape
    trace = current_trace()
    u = KerasTensor(irb.random_uniform(shape, seed, trace.step_node(), trace.row_offset))
    return ops.multiply(ops.greater_equal(u, rate), 1.0 / (1.0 - rate))


class Dropout(Layer):
    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Invalid value received for argument `rate`. Expected a float value between "
                             f"0 and 1. Received: rate={rate}")
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.seed = seed
        self._rng_seed = int(seed) if seed is not None else random_state.next_seed()
        self.supports_masking = True

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        noise_shape = None
        if self.noise_shape is not None:
            noise_shape = tuple(BATCH if d is None else int(d) for d in self.noise_shape)
            full = inputs.node.shape
            noise_shape = tuple(f if n is BATCH else n for n, f in zip(noise_shape, full))
        return ops.multiply(inputs, dropout_mask(inputs, self.rate, self._rng_seed, noise_shape))

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed})
        return config


class Flatten(Layer):
    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(f"Flatten: invalid data_format {data_format!r}")
        self.data_format = data_format or "channels_last"

    def call(self, inputs):
        x = inputs
        if self.data_format == "channels_first" and x.ndim > 2:
            x = ops.transpose(x, (0,) + tuple(range(2, x.ndim)) + (1,))
        return ops.reshape(x, (-1, static_size(x.shape[1:]))) if x.ndim > 1 else ops.reshape(x, (-1, 1))

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


class Reshape(Layer):
    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1:
            raise ValueError(f"Reshape '{self.name}': at most one -1 in target_shape, got {self.target_shape}")

    def call(self, inputs):
        size = static_size(inputs.shape[1:])
        target = self.target_shape
        known = static_size([d for d in target if d != -1])
        if (-1 in target and (known == 0 or size % known)) or (-1 not in target and known != size):
            raise ValueError(f"Exception encountered when calling layer '{self.name}' (Reshape): total size of "
                             f"new array must be unchanged, input_shape = {list(inputs.shape[1:])}, "
                             f"output_shape = {list(target)}")
        target = tuple(size // known if d == -1 else d for d in target)
        return ops.reshape(inputs, (None,) + target)

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config


class Lambda(Layer):
    """Wraps an expression of kcompile.ops as a layer; traced into the compiled graph like any layer."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise ValueError(f"Lambda '{self.name}': `function` must be callable, got {function!r}")
        self.function = function
        self.arguments = dict(arguments or {})
        self._output_shape = output_shape
        self._mask = mask
        self.supports_masking = mask is not None

    def call(self, inputs, mask=None, training=None):
        import inspect
        kwargs = dict(self.arguments)
        params = inspect.signature(self.function).parameters
        if "mask" in params:
            kwargs["mask"] = mask
        if "training" in params:
            kwargs["training"] = training
        return self.function(inputs, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self._mask(inputs, mask) if callable(self._mask) else self._mask

    def get_config(self):
        config = super().get_config()
        config.update({"function": _function_config(self.function), "arguments": self.arguments,
                       "output_shape": self._output_shape})
        return config


def _function_config(fn):
    """Keras's Lambda serialization: a registered name, or marshalled bytecode (loads only with safe_mode=False)."""
    import base64
    import marshal
    if getattr(fn, "__name__", "<lambda>") != "<lambda>" and "." not in fn.__qualname__ \
            and "<locals>" not in fn.__qualname__:
        return {"class_name": "function", "config": fn.__name__, "module": fn.__module__}
    code = base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")
    return {"class_name": "__lambda__", "config": {"code": code, "defaults": fn.__defaults__,
                                                  "closure": None}}


class Masking(Layer):
    """Masks time steps whose features all equal `mask_value` (for the RNN layers and losses after it)."""

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)
        self.supports_masking = True

    def _keep(self, inputs):
        return ops.any(ops.not_equal(inputs, self.mask_value), axis=-1)

    def call(self, inputs):
        keep = ops.cast(self._keep(inputs), "float32")
        return ops.multiply(inputs, ops.expand_dims(keep, -1))

    def compute_mask(self, inputs, mask=None):
        return ops.cast(self._keep(inputs), "float32")

    def get_config(self):
        config = super().get_config()
        config["mask_value"] = self.mask_value
        return config


class Identity(Layer):
    """Returns its input unchanged (any structure of tensors); passes masks through."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        return inputs
