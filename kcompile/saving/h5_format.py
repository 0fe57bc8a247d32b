"""HDF5 weight and model files: the legacy Keras layouts and Keras 3's `.weights.h5`.

Legacy layouts (Keras 1/2 and Keras 3 `model.save("m.h5")`, spec sections 1-2):

* :func:`read_h5_model` -> :class:`H5ModelFile`: raw `model_config` / `training_config` dicts,
  versions, the layer weights in `layer_names` then `weight_names` order (never HDF5's
  alphabetical order; `layer_names0/1/...` chunks, weightless layers' empty float arrays,
  `/` in layer names and `top_level_model_weights` handled), and the optimizer weights.
* :func:`read_h5_weights` -> :class:`H5WeightsFile` for weights-only files (or the weights
  inside a full-model file).
* :func:`write_h5_model` / :func:`write_h5_weights` write the same layouts the way Keras does
  (sorted group creation, vlen string attributes, `keras_version`/`backend` on the root and on
  `model_weights`, empty float64 `weight_names` for weightless layers, chunked name attributes
  above the HDF5 object-header limit), atomically.

Keras 3 layout (`.weights.h5`, also `model.weights.h5` inside `.keras`, spec section 3.2):

* :func:`read_keras3_weights` -> :class:`Keras3Weights`: for every object path such as
  ``layers/dense/vars`` its arrays ordered by the numeric dataset names 0, 1, 2, ... (10 after 9),
  plus each group's ``@name`` attribute when present; ``optimizer/vars`` is one of the paths.
* :func:`write_keras3_weights` writes that tree (always with the root ``vars`` group).
* :func:`read_sharded_weights` reads `<base>.weights.json` plus its shards.

Every reader failure raises KerasFileError naming the file; HDF5 soft/external links, external
or virtual dataset storage and declared sizes beyond the bounds in ``errors`` (looked up at call
time, so they can be changed there) are refused.

Process isolation: the HDF5 C library can crash or loop forever on corrupt metadata (seen
here: a flipped byte turning a string attribute into a variable-length sequence segfaults
HDF5 2.0; a corrupt global-heap reference makes it spin at 100% CPU). So each reader first
performs the same metadata walk (everything except the raw bytes of contiguous datasets, whose
extent is checked against the file size) in a child process with a timeout and a memory limit:
``os.fork`` when the process is single-threaded (about 3 ms), otherwise a fresh interpreter.
Only if the child survives does the real read run in-process. ``ISOLATE_HDF5 = False`` turns
this off; ``HDF5_PROBE_TIMEOUT`` / ``HDF5_PROBE_MEMORY`` bound the child.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import h5py
import numpy as np

from .atomic import atomic_h5
from . import errors as limits
from .errors import KerasFileError, UnsafeFileError
from .json_yaml import dumps_json, loads_json_bytes, read_json_config

__all__ = ["H5ModelFile", "H5WeightsFile", "Keras3Weights", "read_h5_model", "read_h5_weights",
           "write_h5_model", "write_h5_weights", "read_keras3_weights", "write_keras3_weights",
           "read_sharded_weights", "open_h5", "DEFAULT_KERAS_VERSION", "DEFAULT_BACKEND",
           "HDF5_OBJECT_HEADER_LIMIT"]

HDF5_OBJECT_HEADER_LIMIT = 64512
ISOLATE_HDF5 = True
HDF5_PROBE_TIMEOUT = 30.0          # seconds for the child's metadata walk
HDF5_PROBE_MEMORY = 4 * 1024 ** 3  # extra address space the child may use (bytes)
_PROBING = False                   # True only inside the probe child
# Defaults follow the verified "loads in both Keras 2 and 3" recipe (spec section 8); the
# version must be set, or Keras 2 applies its Keras 1 weight conversions.
DEFAULT_KERAS_VERSION = "2.21.0"
DEFAULT_BACKEND = "tensorflow"
MAX_OBJECTS = 1_000_000

_NUMERIC_KINDS = "biufc"
_INDEX_RE = re.compile(r"^(0|[1-9][0-9]{0,8})$")

LayerWeights = list  # list[tuple[str, list[tuple[str, np.ndarray]]]]


@dataclass
class H5ModelFile:
    """Contents of a legacy full-model `.h5` file (configs are the raw stored dicts)."""
    model_config: dict
    training_config: dict | None
    keras_version: str | None
    backend: str | None
    layer_weights: list = field(default_factory=list)
    optimizer_weights: list = field(default_factory=list)
    top_level_weights: list = field(default_factory=list)
    path: str | None = None


@dataclass
class H5WeightsFile:
    """Weights of a legacy weights-only `.h5` file (or of a full-model file's model_weights)."""
    keras_version: str | None
    backend: str | None
    layer_weights: list = field(default_factory=list)
    top_level_weights: list = field(default_factory=list)
    path: str | None = None


@dataclass
class Keras3Weights:
    """A Keras 3 weights tree: ``vars`` maps object paths ("vars", "layers/dense/vars",
    "layers/lstm/cell/vars", "optimizer/vars", ...) to their arrays in index order; ``names``
    maps a path to its group's ``@name`` attribute where the file has one. Datasets Keras
    marked ``dtype="bfloat16"`` are returned as float32 (NumPy has no bfloat16)."""
    vars: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def optimizer(self) -> list:
        return self.vars.get("optimizer/vars", [])

    def get(self, path, default=None):
        return self.vars.get(path.strip("/"), default)


# -------------------------------------------------------------------------------- opening

class _Opened:
    """Context manager giving an open h5py.File for a path, a file object, or an open file."""

    def __init__(self, source, label=None):
        self.source = source
        self.label = label
        self.own = None

    def __enter__(self):
        src = self.source
        if isinstance(src, (h5py.File, h5py.Group)):
            self.label = self.label or src.file.filename
            return src
        if isinstance(src, (str, bytes, os.PathLike)):
            self.label = self.label or os.fsdecode(src)
            if not os.path.exists(src):
                raise KerasFileError("file not found", self.label)
            if os.path.isdir(src):
                raise KerasFileError("is a directory, not an HDF5 file", self.label)
            if os.path.getsize(src) == 0:
                raise KerasFileError("empty file (0 bytes), not an HDF5 file", self.label)
        elif isinstance(src, io.IOBase) or hasattr(src, "read"):
            self.label = self.label or getattr(src, "name", None) or "<file object>"
        else:
            raise KerasFileError(f"cannot open {type(src).__name__} as HDF5", self.label)
        try:
            self.own = h5py.File(src, "r", locking=False)
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError/ValueError/... variously
            raise KerasFileError(f"not a readable HDF5 file (truncated or corrupt?): "
                                 f"{_exc_text(exc)}", self.label) from None
        return self.own

    def __exit__(self, *exc_info):
        if self.own is not None:
            try:
                self.own.close()
            except Exception:  # noqa: BLE001 - closing a corrupt file must not mask the error
                pass
        return False


def open_h5(source, label=None):
    """Context manager: an h5py.File open read-only on a path or file object (or the given open
    file), with open failures reported as KerasFileError."""
    return _Opened(source, label)


def _exc_text(exc):
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


def _guard(label, what, fn, *args):
    """Run an h5py-touching function, turning any low-level failure into KerasFileError."""
    try:
        return fn(*args)
    except KerasFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises many exception types on corrupt data
        raise KerasFileError(f"{what}: corrupt HDF5 content ({_exc_text(exc)})", label) from None


# --------------------------------------------------------------------------- attribute reading

def _text(value, what, label) -> str:
    """Decode a string attribute stored as str, bytes, numpy.bytes_ or a 0-d/1-element array."""
    if isinstance(value, np.ndarray):
        if value.size == 1 and value.dtype.kind in "OSU":
            value = value.reshape(()).item() if value.shape else value[()]
        else:
            raise KerasFileError(f"{what} is not a string (got an array of {value.dtype})", label)
    if isinstance(value, np.generic) and not isinstance(value, (np.bytes_, np.str_)):
        raise KerasFileError(f"{what} is not a string", label)
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise KerasFileError(f"{what} is not valid UTF-8", label) from None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return str(value)
        except UnicodeEncodeError:
            # h5py decodes ASCII-tagged strings with surrogateescape; recover the UTF-8 bytes
            try:
                return value.encode("utf-8", "surrogateescape").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                raise KerasFileError(f"{what} is not valid UTF-8", label) from None
    raise KerasFileError(f"{what} is not a string (got {type(value).__name__})", label)


_MAX_ATTR_BYTES = 64 * 1024 ** 2


def _attr(holder, name, label, numeric_ok=False):
    """Read attribute `name` only after checking, without converting any data, that its HDF5
    type is a string (or, if `numeric_ok`, a plain integer/float: Keras's empty weight_names)
    and that its dataspace is scalar or 1-D of bounded size. The HDF5 library can crash on
    corrupt variable-length data of other types, so those are never read."""
    what = f"attribute {name!r} of {holder.name}"
    aid = holder.attrs.get_id(name)
    tid = aid.get_type()
    cls = tid.get_class()
    if cls == h5py.h5t.STRING:
        itemsize = 16 if tid.is_variable_str() else tid.get_size()
    elif numeric_ok and cls in (h5py.h5t.INTEGER, h5py.h5t.FLOAT):
        itemsize = tid.get_size()
    else:
        raise KerasFileError(f"{what} has an unexpected HDF5 type (class {cls})", label)
    space = aid.get_space()
    kind = space.get_simple_extent_type()
    if kind == h5py.h5s.SCALAR:
        count = 1
    elif kind == h5py.h5s.SIMPLE:
        dims = space.shape
        if len(dims) != 1:
            raise KerasFileError(f"{what} is not a 1-D list", label)
        count = dims[0]
    else:
        raise KerasFileError(f"{what} has no data", label)
    if count > limits.MAX_NAMES or count * max(itemsize, 1) > _MAX_ATTR_BYTES:
        raise UnsafeFileError(f"{what} declares {count} values", label)
    return holder.attrs[name]


def _optional_text_attr(obj, name, label):
    if name not in obj.attrs:
        return None
    return _text(_attr(obj, name, label), f"attribute {name!r} of {obj.name}", label)


def _names_from(raw, what, label) -> list:
    if isinstance(raw, (str, bytes, np.bytes_, np.str_)):
        return [_text(raw, what, label)]
    if not isinstance(raw, np.ndarray):
        raise KerasFileError(f"{what} is not a list of names", label)
    if raw.size == 0:
        return []
    if raw.dtype.kind not in "OSU":
        raise KerasFileError(f"{what} is not a list of names (dtype {raw.dtype})", label)
    if raw.ndim != 1:
        raw = raw.reshape(-1)
    if raw.size > limits.MAX_NAMES:
        raise UnsafeFileError(f"{what} lists more than {limits.MAX_NAMES} names", label)
    return [_text(item, what, label) for item in raw]


def _read_names(group, name, label, required=True):
    """`layer_names`/`weight_names`, also in the chunked form name0, name1, ..."""
    what = f"attribute {name!r} of {group.name}"
    attrs = group.attrs
    if name in attrs:
        return _names_from(_attr(group, name, label, numeric_ok=True), what, label)
    if f"{name}0" in attrs:
        names = []
        index = 0
        while f"{name}{index}" in attrs:
            names.extend(_names_from(_attr(group, f"{name}{index}", label, numeric_ok=True),
                                     f"{what} (chunk {index})", label))
            if len(names) > limits.MAX_NAMES:
                raise UnsafeFileError(f"{what} lists more than {limits.MAX_NAMES} names", label)
            index += 1
        return names
    if required:
        raise KerasFileError(f"{group.name} has no {name!r} attribute", label)
    return []


# ----------------------------------------------------------------------------- object access

def _split_path(name, what, label):
    if not isinstance(name, str) or not name:
        raise KerasFileError(f"{what}: empty name", label)
    if name.startswith("/"):
        raise UnsafeFileError(f"{what}: absolute name {name!r}", label)
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafeFileError(f"{what}: invalid name {name!r}", label)
    return parts


def _resolve(group, name, what, label):
    """Follow `name` (which may contain '/') from `group` through hard links only."""
    obj = group
    for part in _split_path(name, what, label):
        if not isinstance(obj, h5py.Group):
            raise KerasFileError(f"{what}: {obj.name} is not a group", label)
        link = obj.get(part, getlink=True)
        if link is None:
            raise KerasFileError(f"{what}: {name!r} not found in {group.name}", label)
        if not isinstance(link, h5py.HardLink):
            raise UnsafeFileError(f"{what}: {part!r} in {obj.name} is a {type(link).__name__}; "
                                  "links are refused", label)
        try:
            obj = obj[part]
        except KeyError:
            raise KerasFileError(f"{what}: link {part!r} in {obj.name} cannot be resolved",
                                 label) from None
    return obj


def _resolve_group(parent, name, label, what=None):
    """`_resolve` for a path that must lead to a group."""
    what = what or repr(name)
    obj = _resolve(parent, name, what, label)
    if not isinstance(obj, h5py.Group):
        raise KerasFileError(f"{what} is not a group", label)
    return obj


def _read_dataset(obj, what, label) -> np.ndarray:
    if not isinstance(obj, h5py.Dataset):
        raise KerasFileError(f"{what} is a group, not a dataset", label)
    dtype = obj.dtype
    bfloat16 = False
    if "dtype" in obj.attrs:
        try:
            bfloat16 = _text(_attr(obj, "dtype", label), f"{what} dtype attribute",
                             label) == "bfloat16"
        except KerasFileError:
            bfloat16 = False
    if dtype.kind not in _NUMERIC_KINDS and not (bfloat16 and dtype.itemsize == 2):
        raise KerasFileError(f"{what} has non-numeric dtype {dtype}", label)
    shape = obj.shape
    if shape is None:
        raise KerasFileError(f"{what} has no dataspace (empty dataset)", label)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > limits.MAX_ARRAY_BYTES:
        raise UnsafeFileError(f"{what} declares shape {shape} ({nbytes} bytes), more than "
                              f"{limits.MAX_ARRAY_BYTES}", label)
    if obj.is_virtual:
        raise UnsafeFileError(f"{what} is a virtual dataset", label)
    dcpl = obj.id.get_create_plist()
    if dcpl.get_external_count() > 0:
        raise UnsafeFileError(f"{what} stores its data in external files", label)
    if nbytes > 0:
        if obj.chunks is None:
            offset = obj.id.get_offset()
            if offset is None:
                if nbytes > limits.SMALL_ARRAY_BYTES:
                    raise UnsafeFileError(f"{what} declares {nbytes} bytes but stores none", label)
            else:
                file_size = obj.file.id.get_filesize()
                if offset + nbytes > file_size:
                    raise KerasFileError(f"{what} extends beyond the end of the file "
                                         "(truncated file?)", label)
        else:
            stored = obj.id.get_storage_size()
            if (nbytes > limits.SMALL_ARRAY_BYTES
                    and nbytes > limits.MAX_EXPANSION_RATIO * max(stored, 1)):
                raise UnsafeFileError(f"{what} would expand {stored} stored bytes to {nbytes}",
                                      label)
    if _PROBING and obj.chunks is None:
        return None                    # raw contiguous bytes: already bounds-checked above
    value = np.asarray(obj[()])
    if value.shape != tuple(shape):
        raise KerasFileError(f"{what} read back with shape {value.shape}, expected {shape}", label)
    if bfloat16:
        value = _bfloat16_to_float32(value)
    return value


def _bfloat16_to_float32(value):
    """bfloat16 bits (2-byte opaque/uint16 storage) -> float32 values; floats pass through."""
    if value.dtype.kind == "f":
        return value.astype(np.float32)
    bits = np.ascontiguousarray(value).view(np.uint16).astype(np.uint32) << 16
    return bits.view(np.float32)


def _read_weight_list(group, names, label):
    out = []
    for name in names:
        what = f"weight {name!r} of {group.name}"
        obj = _resolve(group, name, what, label)
        out.append((name, _read_dataset(obj, what, label)))
    return out


def _read_layers(root, label):
    """(layer_weights, top_level_weights) from a group laid out like `model_weights`."""
    layer_names = _read_names(root, "layer_names", label)
    seen = set()
    layers = []
    for name in layer_names:
        if name in seen:
            raise KerasFileError(f"layer {name!r} is listed twice in layer_names", label)
        seen.add(name)
        group = _resolve_group(root, name, label, f"layer {name!r}")
        weight_names = _read_names(group, "weight_names", label, required=False)
        layers.append((name, _read_weight_list(group, weight_names, label)))
    top = []
    if "top_level_model_weights" in root:
        group = _resolve_group(root, "top_level_model_weights", label)
        top = _read_weight_list(group, _read_names(group, "weight_names", label, required=False),
                                label)
    return layers, top


def _json_attr(f, name, label, required):
    if name not in f.attrs:
        if required:
            raise KerasFileError(f"no {name!r} attribute: not a full-model Keras file "
                                 "(weights-only files have no config)", label)
        return None
    text = _text(_attr(f, name, label), f"attribute {name!r}", label)
    if _PROBING:
        return {}                      # JSON parsing is pure Python: nothing to isolate
    return loads_json_bytes(text, f"{label} [{name}]")


# ----------------------------------------------------------------------------- legacy readers

def read_h5_model(path) -> H5ModelFile:
    """Read a legacy full-model HDF5 file (Keras 1/2/3 `model.save("m.h5")`)."""
    _probe(path, _source_label(path), "model")
    with open_h5(path) as f:
        label = _label(path, f)
        return _guard(label, "reading the model file", _read_h5_model, f, label)


def _label(path, f):
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsdecode(path)
    return f.file.filename


def _read_h5_model(f, label):
    model_config = _json_attr(f, "model_config", label, required=True)
    training_config = _json_attr(f, "training_config", label, required=False)
    if "model_weights" not in f:
        raise KerasFileError("missing group 'model_weights'", label)
    mw = _resolve_group(f, "model_weights", label)
    keras_version = _optional_text_attr(f, "keras_version", label) or \
        _optional_text_attr(mw, "keras_version", label)
    backend = _optional_text_attr(f, "backend", label) or _optional_text_attr(mw, "backend", label)
    layers, top = _read_layers(mw, label)
    optimizer = []
    if "optimizer_weights" in f:
        og = _resolve_group(f, "optimizer_weights", label)
        optimizer = _read_weight_list(og, _read_names(og, "weight_names", label, required=False),
                                      label)
    return H5ModelFile(model_config=model_config, training_config=training_config,
                       keras_version=keras_version, backend=backend, layer_weights=layers,
                       optimizer_weights=optimizer, top_level_weights=top, path=label)


def read_h5_weights(path) -> H5WeightsFile:
    """Read a legacy weights-only file (root `layer_names`), or the `model_weights` group of a
    full-model file, as Keras's `load_weights("x.h5")` does."""
    _probe(path, _source_label(path), "weights")
    with open_h5(path) as f:
        label = _label(path, f)
        return _guard(label, "reading the weights", _read_h5_weights, f, label)


def _read_h5_weights(f, label):
    root = f
    if "layer_names" not in f.attrs and "layer_names0" not in f.attrs:
        if "model_weights" in f:
            root = _resolve_group(f, "model_weights", label)
        else:
            raise KerasFileError("no 'layer_names' attribute: not a legacy Keras weights file "
                                 "(a Keras 3 .weights.h5 file is read with read_keras3_weights)",
                                 label)
    keras_version = _optional_text_attr(root, "keras_version", label) or \
        _optional_text_attr(f, "keras_version", label)
    backend = _optional_text_attr(root, "backend", label) or _optional_text_attr(f, "backend", label)
    layers, top = _read_layers(root, label)
    return H5WeightsFile(keras_version=keras_version, backend=backend, layer_weights=layers,
                         top_level_weights=top, path=label)


# ----------------------------------------------------------------------------- legacy writers

def _check_weight_name(name, what):
    if not isinstance(name, str):
        raise KerasFileError(f"{what}: names must be strings, got {type(name).__name__}")
    _split_path(name, what, None)
    if len(name.encode("utf-8")) > HDF5_OBJECT_HEADER_LIMIT:
        raise KerasFileError(f"{what}: name longer than {HDF5_OBJECT_HEADER_LIMIT} bytes")


def _as_array(value, what):
    arr = np.asarray(value)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise KerasFileError(f"{what}: cannot store dtype {arr.dtype}")
    return arr


def _check_weight_list(weights, owner):
    seen = set()
    out = []
    for item in weights:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise KerasFileError(f"{owner}: each weight must be a (name, array) pair")
        name, value = item
        _check_weight_name(name, f"{owner} weight {name!r}")
        if name in seen:
            raise KerasFileError(f"{owner}: duplicate weight name {name!r}")
        seen.add(name)
        out.append((name, _as_array(value, f"{owner} weight {name!r}")))
    names = sorted(seen)
    for a, b in zip(names, names[1:]):
        if b.startswith(a + "/"):
            raise KerasFileError(f"{owner}: weight name {a!r} is also a group of {b!r}")
    return out


def _check_layers(layer_weights):
    seen = set()
    out = []
    for item in layer_weights:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise KerasFileError("layer_weights items must be (layer_name, weights) pairs")
        name, weights = item
        _check_weight_name(name, f"layer {name!r}")
        if name in seen:
            raise KerasFileError(f"duplicate layer name {name!r}")
        if name == "top_level_model_weights":
            raise KerasFileError("'top_level_model_weights' is reserved and cannot be a layer name")
        seen.add(name)
        out.append((name, _check_weight_list(weights, f"layer {name!r}")))
    return out


def _write_names_attr(group, name, names):
    """Keras's save_attributes_to_hdf5_group: a vlen string list, split into name0, name1, ...
    when the fixed-width array would exceed the HDF5 object header limit; [] is written as
    an empty float64 array (what Keras writes)."""
    encoded = [n.encode("utf-8") for n in names]
    if not encoded:
        group.attrs[name] = np.zeros((0,), dtype=np.float64)
        return
    array = np.asarray(encoded)
    chunks = 1
    parts = [array]
    while any(p.nbytes > HDF5_OBJECT_HEADER_LIMIT for p in parts):
        chunks += 1
        parts = np.array_split(array, chunks)
    if chunks == 1:
        group.attrs[name] = encoded
    else:
        for index, part in enumerate(parts):
            group.attrs[f"{name}{index}"] = part


def _write_weight_group(group, weights):
    _write_names_attr(group, "weight_names", [n for n, _ in weights])
    for name, value in weights:
        group.create_dataset(name, data=value)


def _write_layers(root, layers, top_level, keras_version, backend):
    _write_names_attr(root, "layer_names", [name for name, _ in layers])
    root.attrs["backend"] = backend.encode("utf-8")
    root.attrs["keras_version"] = str(keras_version).encode("utf-8")
    by_name = dict(layers)
    for name in sorted(by_name):
        group = root.create_group(name)
        _write_weight_group(group, by_name[name])
    _write_weight_group(root.create_group("top_level_model_weights"), top_level)


def _write_guarded(path, what, body):
    label = os.fsdecode(path)
    try:
        with atomic_h5(path) as f:
            body(f)
    except KerasFileError as exc:
        if exc.path is None:
            raise KerasFileError(exc.reason, label) from None
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/OS failures become KerasFileError
        raise KerasFileError(f"{what} failed ({_exc_text(exc)})", label) from None


def write_h5_weights(path, layer_weights, *, top_level_weights=(),
                     keras_version=DEFAULT_KERAS_VERSION, backend=DEFAULT_BACKEND) -> None:
    """Write a legacy weights-only `.h5` (Keras 2 `save_weights("w.h5")` layout), atomically.

    `layer_weights`: [(layer_name, [(weight_name, array), ...]), ...] in model layer order,
    weightless layers included; weight names are dataset paths inside the layer group (Keras 2
    style ``dense/kernel:0`` or Keras 3 style ``dense/kernel``)."""
    layers = _check_layers(layer_weights)
    top = _check_weight_list(top_level_weights, "top_level_model_weights")
    _write_guarded(path, "writing the weights file",
                   lambda f: _write_layers(f, layers, top, keras_version, backend))


def write_h5_model(path, model_config, training_config, layer_weights, optimizer_weights=(), *,
                   top_level_weights=(), keras_version=DEFAULT_KERAS_VERSION,
                   backend=DEFAULT_BACKEND) -> None:
    """Write a legacy full-model `.h5` file, atomically.

    `model_config`/`training_config` are dicts in the dialect the reader needs
    (``config_dialects.to_keras2_config`` / ``to_keras2_training_config`` for files that tf-keras
    2.x and Keras 3 both load); `training_config` may be None. `optimizer_weights`:
    [(name, array), ...] in the optimizer's variable order (group omitted when empty)."""
    if not isinstance(model_config, dict):
        raise KerasFileError("model_config must be a dict")
    if training_config is not None and not isinstance(training_config, dict):
        raise KerasFileError("training_config must be a dict or None")
    layers = _check_layers(layer_weights)
    top = _check_weight_list(top_level_weights, "top_level_model_weights")
    optimizer = _check_weight_list(optimizer_weights, "optimizer_weights")
    model_json = dumps_json(model_config).encode("utf-8")
    training_json = None if training_config is None else dumps_json(training_config).encode("utf-8")

    def body(f):
        f.attrs["keras_version"] = str(keras_version)
        f.attrs["backend"] = str(backend)
        f.attrs["model_config"] = model_json
        _write_layers(f.create_group("model_weights"), layers, top, keras_version, backend)
        if training_json is not None:
            f.attrs["training_config"] = training_json
        if optimizer:
            _write_weight_group(f.create_group("optimizer_weights"), optimizer)

    _write_guarded(path, "writing the model file", body)


# --------------------------------------------------------------------------- Keras 3 layout

def _read_vars_tree(f, label):
    """{path: {index: array}} and {path: name} for every `vars` group of a Keras 3 weights file."""
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        raise KerasFileError("this is a legacy Keras weights file (root 'layer_names'), not the "
                             "Keras 3 .weights.h5 layout", label)
    if "model_config" in f.attrs:
        raise KerasFileError("this is a legacy full-model .h5 file, not the Keras 3 .weights.h5 "
                             "layout", label)
    tree = {}
    names = {}
    stack = [(f, "")]
    objects = 0
    while stack:
        group, prefix = stack.pop()
        for key in sorted(group.keys()):
            objects += 1
            if objects > MAX_OBJECTS:
                raise UnsafeFileError(f"more than {MAX_OBJECTS} objects", label)
            link = group.get(key, getlink=True)
            path = f"{prefix}{key}"
            if link is None:
                raise KerasFileError(f"{path!r} is listed but cannot be resolved", label)
            if not isinstance(link, h5py.HardLink):
                raise UnsafeFileError(f"{path!r} is a {type(link).__name__}; links are refused",
                                      label)
            obj = group[key]
            if not isinstance(obj, h5py.Group):
                continue                      # stray dataset outside any vars group: not a weight
            if key == "vars" and all(isinstance(group[key].get(k, getlink=True), h5py.HardLink)
                                     and isinstance(obj[k], h5py.Dataset) for k in obj.keys()):
                tree[path] = _read_vars_group(obj, path, label)
                if "name" in obj.attrs:
                    names[path] = _text(_attr(obj, "name", label), f"{path} @name", label)
            else:
                stack.append((obj, path + "/"))
    return tree, names


def _read_vars_group(group, path, label):
    values = {}
    for key in group.keys():
        if not _INDEX_RE.match(key):
            raise KerasFileError(f"{path}: dataset name {key!r} is not a variable index", label)
        values[int(key)] = _read_dataset(group[key], f"{path}/{key}", label)
    return values


def _ordered(values, path, label):
    count = len(values)
    if sorted(values) != list(range(count)):
        missing = sorted(set(range(count)) - set(values))
        raise KerasFileError(f"{path}: variable indices are not 0..{count - 1}"
                             + (f" (missing {missing[0]})" if missing else ""), label)
    return [values[i] for i in range(count)]


def read_keras3_weights(path_or_h5file, *, label=None) -> Keras3Weights:
    """Read the Keras 3 weights layout from a path, a file object, or an open h5py.File."""
    _probe(path_or_h5file, label or _source_label(path_or_h5file), "keras3")
    with open_h5(path_or_h5file, label) as f:
        label = label or (os.fsdecode(path_or_h5file)
                          if isinstance(path_or_h5file, (str, bytes, os.PathLike))
                          else f.file.filename)

        def body():
            tree, names = _read_vars_tree(f, label)
            if not tree:
                raise KerasFileError("no 'vars' groups: not a Keras 3 weights file", label)
            ordered = {path: _ordered(values, path, label) for path, values in sorted(tree.items())}
            return Keras3Weights(vars=ordered, names=names, path=label)

        return _guard(label, "reading the weights", body)


def write_keras3_weights(path_or_h5file, weights, names=None) -> None:
    """Write a Keras 3 weights tree (:class:`Keras3Weights` or a mapping path -> arrays) to a
    path (atomically) or into an open, writable h5py.File. Paths must end in "vars"; the root
    "vars" group is always created. `names` (path -> object name) sets the `@name` attributes
    Keras >= 3.6 writes; for a Keras3Weights its own `names` are used by default."""
    if isinstance(weights, Keras3Weights):
        names = weights.names if names is None else names
        weights = weights.vars
    if not isinstance(weights, Mapping):
        raise KerasFileError("weights must be a Keras3Weights or a mapping path -> arrays")
    names = dict(names or {})
    items = []
    for path, arrays in weights.items():
        clean = path.strip("/") if isinstance(path, str) else path
        parts = _split_path(clean, f"weights path {path!r}", None)
        if parts[-1] != "vars":
            raise KerasFileError(f"weights path {path!r} must end in 'vars'")
        items.append((clean, [_as_array(a, f"{clean}/{i}") for i, a in enumerate(arrays)]))
    paths = [p for p, _ in items]
    if len(set(paths)) != len(paths):
        raise KerasFileError("duplicate weights paths")
    if "vars" not in paths:
        items.insert(0, ("vars", []))

    def body(f):
        for path, arrays in items:
            group = f.create_group(path) if path not in f else f[path]
            if path in names and names[path] is not None:
                group.attrs["name"] = str(names[path])
            for index, value in enumerate(arrays):
                group.create_dataset(str(index), data=value)

    if isinstance(path_or_h5file, (h5py.File, h5py.Group)):
        try:
            body(path_or_h5file)
        except Exception as exc:  # noqa: BLE001
            raise KerasFileError(f"writing the weights failed ({_exc_text(exc)})",
                                 path_or_h5file.file.filename) from None
    else:
        _write_guarded(path_or_h5file, "writing the weights file", body)


def write_sharded_weights(index_path, weights, max_shard_bytes) -> list:
    """Write a Keras 3 weights tree as `<base>.weights.json` plus `<base>_00000.weights.h5`, ...
    (the layout read_sharded_weights reads): `vars` groups in order, a new shard whenever the
    next group would pass `max_shard_bytes` (a group larger than that gets a shard of its own).
    Shards are written first, the index last, each atomically. Returns the shard paths."""
    from .atomic import atomic_write
    label = os.fsdecode(index_path)
    if not label.endswith(".weights.json"):
        raise KerasFileError("a sharded weights index must end in '.weights.json'", label)
    base = label[:-len(".weights.json")]
    groups, current, size, total = [], {}, 0, 0
    for path, arrays in weights.items():
        arrays = [_as_array(a, f"{path}/{i}") for i, a in enumerate(arrays)]
        nbytes = sum(a.nbytes for a in arrays)
        if current and size + nbytes > max_shard_bytes:
            groups.append(current)
            current, size = {}, 0
        current[path.strip("/")] = arrays
        size += nbytes
        total += nbytes
    groups.append(current)
    weight_map, written = {}, []
    for n, group in enumerate(groups):
        shard = f"{base}_{n:05d}.weights.h5"
        write_keras3_weights(shard, group)
        written.append(shard)
        for path in group:
            weight_map[f"/{path}"] = [os.path.basename(shard)]
    with atomic_write(label, "w") as fh:
        json.dump({"metadata": {"total_size": float(total)}, "weight_map": weight_map}, fh, indent=4)
    return written


def read_sharded_weights(index_path) -> Keras3Weights:
    """Read sharded Keras 3 weights: `<base>.weights.json` (``{"metadata": ...,
    "weight_map": {"/layers/dense/vars": ["<base>_00000.weights.h5"], ...}}``) and the shards
    it names, which must be plain file names in the same directory."""
    label = os.fsdecode(index_path)
    index = read_json_config(index_path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise KerasFileError("sharded weights index without a 'weight_map'", label)
    directory = os.path.dirname(os.path.abspath(label))
    wanted = {}
    for key, shards in weight_map.items():
        if isinstance(shards, str):
            shards = [shards]
        if not isinstance(key, str) or not isinstance(shards, list) or not shards:
            raise KerasFileError(f"weight_map entry {key!r} must list shard files", label)
        path = key.strip("/")
        _split_path(path, f"weight_map entry {key!r}", label)
        for shard in shards:
            if (not isinstance(shard, str) or not shard or shard in (".", "..")
                    or "/" in shard or "\\" in shard or os.path.isabs(shard) or "\x00" in shard):
                raise UnsafeFileError(f"weight_map entry {key!r}: shard name {shard!r} is not a "
                                      "plain file name", label)
            wanted.setdefault(shard, []).append(path)
    merged = {}
    names = {}
    for shard, paths in wanted.items():
        shard_path = os.path.join(directory, shard)
        _probe(shard_path, shard_path, "keras3")
        with open_h5(shard_path) as f:
            tree, shard_names = _guard(shard_path, "reading a shard", _read_vars_tree, f, shard_path)
        for path in paths:
            if path not in tree:
                raise KerasFileError(f"shard {shard!r} has no group {path!r}", label)
            target = merged.setdefault(path, {})
            for i, value in tree[path].items():
                if i in target:
                    raise KerasFileError(f"{path}/{i} appears in more than one shard", label)
                target[i] = value
            if path in shard_names:
                names[path] = shard_names[path]
    ordered = {path: _ordered(values, path, label) for path, values in sorted(merged.items())}
    if "vars" not in ordered:
        ordered["vars"] = []
    return Keras3Weights(vars=ordered, names=names, path=label)


# ----------------------------------------------------------------------- process isolation

def _source_label(source):
    if isinstance(source, (str, bytes, os.PathLike)):
        return os.fsdecode(source)
    if isinstance(source, (h5py.File, h5py.Group)):
        return source.file.filename
    return getattr(source, "name", None) or "<file object>"


def _walk_model(source):
    with open_h5(source) as f:
        _guard("probe", "probe", _read_h5_model, f, "probe")


def _walk_weights(source):
    with open_h5(source) as f:
        _guard("probe", "probe", _read_h5_weights, f, "probe")


def _walk_keras3(source):
    with open_h5(source) as f:
        _guard("probe", "probe", _read_vars_tree, f, "probe")


def _detect_walk(f):
    list(f.attrs.keys())
    for key in f.keys():
        f.get(key, getlink=True)
    if "model_weights" in f:
        f["model_weights"]


def _walk_detect(source):
    with open_h5(source) as f:
        _guard("probe", "probe", _detect_walk, f)


_PROBE_WALKS = {"model": _walk_model, "weights": _walk_weights, "keras3": _walk_keras3,
                "detect": _walk_detect}


def _probe(source, label, kind):
    """Run the metadata walk `kind` on `source` in a child process; raise KerasFileError if the
    HDF5 library crashes, hangs, runs out of memory or fails unexpectedly there."""
    if not ISOLATE_HDF5 or _PROBING or isinstance(source, (h5py.File, h5py.Group)):
        return
    if isinstance(source, (str, bytes, os.PathLike)) and not os.path.isfile(source):
        return                         # open_h5 reports missing files and directories itself
    key = _probe_key(source, kind)
    if key is not None and key in _PROBED_OK:
        return
    if hasattr(os, "fork") and threading.active_count() == 1:
        status = _probe_fork(source, kind)
    else:
        status = _probe_spawn(source, kind)
    if status is not None:
        raise KerasFileError(f"the HDF5 library {status} while parsing the file's metadata: "
                             "the file is corrupt", label)
    if key is not None:
        _PROBED_OK.add(key)


# Small files whose walk already passed, keyed by a digest of their bytes: loading one model
# reads the same file several times, and a probe costs a fork (tens of ms in a large process).
# Keying by content (not by mtime, whose granularity can hide a rewrite) means any change to the
# file is probed again; larger files are always probed (hashing them would cost more).
_PROBED_OK = set()
_PROBE_MEMO_MAX_BYTES = 16 << 20


def _probe_key(source, kind):
    if not isinstance(source, (str, bytes, os.PathLike)):
        return None
    try:
        if os.path.getsize(source) > _PROBE_MEMO_MAX_BYTES:
            return None
        with open(source, "rb") as fh:
            return kind, hashlib.blake2b(fh.read(), digest_size=20).digest()
    except OSError:
        return None


def _quiet_child():
    """No crash dumps or HDF5 diagnostics from the probe child: the parent reports."""
    try:
        import faulthandler
        faulthandler.disable()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (ImportError, OSError):
        pass


def _limit_memory():
    try:
        import resource
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = current + HDF5_PROBE_MEMORY
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError, AttributeError):
        pass


def _child_status(kind, source) -> str:
    """What the child reports: 'ok' when the walk finished or met a KerasFileError (the parent
    will meet the same one in-process), else a description of the failure."""
    global _PROBING
    _PROBING = True
    _limit_memory()
    try:
        _PROBE_WALKS[kind](source)
        return "ok"
    except KerasFileError:
        return "ok"
    except MemoryError:
        return f"needed more than {HDF5_PROBE_MEMORY} bytes of memory"
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
        return f"failed ({_exc_text(exc)})"


def _probe_fork(source, kind):
    position = source.tell() if hasattr(source, "tell") else None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # child: never returns
        try:
            os.close(read_end)
            _quiet_child()
            status = _child_status(kind, source)
            os.write(write_end, status.encode("utf-8", "replace")[:4000])
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        message, exit_status = _wait_child(pid, read_end)
    finally:
        os.close(read_end)
        if position is not None:
            source.seek(position)
    if exit_status is None:
        return f"did not finish within {HDF5_PROBE_TIMEOUT:g} s (hang)"
    if os.WIFSIGNALED(exit_status):
        return f"crashed (signal {os.WTERMSIG(exit_status)})"
    text = message.decode("utf-8", "replace")
    return None if text == "ok" else (text or "exited without a report")


def _wait_child(pid, read_end):
    """(report bytes, wait status) of the child; the status is None after killing it at the
    timeout. The report pipe reaches EOF when the child exits, normally or not."""
    deadline = time.monotonic() + HDF5_PROBE_TIMEOUT
    message = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
            os.waitpid(pid, 0)
            return message, None
        ready, _, _ = select.select([read_end], [], [], remaining)
        if ready:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            message += chunk
    return message, os.waitpid(pid, 0)[1]


_SPAWN_CODE = ("import sys\n"
               "from kcompile.saving import h5_format as m\n"
               "sys.stdout.write(m._child_status(sys.argv[1], sys.argv[2]))\n")


def _probe_spawn(source, kind):
    """Fallback when forking is unsafe (other threads running) or unavailable."""
    tmp = None
    try:
        if isinstance(source, (str, bytes, os.PathLike)):
            path = os.fsdecode(source)
        else:
            position = source.tell()
            source.seek(0)
            fd, tmp = tempfile.mkstemp(suffix=".h5")
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = source.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
            source.seek(position)
            path = tmp
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
        try:
            done = subprocess.run([sys.executable, "-c", _SPAWN_CODE, kind, path], env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=HDF5_PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"did not finish within {HDF5_PROBE_TIMEOUT:g} s (hang)"
        if done.returncode < 0:
            return f"crashed (signal {-done.returncode})"
        text = done.stdout.decode("utf-8", "replace").strip()
        if done.returncode != 0 or not text:
            return f"failed (exit status {done.returncode})"
        return None if text == "ok" else text
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
