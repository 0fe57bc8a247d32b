"""LLVM target machines, the optimization pipeline and an MCJIT wrapper (see llvm_codegen.md)."""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading

import llvmlite
import llvmlite.binding as llvm

_init_lock = threading.Lock()
_initialized = False


def ensure_llvm():
    """One-time target initialization (llvm.initialize() itself is deprecated and raises)."""
    global _initialized
    with _init_lock:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _initialized = True


def host_target_machine(aot=False):
    ensure_llvm()
    target = llvm.Target.from_default_triple()
    kwargs = dict(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
    if aot:
        kwargs.update(reloc="pic", codemodel="default")
    else:
        kwargs.update(codemodel="jitdefault")
    return target.create_target_machine(**kwargs)


def optimize(module, tm, level=3):
    """Run the O3 pipeline with both vectorizers; a fresh pass builder each time (never reused)."""
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    # Unrolling buys little on these loops (the vectorizer interleaves) and costs ~40% of compile time.
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


def cache_dir():
    """Where compiled objects are kept (KCOMPILE_CACHE_DIR; KCOMPILE_CACHE=0 turns caching off)."""
    if os.environ.get("KCOMPILE_CACHE", "1") == "0":
        return None
    return os.environ.get("KCOMPILE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "kcompile")


class JitModule:
    """Parse, verify, optimize and JIT one llvmlite module; close() frees the machine code.

    Object code is cached on disk keyed by the IR text and the target, so compiling the same
    model again skips LLVM's optimizer and code generator.
    """

    def __init__(self, ir_module):
        ensure_llvm()
        tm = host_target_machine()
        ir_module.triple = llvm.get_process_triple()
        ir_module.data_layout = str(tm.target_data)
        text = str(ir_module)
        self._mod = llvm.parse_assembly(text)
        self._mod.verify()          # malformed IR would crash the optimizer instead of raising
        self._asm_tm = tm
        self._text = text
        cached, path = self._lookup(text)
        if cached is None:
            optimize(self._mod, tm)
        # MCJIT takes ownership of the module and of its own target machine
        self._engine = llvm.create_mcjit_compiler(self._mod, host_target_machine())
        self._engine.set_object_cache(lambda mod, buf: self._store(path, buf), lambda mod: cached)
        self._engine.finalize_object()

    @staticmethod
    def _lookup(text):
        directory = cache_dir()
        if directory is None:
            return None, None
        key = hashlib.sha256("\n".join([text, llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(),
                                        llvmlite.__version__, "kcompile-object-1"]).encode()).hexdigest()
        path = os.path.join(directory, key + ".o")
        try:
            with open(path, "rb") as f:
                return f.read(), path
        except OSError:
            return None, path

    @staticmethod
    def _store(path, buf):
        if path is None or os.path.exists(path):
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(buf))
            os.replace(tmp, path)
        except OSError:
            pass   # the cache is an optimization only

    def address(self, name):
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function {name!r} in the native module")
        return addr

    @property
    def assembly(self):
        """The optimized machine code as text (recompiled from the IR: a cache hit skipped optimization)."""
        mod = llvm.parse_assembly(self._text)
        optimize(mod, self._asm_tm)
        return self._asm_tm.emit_assembly(mod)

    def close(self):
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
