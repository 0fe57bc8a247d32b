"""The optimization pipeline, object emission, and an MCJIT wrapper with a verified on-disk cache.

See llvm_codegen.md. Compiled objects are cached on disk (KCOMPILE_CACHE_DIR, default
~/.cache/kcompile; KCOMPILE_CACHE=0 turns it off) keyed by the IR text and the target. An entry
is a header — format, kcompile and LLVM versions, target, key, payload size and SHA-256 — then
the object. Anything that does not verify is deleted and compiled again with a warning: a
truncated or tampered entry never reaches the machine-code loader. The folder is created 0700
and not used when other users can write to it.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import warnings

import llvmlite
import llvmlite.binding as llvm

from .._version import __version__
from .target import ensure_llvm, get_target

CACHE_FORMAT = "kcompile-object-2"


def optimize(module, tm, level=3):
    """Run the O3 pipeline with both vectorizers; a fresh pass builder each time (never reused)."""
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    # Unrolling buys little on these loops (the vectorizer interleaves) and costs ~40% of compile time.
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


def parse(ir_module, target):
    """The module as a verified LLVM module for `target` (malformed IR raises instead of crashing)."""
    ensure_llvm()
    tm = target.machine()
    ir_module.triple = target.triple
    ir_module.data_layout = str(tm.target_data)
    text = str(ir_module)
    mod = llvm.parse_assembly(text)
    mod.verify()
    return mod, text


def emit_object(ir_module, target):
    """Optimized, position-independent object code of `ir_module` for `target` (bytes)."""
    mod, _ = parse(ir_module, target)
    tm = target.machine()
    optimize(mod, tm)
    return tm.emit_object(mod)


def cache_dir():
    """Where compiled objects are kept, or None when caching is off or the folder is unsafe."""
    if os.environ.get("KCOMPILE_CACHE", "1") == "0":
        return None
    directory = os.environ.get("KCOMPILE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "kcompile")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError:
        return None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        warnings.warn(f"kcompile: not using the compile cache {directory}: other users can write to it "
                      f"(chmod 700 it, or set KCOMPILE_CACHE_DIR)", RuntimeWarning, stacklevel=3)
        return None
    return directory


class ObjectCache:
    """Verified cache entries: header line (JSON) + object bytes."""

    def __init__(self, text, target):
        self.directory = cache_dir()
        self.identity = {"format": CACHE_FORMAT, "kcompile": __version__, "llvmlite": llvmlite.__version__,
                         "llvm": ".".join(map(str, llvm.llvm_version_info)), "target": target.describe()}
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode() + b"\n" + text.encode())
        self.key = digest.hexdigest()
        self.path = None if self.directory is None else os.path.join(self.directory, self.key + ".o")

    def load(self):
        """The cached object bytes, or None (a bad entry is deleted with a warning)."""
        if self.path is None:
            return None
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        problem = self._verify(data)
        if problem is None:
            return data[data.index(b"\n") + 1:]
        warnings.warn(f"kcompile: discarding a corrupt compile-cache entry {self.path} ({problem}); recompiling",
                      RuntimeWarning, stacklevel=3)
        try:
            os.remove(self.path)
        except OSError:
            pass
        return None

    def _verify(self, data):
        end = data.find(b"\n")
        if end < 0:
            return "no header"
        try:
            header = json.loads(data[:end])
        except ValueError:
            return "unreadable header"
        if not isinstance(header, dict):
            return "unreadable header"
        payload = data[end + 1:]
        if header.get("identity") != self.identity or header.get("key") != self.key:
            return "written for another model, version or target"
        if header.get("size") != len(payload):
            return f"payload of {len(payload)} bytes, header says {header.get('size')}"
        if header.get("sha256") != hashlib.sha256(payload).hexdigest():
            return "checksum mismatch"
        return None

    def store(self, payload):
        if self.path is None or os.path.exists(self.path):
            return
        payload = bytes(payload)
        header = {"identity": self.identity, "key": self.key, "size": len(payload),
                  "sha256": hashlib.sha256(payload).hexdigest()}
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(json.dumps(header).encode() + b"\n" + payload)
                os.replace(tmp, self.path)   # atomic: a concurrent reader sees the old state or the whole entry
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass   # the cache is an optimization only


class JitModule:
    """Parse, verify, optimize and JIT one llvmlite module for a target this process can run
    (the host by default); close() frees the machine code."""

    def __init__(self, ir_module, target="host"):
        self.target = get_target(target)
        self._mod, self._text = parse(ir_module, self.target)
        cache = ObjectCache(self._text, self.target)
        cached = cache.load()
        if cached is None:
            optimize(self._mod, self.target.machine())
        # MCJIT takes ownership of the module and of its own target machine
        self._engine = llvm.create_mcjit_compiler(self._mod, self.target.machine(jit=True))
        self._engine.set_object_cache(lambda mod, buf: cache.store(buf), lambda mod: cached)
        self._engine.finalize_object()

    def address(self, name):
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function {name!r} in the native module")
        return addr

    @property
    def assembly(self):
        """The optimized machine code as text (recompiled from the IR: a cache hit skipped optimization)."""
        tm = self.target.machine()
        mod = llvm.parse_assembly(self._text)
        optimize(mod, tm)
        return tm.emit_assembly(mod)

    def close(self):
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
