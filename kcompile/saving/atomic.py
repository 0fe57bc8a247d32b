"""Atomic file replacement for every kcompile writer.

:func:`atomic_write` and :func:`atomic_h5` write to a temporary file in the destination's
directory, flush and fsync it, then ``os.replace`` it over the destination (and fsync the
directory where the platform allows). If anything fails before the rename the temporary file is
removed and the previous file at the destination is left untouched, so an interrupted or failed
save never destroys an existing model file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

from .errors import KerasFileError

__all__ = ["atomic_write", "atomic_h5"]


def _temp_path(path):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise KerasFileError("the destination directory does not exist", path)
    if os.path.isdir(path):
        raise KerasFileError("is a directory, cannot write a file there", path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    return path, directory, fd, tmp


def _final_mode(path):
    """Permissions for the new file: the old file's, else what a plain open() would give."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(directory):
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(tmp):
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def _commit(tmp, path, directory):
    os.chmod(tmp, _final_mode(path))
    os.replace(tmp, path)
    _fsync_dir(directory)


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding="utf-8"):
    """Context manager yielding a file object open on a temporary file next to `path`; on a
    clean exit the data is flushed, fsynced and renamed over `path`. `mode` is 'wb' or 'w'."""
    if mode not in ("wb", "w"):
        raise ValueError("atomic_write mode must be 'wb' or 'w'")
    path, directory, fd, tmp = _temp_path(path)
    try:
        if mode == "wb":
            fh = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding=encoding, newline="")
    except BaseException:
        os.close(fd)
        _discard(tmp)
        raise
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _commit(tmp, path, directory)
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_h5(path):
    """Context manager yielding an `h5py.File` open for writing on a temporary file next to
    `path`; on a clean exit the file is closed, fsynced and renamed over `path`."""
    import h5py

    path, directory, fd, tmp = _temp_path(path)
    os.close(fd)
    try:
        h5 = h5py.File(tmp, "w")
        try:
            yield h5
        finally:
            h5.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _commit(tmp, path, directory)
    except BaseException:
        _discard(tmp)
        raise
