"""Content-based detection of Keras file formats (spec section 0), never by file extension.

:func:`detect_format` returns one of ``FORMATS``:

* ``'keras_zip'``          ZIP (``PK`` magic) containing ``config.json``
* ``'h5_model'``           HDF5 with root attribute ``model_config``
* ``'h5_weights_legacy'``  HDF5 with root ``layer_names`` (or only a ``model_weights`` group)
* ``'h5_weights_keras3'``  HDF5 with ``vars``/``layers``/``optimizer`` groups, no ``layer_names``
* ``'weights_sharded'``    JSON with a ``weight_map`` (``<base>.weights.json``)
* ``'json'``               JSON object with ``class_name`` (``to_json()`` / ``config.json``)
* ``'yaml'``               YAML mapping with ``class_name`` (old ``to_yaml()``)

Anything else (empty, truncated, a text file named ``.h5``, an HDF5 file that is not a Keras
file, a ZIP without ``config.json``) raises KerasFileError saying what was found.
"""
from __future__ import annotations

import os

import h5py

from . import errors as limits
from .errors import KerasFileError
from .h5_format import _probe, open_h5
from .json_yaml import loads_json_bytes, read_yaml_config

__all__ = ["detect_format", "FORMATS", "HDF5_SIGNATURE", "ZIP_SIGNATURES"]

FORMATS = ("keras_zip", "h5_model", "h5_weights_legacy", "h5_weights_keras3", "weights_sharded",
           "json", "yaml")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_KERAS3_GROUPS = ("vars", "layers", "optimizer", "_layer_checkpoint_dependencies")


def _has_hdf5_signature(fh, size) -> bool:
    """HDF5 puts its signature at offset 0 or, after a user block, at 512, 1024, 2048, ..."""
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        fh.seek(offset)
        if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _suffix_hint(label) -> str:
    lower = label.lower()
    for suffix, kind in ((".h5", "HDF5"), (".hdf5", "HDF5"), (".keras", "ZIP (.keras)")):
        if lower.endswith(suffix):
            return f" (the name suggests {kind}, but the content is not)"
    return ""


def detect_format(path) -> str:
    """Identify a Keras file by its content; see the module docstring for the results."""
    label = os.fsdecode(path)
    if not os.path.exists(path):
        raise KerasFileError("file not found", label)
    if os.path.isdir(path):
        raise KerasFileError("is a directory (SavedModel directories are not supported)", label)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            is_hdf5 = _has_hdf5_signature(fh, size)
    except OSError as exc:
        raise KerasFileError(f"cannot read file ({exc.strerror or exc})", label) from None
    if size == 0:
        raise KerasFileError("empty file (0 bytes)", label)
    if head.startswith(ZIP_SIGNATURES):
        return _detect_zip(path, label)
    if is_hdf5:
        return _detect_hdf5(path, label)
    return _detect_text(path, label, size)


def _detect_zip(path, label):
    from .keras_zip import _open_zip

    with _open_zip(path) as zf:
        names = set(zf.namelist())
    if "config.json" not in names:
        raise KerasFileError("ZIP archive without config.json: not a .keras model archive", label)
    return "keras_zip"


def _detect_hdf5(path, label):
    _probe(path, label, "detect")
    with open_h5(path) as f:
        try:
            attrs = set(f.attrs.keys())
            keys = set(f.keys())
            if "model_config" in attrs:
                return "h5_model"
            if "layer_names" in attrs or "layer_names0" in attrs:
                return "h5_weights_legacy"
            if "model_weights" in keys and isinstance(f["model_weights"], h5py.Group):
                return "h5_weights_legacy"
            if keys & set(_KERAS3_GROUPS):
                return "h5_weights_keras3"
        except KerasFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt HDF5 metadata
            raise KerasFileError(f"corrupt HDF5 file ({type(exc).__name__}: {exc})", label) \
                from None
    raise KerasFileError("HDF5 file is not a Keras file (no model_config, layer_names or "
                         "vars/layers groups)", label)


def _detect_text(path, label, size):
    hint = _suffix_hint(label)
    if size > limits.MAX_TEXT_BYTES:
        raise KerasFileError(f"unrecognised content{hint}: not HDF5, ZIP or a config of at most "
                             f"{limits.MAX_TEXT_BYTES} bytes", label)
    with open(path, "rb") as fh:
        data = fh.read(limits.MAX_TEXT_BYTES + 1)
    if b"\x00" in data[:4096]:
        raise KerasFileError(f"unrecognised binary content{hint}: not HDF5 or ZIP "
                             "(truncated or corrupt?)", label)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise KerasFileError(f"unrecognised content{hint}: neither HDF5, ZIP nor UTF-8 text",
                             label) from None
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            value = loads_json_bytes(text, label)
        except KerasFileError as exc:
            raise type(exc)(f"{exc.reason}{hint}", label) from None
        if "weight_map" in value:
            return "weights_sharded"
        if "class_name" in value:
            return "json"
        raise KerasFileError(f"JSON object without 'class_name' or 'weight_map'{hint}: not a "
                             "Keras config", label)
    try:
        value = read_yaml_config(text if "\n" in text else text + "\n")
    except KerasFileError as exc:
        raise type(exc)(f"unrecognised content{hint}: not HDF5, ZIP, JSON or YAML "
                        f"({exc.reason})", label) from None
    if "class_name" in value:
        return "yaml"
    raise KerasFileError(f"unrecognised content{hint}: a YAML/text file without 'class_name'",
                         label)
