"""JSON and YAML model configs: bounded, safe reading and Keras-compatible writing.

* :func:`read_json_config` parses `to_json()` output, `config.json`, `metadata.json` or a sharded
  weights index, from a path, bytes or text. Input size, nesting depth and node count are
  bounded; Keras's legacy ``{"class_name": "__tuple__", "items": [...]}`` values become lists.
* :func:`read_yaml_config` reads old Keras 2 `to_yaml()` output with a ``yaml.SafeLoader``
  subclass that maps ``!!python/tuple`` to a list and TensorFlow's trackable wrappers
  (``!!python/object/apply:...data_structures.ListWrapper``) to their first argument. Nothing is
  ever constructed from arbitrary Python tags (no ``unsafe_load``).
* :func:`dumps_json` / :func:`dumps_yaml` write configs the way Keras does: tuples as lists,
  NumPy scalars as numbers, arrays as lists, dtypes by name, bytes as ``__bytes__`` envelopes.
* :func:`check_structure` is the depth/size guard shared by every reader of parsed configs.
"""
from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping

import numpy as np
import yaml

from . import errors as limits
from .errors import KerasFileError, UnsafeFileError

__all__ = ["read_json_config", "read_yaml_config", "dumps_json", "dumps_yaml", "loads_json_bytes",
           "check_structure", "read_text_bounded"]


def check_structure(obj, source=None, *, max_depth=None, max_nodes=None):
    """Raise KerasFileError if `obj` (parsed JSON/YAML) nests deeper than `max_depth` or holds
    more than `max_nodes` values (counting shared YAML aliases once per use, so an alias bomb is
    refused). Iterative, so it cannot itself overflow the stack."""
    max_depth = limits.MAX_NESTING_DEPTH if max_depth is None else max_depth
    max_nodes = limits.MAX_STRUCTURE_NODES if max_nodes is None else max_nodes
    stack = [(obj, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise UnsafeFileError(f"config holds more than {max_nodes} values", source)
        if isinstance(value, (dict, list, tuple)):
            if depth >= max_depth:
                raise UnsafeFileError(f"config nests deeper than {max_depth} levels", source)
            children = value.values() if isinstance(value, dict) else value
            for child in children:
                if isinstance(child, (dict, list, tuple)):
                    stack.append((child, depth + 1))
                else:
                    count += 1
            if isinstance(value, dict):
                for key in value:
                    if not isinstance(key, (str, int, float, bool)) and key is not None:
                        raise KerasFileError(f"config has a key of type {type(key).__name__}", source)
    return obj


def read_text_bounded(path, max_bytes=None) -> bytes:
    """Read a whole file, refusing one larger than `max_bytes`; OSErrors become KerasFileError."""
    max_bytes = limits.MAX_TEXT_BYTES if max_bytes is None else max_bytes
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise KerasFileError("file not found", path) from None
    except IsADirectoryError:
        raise KerasFileError("is a directory, not a file", path) from None
    except OSError as exc:
        raise KerasFileError(f"cannot read file ({exc.strerror or exc})", path) from None
    if len(data) > max_bytes:
        raise UnsafeFileError(f"text is larger than {max_bytes} bytes", path)
    return data


def _decode_text(data: bytes, source) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KerasFileError(f"not UTF-8 text (byte {exc.start})", source) from None


def _source_and_text(path_or_text, max_bytes, looks_inline):
    """Return (source label, text) for a path, bytes, or inline text."""
    if isinstance(path_or_text, (bytes, bytearray, memoryview)):
        data = bytes(path_or_text)
        if len(data) > max_bytes:
            raise UnsafeFileError(f"text is larger than {max_bytes} bytes", "<bytes>")
        return "<bytes>", _decode_text(data, "<bytes>")
    if isinstance(path_or_text, str) and looks_inline(path_or_text):
        if len(path_or_text) > max_bytes:
            raise UnsafeFileError(f"text is larger than {max_bytes} bytes", "<text>")
        return "<text>", path_or_text
    if isinstance(path_or_text, (str, os.PathLike)):
        data = read_text_bounded(path_or_text, max_bytes)
        return os.fsdecode(path_or_text), _decode_text(data, path_or_text)
    raise KerasFileError(f"expected a path, bytes or text, got {type(path_or_text).__name__}")


def _json_object_hook(obj):
    if obj.get("class_name") == "__tuple__" and "items" in obj and len(obj) == 2:
        items = obj["items"]
        return list(items) if isinstance(items, list) else items
    return obj


def loads_json_bytes(data, source=None, *, max_bytes=None, require_object=True):
    """Parse JSON from bytes or str with every bound applied; returns the parsed value."""
    max_bytes = limits.MAX_TEXT_BYTES if max_bytes is None else max_bytes
    if isinstance(data, (bytes, bytearray)):
        if len(data) > max_bytes:
            raise UnsafeFileError(f"text is larger than {max_bytes} bytes", source)
        text = _decode_text(bytes(data), source)
    else:
        text = data
        if len(text) > max_bytes:
            raise UnsafeFileError(f"text is larger than {max_bytes} bytes", source)
    if not text.strip():
        raise KerasFileError("empty JSON text", source)
    try:
        value = json.loads(text, object_hook=_json_object_hook)
    except RecursionError:
        raise UnsafeFileError("JSON nests too deeply", source) from None
    except json.JSONDecodeError as exc:
        raise KerasFileError(f"invalid or truncated JSON ({exc.msg} at line {exc.lineno} "
                             f"column {exc.colno})", source) from None
    except (ValueError, TypeError) as exc:
        raise KerasFileError(f"invalid JSON ({exc})", source) from None
    check_structure(value, source)
    if require_object and not isinstance(value, dict):
        raise KerasFileError(f"expected a JSON object, found {type(value).__name__}", source)
    return value


def read_json_config(path_or_text, *, max_bytes=None) -> dict:
    """Parse a JSON config from a path, bytes, or inline text (a string starting with '{').

    Returns the parsed dict exactly as stored (no dialect normalisation; see
    ``config_dialects.normalize_model_config``)."""
    max_bytes = limits.MAX_TEXT_BYTES if max_bytes is None else max_bytes
    source, text = _source_and_text(
        path_or_text, max_bytes, lambda s: s.lstrip()[:1] in ("{", "["))
    return loads_json_bytes(text, source, max_bytes=max_bytes)


# ----------------------------------------------------------------------------------------- YAML

class _KerasYamlLoader(yaml.SafeLoader):
    """SafeLoader plus the few Python tags old Keras `to_yaml()` output contains."""


def _construct_tuple(loader, node):
    return loader.construct_sequence(node, deep=True)


def _construct_py_scalar(loader, node):
    return loader.construct_scalar(node)


_TRACKABLE_WRAPPERS = ("ListWrapper", "_DictWrapper", "DictWrapper", "_TupleWrapper", "List",
                       "NoDependency")


def _construct_apply(loader, suffix, node):
    """`!!python/object/apply:<callable> [arg0, ...]`: accepted only for TensorFlow's trackable
    container wrappers, whose first argument is the wrapped plain list/dict."""
    name = suffix.rsplit(".", 1)[-1]
    if "data_structures" not in suffix and name not in _TRACKABLE_WRAPPERS:
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported YAML tag python/object/apply:{suffix}", node.start_mark)
    if isinstance(node, yaml.SequenceNode):
        args = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        mapping = loader.construct_mapping(node, deep=True)
        args = mapping.get("args", [])
    else:
        args = [loader.construct_scalar(node)]
    if not isinstance(args, list) or not args:
        raise yaml.constructor.ConstructorError(
            None, None, f"python/object/apply:{suffix} without arguments", node.start_mark)
    return args[0]


_KerasYamlLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)
for _tag in ("unicode", "str", "bytes"):
    _KerasYamlLoader.add_constructor(f"tag:yaml.org,2002:python/{_tag}", _construct_py_scalar)
_KerasYamlLoader.add_constructor(
    "tag:yaml.org,2002:python/int", lambda loader, node: int(loader.construct_scalar(node)))
_KerasYamlLoader.add_constructor(
    "tag:yaml.org,2002:python/long", lambda loader, node: int(loader.construct_scalar(node)))
_KerasYamlLoader.add_constructor(
    "tag:yaml.org,2002:python/float", lambda loader, node: float(loader.construct_scalar(node)))
_KerasYamlLoader.add_constructor(
    "tag:yaml.org,2002:python/bool", yaml.SafeLoader.construct_yaml_bool)
_KerasYamlLoader.add_constructor(
    "tag:yaml.org,2002:python/none", yaml.SafeLoader.construct_yaml_null)
_KerasYamlLoader.add_multi_constructor("tag:yaml.org,2002:python/object/apply:", _construct_apply)


def read_yaml_config(path_or_text, *, max_bytes=None) -> dict:
    """Parse a YAML config (old Keras 2 `to_yaml()` output) from a path, bytes or inline text
    (a string containing a newline or starting with 'class_name'). Safe: SafeLoader subclass."""
    max_bytes = limits.MAX_TEXT_BYTES if max_bytes is None else max_bytes
    source, text = _source_and_text(
        path_or_text, max_bytes, lambda s: "\n" in s or s.lstrip().startswith(("class_name", "{")))
    if not text.strip():
        raise KerasFileError("empty YAML text", source)
    try:
        value = yaml.load(text, Loader=_KerasYamlLoader)  # noqa: S506 - SafeLoader subclass
    except RecursionError:
        raise UnsafeFileError("YAML nests too deeply", source) from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise KerasFileError(f"invalid YAML ({problem}{where})", source) from None
    except (ValueError, TypeError) as exc:
        raise KerasFileError(f"invalid YAML ({exc})", source) from None
    check_structure(value, source)
    if not isinstance(value, dict):
        raise KerasFileError(f"expected a YAML mapping, found {type(value).__name__}", source)
    return value


# -------------------------------------------------------------------------------------- writing

def _keras_json_default(obj):
    """Keras's legacy JSON encoder conventions (json_utils.get_json_type)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.dtype):
        return obj.name
    if isinstance(obj, (bytes, bytearray)):
        return {"class_name": "__bytes__", "value": bytes(obj).decode("utf-8")}
    if obj is Ellipsis:
        return {"class_name": "__ellipsis__"}
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        raise TypeError("sets are not JSON serializable in Keras configs")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps_json(config, *, indent=None, sort_keys=False) -> str:
    """Serialize a config like Keras (`json.dumps(obj, default=get_json_type)`): tuples become
    lists, NumPy scalars numbers, arrays lists. Raises KerasFileError for unserializable values."""
    try:
        return json.dumps(config, default=_keras_json_default, indent=indent, sort_keys=sort_keys)
    except (TypeError, ValueError, RecursionError) as exc:
        raise KerasFileError(f"config cannot be written as JSON: {exc}") from None


def dumps_yaml(config, **kwargs) -> str:
    """Serialize a config as YAML (plain types only, keys sorted like Keras's `to_yaml`); kwargs
    go to the YAML dumper (indent, width, ...)."""
    plain = json.loads(dumps_json(config))
    return yaml.safe_dump(plain, **{"default_flow_style": False, "sort_keys": True, **kwargs})
