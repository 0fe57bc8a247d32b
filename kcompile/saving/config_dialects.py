"""Keras 2 and Keras 3 model/training configs normalised into one canonical form, and back.

The model builder consumes only the canonical form produced here; the writers turn it back into
the exact dialect a Keras version reads (:func:`to_keras3_config`, :func:`to_keras2_config`).

Canonical model config (output of :func:`normalize_model_config`)
==================================================================
Keras 3's structure with the variations of both dialects removed. All values are plain JSON
types (dict, list, str, int, float, bool, None); ``shared_object_id`` and
``__passive_serialization__`` keys are dropped everywhere; legacy ``__tuple__`` values are lists.

Top-level envelope::

    {"class_name": "Sequential" | "Functional",       # Keras 2 "Model" becomes "Functional"
     "module": str | None, "registered_name": str | None,   # preserved as stored (None if absent)
     "config": <Sequential config> | <Functional config>,
     "build_config": dict | None,                      # Keras 3 only, preserved
     "compile_config": <canonical training config> | None,  # Keras 3 `.keras`/to_json only
     "dialect": "keras2" | "keras3",                   # the dialect the input was written in
     "keras_version": str | None, "backend": str | None}    # present in Keras 2 to_json output

Sequential config::

    {"name": str, "trainable": bool, "dtype": str | None,
     "layers": [<layer entry>, ...], "build_input_shape": list | None}

    * If the model's input shape is known from a Keras 2 ``batch_input_shape`` on the first layer
      (old Sequentials without an InputLayer), an InputLayer entry is inserted first, named
      ``<first layer name>_input`` with the first layer's dtype (what Keras 2 itself built).
    * ``input_shape`` / ``input_dim`` keyword arguments of the first layer are kept as
      ``config["input_shape"]`` (a list without the batch dimension; ``input_dim=n`` -> ``[n]``)
      on that layer (Embedding's ``input_dim`` is its vocabulary size and is left alone).
    * Any other ``batch_input_shape`` on a non-Input layer is dropped (the graph defines it).

Functional config::

    {"name": str, "trainable": bool, "dtype": str | None, "layers": [<layer entry>, ...],
     "input_layers": <io structure>, "output_layers": <io structure>}

    <io structure> is a tensor reference, a list of structures or a dict str -> structure.
    A top-level list of length 1 is unwrapped to its single element, as Keras 3's loader does,
    so a one-input model has a single reference and a two-input model a list of two.

Layer entry (one per item of ``layers``)::

    {"class_name": str,                 # "pkg>Name" class names become class "Name" with
     "module": str | None,              #  registered_name "pkg>Name"
     "registered_name": str | None,
     "config": dict,                    # layer kwargs (see below)
     "build_config": dict | None,
     # Functional members only:
     "name": str,                       # == config["name"]
     "inbound_nodes": [<node>, ...],    # one per call of the layer inside this model
     # nested models (class Sequential/Functional) only:
     "compile_config": <canonical training config> | None}

    For a nested model ``config`` is itself a canonical Sequential/Functional config.

Layer config:
    * ``dtype``: the policy *name* as a string ("float32", "mixed_float16", ...) or None; Keras 3
      ``DTypePolicy`` dicts and Keras 2 ``Policy`` dicts are reduced to ``config["name"]``.
      The same holds inside nested layer envelopes (TimeDistributed ``layer``, Bidirectional,
      RNN ``cell``), which are normalised like layer entries without name/inbound_nodes.
    * InputLayer config is exactly ``{"batch_shape": [None|int, ...], "dtype": str,
      "sparse": bool, "ragged": bool, "name": str, "optional": bool}`` (from ``batch_shape``,
      Keras 2 ``batch_input_shape``, or ``shape``/``batch_size``).
    * Keras-2-only keys are rewritten: RNN ``time_major: false`` removed (``true`` refused),
      BatchNormalization ``axis: [k]`` -> ``k``, Embedding ``input_length`` removed.
    * Everything else (units, activation, initializer envelopes, ...) is passed through.

Node (one item of ``inbound_nodes``)::

    {"args": [...], "kwargs": {...}}    # the call, positional and keyword arguments

    Tensors anywhere inside args/kwargs are tensor references::

        {"__keras_tensor__": True, "layer": str, "node_index": int, "tensor_index": int,
         "shape": list | None, "dtype": str | None}

    ``node_index`` always indexes the referenced layer's ``inbound_nodes`` in *this* model
    config (0 = first call); an InputLayer is referenced as node 0. The dialects' offsets for
    nested models (Keras 2 counts a nested model's construction node, Keras 3 does so in
    ``output_layers`` only) are removed. ``shape``/``dtype`` are known for Keras 3 input and
    None for Keras 2. A Keras 2 node ``[[name, n, t, kwargs], ...]`` becomes
    ``{"args": [ref], "kwargs": kwargs}`` for one input and ``{"args": [[ref, ref, ...]],
    "kwargs": kwargs}`` for several (Keras 3's reading of it); Keras 2 constants
    (``["_CONSTANT_VALUE", -1, value, {}]``) appear as the value itself. The graph is validated:
    unknown layers, out-of-range node indices, cycles and unresolvable calls are refused.

Canonical training config (output of :func:`normalize_training_config`)::

    {"optimizer": {"class_name": str, "config": dict, "registered_name": str | None} | None,
     "loss": ..., "loss_weights": ..., "metrics": ..., "weighted_metrics": ...,
     "run_eagerly": bool, "steps_per_execution": int, "jit_compile": bool | str}
     (+ "sample_weight_mode" or "auto_scale_loss" only when the input has a non-null value)

    * Optimizer: Keras 2 class names (``Custom>Adam``, ``keras.optimizers.legacy.Adam``,
      ``adam``) -> Keras 3 class names; ``lr`` -> ``learning_rate``; a non-zero legacy ``decay``
      becomes an ``InverseTimeDecay(lr, decay_steps=1, decay_rate=decay)`` schedule (the same
      formula ``lr / (1 + decay * iterations)``); ``decay: 0``, ``jit_compile``,
      ``is_legacy_optimizer`` are dropped; ``epsilon: null`` -> 1e-7.
    * Loss/metrics keep their structure (str, list, dict per output, nested lists). Built-in
      function envelopes become their name; Keras 2's compiled metric lists
      ``[[{"class_name": "MeanMetricWrapper", ...}], [null]]`` become per-output lists of names
      (``[["mae"], []]``; a single output gives a flat list); loss ``reduction: "auto"`` ->
      ``"sum_over_batch_size"``.

Unknown or missing structural keys raise :class:`~.errors.KerasFileError` naming the key and the
layer. :func:`check_declared_shapes` flags absurd declared sizes.
"""
from __future__ import annotations

import copy
import math

from .errors import KerasFileError, UnsafeFileError
from .json_yaml import check_structure

__all__ = ["normalize_model_config", "normalize_training_config", "normalize_optimizer_config",
           "to_keras3_config", "to_keras2_config", "to_keras3_compile_config",
           "to_keras3_training_config", "to_keras2_training_config", "check_declared_shapes",
           "tensor_ref", "is_tensor_ref", "DEFAULT_SHAPE_LIMIT"]

TENSOR_KEY = "__keras_tensor__"
MODEL_CLASSES = ("Sequential", "Functional", "Model")
DEFAULT_SHAPE_LIMIT = 2 ** 34          # elements in one declared shape / weight

_DROPPED_KEYS = ("shared_object_id", "__passive_serialization__")
_ENVELOPE_KEYS = {"class_name", "config", "module", "registered_name", "build_config",
                  "compile_config", "name", "inbound_nodes"} | set(_DROPPED_KEYS)
_TOP_KEYS = _ENVELOPE_KEYS | {"keras_version", "backend"}
_SEQUENTIAL_KEYS = {"name", "trainable", "dtype", "layers", "build_input_shape"}
_FUNCTIONAL_KEYS = {"name", "trainable", "dtype", "layers", "input_layers", "output_layers"}
_INPUT_KEYS = {"batch_shape", "batch_input_shape", "shape", "batch_size", "input_shape", "dtype",
               "sparse", "ragged", "name", "optional", "input_tensor"}
_RNN_CLASSES = {"LSTM", "GRU", "SimpleRNN", "RNN", "CuDNNLSTM", "CuDNNGRU", "ConvLSTM1D",
                "ConvLSTM2D", "ConvLSTM3D", "LSTMCell", "GRUCell", "SimpleRNNCell"}
_K3_ONLY_LAYER_KEYS = ("quantization_config", "lora_rank", "lora_alpha")

_OPTIMIZERS = {name.lower(): name for name in (
    "SGD", "RMSprop", "Adam", "AdamW", "Adadelta", "Adagrad", "Adamax", "Adafactor", "Nadam",
    "Ftrl", "Lion", "Lamb", "LossScaleOptimizer", "Muon")}
_K3_OPTIMIZER_COMMON = ("name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm",
                        "clipvalue", "use_ema", "ema_momentum", "ema_overwrite_frequency",
                        "loss_scale_factor", "gradient_accumulation_steps")
_K3_ONLY_OPTIMIZER_KEYS = ("loss_scale_factor", "gradient_accumulation_steps")
_TRAINING_KEYS = {"loss", "metrics", "weighted_metrics", "loss_weights", "optimizer_config",
                  "optimizer", "run_eagerly", "steps_per_execution", "jit_compile",
                  "sample_weight_mode", "auto_scale_loss"}
_LOSS_FULL_NAMES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
                    "mape": "mean_absolute_percentage_error",
                    "msle": "mean_squared_logarithmic_error"}
# metric string -> the Keras 2 MeanMetricWrapper `fn` names it resolves to
_METRIC_ALIASES = {
    "accuracy": {"categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy"},
    "acc": {"categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy"},
    "crossentropy": {"categorical_crossentropy", "sparse_categorical_crossentropy",
                     "binary_crossentropy"},
    "ce": {"categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy"},
    "mae": {"mean_absolute_error"}, "mse": {"mean_squared_error"},
    "mape": {"mean_absolute_percentage_error"}, "msle": {"mean_squared_logarithmic_error"},
}
_PLAIN_DTYPES = {"float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
                 "uint8", "uint16", "uint32", "uint64", "bool", "string", "complex64",
                 "complex128"}


# ------------------------------------------------------------------------------------ helpers

def tensor_ref(layer, node_index=0, tensor_index=0, shape=None, dtype=None) -> dict:
    """A canonical tensor reference (see the module docstring)."""
    return {TENSOR_KEY: True, "layer": layer, "node_index": node_index,
            "tensor_index": tensor_index, "shape": shape, "dtype": dtype}


def is_tensor_ref(value) -> bool:
    return isinstance(value, dict) and value.get(TENSOR_KEY) is True


def _fail(msg, source, cls=KerasFileError):
    raise cls(msg, source)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clean(obj):
    """Deep copy without shared_object_id/__passive_serialization__, __tuple__ -> list."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__tuple__" and set(obj) == {"class_name", "items"}:
            return _clean(obj["items"])
        return {k: _clean(v) for k, v in obj.items() if k not in _DROPPED_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _policy_name(value, where, source):
    """A dtype value (str, None, or a Policy/DTypePolicy envelope) reduced to its name."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        cfg = value.get("config")
        if isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
            return cfg["name"]
        if isinstance(value.get("name"), str):
            return value["name"]
    _fail(f"{where}: unreadable dtype {value!r}", source)


def _policy_envelope(name):
    """Keras 3's DTypePolicy envelope for a policy name (None stays None)."""
    if name is None:
        return None
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name},
            "registered_name": None}


def _shape_list(value, where, key, source, allow_minus_one=False):
    if not isinstance(value, list):
        _fail(f"{where}: '{key}' must be a list of dimensions, got {value!r}", source)
    out = []
    for dim in value:
        if dim is None:
            out.append(None)
        elif _is_int(dim) and (dim >= 0 or (allow_minus_one and dim == -1)):
            out.append(dim)
        elif isinstance(dim, float) and dim.is_integer() and 0 <= dim < 2 ** 62:
            out.append(int(dim))
        else:
            _fail(f"{where}: '{key}' has an invalid dimension {dim!r}", source)
    return out


def _split_registered(class_name, registered_name):
    if isinstance(class_name, str) and ">" in class_name:
        return class_name.split(">")[-1], registered_name or class_name
    return class_name, registered_name


def _looks_like_layer_envelope(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("class_name"), str)
            and isinstance(value.get("config"), dict) and "name" in value["config"]
            and ("dtype" in value["config"] or "trainable" in value["config"]))


def _layer_label(entry):
    if isinstance(entry, dict):
        cfg = entry.get("config")
        name = entry.get("name")
        if name is None and isinstance(cfg, dict):
            name = cfg.get("name")
        return f"layer {name!r} ({entry.get('class_name')})"
    return "layer entry"


# ----------------------------------------------------------------------------- model configs

def normalize_model_config(config: dict, *, source=None, shape_limit=DEFAULT_SHAPE_LIMIT) -> dict:
    """Normalise a Keras 2 or Keras 3 model config (the dict stored in `model_config`,
    `config.json`, `to_json()` or YAML) into the canonical form of the module docstring.

    `source` names the file in error messages. Declared shapes/sizes above `shape_limit`
    elements are refused (see :func:`check_declared_shapes`)."""
    if not isinstance(config, dict):
        _fail(f"model config must be a dict, got {type(config).__name__}", source)
    check_structure(config, source)
    check_declared_shapes(config, shape_limit, source=source)
    config = _clean(config)
    unknown = sorted(set(config) - _TOP_KEYS, key=str)   # YAML keys need not be strings
    if unknown:
        _fail(f"model config: unknown top-level key {unknown[0]!r}", source)
    out = _normalize_model_envelope(config, source)
    out["dialect"] = _detect_dialect(config)
    if out["dialect"] == "keras2":
        _apply_keras2_semantics(out, source)
    out["keras_version"] = config.get("keras_version")
    out["backend"] = config.get("backend")
    return out


def _detect_dialect(raw) -> str:
    """'keras3' if the config uses Keras 3 constructs (dict nodes, batch_shape, DTypePolicy)."""
    stack = [raw]
    seen_k2 = False
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "inbound_nodes" in value and isinstance(value["inbound_nodes"], list):
                for node in value["inbound_nodes"]:
                    if isinstance(node, dict):
                        return "keras3"
                    if isinstance(node, list):
                        seen_k2 = True
            if "batch_shape" in value or value.get("class_name") == "DTypePolicy":
                return "keras3"
            if "batch_input_shape" in value:
                seen_k2 = True
            stack.extend(v for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, (dict, list)))
    return "keras2" if seen_k2 else "keras3"


def _normalize_model_envelope(env, source):
    class_name = env.get("class_name")
    if class_name not in MODEL_CLASSES:
        if "class_name" not in env:
            _fail("model config: missing key 'class_name'", source)
        _fail(f"model config: class {class_name!r} is not Sequential/Functional/Model "
              "(subclassed models cannot be rebuilt from a config)", source)
    if "config" not in env:
        _fail(f"model config ({class_name}): missing key 'config'", source)
    compile_config = env.get("compile_config")
    if compile_config:
        compile_config = normalize_training_config(compile_config, source=source)
    else:
        compile_config = None
    if class_name == "Sequential":
        cfg = _normalize_sequential(env["config"], source)
    else:
        cfg = _normalize_functional(env["config"], source)
        class_name = "Functional"
    build_config = env.get("build_config")
    if build_config is not None and not isinstance(build_config, dict):
        _fail(f"model {cfg['name']!r}: 'build_config' must be a dict", source)
    return {"class_name": class_name, "module": env.get("module"),
            "registered_name": env.get("registered_name"), "config": cfg,
            "build_config": build_config, "compile_config": compile_config}


def _model_common(cfg, allowed, kind, source, default_name):
    unknown = sorted(set(cfg) - allowed, key=str)
    name = cfg.get("name", default_name)
    if unknown:
        _fail(f"{kind} model {name!r}: unknown config key {unknown[0]!r}", source)
    if not isinstance(name, str) or not name:
        _fail(f"{kind} model: 'name' must be a non-empty string, got {name!r}", source)
    trainable = cfg.get("trainable", True)
    if not isinstance(trainable, bool):
        _fail(f"{kind} model {name!r}: 'trainable' must be true/false", source)
    if "layers" not in cfg:
        _fail(f"{kind} model {name!r}: missing key 'layers'", source)
    if not isinstance(cfg["layers"], list):
        _fail(f"{kind} model {name!r}: 'layers' must be a list", source)
    dtype = _policy_name(cfg.get("dtype"), f"{kind} model {name!r}", source)
    return name, trainable, dtype


def _normalize_sequential(cfg, source):
    if isinstance(cfg, list):                       # Keras <= 2.2 legacy: bare list of layers
        cfg = {"layers": cfg}
    if not isinstance(cfg, dict):
        _fail("Sequential config must be a dict or a list of layers", source)
    name, trainable, dtype = _model_common(cfg, _SEQUENTIAL_KEYS, "Sequential", source, "sequential")
    build_input_shape = cfg.get("build_input_shape")
    if build_input_shape is not None:
        build_input_shape = _clean_nested_shape(build_input_shape, f"Sequential {name!r}",
                                                "build_input_shape", source)
    layers = []
    raw_layers = cfg["layers"]
    for index, entry in enumerate(raw_layers):
        if not isinstance(entry, dict):
            _fail(f"Sequential {name!r}: layer #{index} is not a dict", source)
        for key in ("inbound_nodes",):
            if key in entry:
                _fail(f"Sequential {name!r}: {_layer_label(entry)} has unexpected key {key!r}",
                      source)
        entry = dict(entry)
        if "name" in entry:                         # not written by Keras; tolerated if consistent
            entry_name = entry.pop("name")
            if not isinstance(entry.get("config"), dict) or \
                    entry["config"].get("name", entry_name) != entry_name:
                _fail(f"Sequential {name!r}: {_layer_label(entry)} entry name {entry_name!r} "
                      "differs from its config name", source)
        layer_cfg = entry.get("config")
        first_real = index == 0 or (index == 1 and _is_input_entry(raw_layers[0]))
        synth_input = None
        if isinstance(layer_cfg, dict) and not _is_input_entry(entry):
            layer_cfg = dict(layer_cfg)
            bis = layer_cfg.pop("batch_input_shape", None)
            input_dtype = layer_cfg.pop("input_dtype", None)
            if index == 0:
                if bis is not None:
                    shape = _shape_list(bis, _layer_label(entry), "batch_input_shape", source)
                    lname = layer_cfg.get("name") or "layer"
                    dt = input_dtype or _policy_name(layer_cfg.get("dtype"), _layer_label(entry),
                                                     source) or "float32"
                    synth_input = {"class_name": "InputLayer", "config": {
                        "batch_shape": shape, "dtype": dt, "sparse": False, "ragged": False,
                        "name": f"{lname}_input", "optional": False}}
                _keep_input_shape_kwargs(entry.get("class_name"), layer_cfg, entry, source)
            elif first_real:
                _keep_input_shape_kwargs(entry.get("class_name"), layer_cfg, entry, source)
            entry["config"] = layer_cfg
        if synth_input is not None:
            layers.append(_normalize_layer_entry(synth_input, source, functional=False))
        layers.append(_normalize_layer_entry(entry, source, functional=False))
    seen = set()
    for entry in layers:
        lname = entry["config"].get("name")
        if lname in seen:
            _fail(f"Sequential {name!r}: duplicate layer name {lname!r}", source)
        seen.add(lname)
    return {"name": name, "trainable": trainable, "dtype": dtype, "layers": layers,
            "build_input_shape": build_input_shape}


def _keep_input_shape_kwargs(class_name, layer_cfg, entry, source):
    """First Sequential layer: `input_shape` kept, `input_dim=n` -> `input_shape=[n]`."""
    if "input_shape" in layer_cfg and layer_cfg["input_shape"] is not None:
        layer_cfg["input_shape"] = _shape_list(layer_cfg["input_shape"], _layer_label(entry),
                                               "input_shape", source)
    elif "input_dim" in layer_cfg and class_name != "Embedding":
        dim = layer_cfg.pop("input_dim")
        if dim is not None:
            layer_cfg["input_shape"] = _shape_list([dim], _layer_label(entry), "input_dim", source)


def _clean_nested_shape(value, where, key, source):
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [_shape_list(v, where, key, source) for v in value]
    if isinstance(value, dict):
        return {k: _clean_nested_shape(v, where, key, source) for k, v in value.items()}
    return _shape_list(value, where, key, source)


def _is_input_entry(entry) -> bool:
    return isinstance(entry, dict) and entry.get("class_name") == "InputLayer"


def _normalize_layer_entry(entry, source, *, functional):
    """Normalise one layer entry (without its inbound_nodes, which the caller converts)."""
    label = _layer_label(entry)
    if not isinstance(entry, dict):
        _fail(f"{label}: a layer entry must be a dict", source)
    unknown = sorted(set(entry) - _ENVELOPE_KEYS, key=str)
    if unknown:
        _fail(f"{label}: unknown key {unknown[0]!r}", source)
    if not isinstance(entry.get("class_name"), str) or not entry["class_name"]:
        _fail(f"{label}: missing key 'class_name'", source)
    if "config" not in entry:
        _fail(f"{label}: missing key 'config'", source)
    class_name, registered = _split_registered(entry["class_name"], entry.get("registered_name"))
    build_config = entry.get("build_config")
    if build_config is not None and not isinstance(build_config, dict):
        _fail(f"{label}: 'build_config' must be a dict", source)
    if class_name in MODEL_CLASSES:
        nested = _normalize_model_envelope(
            {k: v for k, v in entry.items() if k not in ("name", "inbound_nodes")}, source)
        out = nested
        out["registered_name"] = registered
        layer_name = nested["config"]["name"]
    else:
        if not isinstance(entry["config"], dict):
            _fail(f"{label}: 'config' must be a dict", source)
        cfg = _normalize_layer_config(class_name, entry["config"], label, source)
        out = {"class_name": class_name, "module": entry.get("module"),
               "registered_name": registered, "config": cfg, "build_config": build_config}
        layer_name = cfg.get("name")
    if functional:
        name = entry.get("name", layer_name)
        if not isinstance(name, str) or not name:
            _fail(f"{label}: missing key 'name'", source)
        if layer_name is None and class_name not in MODEL_CLASSES:
            out["config"]["name"] = name
        elif layer_name != name:
            _fail(f"{label}: entry name {name!r} differs from config name {layer_name!r}", source)
        out["name"] = name
    elif not isinstance(layer_name, str) or not layer_name:
        _fail(f"{label}: missing key 'name' in its config", source)
    return out


def _normalize_layer_config(class_name, cfg, label, source):
    cfg = dict(cfg)
    if "name" in cfg and not isinstance(cfg["name"], str):
        _fail(f"{label}: 'name' must be a string", source)
    if class_name == "InputLayer":
        return _normalize_input_config(cfg, label, source)
    if "dtype" in cfg:
        cfg["dtype"] = _policy_name(cfg["dtype"], label, source)
    cfg.pop("batch_input_shape", None)
    cfg.pop("input_dtype", None)
    if class_name in _RNN_CLASSES and "time_major" in cfg:
        if cfg.pop("time_major"):
            _fail(f"{label}: time_major=True is not supported", source)
    if class_name == "BatchNormalization":
        axis = cfg.get("axis")
        if isinstance(axis, list) and len(axis) == 1 and _is_int(axis[0]):
            cfg["axis"] = axis[0]
    if class_name == "Embedding":
        cfg.pop("input_length", None)
    for key, value in list(cfg.items()):
        if _looks_like_layer_envelope(value):
            cfg[key] = _normalize_inner_layer(value, f"{label}.{key}", source)
        elif isinstance(value, list) and value and all(_looks_like_layer_envelope(v) for v in value):
            cfg[key] = [_normalize_inner_layer(v, f"{label}.{key}", source) for v in value]
    return cfg


def _normalize_inner_layer(env, label, source):
    unknown = sorted(set(env) - _ENVELOPE_KEYS, key=str)
    if unknown:
        _fail(f"{label}: unknown key {unknown[0]!r}", source)
    class_name, registered = _split_registered(env["class_name"], env.get("registered_name"))
    if class_name in MODEL_CLASSES:
        out = _normalize_model_envelope(env, source)
        return out
    return {"class_name": class_name, "module": env.get("module"), "registered_name": registered,
            "config": _normalize_layer_config(class_name, env["config"], label, source),
            "build_config": env.get("build_config")}


def _normalize_input_config(cfg, label, source):
    unknown = sorted(set(cfg) - _INPUT_KEYS, key=str)
    if unknown:
        _fail(f"{label}: unknown InputLayer key {unknown[0]!r}", source)
    if cfg.get("input_tensor") is not None:
        _fail(f"{label}: InputLayer with 'input_tensor' cannot be loaded", source)
    if cfg.get("batch_shape") is not None:
        shape = _shape_list(cfg["batch_shape"], label, "batch_shape", source)
    elif cfg.get("batch_input_shape") is not None:
        shape = _shape_list(cfg["batch_input_shape"], label, "batch_input_shape", source)
    elif cfg.get("shape") is not None or cfg.get("input_shape") is not None:
        key = "shape" if cfg.get("shape") is not None else "input_shape"
        batch = cfg.get("batch_size")
        if batch is not None and not _is_int(batch):
            _fail(f"{label}: invalid batch_size {batch!r}", source)
        shape = [batch] + _shape_list(cfg[key], label, key, source)
    else:
        _fail(f"{label}: InputLayer has no 'batch_shape' (or 'batch_input_shape'/'shape')", source)
    dtype = _policy_name(cfg.get("dtype"), label, source) or "float32"
    out = {"batch_shape": shape, "dtype": dtype}
    for key in ("sparse", "ragged", "optional"):
        value = cfg.get(key)
        if value is None:
            value = False
        if not isinstance(value, bool):
            _fail(f"{label}: InputLayer '{key}' must be true/false", source)
        out[key] = value
    name = cfg.get("name")
    if name is not None and not isinstance(name, str):
        _fail(f"{label}: InputLayer 'name' must be a string", source)
    out = {"batch_shape": out["batch_shape"], "dtype": out["dtype"], "sparse": out["sparse"],
           "ragged": out["ragged"], "name": name, "optional": out["optional"]}
    return out


# ------------------------------------------------------------ each version's own semantics

# Layer arguments renamed between tf-keras 2.x and Keras 3 (same meaning): class -> {K2: K3}.
_KERAS2_RENAMED_ARGS = {"LeakyReLU": {"alpha": "negative_slope"}}
# Keras 2 arguments Keras 3 dropped, with the value(s) that mean "as Keras 3 does"; any other
# value is refused (naming the argument), since kcompile would silently compute something else.
_KERAS2_DROPPED_ARGS = {
    "Attention": {"causal": (False,)},
    "IntegerLookup": {"vocabulary_size": None},   # informational (len(vocabulary)), recomputed
    "StringLookup": {"vocabulary_size": None},
    "BatchNormalization": {"renorm": (False,), "renorm_clipping": (None,), "renorm_momentum": None,
                           "virtual_batch_size": (None,), "adjustment": (None,), "fused": None},
}
# Keras 2 base-class arguments Keras 2 writes into configs of classes that do not use them (the
# SeparableConv/DepthwiseConv configs carry the base convolution's), with their inert values.
_KERAS2_INERT_ARGS = {
    "SeparableConv1D": {"kernel_initializer": None, "kernel_regularizer": None, "kernel_constraint": None,
                        "groups": (1,)},
    "SeparableConv2D": {"kernel_initializer": None, "kernel_regularizer": None, "kernel_constraint": None,
                        "groups": (1,)},
    "DepthwiseConv1D": {"filters": None, "kernel_initializer": None, "kernel_regularizer": None,
                        "kernel_constraint": None, "groups": None},
    "DepthwiseConv2D": {"filters": None, "kernel_initializer": None, "kernel_regularizer": None,
                        "kernel_constraint": None, "groups": None},
}


def _keras2_activation(value):
    """A Keras 2 activation value -> the kcompile name with Keras 2's meaning."""
    from ..activations import KERAS2_NAMES
    if isinstance(value, str):
        return KERAS2_NAMES.get(value, value)
    if isinstance(value, dict) and value.get("class_name") == "function" and isinstance(value.get("config"), str):
        return dict(value, config=KERAS2_NAMES.get(value["config"], value["config"]))
    return value


def _apply_keras2_semantics(model, source):
    """Rewrite a canonical config read from a Keras 2 file so that it means, under kcompile's
    (Keras 3) semantics, what tf-keras computed: activations whose formula changed get the
    kcompile name of the Keras 2 formula, renamed arguments get their Keras 3 names, and Keras 2
    arguments Keras 3 dropped are removed when inert and refused otherwise."""
    for entry in model["config"]["layers"]:
        if entry["class_name"] in MODEL_CLASSES:
            _apply_keras2_semantics(entry, source)
        else:
            _keras2_layer_semantics(entry, source)


def _keras2_layer_semantics(entry, source):
    class_name, cfg = entry["class_name"], entry["config"]
    label = _layer_label(entry)
    for key in ("activation", "recurrent_activation"):
        if key in cfg:
            cfg[key] = _keras2_activation(cfg[key])
    for old, new in _KERAS2_RENAMED_ARGS.get(class_name, {}).items():
        if old in cfg:
            value = cfg.pop(old)
            cfg.setdefault(new, value)
    for table in (_KERAS2_DROPPED_ARGS, _KERAS2_INERT_ARGS):
        for key, inert in table.get(class_name, {}).items():
            if key not in cfg:
                continue
            value = cfg.pop(key)
            if inert is not None and value not in inert:
                _fail(f"{label}: the Keras 2 argument {key}={value!r} is not supported", source)
    if class_name == "ThresholdedReLU":           # Keras 2 only: x if x > theta else 0
        theta = cfg.pop("theta", 1.0)
        entry["class_name"], entry["registered_name"] = "ReLU", None
        cfg.update({"max_value": None, "negative_slope": 0.0, "threshold": theta})
    for key, value in list(cfg.items()):
        if isinstance(value, dict) and isinstance(value.get("class_name"), str) and isinstance(value.get("config"), dict) \
                and "name" in value["config"]:
            if value["class_name"] in MODEL_CLASSES:
                _apply_keras2_semantics(value, source)
            else:
                _keras2_layer_semantics(value, source)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("class_name"), str) \
                        and isinstance(item.get("config"), dict) and "name" in item["config"]:
                    _keras2_layer_semantics(item, source)


def _keras2_activation_out(value):
    """kcompile activation names with Keras 2 meaning -> the Keras 2 name (writing Keras 2)."""
    from ..activations import KERAS2_NAMES
    back = {v: k for k, v in KERAS2_NAMES.items()}
    if isinstance(value, str):
        return back.get(value, value)
    return value


def _keras3_activation_out(value, where):
    from ..activations import KERAS2_NAMES
    name = value.get("config") if isinstance(value, dict) and value.get("class_name") == "function" else value
    if isinstance(name, str) and name in KERAS2_NAMES.values():
        raise KerasFileError(f"{where}: activation {name!r} (the Keras 2 formula) has no Keras 3 "
                             "equivalent; save as .h5 in the Keras 2 dialect instead")
    return value


# -------------------------------------------------------------------------- Functional graphs

def _normalize_functional(cfg, source):
    if not isinstance(cfg, dict):
        _fail("Functional config must be a dict", source)
    name, trainable, dtype = _model_common(cfg, _FUNCTIONAL_KEYS, "Functional", source, "model")
    for key in ("input_layers", "output_layers"):
        if key not in cfg:
            _fail(f"Functional model {name!r}: missing key {key!r}", source)
    raw_layers = cfg["layers"]
    entries = []
    raw_nodes = []
    for index, raw in enumerate(raw_layers):
        if not isinstance(raw, dict):
            _fail(f"Functional model {name!r}: layer #{index} is not a dict", source)
        if "inbound_nodes" not in raw:
            _fail(f"Functional model {name!r}: {_layer_label(raw)} is missing key 'inbound_nodes'",
                  source)
        nodes = raw["inbound_nodes"]
        if not isinstance(nodes, list):
            _fail(f"{_layer_label(raw)}: 'inbound_nodes' must be a list", source)
        entries.append(_normalize_layer_entry(raw, source, functional=True))
        raw_nodes.append(nodes)
    by_name = {}
    for entry in entries:
        if entry["name"] in by_name:
            _fail(f"Functional model {name!r}: duplicate layer name {entry['name']!r}", source)
        by_name[entry["name"]] = entry
    kinds = {type(node) for nodes in raw_nodes for node in nodes}
    if not kinds <= {list, dict}:
        _fail(f"Functional model {name!r}: a node is neither a list (Keras 2) nor a dict (Keras 3)",
              source)
    if kinds == {list, dict}:
        _fail(f"Functional model {name!r}: mixes Keras 2 and Keras 3 node formats", source)
    dialect = "keras2" if kinds == {list} else "keras3"
    graph = _Graph(name, entries, raw_nodes, source)
    shifts = graph.keras2_shifts(cfg) if dialect == "keras2" else {}
    for entry, nodes in zip(entries, raw_nodes):
        if entry["class_name"] == "InputLayer" and nodes:
            _fail(f"layer {entry['name']!r} (InputLayer): an InputLayer cannot have inbound nodes",
                  source)
        if dialect == "keras2":
            entry["inbound_nodes"] = [graph.keras2_node(node, entry, shifts) for node in nodes]
        else:
            entry["inbound_nodes"] = [graph.keras3_node(node, entry) for node in nodes]
    inputs = graph.io_structure(cfg["input_layers"], "input_layers", dialect, shifts)
    outputs = graph.io_structure(cfg["output_layers"], "output_layers", dialect, shifts)
    for ref in _iter_refs(inputs):
        if by_name[ref["layer"]]["class_name"] != "InputLayer":
            _fail(f"Functional model {name!r}: input {ref['layer']!r} is not an InputLayer", source)
    if not list(_iter_refs(inputs)):
        _fail(f"Functional model {name!r}: 'input_layers' is empty", source)
    if not list(_iter_refs(outputs)):
        _fail(f"Functional model {name!r}: 'output_layers' is empty", source)
    graph.check_resolvable()
    return {"name": name, "trainable": trainable, "dtype": dtype, "layers": entries,
            "input_layers": inputs, "output_layers": outputs}


def _iter_refs(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if is_tensor_ref(item):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _is_triple(value) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and _is_int(value[1]) and _is_int(value[2]))


class _Graph:
    """Reference resolution and validation for one Functional config."""

    def __init__(self, model_name, entries, raw_nodes, source):
        self.model_name = model_name
        self.source = source
        self.entries = {e["name"]: e for e in entries}
        self.node_counts = {e["name"]: (1 if e["class_name"] == "InputLayer" else len(n))
                            for e, n in zip(entries, raw_nodes)}
        self.raw_nodes = {e["name"]: n for e, n in zip(entries, raw_nodes)}

    def _where(self, entry):
        return f"layer {entry['name']!r} ({entry['class_name']}) in model {self.model_name!r}"

    def keras2_shifts(self, cfg):
        """Keras 2 numbers a nested model's calls from 1 when it owns a construction node
        (Functional/Model always, Sequential when it has an input); confirmed against the
        references actually used."""
        used = {}
        for nodes in self.raw_nodes.values():
            for node in nodes:
                for item in node if isinstance(node, list) else []:
                    if isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str) \
                            and _is_int(item[1]):
                        used.setdefault(item[0], []).append(item[1])
        for key in ("input_layers", "output_layers"):
            stack = [cfg.get(key)]
            while stack:
                value = stack.pop()
                if _is_triple(value):
                    used.setdefault(value[0], []).append(value[1])
                elif isinstance(value, dict):
                    stack.extend(value.values())
                elif isinstance(value, list):
                    stack.extend(value)
        shifts = {}
        for name, entry in self.entries.items():
            if entry["class_name"] not in MODEL_CLASSES:
                continue
            if entry["class_name"] == "Functional":
                shift = 1
            else:
                layers = entry["config"]["layers"]
                shift = 1 if layers and layers[0]["class_name"] == "InputLayer" else 0
            indices = used.get(name, [])
            if indices and min(indices) == 0:
                shift = 0
            elif indices and max(indices) >= self.node_counts[name]:
                shift = 1
            shifts[name] = shift
        return shifts

    def ref(self, layer, node_index, tensor_index, where, shape=None, dtype=None, shift=0):
        if not isinstance(layer, str) or layer not in self.entries:
            _fail(f"{where}: references unknown layer {layer!r}", self.source)
        if not _is_int(node_index) or not _is_int(tensor_index):
            _fail(f"{where}: invalid tensor reference {[layer, node_index, tensor_index]!r}",
                  self.source)
        index = node_index - shift
        if index < 0 or index >= self.node_counts[layer] or tensor_index < 0:
            _fail(f"{where}: reference to {layer!r} node {node_index} tensor {tensor_index} is out "
                  f"of range (the layer has {self.node_counts[layer]} node(s) in this model)",
                  self.source)
        if shape is not None:
            shape = _shape_list(shape, where, "shape", self.source)
        if dtype is not None and not isinstance(dtype, str):
            _fail(f"{where}: tensor dtype must be a string", self.source)
        return tensor_ref(layer, index, tensor_index, shape, dtype)

    def keras2_node(self, node, entry, shifts):
        where = self._where(entry)
        if not isinstance(node, list):
            _fail(f"{where}: a Keras 2 node must be a list", self.source)
        items = []
        kwargs = {}
        for item in node:
            if not isinstance(item, list) or len(item) not in (3, 4):
                _fail(f"{where}: invalid Keras 2 node entry {item!r}", self.source)
            if len(item) == 4:
                if not isinstance(item[3], dict):
                    _fail(f"{where}: node kwargs must be a dict", self.source)
                kwargs = self._keras2_kwargs(item[3], where, shifts)
            if item[0] == "_CONSTANT_VALUE" and item[1] == -1:
                items.append(item[2])
                continue
            if not isinstance(item[0], str):
                _fail(f"{where}: invalid Keras 2 node entry {item!r}", self.source)
            items.append(self.ref(item[0], item[1], item[2], where,
                                  shift=shifts.get(item[0], 0)))
        if not items:
            return {"args": [], "kwargs": kwargs}
        return {"args": [items[0] if len(items) == 1 else items], "kwargs": kwargs}

    def _keras2_kwargs(self, value, where, shifts):
        if _is_triple(value) and value[0] in self.entries:
            return self.ref(value[0], value[1], value[2], where, shift=shifts.get(value[0], 0))
        if isinstance(value, dict):
            return {k: self._keras2_kwargs(v, where, shifts) for k, v in value.items()}
        if isinstance(value, list):
            return [self._keras2_kwargs(v, where, shifts) for v in value]
        return value

    def keras3_node(self, node, entry):
        where = self._where(entry)
        unknown = sorted(set(node) - {"args", "kwargs"}, key=str)
        if unknown:
            _fail(f"{where}: unknown node key {unknown[0]!r}", self.source)
        args = node.get("args", [])
        kwargs = node.get("kwargs", {})
        if not isinstance(args, list):
            _fail(f"{where}: node 'args' must be a list", self.source)
        if not isinstance(kwargs, dict):
            _fail(f"{where}: node 'kwargs' must be a dict", self.source)
        return {"args": self._keras3_value(args, where), "kwargs": self._keras3_value(kwargs, where)}

    def _keras3_value(self, value, where):
        if isinstance(value, dict):
            if value.get("class_name") == TENSOR_KEY:
                cfg = value.get("config")
                if not isinstance(cfg, dict) or "keras_history" not in cfg:
                    _fail(f"{where}: __keras_tensor__ without 'keras_history'", self.source)
                history = cfg["keras_history"]
                if not isinstance(history, list) or len(history) != 3:
                    _fail(f"{where}: invalid keras_history {history!r}", self.source)
                return self.ref(history[0], history[1], history[2], where,
                                shape=cfg.get("shape"), dtype=cfg.get("dtype"))
            return {k: self._keras3_value(v, where) for k, v in value.items()}
        if isinstance(value, list):
            return [self._keras3_value(v, where) for v in value]
        return value

    def io_structure(self, value, key, dialect, shifts):
        where = f"Functional model {self.model_name!r} {key}"

        def convert(item):
            if _is_triple(item):
                if dialect == "keras2":
                    shift = shifts.get(item[0], 0)
                else:
                    entry = self.entries.get(item[0])
                    shift = 1 if entry is not None and entry["class_name"] == "Functional" else 0
                return self.ref(item[0], item[1], item[2], where, shift=shift)
            if isinstance(item, dict):
                return {k: convert(v) for k, v in item.items()}
            if isinstance(item, list):
                return [convert(v) for v in item]
            _fail(f"{where}: invalid entry {item!r}", self.source)

        out = convert(value)
        if isinstance(out, list) and len(out) == 1:
            out = out[0]
        return out

    def check_resolvable(self):
        """Every call must be computable: Kahn's algorithm over (layer, node) pairs, where a
        node depends on the nodes its inputs reference and on the layer's previous node."""
        pending = {}
        dependents = {}
        ready = []
        for name, entry in self.entries.items():
            nodes = entry["inbound_nodes"]
            for index, node in enumerate(nodes):
                deps = set()
                for ref in _iter_refs(node):
                    if self.entries[ref["layer"]]["class_name"] != "InputLayer":
                        deps.add((ref["layer"], ref["node_index"]))
                if index > 0:
                    deps.add((name, index - 1))
                key = (name, index)
                if key in deps:
                    _fail(f"{self._where(entry)}: node {index} consumes its own output",
                          self.source)
                pending[key] = len(deps)
                for dep in deps:
                    dependents.setdefault(dep, []).append(key)
                if not deps:
                    ready.append(key)
        done = 0
        while ready:
            key = ready.pop()
            done += 1
            for child in dependents.get(key, ()):
                pending[child] -= 1
                if pending[child] == 0:
                    ready.append(child)
        if done != len(pending):
            stuck = sorted(k for k, v in pending.items() if v > 0)[0]
            _fail(f"{self._where(self.entries[stuck[0]])}: node {stuck[1]} can never be computed "
                  "(cycle in the layer graph)", self.source)


# -------------------------------------------------------------------------- training configs

def normalize_training_config(tc: dict, *, source=None) -> dict:
    """Normalise a Keras 2/3 `training_config` (h5) or Keras 3 `compile_config` (`.keras`) into
    the canonical training config of the module docstring."""
    if not isinstance(tc, dict):
        _fail(f"training config must be a dict, got {type(tc).__name__}", source)
    check_structure(tc, source)
    tc = _clean(tc)
    unknown = sorted(set(tc) - _TRAINING_KEYS, key=str)
    if unknown:
        _fail(f"training config: unknown key {unknown[0]!r}", source)
    if "optimizer_config" in tc and "optimizer" in tc:
        _fail("training config has both 'optimizer' and 'optimizer_config'", source)
    opt = tc.get("optimizer_config", tc.get("optimizer"))
    out = {"optimizer": None if opt is None else normalize_optimizer_config(opt, source=source),
           "loss": _normalize_loss(tc.get("loss"), source),
           "loss_weights": _normalize_loss_weights(tc.get("loss_weights"), source),
           "metrics": _normalize_metrics(tc.get("metrics"), source),
           "weighted_metrics": _normalize_metrics(tc.get("weighted_metrics"), source),
           "run_eagerly": bool(tc.get("run_eagerly") or False),
           "steps_per_execution": _default(tc.get("steps_per_execution"), 1),
           "jit_compile": _default(tc.get("jit_compile"), "auto")}
    if not _is_int(out["steps_per_execution"]) or out["steps_per_execution"] < 1:
        _fail(f"training config: invalid steps_per_execution {out['steps_per_execution']!r}", source)
    for key in ("sample_weight_mode", "auto_scale_loss"):
        if tc.get(key) is not None:
            out[key] = tc[key]
    return out


def _default(value, default):
    return default if value is None else value


def normalize_optimizer_config(opt, *, source=None) -> dict:
    """Any Keras optimizer description (envelope with class_name/config, or a name string)
    -> ``{"class_name", "config", "registered_name"}`` with Keras 3 names and keys."""
    if isinstance(opt, str):
        opt = {"class_name": opt, "config": {}}
    if not isinstance(opt, dict) or not isinstance(opt.get("class_name"), str):
        _fail("optimizer config: missing key 'class_name'", source)
    cfg = opt.get("config", {})
    if not isinstance(cfg, dict):
        _fail("optimizer config: 'config' must be a dict", source)
    raw_class = opt["class_name"]
    base = raw_class.split(">")[-1].split(".")[-1]
    registered = opt.get("registered_name")
    class_name = _OPTIMIZERS.get(base.lower())
    if class_name is None:
        class_name = base
        if ">" in raw_class:
            registered = raw_class
    else:
        registered = None
    cfg = dict(cfg)
    label = f"optimizer {class_name}"
    if "lr" in cfg:
        lr = cfg.pop("lr")
        cfg.setdefault("learning_rate", lr)
    decay = cfg.pop("decay", 0.0)
    if decay is None:
        decay = 0.0
    if not isinstance(decay, (int, float)) or isinstance(decay, bool) or decay < 0:
        _fail(f"{label}: invalid decay {decay!r}", source)
    if decay:
        lr = cfg.get("learning_rate", 0.001)
        if not isinstance(lr, (int, float)) or isinstance(lr, bool):
            _fail(f"{label}: legacy 'decay' combined with a learning-rate schedule is not supported",
                  source)
        cfg["learning_rate"] = {
            "module": "keras.optimizers.schedules", "class_name": "InverseTimeDecay",
            "config": {"initial_learning_rate": float(lr), "decay_steps": 1,
                       "decay_rate": float(decay), "staircase": False, "name": "InverseTimeDecay"},
            "registered_name": None}
    for key in ("jit_compile", "is_legacy_optimizer"):
        cfg.pop(key, None)
    if "epsilon" in cfg and cfg["epsilon"] is None:
        cfg["epsilon"] = 1e-7
    if class_name == "Nadam" and "schedule_decay" in cfg:
        value = cfg.pop("schedule_decay")
        if not isinstance(value, (int, float)) or abs(value - 0.004) > 1e-9:
            _fail(f"{label}: schedule_decay={value!r} is not supported (Keras 3 fixes 0.004)",
                  source)
    lr = cfg.get("learning_rate")
    if isinstance(lr, dict):
        if not isinstance(lr.get("class_name"), str):
            _fail(f"{label}: learning-rate schedule without 'class_name'", source)
    elif lr is not None and (not isinstance(lr, (int, float)) or isinstance(lr, bool)
                             or not math.isfinite(lr) or lr < 0):
        _fail(f"{label}: invalid learning_rate {lr!r}", source)
    return {"class_name": class_name, "config": cfg, "registered_name": registered}


def _function_name(env):
    """Keras 3 function envelope for a built-in -> its name, else None."""
    if (isinstance(env, dict) and env.get("class_name") == "function"
            and isinstance(env.get("config"), str)):
        return env["config"]
    return None


def _normalize_loss(loss, source):
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, list):
        return [_normalize_loss(v, source) for v in loss]
    if isinstance(loss, dict):
        name = _function_name(loss)
        if name is not None:
            return name
        if isinstance(loss.get("class_name"), str) and "config" in loss:
            env = dict(loss)
            cfg = env.get("config")
            if isinstance(cfg, dict) and cfg.get("reduction") == "auto":
                env["config"] = dict(cfg, reduction="sum_over_batch_size")
            return env
        return {k: _normalize_loss(v, source) for k, v in loss.items()}
    _fail(f"training config: unreadable loss {loss!r}", source)


def _normalize_loss_weights(weights, source):
    def check(value):
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, list):
            return [check(v) for v in value]
        if isinstance(value, dict):
            return {k: check(v) for k, v in value.items()}
        _fail(f"training config: invalid loss weight {value!r}", source)
    return check(weights)


def _metric_entry(metric, source):
    if metric is None or isinstance(metric, str):
        return metric
    if isinstance(metric, dict):
        name = _function_name(metric)
        if name is not None:
            return name
        if metric.get("class_name") == "MeanMetricWrapper" and isinstance(metric.get("config"), dict):
            cfg = metric["config"]
            fn = cfg.get("fn")
            label = cfg.get("name")
            fn_name = _function_name(fn) if isinstance(fn, dict) else fn
            if isinstance(fn_name, str):
                if isinstance(label, str):
                    for alias, fns in _METRIC_ALIASES.items():
                        if fn_name in fns and (label == alias or label.endswith("_" + alias)):
                            return alias
                return fn_name
        if isinstance(metric.get("class_name"), str):
            return metric
    _fail(f"training config: unreadable metric {metric!r}", source)


def _normalize_metrics(metrics, source):
    if metrics is None:
        return None
    if isinstance(metrics, (str,)) or (isinstance(metrics, dict) and "class_name" in metrics):
        return _metric_entry(metrics, source)
    if isinstance(metrics, dict):
        return {k: (_normalize_metric_list(v, source) if isinstance(v, list)
                    else _metric_entry(v, source)) for k, v in metrics.items()}
    if isinstance(metrics, list):
        if metrics and all(isinstance(m, list) or m is None for m in metrics):
            # Keras 2 compiled form: one list per output (None = no metrics for that output)
            per_output = [_normalize_metric_list(m or [], source) for m in metrics]
            return per_output[0] if len(per_output) == 1 else per_output
        return _normalize_metric_list(metrics, source)
    _fail(f"training config: unreadable metrics {metrics!r}", source)


def _normalize_metric_list(items, source):
    out = []
    for item in items:
        if isinstance(item, list):
            out.append(_normalize_metric_list(item, source))
        elif item is not None:
            out.append(_metric_entry(item, source))
    return out


# ----------------------------------------------------------------------- back to the dialects

def _keras3_module(canonical_entry, default):
    module = canonical_entry.get("module")
    if (not isinstance(module, str) or module.startswith(("tf_keras", "keras.engine",
                                                          "keras.src.engine", "tensorflow"))):
        return default
    return module


def to_keras3_config(canonical: dict, *, for_h5: bool = False) -> dict:
    """Canonical model config -> exactly what Keras 3 writes: the `config.json` / `to_json()`
    structure (``for_h5=False``) or the legacy-style `model_config` Keras 3 stores in `.h5`
    files (``for_h5=True``: no module/registered_name/build_config on entries).

    Tensor references without a known shape (configs read from Keras 2) are written as Keras 2
    style nodes, which Keras 3 also reads; everything else uses ``__keras_tensor__`` nodes."""
    class_name = canonical["class_name"]
    cfg = _k3_model_config(canonical, for_h5)
    if for_h5:
        return {"class_name": class_name, "config": cfg}
    if class_name == "Functional":
        out = {"module": "keras.src.models.functional", "class_name": "Functional", "config": cfg,
               "registered_name": "Functional", "build_config": {"input_shape": None}}
    else:
        out = {"module": "keras", "class_name": "Sequential", "config": cfg,
               "registered_name": None}
        shape = canonical["config"].get("build_input_shape")
        layers = canonical["config"]["layers"]
        if shape is None and layers and layers[0]["class_name"] == "InputLayer":
            shape = layers[0]["config"]["batch_shape"]
        if shape is not None:
            out["build_config"] = {"input_shape": shape}
    tc = canonical.get("compile_config")
    out["compile_config"] = to_keras3_compile_config(tc) if tc else {}
    return out


def _k3_model_config(model, for_h5):
    cfg = model["config"]
    functional = model["class_name"] == "Functional"
    layers = [_k3_layer_entry(entry, for_h5, functional, model) for entry in cfg["layers"]]
    if functional:
        out = {"name": cfg["name"], "trainable": cfg["trainable"]}
        if cfg.get("dtype") is not None:
            out["dtype"] = _policy_envelope(cfg["dtype"])
        out["layers"] = layers
        shifts = {e["name"]: 1 for e in cfg["layers"] if e["class_name"] == "Functional"}
        out["input_layers"] = _k3_io(cfg["input_layers"], shifts)
        out["output_layers"] = _k3_io(cfg["output_layers"], shifts)
        return out
    out = {"name": cfg["name"], "trainable": cfg["trainable"],
           "dtype": _policy_envelope(cfg.get("dtype") or "float32"), "layers": layers}
    if cfg.get("build_input_shape") is not None:
        out["build_input_shape"] = cfg["build_input_shape"]
    return out


def _k3_io(struct, shifts):
    def convert(item):
        if is_tensor_ref(item):
            return [item["layer"], item["node_index"] + shifts.get(item["layer"], 0),
                    item["tensor_index"]]
        if isinstance(item, dict):
            return {k: convert(v) for k, v in item.items()}
        return [convert(v) for v in item]
    return convert(struct)


def _k3_layer_config(class_name, cfg, for_h5):
    if class_name == "InputLayer":
        return dict(cfg)
    out = {}
    for key, value in cfg.items():
        if key == "dtype":
            out[key] = _policy_envelope(value)
        elif key in ("activation", "recurrent_activation"):
            out[key] = _keras3_activation_out(copy.deepcopy(value), f"layer {cfg.get('name')!r} ({class_name})")
        elif _looks_like_layer_envelope(value):
            out[key] = _k3_inner(value, for_h5)
        elif isinstance(value, list) and value and all(_looks_like_layer_envelope(v) for v in value):
            out[key] = [_k3_inner(v, for_h5) for v in value]
        else:
            out[key] = copy.deepcopy(value)
    return out


def _k3_inner(env, for_h5):
    if env["class_name"] in MODEL_CLASSES:
        inner = to_keras3_config(env, for_h5=for_h5)
        inner.pop("compile_config", None)
        return inner
    out = {"module": _keras3_module(env, "keras.layers"), "class_name": env["class_name"],
           "config": _k3_layer_config(env["class_name"], env["config"], for_h5),
           "registered_name": env.get("registered_name")}
    if env.get("build_config") is not None:
        out["build_config"] = copy.deepcopy(env["build_config"])
    return out


def _k3_layer_entry(entry, for_h5, functional, model):
    class_name = entry["class_name"]
    if class_name in MODEL_CLASSES:
        cfg = _k3_model_config(entry, for_h5)
        default_module = "keras" if class_name == "Sequential" else "keras.src.models.functional"
    else:
        cfg = _k3_layer_config(class_name, entry["config"], for_h5)
        default_module = "keras.layers"
    if for_h5:
        out = {"class_name": class_name, "config": cfg}
    else:
        out = {"module": _keras3_module(entry, default_module), "class_name": class_name,
               "config": cfg, "registered_name": entry.get("registered_name")}
        if entry.get("build_config") is not None:
            out["build_config"] = copy.deepcopy(entry["build_config"])
        if class_name in MODEL_CLASSES:
            tc = entry.get("compile_config")
            out["compile_config"] = to_keras3_compile_config(tc) if tc else {}
    if functional:
        out["name"] = entry["name"]
        out["inbound_nodes"] = [_k3_node(node, model) for node in entry["inbound_nodes"]]
    return out


def _k3_node(node, model):
    refs = list(_iter_refs(node))
    if all(ref["shape"] is not None for ref in refs):
        def convert(value):
            if is_tensor_ref(value):
                return {"class_name": TENSOR_KEY, "config": {
                    "shape": list(value["shape"]), "dtype": value["dtype"] or "float32",
                    "keras_history": [value["layer"], value["node_index"], value["tensor_index"]]}}
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, list):
                return [convert(v) for v in value]
            return copy.deepcopy(value)
        return {"args": convert(node["args"]), "kwargs": convert(node["kwargs"])}
    return _k2_node(node, model, shifts={}, keras3_reader=True)


def to_keras2_config(canonical: dict) -> dict:
    """Canonical model config -> the Keras 2 (tf.keras) dialect stored in `.h5` files, which
    tf-keras 2.x and Keras 3 both load: legacy entries, `batch_input_shape`, string dtypes,
    nested-list nodes, lists of `[name, node, tensor]` triples. Keras-3-only keys with default
    values (quantization_config, lora_*, initializer input_axes/output_axes, RNN seed=None) are
    dropped. Raises KerasFileError for what Keras 2 cannot express (dict-structured outputs,
    calls with several positional arguments)."""
    return {"class_name": canonical["class_name"], "config": _k2_model_config(canonical)}


def _k2_model_config(model):
    cfg = model["config"]
    if model["class_name"] == "Sequential":
        layers = [_k2_layer_entry(e, None) for e in cfg["layers"]]
        out = {"name": cfg["name"], "layers": layers}
        if cfg.get("build_input_shape") is not None and not (
                cfg["layers"] and cfg["layers"][0]["class_name"] == "InputLayer"):
            out["build_input_shape"] = cfg["build_input_shape"]
        return out
    shifts = {}
    for entry in cfg["layers"]:
        if entry["class_name"] == "Functional":
            shifts[entry["name"]] = 1
        elif entry["class_name"] == "Sequential":
            inner = entry["config"]["layers"]
            shifts[entry["name"]] = 1 if inner and inner[0]["class_name"] == "InputLayer" else 0
    layers = [_k2_layer_entry(e, (model, shifts)) for e in cfg["layers"]]
    return {"name": cfg["name"], "trainable": cfg["trainable"], "layers": layers,
            "input_layers": _k2_io(cfg["input_layers"], shifts, "input_layers"),
            "output_layers": _k2_io(cfg["output_layers"], shifts, "output_layers")}


def _k2_io(struct, shifts, key):
    items = struct if isinstance(struct, list) else [struct]
    out = []
    for item in items:
        if not is_tensor_ref(item):
            raise KerasFileError(f"Keras 2 configs cannot express structured {key} ({item!r})")
        out.append([item["layer"], item["node_index"] + shifts.get(item["layer"], 0),
                    item["tensor_index"]])
    return out


def _k2_dtype(name):
    if name is None or name in _PLAIN_DTYPES:
        return name
    return {"class_name": "Policy", "config": {"name": name}}


def _strip_k3_only(value):
    """Drop Keras-3-only keys whose value is the default inside nested envelopes."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("input_axes", "output_axes") and item is None:
                continue
            out[key] = _strip_k3_only(item)
        return out
    if isinstance(value, list):
        return [_strip_k3_only(v) for v in value]
    return value


def _k2_layer_config(class_name, cfg):
    if class_name == "InputLayer":
        return {"batch_input_shape": list(cfg["batch_shape"]), "dtype": cfg["dtype"],
                "sparse": cfg["sparse"], "ragged": cfg["ragged"], "name": cfg["name"],
                "optional": cfg["optional"]}
    out = {}
    for key, value in cfg.items():
        if key in _K3_ONLY_LAYER_KEYS and value is None:
            continue
        if key == "seed" and value is None and class_name in _RNN_CLASSES:
            continue
        if key == "dtype":
            out[key] = _k2_dtype(value)
        elif key in ("activation", "recurrent_activation"):
            out[key] = _keras2_activation_out(copy.deepcopy(value))
        elif _looks_like_layer_envelope(value):
            out[key] = _k2_inner(value)
        elif isinstance(value, list) and value and all(_looks_like_layer_envelope(v) for v in value):
            out[key] = [_k2_inner(v) for v in value]
        else:
            out[key] = _strip_k3_only(copy.deepcopy(value))
    return out


def _k2_inner(env):
    if env["class_name"] in MODEL_CLASSES:
        return to_keras2_config(env)
    return {"class_name": env.get("registered_name") or env["class_name"],
            "config": _k2_layer_config(env["class_name"], env["config"])}


def _k2_layer_entry(entry, functional):
    class_name = entry["class_name"]
    if class_name in MODEL_CLASSES:
        out = {"class_name": class_name, "config": _k2_model_config(entry)}
    else:
        out = {"class_name": entry.get("registered_name") or class_name,
               "config": _k2_layer_config(class_name, entry["config"])}
    if functional is not None:
        model, shifts = functional
        out["name"] = entry["name"]
        out["inbound_nodes"] = [_k2_node(node, model, shifts) for node in entry["inbound_nodes"]]
    return out


def _k2_node(node, model, shifts, keras3_reader=False):
    """Canonical node -> Keras 2 nested list `[[name, node, tensor, kwargs], ...]`."""
    args = node["args"]
    where = f"model {model['config']['name']!r}"
    if len(args) != 1:
        if not args:
            return []
        raise KerasFileError(f"{where}: a call with {len(args)} positional arguments cannot be "
                             "written as a Keras 2 node")
    first = args[0]
    items = first if isinstance(first, list) else [first]

    def k2_value(value):
        if is_tensor_ref(value):
            return [value["layer"], value["node_index"] + shifts.get(value["layer"], 0),
                    value["tensor_index"]]
        if isinstance(value, dict):
            return {k: k2_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [k2_value(v) for v in value]
        return copy.deepcopy(value)

    if keras3_reader and list(_iter_refs(node["kwargs"])):
        raise KerasFileError(f"{where}: tensors of unknown shape in call kwargs cannot be written "
                             "in Keras 3 form")
    kwargs = k2_value(node["kwargs"])
    out = []
    for item in items:
        if is_tensor_ref(item):
            triple = k2_value(item)
            out.append(triple + [kwargs])
        elif keras3_reader:
            raise KerasFileError(f"{where}: a node mixing constants with tensors of unknown shape "
                                 "cannot be written")
        else:
            out.append(["_CONSTANT_VALUE", -1, copy.deepcopy(item), kwargs])
    return out


def _optimizer_envelope_k3(opt):
    return {"module": "keras.optimizers", "class_name": opt["class_name"],
            "config": copy.deepcopy(opt["config"]), "registered_name": opt.get("registered_name")}


def _compile_common(tc, full_loss_names):
    loss = copy.deepcopy(tc.get("loss"))
    if full_loss_names:
        loss = _expand_loss_names(loss)
    return loss


def _expand_loss_names(loss):
    if isinstance(loss, str):
        return _LOSS_FULL_NAMES.get(loss, loss)
    if isinstance(loss, list):
        return [_expand_loss_names(v) for v in loss]
    if isinstance(loss, dict) and "class_name" not in loss:
        return {k: _expand_loss_names(v) for k, v in loss.items()}
    return loss


def to_keras3_compile_config(tc: dict) -> dict:
    """Canonical training config -> Keras 3 `.keras` `compile_config`."""
    out = {}
    if tc.get("optimizer") is not None:
        out["optimizer"] = _optimizer_envelope_k3(tc["optimizer"])
    out.update({"loss": _compile_common(tc, False),
                "loss_weights": copy.deepcopy(tc.get("loss_weights")),
                "metrics": copy.deepcopy(tc.get("metrics")),
                "weighted_metrics": copy.deepcopy(tc.get("weighted_metrics")),
                "run_eagerly": tc.get("run_eagerly", False),
                "steps_per_execution": tc.get("steps_per_execution", 1),
                "jit_compile": tc.get("jit_compile", "auto")})
    return out


def to_keras3_training_config(tc: dict) -> dict:
    """Canonical training config -> the `training_config` Keras 3 stores in `.h5` files (loss
    aliases expanded to full names: Keras 3.15 cannot deserialize "mse"/"mae" there)."""
    out = {"loss": _compile_common(tc, True),
           "loss_weights": copy.deepcopy(tc.get("loss_weights")),
           "metrics": copy.deepcopy(tc.get("metrics")),
           "weighted_metrics": copy.deepcopy(tc.get("weighted_metrics")),
           "run_eagerly": tc.get("run_eagerly", False),
           "steps_per_execution": tc.get("steps_per_execution", 1),
           "jit_compile": tc.get("jit_compile", "auto")}
    if tc.get("optimizer") is not None:
        opt = tc["optimizer"]
        out["optimizer_config"] = {"class_name": opt["class_name"],
                                   "config": copy.deepcopy(opt["config"])}
    return out


def to_keras2_training_config(tc: dict) -> dict:
    """Canonical training config -> the Keras 2 `training_config` (loadable by tf-keras and
    Keras 3): loss (full names), metrics, weighted_metrics, loss_weights (always written) and
    `optimizer_config` with the keys both versions accept."""
    out = {"loss": _compile_common(tc, True), "metrics": copy.deepcopy(tc.get("metrics")),
           "weighted_metrics": copy.deepcopy(tc.get("weighted_metrics")),
           "loss_weights": copy.deepcopy(tc.get("loss_weights"))}
    opt = tc.get("optimizer")
    if opt is not None:
        cfg = {}
        for key, value in opt["config"].items():
            if key in _K3_ONLY_OPTIMIZER_KEYS:
                if value is not None:
                    raise KerasFileError(f"optimizer {opt['class_name']}: {key}={value!r} has no "
                                         "Keras 2 equivalent")
                continue
            if isinstance(value, dict) and "class_name" in value:
                value = {"class_name": value["class_name"],
                         "config": copy.deepcopy(value.get("config", {}))}
            cfg[key] = copy.deepcopy(value)
        out["optimizer_config"] = {"class_name": opt.get("registered_name") or opt["class_name"],
                                   "config": cfg}
    return out


# ------------------------------------------------------------------------- declared-size guard

_SHAPE_KEYS = {"batch_shape", "batch_input_shape", "input_shape", "build_input_shape", "shape",
               "target_shape", "kernel_size", "pool_size", "size", "dims"}
_SIZE_KEYS = {"units", "filters", "input_dim", "output_dim", "num_tokens", "max_tokens",
              "vocabulary_size", "num_heads", "key_dim", "value_dim", "depth_multiplier",
              "num_bins", "max_length", "sequence_length", "input_length", "hidden_dim",
              "intermediate_dim", "embedding_dim", "num_classes"}


def check_declared_shapes(config, limit_elements=DEFAULT_SHAPE_LIMIT, *, source=None):
    """Raise UnsafeFileError if any declared shape or size in `config` (raw or canonical, any
    dialect) describes more than `limit_elements` elements: each shape-like value (batch_shape,
    input_shape, build_input_shape, tensor shapes, target_shape, ...) must be a list of
    None/non-negative integers whose product is within the limit; size hyper-parameters (units,
    filters, input_dim, output_dim, max_tokens, ...) must be at most the limit; an Embedding's
    input_dim x output_dim too. Returns None when everything is within bounds."""
    stack = [(config, None)]
    while stack:
        value, layer = stack.pop()
        if isinstance(value, dict):
            cfg = value.get("config")
            if isinstance(value.get("class_name"), str) and isinstance(cfg, dict):
                name = cfg.get("name") if isinstance(cfg.get("name"), str) else value.get("name")
                if isinstance(name, str):
                    layer = name
                if value["class_name"] == "Embedding":
                    dims = [cfg.get("input_dim"), cfg.get("output_dim")]
                    if all(isinstance(d, (int, float)) and not isinstance(d, bool) for d in dims):
                        if dims[0] * dims[1] > limit_elements:
                            _fail(f"layer {layer!r}: Embedding {dims[0]} x {dims[1]} exceeds "
                                  f"{limit_elements} elements", source, UnsafeFileError)
            for key, item in value.items():
                if key in _SHAPE_KEYS and isinstance(item, list):
                    _check_shape_value(item, key, layer, limit_elements, source)
                elif key in _SIZE_KEYS and isinstance(item, (int, float)) and not isinstance(item, bool):
                    if not math.isfinite(item) or abs(item) > limit_elements:
                        _fail(f"layer {layer!r}: '{key}' = {item!r} exceeds {limit_elements}",
                              source, UnsafeFileError)
                if isinstance(item, (dict, list)):
                    stack.append((item, layer))
        elif isinstance(value, list):
            stack.extend((item, layer) for item in value if isinstance(item, (dict, list)))
    return None


def _check_shape_value(value, key, layer, limit, source):
    if value and all(isinstance(v, (list, dict)) or v is None for v in value) \
            and any(isinstance(v, (list, dict)) for v in value):
        for item in value:
            if isinstance(item, list):
                _check_shape_value(item, key, layer, limit, source)
        return
    product = 1
    for dim in value:
        if dim is None or isinstance(dim, bool):
            continue
        if isinstance(dim, (int, float)):
            if not math.isfinite(dim) or dim > limit or dim < -1:
                _fail(f"layer {layer!r}: '{key}' {value!r} has an absurd dimension {dim!r}",
                      source, UnsafeFileError)
            if dim > 0:
                product *= dim
                if product > limit:
                    _fail(f"layer {layer!r}: '{key}' {value!r} declares more than {limit} "
                          "elements", source, UnsafeFileError)
