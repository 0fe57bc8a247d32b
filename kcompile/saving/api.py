"""The public saving API: save_model / load_model, save_weights / load_weights, JSON and YAML.

Formats are recognised by content (sniff.py), never executed: configs are parsed with bounded
JSON/YAML readers, HDF5 metadata is probed in a child process first, and writes are atomic
(a crash mid-save leaves the previous file intact).
"""
from __future__ import annotations

import os

from . import config_dialects as dialects
from .assets import collect_assets, restore_assets
from .errors import KerasFileError
from .h5_format import read_h5_model, read_h5_weights, read_keras3_weights, read_sharded_weights, write_h5_model, \
    write_h5_weights, write_keras3_weights, write_sharded_weights
from .json_yaml import dumps_json, dumps_yaml, read_json_config, read_yaml_config
from .keras_zip import read_keras_zip, write_keras_zip
from .model_build import build_model
from .model_serialize import model_to_config
from .object_registry import custom_object_scope, resolve_user_objects
from .sniff import detect_format
from .optimizer_state import keras_optimizer_variables, restore_optimizer_state
from .weights_map import assign_keras3, assign_legacy, keras3_tree, legacy_layer_weights


def _path(filepath):
    return os.fspath(filepath)


def _kind_for_saving(path, save_format):
    if save_format in ("h5", "hdf5", "keras_h5") or path.endswith((".h5", ".hdf5")):
        return "h5"
    if save_format in (None, "keras") and path.endswith(".keras"):
        return "keras"
    raise ValueError(f"Invalid filepath extension for saving. Please add either a `.keras` extension for the native "
                     f"Keras format (recommended) or a `.h5` extension. Received: filepath={path}")


def _confirm_overwrite(path, overwrite):
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")


# ---------------------------------------------------------------- whole models

def _reject(what, kwargs):
    if kwargs:
        raise TypeError(f"{what}: argument(s) not supported: {sorted(kwargs)}")


def save_model(model, filepath, overwrite=True, save_format=None, include_optimizer=True, zipped=None, **kwargs):
    _reject("save()", kwargs)
    if zipped is False:
        raise ValueError("save(zipped=False) (an unzipped .keras directory) is not supported; save a .keras file")
    path = _path(filepath)
    kind = _kind_for_saving(path, save_format)
    _confirm_overwrite(path, overwrite)
    top = model_to_config(model)
    canonical = dialects.normalize_model_config(top, source=path)
    optimizer = getattr(model, "optimizer", None) if include_optimizer else None
    opt_vars = keras_optimizer_variables(optimizer, model.trainable_weights) if optimizer is not None else []
    if kind == "keras":
        tree = keras3_tree(model)
        if optimizer is not None and canonical.get("compile_config") is not None:
            tree["optimizer/vars"] = [v.numpy() for _, v in opt_vars]
        write_keras_zip(path, dialects.to_keras3_config(canonical), weights=tree, assets=collect_assets(model, path))
    else:
        training = None          # Keras writes no training config without the optimizer
        if optimizer is not None and canonical.get("compile_config") is not None:
            training = dialects.to_keras2_training_config(canonical["compile_config"])
        opt = [(name, v.numpy()) for name, v in opt_vars] if training else ()
        # Keras 2 has no config for ops applied to symbolic tensors: such models are written in the
        # Keras 3 dialect, which Keras 3 (and kcompile) read
        config = dialects.to_keras3_config(canonical) if _has_operations(canonical) else \
            dialects.to_keras2_config(canonical)
        write_h5_model(path, config, training, legacy_layer_weights(model), opt)


def _has_operations(canonical):
    from .operations import is_operation_entry
    layers = canonical.get("config", {}).get("layers", [])
    return any(is_operation_entry(e) or (isinstance(e.get("config"), dict) and _has_operations(e))
               for e in layers if isinstance(e, dict))


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    path = _path(filepath)
    kind = detect_format(path)
    with custom_object_scope(custom_objects or {}):
        if kind == "keras_zip":
            archive = read_keras_zip(path)
            canonical = dialects.normalize_model_config(archive.config, source=path)
            model = build_model(canonical, custom_objects, safe_mode, path)
            if archive.weights is not None:
                assign_keras3(model, archive.weights, path)
            restore_assets(model, path, archive.assets)
            training = canonical.get("compile_config")
            if compile and training is not None:
                _compile_from(model, training, path, custom_objects)
                _restore_optimizer(model, archive.weights.optimizer if archive.weights else [], path)
            return model
        if kind == "h5_model":
            stored = read_h5_model(path)
            canonical = dialects.normalize_model_config(stored.model_config, source=path)
            model = build_model(canonical, custom_objects, safe_mode, path)
            assign_legacy(model, stored.layer_weights, path)
            if compile and stored.training_config is not None:
                _compile_from(model, dialects.normalize_training_config(stored.training_config, source=path), path,
                              custom_objects)
                _restore_optimizer(model, [a for _, a in stored.optimizer_weights], path)
            return model
        if kind in ("json", "yaml"):
            config = read_json_config(path) if kind == "json" else read_yaml_config(path)
            return model_from_config(config, custom_objects, safe_mode, source=path, compile=compile)
    raise KerasFileError(f"this is a {kind.replace('_', ' ')} file, not a saved model (use load_weights)", path)


def _compile_from(model, training, source, custom_objects=None):
    from .. import optimizers
    opt = training.get("optimizer")
    user = lambda v: resolve_user_objects(v, custom_objects)  # noqa: E731 - custom losses, metrics, optimizers
    try:
        # a compile config without an optimizer compiles with compile()'s default, as Keras does
        optimizer = "rmsprop" if opt is None else user(opt)
        if isinstance(optimizer, dict):
            optimizer = optimizers.get({"class_name": opt["class_name"], "config": opt["config"]})
        from .. import losses, metrics
        model.compile(optimizer=optimizer, loss=_objects(user(training.get("loss")), losses.get),
                      loss_weights=training.get("loss_weights"),
                      metrics=_objects(user(training.get("metrics")), metrics.get),
                      weighted_metrics=_objects(user(training.get("weighted_metrics")), metrics.get))
    except (ValueError, TypeError) as exc:
        raise KerasFileError(f"the training configuration cannot be applied ({exc}); load with compile=False "
                             "to get the model without it", source) from None


def _objects(value, get):
    """Loss/metric envelopes ({"class_name", "config"}) inside a per-output list or dict -> objects."""
    if isinstance(value, dict) and isinstance(value.get("class_name"), str) and "config" in value:
        return get({"class_name": value["class_name"], "config": value["config"]})
    if isinstance(value, dict):
        return {k: _objects(v, get) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_objects(v, get) for v in value]
    return value


def _restore_optimizer(model, arrays, source):
    if model.optimizer is not None and len(arrays):
        restore_optimizer_state(model.optimizer, arrays, model.trainable_weights, source)


def model_from_config(config, custom_objects=None, safe_mode=True, source=None, compile=False):
    """A model from a config dict (either dialect); compile=True also applies its compile_config,
    as Keras 3's model_from_json does."""
    with custom_object_scope(custom_objects or {}):
        canonical = dialects.normalize_model_config(config, source=source)
        model = build_model(canonical, custom_objects, safe_mode, source)
        if compile and canonical.get("compile_config") is not None:
            _compile_from(model, canonical["compile_config"], source, custom_objects)
        return model


def model_from_json(json_string, custom_objects=None):
    return model_from_config(read_json_config(json_string), custom_objects, source="the JSON string", compile=True)


def model_from_yaml(yaml_string, custom_objects=None):
    return model_from_config(read_yaml_config(yaml_string), custom_objects, source="the YAML string", compile=True)


def to_json(model, **kwargs):      # kwargs go to json.dumps, as in Keras
    """Keras 3's to_json: the config.json structure, compile_config included."""
    return dumps_json(dialects.to_keras3_config(dialects.normalize_model_config(model_to_config(model))), **kwargs)


def to_yaml(model, **kwargs):      # kwargs go to yaml.dump, as in Keras 2
    """The same structure as to_json, as YAML (Keras <= 2.4 had this; Keras 3 dropped it)."""
    return dumps_yaml(dialects.to_keras3_config(dialects.normalize_model_config(model_to_config(model))), **kwargs)


# ---------------------------------------------------------------- weights only

def _weights_tree(model):
    """The model's Keras 3 weights tree, with the optimizer's state when it is compiled (as Keras 3's
    save_weights writes it)."""
    tree = keras3_tree(model)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        tree["optimizer/vars"] = [v.numpy() for _, v in keras_optimizer_variables(optimizer, model.trainable_weights)]
    return tree


def save_weights(model, filepath, overwrite=True, save_format=None, max_shard_size=None, **kwargs):
    """`.weights.h5` (Keras 3 object paths), `.h5`/`.hdf5`/no extension (Keras 2 layout), or with
    max_shard_size (GB) a `.weights.json` index with shards of at most that size."""
    _reject("save_weights()", kwargs)
    path = _path(filepath)
    _confirm_overwrite(path, overwrite)
    if max_shard_size is not None:
        if not path.endswith(".weights.json"):
            raise ValueError(f"With max_shard_size the filename must end in `.weights.json`. Received: filepath={path}")
        if not max_shard_size > 0:
            raise ValueError(f"max_shard_size must be a positive number of GB. Received: {max_shard_size!r}")
        write_sharded_weights(path, _weights_tree(model), float(max_shard_size) * 1e9)
    elif path.endswith(".weights.h5") and save_format in (None, "keras", "h5"):
        write_keras3_weights(path, _weights_tree(model))
    elif save_format in (None, "h5", "hdf5") and (path.endswith((".h5", ".hdf5")) or not os.path.splitext(path)[1]):
        write_h5_weights(path, legacy_layer_weights(model))     # Keras 2's layout (also for a path with no extension)
    else:
        raise ValueError(f"The filename must end in `.weights.h5` (or `.h5` for the legacy format). Received: "
                         f"filepath={path}")


def load_weights(model, filepath, skip_mismatch=False, by_name=False, **kwargs):
    _reject("load_weights()", kwargs)
    path = _path(filepath)
    kind = detect_format(path)
    if kind in ("h5_weights_keras3", "weights_sharded"):
        if by_name:
            raise ValueError("by_name=True only applies to legacy .h5 weight files")
        tree = read_keras3_weights(path) if kind == "h5_weights_keras3" else read_sharded_weights(path)
        assign_keras3(model, tree, path, skip_mismatch)
        if getattr(model, "optimizer", None) is not None:     # Keras 3 restores a compiled model's optimizer too
            _restore_optimizer(model, tree.optimizer, path)
    elif kind in ("h5_weights_legacy", "h5_model"):
        stored = read_h5_weights(path)
        assign_legacy(model, stored.layer_weights, path, by_name=by_name, skip_mismatch=skip_mismatch)
    elif kind == "keras_zip":
        archive = read_keras_zip(path)
        if archive.weights is None:
            raise KerasFileError("the archive holds no weights", path)
        assign_keras3(model, archive.weights, path, skip_mismatch)
    else:
        raise KerasFileError(f"this is a {kind} file, not a weights file", path)
