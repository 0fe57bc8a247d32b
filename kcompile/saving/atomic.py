"""Atomic file replacement for every kcompile writer.

:func:`atomic_write` and :func:`atomic_h5` write to a temporary file in the destination's
directory, flush and fsync it, then ``os.replace`` it over the destination (and fsync the
directory where the platform allows). If anything fails before the rename the temporary file is
removed and the previous file at the destination is left untouched, so an interrupted or failed
save never destroys an existing model file.

:func:`scratch_file` and :func:`scratch_dir` give a save's other temporary files (the weights of
a `.keras` archive, layer assets) the same place and naming. Every temporary file lives beside
the destination -- not in the system temp folder, which may be small or on another disk -- and is
named `.<name>.kcompile-<pid>-<random>...tmp`; one that a killed save left behind (its process
is gone) is removed by the next save to the same destination.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading

from .errors import KerasFileError

__all__ = ["atomic_write", "atomic_h5", "scratch_file", "scratch_dir"]

_TAG = "kcompile"
_lock = threading.Lock()
_in_use = set()       # temporary paths this process is writing now: never cleaned under it


def _destination(path):
    """(path, its directory) after checking a file can be written there; tidies leftovers."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise KerasFileError("the destination directory does not exist", path)
    if os.path.isdir(path):
        raise KerasFileError("is a directory, cannot write a file there", path)
    _clean_leftovers(path, directory)
    return path, directory


def _temp_prefix(path):
    return f".{os.path.basename(path)}.{_TAG}-{os.getpid()}-"


def _temp_path(path):
    path, directory = _destination(path)
    with _lock:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=directory)
        _in_use.add(tmp)
    return path, directory, fd, tmp


def _process_gone(pid):
    if os.name == "nt":       # os.kill(pid, 0) would end the process there; assume it still runs
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:           # e.g. PermissionError: it exists, under another user
        return False
    return False


def _clean_leftovers(path, directory):
    """Remove the temporary files of earlier saves to `path` whose process died before cleaning up
    (this process's own are removed unless in use). A save running in another process keeps its
    files; so does one on another machine sharing the folder, unless its pid is free here."""
    pattern = re.compile(re.escape(f".{os.path.basename(path)}.{_TAG}-") + r"(\d+)-.*\.tmp\Z", re.S)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    with _lock:
        for name in names:
            match = pattern.match(name)
            full = os.path.join(directory, name)
            if match is None or full in _in_use:
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or _process_gone(pid):
                try:
                    _discard(full)
                except OSError:   # best effort: a leftover that cannot be removed harms nothing
                    pass


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
    _in_use.discard(tmp)
    try:
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp)
        else:
            os.unlink(tmp)
    except FileNotFoundError:
        pass


def _commit(tmp, path, directory):
    os.chmod(tmp, _final_mode(path))
    os.replace(tmp, path)
    _in_use.discard(tmp)
    _fsync_dir(directory)


@contextlib.contextmanager
def scratch_file(path, suffix=".tmp"):
    """Context manager yielding the path of an empty temporary file beside `path` (for data a save
    assembles before writing `path`); removed on exit. `suffix` must end in '.tmp'."""
    path, directory = _destination(path)
    with _lock:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=directory)
        _in_use.add(tmp)
    os.close(fd)
    try:
        yield tmp
    finally:
        _discard(tmp)


@contextlib.contextmanager
def scratch_dir(path):
    """Context manager yielding a temporary directory beside `path`; removed with its contents on exit."""
    path, directory = _destination(path)
    with _lock:
        tmp = tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=directory)
        _in_use.add(tmp)
    try:
        yield tmp
    finally:
        _discard(tmp)


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
