"""The Python half of the kcompile R package.

R talks to kcompile through these functions only, so that the conversions R users rely on live in
one place:

* `registry()` lists kcompile's layers, optimizers, losses, metrics, callbacks, initializers,
  regularizers, activations and backend functions with the R names the package generates for them
  (snake_case of the class name, as the Keras R package spells it: Conv2D -> layer_conv_2d).
* `construct()` calls one of them with R's arguments: positional arguments are named from the
  Python signature, whole numbers become ints where the parameter is an integer (units, filters,
  kernel_size, epochs ...), shapes become tuples (NA/NULL -> None), a number given as an
  initializer becomes Constant(value), and Keras R's legacy names (lr) are mapped.
* Arrays cross the boundary as raw bytes (`array_from_r`, `export`), never through reticulate's
  NumPy conversion: R arrays are column-major and the bytes are reordered to row-major
  (C-contiguous) float32/int32 NumPy arrays here, and back again.
* `RLayer` and `RModel` are a Layer and a Model whose methods are R functions (KerasLayer R6
  classes, keras_model_custom).
"""
import inspect
import math
import numbers
import re

import numpy as np

import kcompile as kc

# ----------------------------------------------------------------------------- names

def snake(name):
    """Keras R's snake_case of a class name: Conv2DTranspose -> conv_2d_transpose, LSTM -> lstm."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s)
    s = re.sub(r"([a-z])([0-9])", r"\1_\2", s)
    return s.lower()


# Where the Keras R package spells a name differently from the rule above (the names it has used
# for years), and aliases it also offers. The first name is the main one.
R_NAMES = {
    ("layer", "ReLU"): ["activation_relu", "re_lu"],
    ("layer", "LeakyReLU"): ["activation_leaky_relu"],
    ("layer", "PReLU"): ["activation_parametric_relu"],
    ("layer", "ELU"): ["activation_elu"],
    ("layer", "Softmax"): ["activation_softmax", "softmax"],
    ("layer", "UpSampling1D"): ["upsampling_1d", "up_sampling_1d"],
    ("layer", "UpSampling2D"): ["upsampling_2d", "up_sampling_2d"],
    ("layer", "UpSampling3D"): ["upsampling_3d", "up_sampling_3d"],
    ("optimizer", "RMSprop"): ["rmsprop"],
    ("callback", "TensorBoard"): ["tensorboard"],
    ("callback", "TerminateOnNaN"): ["terminate_on_naan", "terminate_on_nan"],
    ("callback", "LambdaCallback"): ["lambda"],
    ("loss", "KLDivergence"): ["kl_divergence", "kullback_leibler_divergence"],
    ("loss", "LogCosh"): ["log_cosh", "logcosh"],
    ("metric", "KLDivergence"): ["kl_divergence", "kullback_leibler_divergence"],
    ("regularizer", "L1L2"): ["l1_l2"],
}

# wrappers the Keras R package names without the layer_ prefix
BARE_NAMES = {("layer", "TimeDistributed"): "time_distributed", ("layer", "Bidirectional"): "bidirectional"}

FAMILIES = {
    "layer": (kc.layers, kc.layers.Layer, {"Layer", "InputLayer"}),
    "optimizer": (kc.optimizers, kc.optimizers.Optimizer, {"Optimizer"}),
    "loss": (kc.losses, kc.losses.Loss, {"Loss", "LossFunctionWrapper"}),
    "metric": (kc.metrics, kc.metrics.Metric, {"Metric", "MeanMetricWrapper"}),
    "callback": (kc.callbacks, kc.callbacks.Callback, {"Callback", "History", "ProgbarLogger", "CallbackList"}),
    "initializer": (kc.initializers, kc.initializers.Initializer, {"Initializer"}),
    "regularizer": (kc.regularizers, kc.regularizers.Regularizer, {"Regularizer"}),
}
FUNCTION_FAMILIES = {
    "activation": (kc.activations, {"get", "serialize", "deserialize"}),
    "k": (kc.backend, {"backend"}),
}


def registry():
    """[{family, cls, names}] for every constructor the R package generates."""
    out = []
    for family, (module, base, skip) in FAMILIES.items():
        for name in sorted(dir(module)):
            obj = getattr(module, name)
            if name.startswith("_") or name in skip or not inspect.isclass(obj) or not issubclass(obj, base):
                continue
            out.append({"family": family, "cls": name,
                        "names": [f"{family}_{n}" for n in R_NAMES.get((family, name), [snake(name)])]
                        + ([BARE_NAMES[(family, name)]] if (family, name) in BARE_NAMES else [])})
    for family, (module, skip) in FUNCTION_FAMILIES.items():
        for name in sorted(dir(module)):
            obj = getattr(module, name)
            if name.startswith("_") or name in skip or not inspect.isfunction(obj):
                continue
            out.append({"family": family, "cls": name, "names": [f"{family}_{name}"]})
    return out


def _target(family, cls):
    if family in FAMILIES:
        return getattr(FAMILIES[family][0], cls)
    if family in FUNCTION_FAMILIES:
        return getattr(FUNCTION_FAMILIES[family][0], cls)
    obj = kc                                   # a dotted path under kcompile: "layers.Input"
    for part in cls.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- R arguments

# parameters that take integers (or tuples of integers) whatever their Python default says
INT_NAMES = {
    "units", "filters", "kernel_size", "strides", "pool_size", "dilation_rate", "size", "cropping",
    "input_dim", "output_dim", "input_length", "batch_size", "n", "axis", "depth_multiplier", "groups",
    "num_tokens", "max_tokens", "patience", "verbose", "seed", "epochs", "initial_epoch", "steps",
    "steps_per_epoch", "validation_steps", "validation_batch_size", "validation_freq", "k",
    "num_thresholds", "num_classes", "output_sequence_length", "height", "width", "repeats",
    "save_freq", "update_freq", "histogram_freq", "start_from_epoch", "cooldown", "interpolation_order",
    "num_bins", "max_queue_size", "workers", "top_k", "class_id", "num_heads", "key_dim", "value_dim",
    "sequence_length",
}
# parameters that are shapes: always a tuple, even from a single R number (input_shape = c(32))
SHAPE_NAMES = {"input_shape", "batch_input_shape", "batch_shape", "shape", "target_shape", "dims"}
# Keras R's legacy argument names
LEGACY = {"optimizer": {"lr": "learning_rate"}}


def _signature(target):
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _param_names(target):
    sig = _signature(target)
    if sig is None:
        return [], True
    names, var = [], False
    for i, p in enumerate(sig.parameters.values()):
        if inspect.isclass(target) and i == 0:
            continue                                    # self
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            var = True
    return names, var


def _int_params(target):
    sig = _signature(target)
    out = set(INT_NAMES)
    if sig is not None:
        for p in sig.parameters.values():
            d = p.default
            if isinstance(d, numbers.Integral) and not isinstance(d, bool):
                out.add(p.name)
            elif isinstance(d, tuple) and d and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                   for v in d):
                out.add(p.name)
    return out


def _whole(v):
    return isinstance(v, float) and math.isfinite(v) and v == int(v)


def _int_or_none(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if _whole(v):
        return int(v)
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return _int_or_none(v.item())
    return v


def shape_arg(v):
    """An R shape (32, c(32, 32), list(NULL, 32), c(NA, 32)) as a Python tuple of ints and None."""
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        v = v.reshape(-1).tolist()
    if isinstance(v, (list, tuple)):
        return tuple(_int_or_none(x) for x in v)
    return (_int_or_none(v),)


def _int_arg(v):
    if isinstance(v, list) and v and all(isinstance(x, numbers.Real) for x in v):
        return tuple(_int_or_none(x) for x in v)
    if isinstance(v, (list, tuple)):
        return type(v)(_int_arg(x) for x in v) if isinstance(v, tuple) else [_int_arg(x) for x in v]
    return _int_or_none(v) if isinstance(v, float) else v


def convert_kwargs(family, target, kwargs, drop_none=True):
    ints = _int_params(target)
    legacy = LEGACY.get(family, {})
    out = {}
    for key, value in kwargs.items():
        if value is None and drop_none:
            continue
        key = legacy.get(key, key)
        if key in SHAPE_NAMES:
            value = shape_arg(value)
        elif key in ints:
            value = _int_arg(value)
        elif key.endswith("_initializer") and isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = kc.initializers.Constant(float(value))       # kernel_initializer = c(2.0)
        elif key == "class_weight" and isinstance(value, dict):
            value = {int(k) if str(k).lstrip("-").isdigit() else k: v for k, v in value.items()}
        out[key] = value
    return out


def construct(family, cls, args=None, kwargs=None):
    """Call a registry entry with R's positional `args` and named `kwargs`."""
    target = _target(family, cls)
    args = list(args or [])
    kwargs = dict(kwargs or {})
    names, var = _param_names(target)
    label = f"{cls}()" if family not in FAMILIES else f"{cls}.__init__()"
    if inspect.isclass(target):
        # classes take R's positional arguments by name, so that they are converted like named ones
        if len(args) > len(names) and not var:
            raise TypeError(f"{label} takes {len(names)} positional argument(s) but {len(args)} were given")
        for name, value in zip(names, args):
            if name in kwargs:
                raise TypeError(f"{label} got multiple values for argument '{name}'")
            kwargs[name] = value
        rest = args[len(names):]
        return target(*rest, **convert_kwargs(family, target, kwargs))
    ints = _int_params(target)
    args = [_int_arg(a) if n in ints else a for n, a in zip(names, args)] + args[len(names):]
    return target(*args, **convert_kwargs(family, target, kwargs))


def call_method(obj, method, kwargs=None, args=None):
    """obj.method(*args, **kwargs) with R's argument conversion (fit, evaluate, predict, compile,
    save ...)."""
    fn = getattr(obj, method)
    kwargs = convert_kwargs("method", fn, dict(kwargs or {}))
    if "validation_data" in kwargs and isinstance(kwargs["validation_data"], list):
        kwargs["validation_data"] = tuple(kwargs["validation_data"])
    return fn(*list(args or []), **kwargs)


def is_sequential(obj):
    return isinstance(obj, kc.Sequential)


def is_model(obj):
    return isinstance(obj, kc.Model)


def call_layer(layer, inputs):
    return layer(inputs)


def invoke(fn, args):
    return fn(*args)


def instance_class_names():
    """reticulate's S3 class of a kcompile Model (for registering predict/summary/print methods)."""
    return [f"{c.__module__}.{c.__name__}" for c in (kc.Model,)]


# ----------------------------------------------------------------------------- arrays

_R_DTYPES = {"double": "<f8", "integer": "<i4", "logical": "<i4"}


def array_from_r(data, dims, kind, cast=True):
    """An R array (its column-major bytes and dim) as a row-major NumPy array.

    Doubles become float32 (kcompile computes in float32), logicals float32, integers int32."""
    dims = [int(d) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    if kind == "character":
        values = data if isinstance(data, list) else [data]
        arr = np.array(values, dtype=str).reshape(dims, order="F")
    else:
        arr = np.frombuffer(bytes(data), dtype=_R_DTYPES[kind]).reshape(dims, order="F")
        if kind == "logical":
            arr = arr.astype(bool)
        if cast:
            arr = arr.astype(np.int32 if kind == "integer" else np.float32)
    return np.ascontiguousarray(arr)


def export(value):
    """A Python value in a form reticulate converts without NumPy: arrays become
    {"__kc_ndarray__": kind, "shape": [...], "data": bytearray (column-major)}."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value.item()
        kind = value.dtype.kind
        if kind == "f":
            data, rkind = value.astype("<f8").tobytes(order="F"), "double"
        elif kind in "iu" and (value.size == 0 or (value.min() >= -2**31 + 1 and value.max() < 2**31)):
            data, rkind = value.astype("<i4").tobytes(order="F"), "integer"
        elif kind in "iu":
            data, rkind = value.astype("<f8").tobytes(order="F"), "double"
        elif kind == "b":
            data, rkind = value.astype("<i4").tobytes(order="F"), "logical"
        else:
            return {"__kc_ndarray__": "character", "shape": list(value.shape),
                    "data": [str(v) for v in value.reshape(-1, order="F")]}
        return {"__kc_ndarray__": rkind, "shape": list(value.shape), "data": bytearray(data)}
    if isinstance(value, dict):
        return {str(k): export(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [export(v) for v in value]
    return value


def r_function(fn, name=None):
    """A Python callable over an R function: NumPy arguments are exported for R first (reticulate
    here cannot convert NumPy arrays itself)."""
    def call(*args, **kwargs):
        return fn(*[export(a) for a in args], **{k: export(v) for k, v in kwargs.items()})
    call.__name__ = name or "r_function"
    call.__qualname__ = call.__name__
    return call


def history(h):
    return export({"params": dict(getattr(h, "params", {}) or {}), "metrics": dict(h.history)})


# ----------------------------------------------------------------------------- R-defined layers and models

class RLayer(kc.layers.Layer):
    """A layer whose build/call/compute_output_shape are R functions (an R6 KerasLayer)."""

    def __init__(self, r_methods, **kwargs):
        super().__init__(**convert_kwargs("layer", kc.layers.Layer, kwargs))
        object.__setattr__(self, "_r_methods", dict(r_methods))

    def build(self, input_shape):
        self._r_methods["build"](input_shape)
        self.built = True

    def call(self, inputs, mask=None):
        return self._r_methods["call"](inputs, mask)

    def compute_output_shape(self, input_shape):
        shape = self._r_methods["compute_output_shape"](input_shape)
        if isinstance(shape, list) and shape and isinstance(shape[0], list):
            return [shape_arg(s) for s in shape]
        return shape_arg(shape)


def make_r_layer(r_methods, class_name, kwargs):
    cls = type(str(class_name), (RLayer,), {})
    return cls(r_methods, **dict(kwargs or {}))


def add_weight(layer, kwargs):
    kwargs = dict(kwargs)
    if "shape" in kwargs:
        kwargs["shape"] = shape_arg(kwargs["shape"])
    if isinstance(kwargs.get("initializer"), numbers.Real) and not isinstance(kwargs["initializer"], bool):
        kwargs["initializer"] = kc.initializers.Constant(float(kwargs["initializer"]))
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return layer.add_weight(**kwargs)


class RModel(kc.Model):
    """A subclassed model whose layers are made and whose call is given by R (keras_model_custom)."""

    def __init__(self, r_init, name=None):
        super().__init__(name=name)
        object.__setattr__(self, "_r_call", r_init(self))

    def call(self, inputs, training=None):
        return self._r_call(inputs, None)


def make_r_model(r_init, name=None):
    return RModel(r_init, name=name)


# ----------------------------------------------------------------------------- backend workarounds

def k_dot(x, y):
    """numpy.dot semantics. kcompile.backend.dot (ops.dot) fails on operands of up to 2 dimensions
    (it hands IR nodes to matmul, which expects tensors), so those go to ops.matmul, which is the
    same product there (and for an N-D x with a 2-D y)."""
    ndim = len(getattr(y, "shape", np.shape(y)))
    if ndim <= 2:
        return kc.ops.matmul(x, y)
    return kc.backend.dot(x, y)
