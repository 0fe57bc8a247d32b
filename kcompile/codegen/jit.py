"""The optimization pipeline, object emission, and an MCJIT wrapper with a verified on-disk cache.

See llvm_codegen.md. Compiled objects are cached on disk (KCOMPILE_CACHE_DIR, default
~/.cache/kcompile; KCOMPILE_CACHE=0 turns it off) keyed by the IR text and the target. An entry
is a header — format, kcompile and LLVM versions, target, key, payload size and SHA-256 — then
the object. Anything that does not verify is deleted and compiled again with a warning: a
truncated or tampered entry never reaches the machine-code loader. The folder is created 0700
and not used when other users can write to it.

The thread pool (runtime/kc_threads.c) is compiled once per machine with the system C compiler
into that folder and loaded into the process (`thread_pool()`); code JIT-compiled for this process
then runs the GEMM's row panels on it: `jit_target` gives such targets the executor "threads". With
no C compiler, or KCOMPILE_THREADS=0, the executor stays "serial".
"""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings

import llvmlite
import llvmlite.binding as llvm

from .._version import __version__
from .target import ensure_llvm, get_target, runs_here
from ..timings import note, phase

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


MEMORY_CACHE_BYTES = 32 << 20   # with no disk cache: objects this process compiled, for its later compiles
_memory = {}                     # key -> object bytes, oldest first (an LRU within MEMORY_CACHE_BYTES)
_memory_lock = threading.Lock()


def _remember(key, payload):
    with _memory_lock:
        _memory.pop(key, None)
        _memory[key] = payload
        total = sum(len(v) for v in _memory.values())
        while total > MEMORY_CACHE_BYTES and len(_memory) > 1:
            total -= len(_memory.pop(next(iter(_memory))))


def _recall(key):
    with _memory_lock:
        payload = _memory.pop(key, None)
        if payload is not None:
            _memory[key] = payload   # most recently used
        return payload


class ObjectCache:
    """Verified cache entries: header line (JSON) + object bytes.

    With the disk cache off (or unusable) the objects this process compiled are kept in memory
    instead (MEMORY_CACHE_BYTES, least recently used dropped first): compiling the same model
    again then skips LLVM's optimization pipeline, which keeps ~0.3 MiB per run that disposing
    its module does not return (llvmlite 0.50), as a disk-cache hit does.
    """

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
            return _recall(self.key)
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
        payload = bytes(payload)
        if self.path is None:
            _remember(self.key, payload)
            return
        if os.path.exists(self.path):
            return
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


_pool_lock = threading.Lock()
_pool = None          # the loaded pool library (ctypes.CDLL), False once it proved unavailable
POOL_FLAGS = ["-O2", "-fPIC", "-shared", "-pthread"]


def _c_compiler():
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def thread_pool():
    """The thread pool library loaded into this process (ctypes.CDLL, its symbols visible to the JIT),
    or None: KCOMPILE_THREADS=0, no C compiler, or it failed to build (warned once)."""
    global _pool
    if os.environ.get("KCOMPILE_THREADS", "1") == "0":
        return None
    with _pool_lock:
        if _pool is None:
            try:
                _pool = _load_pool()
            except (OSError, subprocess.SubprocessError, RuntimeError) as e:
                warnings.warn(f"kcompile: the thread pool is unavailable ({e}); running serially",
                              RuntimeWarning, stacklevel=2)
                _pool = False
        return _pool or None


def _load_pool():
    from . import gemm
    from .c_abi import RUNTIME_DIR
    cc = _c_compiler()
    if cc is None:
        return False
    source_path = RUNTIME_DIR / "kc_threads.c"
    source = source_path.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, timeout=60).stdout
    key = hashlib.sha256(b"\0".join([source, cc.encode(), version, " ".join(POOL_FLAGS).encode(),
                                      llvm.get_process_triple().encode()])).hexdigest()
    directory = cache_dir()
    private = directory is None
    if private:
        directory = tempfile.mkdtemp(prefix="kcompile-pool-")
    path = os.path.join(directory, f"kc_threads-{key[:32]}.so")
    # the library's SHA-256 is kept beside it: a damaged or replaced library is built again, not loaded
    if not _library_verifies(path):
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".so.tmp")
        os.close(fd)
        try:
            done = subprocess.run([cc, *POOL_FLAGS, "-o", tmp, str(source_path)], capture_output=True, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"{cc} failed: {done.stderr.decode(errors='replace')[-400:]}")
            with open(tmp, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            os.replace(tmp, path)   # atomic: concurrent processes see no half-written library
            with open(tmp, "w") as f:
                f.write(digest)
            os.replace(tmp, path + ".sha256")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if not _library_verifies(path):
            raise RuntimeError(f"{path} changed while it was written (another process built it at once?)")
    llvm.load_library_permanently(path)
    lib = ctypes.CDLL(path)   # the same (already loaded) object: for the settings
    lib.kc_set_num_threads.argtypes, lib.kc_set_num_threads.restype = [ctypes.c_int], ctypes.c_int
    lib.kc_get_num_threads.argtypes, lib.kc_get_num_threads.restype = [], ctypes.c_int
    lib.kc_worker_scratch_bytes.restype = ctypes.c_int64
    lib.kc_parallel_jobs.argtypes, lib.kc_parallel_jobs.restype = [], ctypes.c_int64
    if lib.kc_worker_scratch_bytes() < gemm.WORKER_SCRATCH_BYTES:
        raise RuntimeError("kc_threads.c's worker buffers are smaller than the gemm's packed A block")
    lib.kc_set_num_threads(default_num_threads())
    return lib


def _library_verifies(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
        with open(path + ".sha256") as f:
            return f.read().strip() == hashlib.sha256(data).hexdigest()
    except OSError:
        return False


def default_num_threads():
    """KCOMPILE_NUM_THREADS, else the CPUs this process may run on."""
    value = os.environ.get("KCOMPILE_NUM_THREADS")
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            warnings.warn(f"kcompile: ignoring KCOMPILE_NUM_THREADS={value!r} (not an integer)", RuntimeWarning)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jit_target(target="host"):
    """`target` as the in-process JIT runs it: a serial target this process runs gets the executor
    "threads" when the thread pool is loaded (so it is part of the object-cache key)."""
    target = get_target(target)
    if target.executor == "serial" and runs_here(target) and thread_pool() is not None:
        return dataclasses.replace(target, executor="threads")
    return target


class JitModule:
    """Parse, verify, optimize and JIT one llvmlite module for a target this process can run
    (the host by default); close() frees the machine code."""

    def __init__(self, ir_module, target="host"):
        self.target = jit_target(target)
        if getattr(ir_module, "kc_executor", "serial") == "threads" and thread_pool() is None:
            raise RuntimeError("this module calls the thread pool, which is not available in this process")
        with phase("llvm-parse"):
            self._mod, self._text = parse(ir_module, self.target)
        cache = ObjectCache(self._text, self.target)
        cached = cache.load()
        note(f"object cache: {'hit' if cached is not None else 'miss'}")
        if cached is None:
            with phase("llvm-optimize"):
                optimize(self._mod, self.target.machine())
        with phase("llvm-codegen"):
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
        """Free the machine code (the engine owns the module and its target machine) and drop
        the IR text: a closed module holds nothing but this object."""
        engine, self._engine = getattr(self, "_engine", None), None
        if engine is not None:
            engine.close()
        self._mod = self._text = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
