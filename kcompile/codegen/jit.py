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
import re
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

CACHE_FORMAT = "kcompile-object-3"   # 3: library functions linked from their own objects
ENTRY_FORMAT = "kcompile-entry-1"   # a whole compile: manifest + object, keyed by the graphs (runtime/native.py)
# The sources whose code decides what a graph compiles to: any change to them changes every
# graph-keyed entry's key (source_digest).
_SOURCE_PACKAGES = ("codegen", "ir", "runtime")
_source_digest = None


MERGE_FUNCTIONS = True   # merge identical functions before the pipeline (optimize)


# The inliner's threshold for the JIT's model modules (None: LLVM's 225 at O3). At 0 only
# single-call functions and trivial ones are inlined: -20% LLVM time on the guide MLP, -0.2 to
# -0.35 s on the VGG-like convnet, the same train and predict speed (measured side by side).
MODEL_INLINE_THRESHOLD = 0


def optimize(module, tm, level=3, merge=True, inline=None):
    """Run the O3 pipeline with both vectorizers; a fresh pass builder each time (never reused).

    Identical functions (the kernels predict, train and evaluate share, the GEMM drivers of
    same-shaped layers) are merged first, so the pipeline and the code generator see each once:
    -15% LLVM time on the guide MLP, about nothing on the VGG-like convnet, whose copies differ in
    their constants."""
    if MERGE_FUNCTIONS and merge:
        pto = llvm.create_pipeline_tuning_options(speed_level=0)
        pb = llvm.create_pass_builder(tm, pto)
        pm = llvm.create_new_module_pass_manager()
        pm.add_constant_merge_pass()
        pm.add_merge_functions_pass()
        pm.run(module, pb)
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    # Unrolling buys little on these loops (the vectorizer interleaves) and costs ~40% of compile time.
    pto.loop_unrolling = False
    if inline is not None:
        pto.inlining_threshold = inline
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

    def __init__(self, text, target, identity=None):
        """text: what the entry is a function of (the IR text; bytes or str); identity: more of
        the header's identity (the graph-keyed entries add their format and source_digest)."""
        self.directory = cache_dir()
        self.identity = {"format": CACHE_FORMAT, "kcompile": __version__, "llvmlite": llvmlite.__version__,
                         "llvm": ".".join(map(str, llvm.llvm_version_info)), "target": target.describe()}
        self.identity.update(identity or {})
        if isinstance(text, str):
            text = text.encode()
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode() + b"\n" + text)
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

    def discard(self):
        """Forget this key's entry (one that verified but turned out unusable)."""
        if self.path is None:
            with _memory_lock:
                _memory.pop(self.key, None)
            return
        try:
            os.remove(self.path)
        except OSError:
            pass

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


def source_digest():
    """SHA-256 of kcompile's code generator, IR, passes and runtime sources (kcompile/codegen,
    kcompile/ir, kcompile/runtime, the C runtime beside the package, _version.py), computed once
    per process: part of every graph-keyed cache entry's identity, so editing any of them
    invalidates what was compiled before."""
    global _source_digest
    if _source_digest is None:
        import pathlib
        package = pathlib.Path(__file__).resolve().parents[1]
        files = [package / "_version.py"]
        for sub in _SOURCE_PACKAGES:
            files += (package / sub).rglob("*")
        from .c_abi import RUNTIME_DIR
        if RUNTIME_DIR.is_dir():
            files += RUNTIME_DIR.rglob("*")
        digest = hashlib.sha256()
        for path in sorted(files):
            if path.suffix in (".py", ".c", ".h") and path.is_file():
                digest.update(str(path.relative_to(package.parent)).encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        _source_digest = digest.hexdigest()
    return _source_digest


def pack_entry(meta, objects):
    """A graph-keyed entry's payload: 8-byte length, the metadata (JSON, with the objects'
    sizes), the objects' bytes one after another."""
    objects = [bytes(o) for o in objects]
    meta = json.dumps(dict(meta, objects=[len(o) for o in objects]), sort_keys=True).encode()
    return len(meta).to_bytes(8, "little") + meta + b"".join(objects)


def unpack_entry(data):
    """(metadata, [object bytes]) of pack_entry's payload (ValueError when it does not parse)."""
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 or size > len(data) - 8:
        raise ValueError("truncated entry")
    meta = json.loads(data[8:8 + size])
    sizes, at, objects = meta["objects"], 8 + size, []
    if sum(sizes) != len(data) - at:
        raise ValueError("object sizes do not add up")
    for n in sizes:
        objects.append(data[at:at + n])
        at += n
    return meta, objects


class _Capture:
    """JitModule's object cache for a compile whose object goes into a graph-keyed entry: it
    answers no IR-keyed lookups and keeps the object MCJIT emits."""

    def __init__(self):
        self.payload = None

    def load(self):
        return None

    def store(self, payload):
        self.payload = bytes(payload)


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


LIBRARY_PREFIX = "kcompile."   # functions every model may share (the GEMM's drivers and micro-kernels)
SPLIT_LIBRARY = True           # compile them apart, once per process (and per machine: the object cache)
_library_objects = {}          # key -> object bytes of one library function, this process
LIBRARY_MEMORY_BYTES = 16 << 20   # beyond, _library_objects starts again
_library_lock = threading.Lock()
_GLOBAL_REF = re.compile(r'@("(?:[^"\\]|\\.)*"|[-a-zA-Z$._0-9]+)')


def _symbol(token):
    return token[1:-1] if token.startswith('"') else token


def split_library(text):
    """(the module's text with its library functions declared, [(name, text of a module
    defining that one function)]) — or (text, []) when the module has none or does not split
    cleanly (a library function referring to anything but other library functions and
    declarations, or an unexpected form: then it compiles whole, as before).

    The library functions (named LIBRARY_PREFIX..., all `noinline` or reached through a
    pointer: they are never inlined into the kernels) are the same in every model of a target,
    so their objects are compiled once and reused (library_objects): the guide MLP's are ~30% of
    its LLVM time."""
    lines = text.split("\n")
    items, i = [], 0          # (kind, name, [lines]) in order
    while i < len(lines):
        line = lines[i]
        if line.startswith("define "):
            end = i
            while end < len(lines) and lines[end] != "}":
                end += 1
            if end == len(lines):
                return text, []
            match = _GLOBAL_REF.search(line)
            items.append(("define", _symbol(match.group(1)) if match else None, lines[i:end + 1]))
            i = end + 1
        else:
            kind = "declare" if line.startswith("declare ") else "global" if line.startswith("@") else \
                "meta" if line.startswith(("!", "attributes ")) else "other"
            items.append((kind, None, [line]))
            i += 1
    library = {name: body for kind, name, body in items if kind == "define" and name and name.startswith(LIBRARY_PREFIX)}
    if not library:
        return text, []
    declared = {_symbol(_GLOBAL_REF.search(body[0]).group(1)) for kind, _, body in items if kind == "declare"}
    header = [body[0] for kind, _, body in items if kind == "other" and body[0].startswith(("target ", "; ModuleID"))]
    meta = [body[0] for kind, _, body in items if kind == "meta"]
    declarations = {}
    for name, body in library.items():
        head = body[0]
        if head.startswith("define internal "):
            head = "define " + head[len("define internal "):]
        if not head.startswith("define ") or head.rstrip().endswith("{") or body[1] != "{":
            return text, []
        declarations[name] = "declare " + head[len("define "):]
        library[name] = [head] + body[1:]
    for name, body in library.items():
        for line in body[1:]:
            for token in _GLOBAL_REF.findall(line):
                ref = _symbol(token)
                if ref not in library and ref not in declared:
                    return text, []   # a global of the model's (a constant table...): compile whole
    model = []
    for kind, name, body in items:
        if kind == "define" and name in library:
            model.append(declarations[name])
        else:
            model += body
    all_declares = [body[0] for kind, _, body in items if kind == "declare"]
    parts = []
    for name, body in library.items():
        others = [declarations[o] for o in library if o != name]
        parts.append((name, "\n".join(header + all_declares + others + body + meta) + "\n"))
    return "\n".join(model), parts


def library_objects(parts, target):
    """The object bytes of each library function module (split_library), compiled on first use
    in this process and kept (and in the object cache, keyed by the function's text)."""
    objects = []
    for name, text in parts:
        cache = ObjectCache(text, target, {"library": name})
        with _library_lock:
            payload = _library_objects.get(cache.key)
        if payload is None:
            payload = cache.load() if cache.directory is not None else None
            if payload is None:
                tm = target.machine(jit=True)
                mod = llvm.parse_assembly(text)
                mod.verify()
                optimize(mod, tm, merge=False)
                payload = bytes(tm.emit_object(mod))
                if cache.directory is not None:
                    cache.store(payload)
            with _library_lock:
                if sum(len(v) for v in _library_objects.values()) > LIBRARY_MEMORY_BYTES:
                    _library_objects.clear()
                _library_objects[cache.key] = payload
        objects.append(payload)
    return objects


class JitModule:
    """Parse, verify, optimize and JIT one llvmlite module for a target this process can run
    (the host by default); close() frees the machine code."""

    def __init__(self, ir_module, target="host", cache=None):
        """cache: where the object is looked up and stored (load() -> bytes or None, store(bytes));
        by default the ObjectCache keyed by the IR text."""
        self.target = jit_target(target)
        if getattr(ir_module, "kc_executor", "serial") == "threads" and thread_pool() is None:
            raise RuntimeError("this module calls the thread pool, which is not available in this process")
        with phase("llvm-parse"):
            tm = self.target.machine()
            ir_module.triple = self.target.triple
            ir_module.data_layout = str(tm.target_data)
            self._text = str(ir_module)
            text, parts = split_library(self._text) if SPLIT_LIBRARY else (self._text, [])
            self._mod = llvm.parse_assembly(text)
            self._mod.verify()
        self.library = []                    # the library functions' objects this module links
        if parts:
            with phase("llvm-library"):
                self.library = library_objects(parts, self.target)
        if cache is None:
            cache = ObjectCache(text, self.target)
        cached = cache.load()
        note(f"object cache: {'hit' if cached is not None else 'miss'}")
        if cached is None:
            with phase("llvm-optimize"):
                optimize(self._mod, tm, inline=MODEL_INLINE_THRESHOLD)
        with phase("llvm-codegen"):
            # MCJIT takes ownership of the module and of its own target machine
            self._engine = llvm.create_mcjit_compiler(self._mod, self.target.machine(jit=True))
            for payload in self.library:
                self._engine.add_object_file(llvm.ObjectFileRef.from_data(payload))
            self._engine.set_object_cache(lambda mod, buf: cache.store(buf), lambda mod: cached)
            self._engine.finalize_object()

    @classmethod
    def from_object(cls, payload, target="host", library=()):
        """The module of an object emitted before (a graph-keyed cache entry), with the objects of
        the library functions it calls: loaded and linked by MCJIT, no IR parsed or optimized.
        It has no IR text (`assembly` is unavailable)."""
        self = cls.__new__(cls)
        self.target = jit_target(target)
        if self.target.executor == "threads" and thread_pool() is None:
            raise RuntimeError("this object calls the thread pool, which is not available in this process")
        ensure_llvm()
        with phase("llvm-codegen"):
            self._mod, self._text = llvm.parse_assembly(""), None
            self._mod.triple = self.target.triple
            self._engine = llvm.create_mcjit_compiler(self._mod, self.target.machine(jit=True))
            self.library = [bytes(p) for p in library]
            for part in [bytes(payload)] + self.library:
                self._engine.add_object_file(llvm.ObjectFileRef.from_data(part))
            self._engine.finalize_object()
        return self

    def address(self, name):
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function {name!r} in the native module")
        return addr

    @property
    def assembly(self):
        """The optimized machine code as text (recompiled from the IR: a cache hit skipped optimization)."""
        if self._text is None:
            raise RuntimeError("this module was loaded from a compile-cache entry and has no IR: compile it "
                               "with KCOMPILE_CACHE=0 (and a fresh process) to see its assembly")
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
