"""The public saving API: save_model / load_model, save_weights / load_weights, JSON and YAML.

Formats are recognised by content (sniff.py), never executed: configs are parsed with bounded
JSON/YAML readers, HDF5 metadata is probed in a child process first, and writes are atomic
(a crash mid-save leaves the previous file intact).
"""
from __future__ import annotations

import os

from . import config_dialects as dialects
from .errors import KerasFileError
from .h5_format import read_h5_model, read_h5_weights, read_keras3_weights, read_sharded_weights, write_h5_model, \
    write_h5_weights, write_keras3_weights
from .json_yaml import dumps_json, dumps_yaml, read_json_config, read_yaml_config
from .keras_zip import read_keras_zip, write_keras_zip
from .model_build import build_model
from .model_serialize import model_to_config
from .object_registry import custom_object_scope
from .sniff import detect_format
from .weights_map import (assign_keras3, assign_legacy, assign_optimizer, keras3_tree, legacy_layer_weights,
                          optimizer_arrays)


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

def save_model(model, filepath, overwrite=True, save_format=None, include_optimizer=True, **kwargs):
    path = _path(filepath)
    kind = _kind_for_saving(path, save_format)
    _confirm_overwrite(path, overwrite)
    top = model_to_config(model)
    canonical = dialects.normalize_model_config(top, source=path)
    optimizer = getattr(model, "optimizer", None) if include_optimizer else None
    trainable = model.trainable_weights
    if optimizer is not None:
        optimizer.build(trainable)
    if kind == "keras":
        tree = keras3_tree(model)
        if optimizer is not None and canonical.get("compile_config") is not None:
            tree["optimizer/vars"] = optimizer_arrays(optimizer)
        write_keras_zip(path, dialects.to_keras3_config(canonical), weights=tree)
    else:
        training = None
        if canonical.get("compile_config") is not None:
            training = dialects.to_keras2_training_config(canonical["compile_config"])
        opt = [(f"{v.path}:0", v.numpy()) for v in optimizer.variables] if optimizer is not None and training else ()
        write_h5_model(path, dialects.to_keras2_config(canonical), training, legacy_layer_weights(model), opt)


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
            training = canonical.get("compile_config")
            if compile and training is not None:
                _compile_from(model, training, path)
                _restore_optimizer(model, archive.weights.optimizer if archive.weights else [], path)
            return model
        if kind == "h5_model":
            stored = read_h5_model(path)
            canonical = dialects.normalize_model_config(stored.model_config, source=path)
            model = build_model(canonical, custom_objects, safe_mode, path)
            assign_legacy(model, stored.layer_weights, path)
            if compile and stored.training_config is not None:
                _compile_from(model, dialects.normalize_training_config(stored.training_config, source=path), path)
                _restore_optimizer(model, [a for _, a in stored.optimizer_weights], path)
            return model
        if kind in ("json", "yaml"):
            config = read_json_config(path) if kind == "json" else read_yaml_config(path)
            return model_from_config(config, custom_objects, safe_mode, source=path)
    raise KerasFileError(f"this is a {kind.replace('_', ' ')} file, not a saved model (use load_weights)", path)


def _compile_from(model, training, source):
    from .. import optimizers
    opt = training.get("optimizer")
    try:
        # a compile config without an optimizer compiles with compile()'s default, as Keras does
        optimizer = "rmsprop" if opt is None else optimizers.get({"class_name": opt["class_name"],
                                                                  "config": opt["config"]})
        model.compile(optimizer=optimizer, loss=training.get("loss"), loss_weights=training.get("loss_weights"),
                      metrics=training.get("metrics"), weighted_metrics=training.get("weighted_metrics"))
    except (ValueError, TypeError) as exc:
        raise KerasFileError(f"the training configuration cannot be applied ({exc}); load with compile=False "
                             "to get the model without it", source) from None


def _restore_optimizer(model, arrays, source):
    if model.optimizer is not None and len(arrays):
        assign_optimizer(model.optimizer, arrays, model.trainable_weights, source)


def model_from_config(config, custom_objects=None, safe_mode=True, source=None):
    with custom_object_scope(custom_objects or {}):
        canonical = dialects.normalize_model_config(config, source=source)
        return build_model(canonical, custom_objects, safe_mode, source)


def model_from_json(json_string, custom_objects=None):
    return model_from_config(read_json_config(json_string), custom_objects, source="the JSON string")


def model_from_yaml(yaml_string, custom_objects=None):
    return model_from_config(read_yaml_config(yaml_string), custom_objects, source="the YAML string")


def to_json(model, **kwargs):
    config = dialects.to_keras3_config(dialects.normalize_model_config(model_to_config(model)))
    config.pop("compile_config", None)
    return dumps_json(config, **kwargs)


def to_yaml(model):
    config = dialects.to_keras3_config(dialects.normalize_model_config(model_to_config(model)))
    config.pop("compile_config", None)
    return dumps_yaml(config)


# ---------------------------------------------------------------- weights only

def save_weights(model, filepath, overwrite=True, save_format=None):
    path = _path(filepath)
    _confirm_overwrite(path, overwrite)
    if path.endswith(".weights.h5") and save_format in (None, "keras", "h5"):
        write_keras3_weights(path, keras3_tree(model))
    elif save_format in (None, "h5", "hdf5") and (path.endswith((".h5", ".hdf5")) or not os.path.splitext(path)[1]):
        write_h5_weights(path, legacy_layer_weights(model))     # Keras 2's layout (also for a path with no extension)
    else:
        raise ValueError(f"The filename must end in `.weights.h5` (or `.h5` for the legacy format). Received: "
                         f"filepath={path}")


def load_weights(model, filepath, skip_mismatch=False, by_name=False, **kwargs):
    path = _path(filepath)
    kind = detect_format(path)
    if kind in ("h5_weights_keras3", "weights_sharded"):
        if by_name:
            raise ValueError("by_name=True only applies to legacy .h5 weight files")
        tree = read_keras3_weights(path) if kind == "h5_weights_keras3" else read_sharded_weights(path)
        assign_keras3(model, tree, path, skip_mismatch)
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
