"""The `.keras` archive (Keras 3 native format): a ZIP holding `metadata.json`, `config.json`,
`model.weights.h5` and optional `assets/...` files (spec section 3).

* :func:`read_keras_zip` -> :class:`KerasZipFile` (raw `config` and `metadata` dicts, the weights
  as a :class:`~.h5_format.Keras3Weights` tree, the `assets/` member names). Member names are
  checked (no absolute paths, no `..`, no backslashes or NUL, no duplicates), declared sizes and
  compression ratios are bounded before anything is inflated (a zip bomb is refused from its
  central directory alone), and every read is capped at the member's declared size.
* :func:`read_keras_zip_asset` returns one asset's bytes with the same checks.
* :func:`write_keras_zip` writes an archive the way Keras does (stored, not deflated, members in
  the order metadata.json, config.json, model.weights.h5, assets), atomically.
"""
from __future__ import annotations

import datetime
import io
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import h5py

from .atomic import atomic_write, scratch_file
from . import errors as limits
from .errors import KerasFileError, UnsafeFileError
from .h5_format import Keras3Weights, read_keras3_weights, write_keras3_weights
from .json_yaml import dumps_json, loads_json_bytes

__all__ = ["KerasZipFile", "read_keras_zip", "read_keras_zip_asset", "write_keras_zip",
           "check_zip_members", "DEFAULT_KERAS3_VERSION"]

CONFIG_NAME = "config.json"
METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "model.weights.h5"
NPZ_WEIGHTS_NAME = "model.weights.npz"
ASSETS_PREFIX = "assets/"
DEFAULT_KERAS3_VERSION = "3.15.1"
_CHUNK = 1 << 20
_STREAM_ABOVE = 1 << 30          # weights files this large are streamed into the archive


@dataclass
class KerasZipFile:
    """Contents of a `.keras` archive. `weights` is None when the archive has no weights file;
    `assets` lists member names under `assets/` (read them with read_keras_zip_asset)."""
    config: dict
    metadata: dict
    weights: Keras3Weights | None
    assets: list = field(default_factory=list)
    members: list = field(default_factory=list)
    path: str | None = None


def _open_zip(path):
    label = os.fsdecode(path)
    if not os.path.exists(path):
        raise KerasFileError("file not found", label)
    if os.path.isdir(path):
        raise KerasFileError("is a directory, not a .keras archive", label)
    if os.path.getsize(path) == 0:
        raise KerasFileError("empty file (0 bytes), not a .keras archive", label)
    try:
        return zipfile.ZipFile(path, "r")
    except zipfile.BadZipFile as exc:
        raise KerasFileError(f"not a valid ZIP archive ({exc})", label) from None
    except (zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError,
            RuntimeError, KeyError, IndexError, OverflowError, UnicodeDecodeError) as exc:
        raise KerasFileError(f"unreadable ZIP archive ({type(exc).__name__}: {exc})",
                             label) from None


def check_zip_members(zf, label) -> list:
    """Validate every member of an open ZipFile before anything is extracted; returns the
    member infos. Raises UnsafeFileError for unsafe names, duplicate names, absurd declared
    sizes or compression ratios, and KerasFileError for encrypted or inconsistent entries."""
    infos = zf.infolist()
    if len(infos) > limits.MAX_ZIP_MEMBERS:
        raise UnsafeFileError(f"archive has more than {limits.MAX_ZIP_MEMBERS} members", label)
    seen = set()
    total = 0
    for info in infos:
        name = info.filename
        if ("\x00" in name or "\\" in name or name.startswith("/") or os.path.isabs(name)
                or (len(name) > 1 and name[1] == ":")):
            raise UnsafeFileError(f"member name {name!r} is absolute or contains unsafe characters",
                                  label)
        parts = name.split("/")
        if any(part == ".." for part in parts) or name in ("", "."):
            raise UnsafeFileError(f"member name {name!r} escapes the archive", label)
        if name in seen:
            raise UnsafeFileError(f"member {name!r} appears twice", label)
        seen.add(name)
        if info.flag_bits & 0x1:
            raise KerasFileError(f"member {name!r} is encrypted", label)
        if info.file_size < 0 or info.compress_size < 0:
            raise KerasFileError(f"member {name!r} has a negative size", label)
        if info.file_size > limits.MAX_ZIP_MEMBER_BYTES:
            raise UnsafeFileError(f"member {name!r} declares {info.file_size} bytes, more than "
                                  f"{limits.MAX_ZIP_MEMBER_BYTES}", label)
        if info.compress_type == zipfile.ZIP_STORED:
            if info.compress_size != info.file_size:
                raise KerasFileError(f"stored member {name!r} has inconsistent sizes", label)
        elif info.file_size > limits.SMALL_ZIP_MEMBER and \
                info.file_size > limits.MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise UnsafeFileError(f"member {name!r} would expand {info.compress_size} bytes to "
                                  f"{info.file_size} (zip bomb?)", label)
        total += info.file_size
        if total > limits.MAX_ZIP_TOTAL_BYTES:
            raise UnsafeFileError(f"members declare more than {limits.MAX_ZIP_TOTAL_BYTES} bytes "
                                  "in all", label)
    return infos


def _copy_member(zf, info, out, label, limit):
    """Copy a member's data to `out`, refusing more bytes than declared (or than `limit`)."""
    if info.file_size > limit:
        raise UnsafeFileError(f"member {info.filename!r} is larger than {limit} bytes", label)
    written = 0
    try:
        with zf.open(info, "r") as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > info.file_size:
                    raise UnsafeFileError(f"member {info.filename!r} inflates beyond its declared "
                                          "size", label)
                out.write(chunk)
    except KerasFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, OverflowError) as exc:
        raise KerasFileError(f"member {info.filename!r} is corrupt ({type(exc).__name__}: {exc})",
                             label) from None
    if written != info.file_size:
        raise KerasFileError(f"member {info.filename!r} is truncated", label)


def _read_member_bytes(zf, info, label, limit):
    buffer = io.BytesIO()
    _copy_member(zf, info, buffer, label, limit)
    return buffer.getvalue()


def _read_json_member(zf, infos_by_name, name, label, required):
    info = infos_by_name.get(name)
    if info is None:
        if required:
            raise KerasFileError(f"archive has no {name!r} (not a Keras model archive)", label)
        return None
    data = _read_member_bytes(zf, info, label, limits.MAX_TEXT_BYTES)
    return loads_json_bytes(data, f"{label} [{name}]")


def read_keras_zip(path, *, load_weights=True) -> KerasZipFile:
    """Read a `.keras` archive: config, metadata, the Keras 3 weights tree and the asset list.
    The weights file is extracted to memory (up to MAX_IN_MEMORY_WEIGHTS bytes) or to a temporary
    file that is removed afterwards."""
    label = os.fsdecode(path)
    zf = _open_zip(path)
    with zf:
        infos = check_zip_members(zf, label)
        by_name = {info.filename: info for info in infos}
        config = _read_json_member(zf, by_name, CONFIG_NAME, label, required=True)
        metadata = _read_json_member(zf, by_name, METADATA_NAME, label, required=False) or {}
        weights = None
        if WEIGHTS_NAME in by_name:
            if load_weights:
                weights = _read_weights_member(zf, by_name[WEIGHTS_NAME], label)
        elif NPZ_WEIGHTS_NAME in by_name:
            raise KerasFileError("weights stored as model.weights.npz (weights_format='npz') need "
                                 "pickle to read and are not supported", label)
        assets = [info.filename for info in infos
                  if info.filename.startswith(ASSETS_PREFIX) and not info.is_dir()]
        return KerasZipFile(config=config, metadata=metadata, weights=weights, assets=assets,
                            members=[info.filename for info in infos], path=label)


def _read_weights_member(zf, info, label):
    inner = f"{label} [{WEIGHTS_NAME}]"
    if info.file_size <= limits.MAX_IN_MEMORY_WEIGHTS:
        data = _read_member_bytes(zf, info, label, limits.MAX_IN_MEMORY_WEIGHTS)
        buffer = io.BytesIO(data)
        return read_keras3_weights(buffer, label=inner)
    fd, tmp = tempfile.mkstemp(suffix=".weights.h5")
    try:
        with os.fdopen(fd, "wb") as out:
            _copy_member(zf, info, out, label, limits.MAX_ZIP_MEMBER_BYTES)
        weights = read_keras3_weights(tmp, label=inner)
        weights.path = inner
        return weights
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def read_keras_zip_asset(path, name, *, limit=None) -> bytes:
    """The bytes of one member of a `.keras` archive (e.g. 'assets/layers/string_lookup/
    vocabulary.txt'), with the same name/size checks as read_keras_zip."""
    limit = limits.MAX_TEXT_BYTES if limit is None else limit
    label = os.fsdecode(path)
    zf = _open_zip(path)
    with zf:
        infos = check_zip_members(zf, label)
        by_name = {info.filename: info for info in infos}
        if name not in by_name:
            raise KerasFileError(f"archive has no member {name!r}", label)
        return _read_member_bytes(zf, by_name[name], label, limit)


def _check_asset_name(name):
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name \
            or "\x00" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise KerasFileError(f"invalid asset name {name!r}")
    return name if name.startswith(ASSETS_PREFIX) else ASSETS_PREFIX + name


def write_keras_zip(path, config, metadata=None, weights=None, assets=None) -> None:
    """Write a `.keras` archive atomically.

    `config`: the Keras 3 config dict (``config_dialects.to_keras3_config``). `metadata`: dict,
    default ``{"keras_version": DEFAULT_KERAS3_VERSION, "date_saved": now}``. `weights`: a
    Keras3Weights, a mapping path -> arrays, or a callable receiving an open writable h5py.File
    (None writes a weights file with only the root `vars` group). `assets`: mapping member name
    (with or without the `assets/` prefix) -> bytes."""
    if not isinstance(config, dict):
        raise KerasFileError("config must be a dict")
    if metadata is None:
        metadata = {"keras_version": DEFAULT_KERAS3_VERSION,
                    "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    if assets is not None and not isinstance(assets, Mapping):
        raise KerasFileError("assets must be a mapping name -> bytes")
    asset_items = []
    for name, data in (assets or {}).items():
        if not isinstance(data, (bytes, bytearray)):
            raise KerasFileError(f"asset {name!r} must be bytes")
        asset_items.append((_check_asset_name(name), bytes(data)))
    config_bytes = dumps_json(config).encode("utf-8")
    metadata_bytes = dumps_json(metadata).encode("utf-8")
    label = os.fsdecode(path)
    try:
        with scratch_file(path, ".weights.h5.tmp") as tmp_weights:   # beside the archive, removed after
            _write_weights_file(tmp_weights, weights)
            with atomic_write(path, "wb") as out:
                with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                    zf.writestr(METADATA_NAME, metadata_bytes)
                    zf.writestr(CONFIG_NAME, config_bytes)
                    if os.path.getsize(tmp_weights) < _STREAM_ABOVE:
                        with open(tmp_weights, "rb") as src:
                            zf.writestr(WEIGHTS_NAME, src.read())
                    else:
                        with open(tmp_weights, "rb") as src, \
                                zf.open(WEIGHTS_NAME, "w", force_zip64=True) as dst:
                            shutil.copyfileobj(src, dst, _CHUNK)
                    for name, data in asset_items:
                        zf.writestr(name, data)
    except KerasFileError as exc:
        if exc.path is None:
            raise KerasFileError(exc.reason, label) from None
        raise
    except (OSError, ValueError, zipfile.LargeZipFile) as exc:
        raise KerasFileError(f"writing the archive failed ({type(exc).__name__}: {exc})",
                             label) from None


def _write_weights_file(tmp_path, weights):
    if callable(weights) and not isinstance(weights, (Keras3Weights, Mapping)):
        try:
            with h5py.File(tmp_path, "w") as f:
                weights(f)
                if "vars" not in f:
                    f.create_group("vars")
        except KerasFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing callback must not leave a half file
            raise KerasFileError(f"writing the weights failed ({type(exc).__name__}: {exc})") \
                from None
        return
    if weights is None:
        weights = {}
    with h5py.File(tmp_path, "w") as f:
        write_keras3_weights(f, weights)

