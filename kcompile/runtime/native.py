"""Native executables: a built module's entries called through ctypes, from the in-process JIT
(`jit_executable`) or from a library `kcompile build` wrote (`load_built`).

Both call the internal entries of codegen/module.py with one state buffer (a StatePool) and a
workspace per thread, so any number of threads may share one model: readers run at once, a
call that writes the state runs alone (the pool's lock).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import threading

import numpy as np

from ..codegen import jit as _jit
from ..codegen.jit import JitModule, jit_target
from ..codegen.manifest import Manifest, input_role
from ..codegen.module import build_module
from ..timings import note, phase
from .executable import Executable
from .state import StatePool
from ..ir.graph import BATCH as _BATCH

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p)
_LOOP = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_void_p)
# The same entries without argument types, for run_one's bound calls: every argument there is
# already a ctypes object of the exact C type (c_int64, c_void_p), and ctypes converts nothing
# (measurably cheaper per call than the typed prototype).
_UNTYPED_ENTRY = ctypes.CFUNCTYPE(None)
# a thread's workspace larger than this is freed after the call; smaller ones are kept for the next
# call (touching fresh pages cost the VGG-like predict at batch 32, a 113 MB workspace, ~15%)
KEEP_WORKSPACE_BYTES = 1 << 30
BIND_BYTES = 64 << 10             # run_one prebinds a batch whose own input and outputs fit this
BINDINGS_PER_THREAD = 16          # (entry, batch) pairs a thread keeps bound; beyond, it forgets them all


class _Bound:
    """One thread's prepared call of one entry at one batch size (run_one): its own input copy
    and outputs, and the thread's workspace, with the C arguments pointing at them, built once.
    Only the thread that made it uses it (it lives in that thread's threading.local, and is
    dropped whenever that thread's workspace is replaced: _workspace)."""
    __slots__ = ("function", "args", "x", "outputs", "pool_buffer", "pool_arg", "keep")

    def __init__(self, function, n, x, outputs, workspace):
        self.function, self.x, self.outputs = function, x, outputs
        ins = (ctypes.c_void_p * 1)(_address(x))
        outs = (ctypes.c_void_p * max(len(outputs), 1))(*[_address(o) for o in outputs])
        self.pool_buffer = None                 # set (with pool_arg) under the lock on the first call
        self.pool_arg = ctypes.c_void_p(0)
        self.args = (ctypes.c_int64(n), ctypes.c_void_p(ctypes.addressof(ins)),
                     ctypes.c_void_p(ctypes.addressof(outs)), self.pool_arg, ctypes.c_void_p(_address(workspace)))
        self.keep = (ins, outs, workspace)      # the memory the argument pointers point at


class NativeExecutable(Executable):
    """The entries of `manifest`, found by `address(symbol)`, run over `pool`."""

    def __init__(self, manifest, address, pool, owner=None):
        self.manifest, self.pool, self._owner = manifest, pool, owner
        self._functions = {k: _ENTRY(address(e.symbol)) for k, e in manifest.entries.items()}
        self._loops = {k: _LOOP(address(e.loop_symbol)) for k, e in manifest.entries.items() if e.loop_symbol}
        self._local = threading.local()
        self._plans = {}
        self._address = address
        self._allreduce_status = None
        self._pool_cache = (None, 0)   # (pool buffer, its address): one tuple, swapped whole (threads)

    def _workspace(self, nbytes):
        """The address of this thread's 64-byte-aligned workspace of at least nbytes (never shared
        between threads; the array stays referenced by the thread-local until replaced)."""
        local = self._local
        if getattr(local, "size", -1) < nbytes:
            local.workspace = _aligned_bytes(nbytes)
            local.address, local.size = _address(local.workspace), nbytes
            local.bound = {}     # bindings point at the old workspace: bind again on the new one
        return local.address

    def _release_large_workspace(self):
        if getattr(self._local, "size", 0) > KEEP_WORKSPACE_BYTES:
            self._local.workspace, self._local.size = None, -1
            self._local.bound = {}

    def _plan(self, entry, n):
        """(workspace bytes, output shapes and dtypes) of `entry` at batch n, computed once."""
        plan = self._plans.get((entry, n))
        if plan is None:
            info = self.manifest.entries[entry]
            if not 1 <= n <= self.manifest.max_batch:
                raise ValueError(f"A batch of {n} samples is outside what model '{self.manifest.name}' supports "
                                 f"(1 to {self.manifest.max_batch})")
            outs = [(tuple(n if d == -1 else d for d in t.shape), t.dtype) for t in info.outputs]
            if len(self._plans) > 256:   # many distinct batch sizes: keep the memo bounded
                self._plans.clear()
            plan = self._plans[(entry, n)] = (info.workspace(n), outs)
        return plan

    def _lock(self, entry):
        return self.pool.lock.write() if self.manifest.entries[entry].writes_state else self.pool.lock.read()

    def _pool_address(self):
        """The state buffer's address (under the pool's lock: the buffer moves only when the pool
        grows, which happens under its write lock); computed again only when the buffer changed."""
        buffer = self.pool.buffer
        cached = self._pool_cache
        if cached[0] is not buffer:
            cached = self._pool_cache = (buffer, _address(buffer))
        return cached[1]

    def run(self, entry, n, inputs, outputs=None):
        """Run `entry` on a batch of n rows; inputs are contiguous arrays in the entry's input order."""
        ws_bytes, out_specs = self._plan(entry, n)
        if outputs is None:
            outputs = [np.empty(shape, dtype) for shape, dtype in out_specs]
        ins = (ctypes.c_void_p * max(len(inputs), 1))(*[_address(a) for a in inputs])
        outs = (ctypes.c_void_p * max(len(outputs), 1))(*[_address(a) for a in outputs])
        ws = self._workspace(ws_bytes)
        with self._lock(entry):
            self._functions[entry](n, ctypes.addressof(ins), ctypes.addressof(outs), self._pool_address(), ws)
            self._check_allreduce(entry)
        self._release_large_workspace()
        return outputs

    def run_one(self, entry, x):
        """run(entry, n, [x]) for an entry of one input, x of its dtype and shape: the small-call
        path. A batch size this thread has seen before runs on its prebound call (_Bound): x is
        copied into the binding's input, the function is called on arguments converted once, and
        the outputs are returned as copies (each call's arrays belong to the caller). Entries that
        write the state, and large batches, take run()."""
        n = x.shape[0]
        try:
            bound = self._local.bound[entry, n]
        except (AttributeError, KeyError):
            bound = self._bind(entry, n)
        if bound is None:
            return self.run(entry, n, [np.ascontiguousarray(x)])
        bound.x[...] = x
        lock = self.pool.lock
        lock.acquire_read()          # the same lock as run()'s `with`, minus the guard's frames
        try:
            buffer = self.pool.buffer
            if buffer is not bound.pool_buffer:   # first call, or the pool grew (reallocated) since
                bound.pool_arg.value = _address(buffer)
                bound.pool_buffer = buffer
            bound.function(*bound.args)
        finally:
            lock.release_read()
        return [o.copy() for o in bound.outputs]

    def _bind(self, entry, n):
        """This thread's _Bound for (entry, n), or None where run() serves (remembered either way)."""
        ws_bytes, out_specs = self._plan(entry, n)   # raises for a batch size the model cannot take
        info = self.manifest.entries[entry]
        bound = None
        if not info.writes_state and len(info.inputs) == 1 and ws_bytes <= KEEP_WORKSPACE_BYTES:
            spec = info.inputs[0]
            x = np.empty((n,) + tuple(spec.shape[1:]), spec.dtype)
            outputs = [np.empty(shape, dtype) for shape, dtype in out_specs]
            if x.nbytes + sum(o.nbytes for o in outputs) <= BIND_BYTES:
                function = _UNTYPED_ENTRY(ctypes.cast(self._functions[entry], ctypes.c_void_p).value)
                self._workspace(ws_bytes)            # (may replace the workspace: bindings so far are dropped)
                bound = _Bound(function, n, x, outputs, self._local.workspace)
        local = self._local
        bindings = getattr(local, "bound", None)
        if bindings is None or len(bindings) >= BINDINGS_PER_THREAD:
            bindings = local.bound = {}
        bindings[entry, n] = bound
        return bound

    def run_loop(self, entry, batch, arrays):
        """Every batch of `arrays` through `entry` in one native call (entries with a scalar output)."""
        if entry not in self._loops:
            return super().run_loop(entry, batch, arrays)
        rows = arrays[0].shape[0]
        steps = -(-rows // batch)
        per_step = np.empty(steps, np.float32)
        bases = (ctypes.c_void_p * max(len(arrays), 1))(*[_address(a) for a in arrays])
        ws = self._workspace(self._plan(entry, batch)[0])
        pointers = (ctypes.c_void_p * (len(arrays) + 1))()
        with self._lock(entry):
            self._loops[entry](batch, rows, ctypes.addressof(bases), _address(per_step), self._pool_address(), ws,
                               ctypes.addressof(pointers))
            self._check_allreduce(entry)
        self._release_large_workspace()
        return per_step

    def set_allreduce(self, address, context=None):
        """Hand the train step the function that sums its gradient vector over replicas
        (codegen/collective.py: int fn(void *ctx, const float *send, float *recv, int64 count))."""
        symbol = self.manifest.abi.get("set_allreduce")
        if symbol is None:
            raise ValueError(f"Model '{self.manifest.name}' was not compiled for data-parallel training "
                             f"(its train step has no all-reduce)")
        setter = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(self._address(symbol))
        setter(address, context)
        self._allreduce_status = ctypes.CFUNCTYPE(ctypes.c_int)(self._address(self.manifest.abi["allreduce_status"]))

    def _check_allreduce(self, entry):
        if self._allreduce_status is not None and self.manifest.entries[entry].writes_state:
            status = self._allreduce_status()
            if status:
                raise RuntimeError(f"Model '{self.manifest.name}': the gradient all-reduce failed (MPI error "
                                   f"code {status}); the step's update is NaN")

    def close(self):
        """Free the native code and every thread's workspace (a new threading.local drops the
        buffers of all threads at once); the state pool belongs to the caller."""
        self._functions, self._loops = {}, {}
        self._local, self._plans = threading.local(), {}
        owner, self._owner = self._owner, None
        if owner is not None and hasattr(owner, "close"):
            owner.close()


def compile_graphs(graphs, pool, name="model", target="host", static_batch=None, device=None):
    """jit_executable of the graphs' kernel programs (entry -> Graph, before the pass pipeline),
    with the whole compile cached by the graphs: on the CPU JIT the key (graph_fingerprint) is
    computed first, and a hit loads the manifest and the object from the cache entry, skipping
    the passes, the lowering and LLVM. The entries live where the object cache keeps its own
    (KCOMPILE_CACHE_DIR, in memory with KCOMPILE_CACHE=0), verified the same way. Graphs it
    cannot fingerprint, KCOMPILE_DUMP_IR and the GPU compile as before."""
    from ..ir.passes.pipeline import lower_to_kernels
    cache = None
    if not _prefers_gpu(target, device) and not os.environ.get("KCOMPILE_DUMP_IR"):
        cpu = jit_target(target)
        with phase("cache key"):
            try:
                fingerprint = graph_fingerprint(graphs, pool.layout(), name, static_batch)
            except Uncacheable as e:
                note(f"compile cache: not used ({e})")
            else:
                cache = _jit.ObjectCache(fingerprint, cpu, {"format": _jit.ENTRY_FORMAT,
                                                              "sources": _jit.source_digest()})
                cached = cache.load()
        if cache is not None and cached is not None:
            executable = _from_entry(cached, graphs, pool, cpu, cache)
            if executable is not None:
                return executable
    with phase("passes"):
        programs = {k: lower_to_kernels(g) for k, g in graphs.items()}
    return jit_executable(programs, pool, name=name, target=target, static_batch=static_batch, device=device,
                          entry_cache=cache)


def _from_entry(data, graphs, pool, target, cache):
    """The executable a graph-keyed entry holds, over `pool` (None: the entry does not fit this
    pool after all; it is then compiled again and replaced)."""
    try:
        meta, objects = _jit.unpack_entry(data)
        if not objects:
            raise ValueError("no object")
        manifest = Manifest.from_json(meta["manifest"])
        slots, size = pool.layout()
        for entry, info in manifest.entries.items():
            names = [node.attrs["name"] for node in graphs[entry].inputs]
            if [t.role for t in info.inputs] != [input_role(n) for n in names]:
                raise ValueError(f"the inputs of {entry!r} differ")
        if set(manifest.entries) != set(graphs):
            raise ValueError("other entries")
        if [(s.offset, s.shape, s.dtype) for s in manifest.slots] != [(s.offset, s.shape, s.dtype) for s in
                                                                         sorted(slots, key=lambda s: s.offset)] \
                or manifest.state_size != size:
            raise ValueError("state layout differs")
    except (ValueError, KeyError, TypeError) as e:
        note(f"compile cache: entry unusable ({e})")
        cache.discard()
        return None
    # the slot names of this process (their uids differ between processes; the offsets are the key's)
    manifest.slots = sorted(slots, key=lambda s: s.offset)
    # and its input names (the model's input layer names may differ; the key has their roles)
    for entry, info in manifest.entries.items():
        for tensor, node in zip(info.inputs, graphs[entry].inputs):
            tensor.name = node.attrs["name"]
    for phase_name in ("passes", "lowering", "llvm-parse"):   # skipped: reported as taking no time
        with phase(phase_name):
            pass
    note("object cache: hit (a whole-compile entry: passes, lowering and LLVM skipped)")
    jit = JitModule.from_object(objects[0], target, library=objects[1:])
    return NativeExecutable(manifest, jit.address, pool, owner=jit)


# The sources are hashed now, as the modules they hold are imported (with the codegen, IR and
# runtime packages, just before): not at the first compile, which would key the code this process
# runs by files that may have been edited since.
_jit.source_digest()

_SETTING_MODULES = ("kcompile.codegen.", "kcompile.ir.", "kcompile.runtime.")
_OTHER_BACK_ENDS = ("nvptx", "cuda", "gpu", "mpi")   # imported on demand, and not what the CPU JIT runs
_SIMPLE = (int, float, str, bool, type(None), bytes)


def settings_digest():
    """The state of the modules a compile runs through, as far as a caller can change it at run
    time: every upper-case setting of a simple type (memory.MAX_BUFFER_BYTES, lower.PARALLEL_MIN_ELEMENTS,
    jit.MERGE_FUNCTIONS...) and which function each module-level name and registry entry is
    (module and qualified name: a monkeypatched pass or emitter). Part of the graph-keyed cache
    key: the sources are hashed once per process (jit.source_digest), this is read at each compile."""
    import sys
    digest = hashlib.sha256()
    for module_name in sorted(m for m in list(sys.modules) if m.startswith(_SETTING_MODULES)
                              and not m.rsplit(".", 1)[-1].startswith(_OTHER_BACK_ENDS)):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        digest.update(module_name.encode() + b"\0")
        for name, value in list(vars(module).items()):
            text = _setting_text(name, value, module_name)
            if text is not None:
                digest.update(f"{name}={text}\0".encode())
    return digest.hexdigest()


def _setting_text(name, value, module_name, depth=0):
    if isinstance(value, _SIMPLE):
        return repr(value) if name.isupper() else None
    if hasattr(value, "__code__"):   # a function: which one (kcompile's own: source_digest has its code)
        module = getattr(value, "__module__", "") or ""
        text = f"{module}.{getattr(value, '__qualname__', '')}"
        if not module.startswith("kcompile."):   # a replacement from elsewhere (a test's): its code too
            text += "#" + _code_digest(value.__code__)
        return text
    if isinstance(value, type):
        if value.__module__ != module_name or depth:
            return None
        parts = [f"{k}:{t}" for k, v in list(vars(value).items())
                 if (t := _setting_text(k, v, module_name, depth + 1)) is not None]
        return "class(" + ",".join(parts) + ")"
    if isinstance(value, (tuple, frozenset)) and name.isupper() and all(isinstance(v, _SIMPLE) for v in value):
        return repr(sorted(value, key=repr) if isinstance(value, frozenset) else value)
    if isinstance(value, dict) and name.isupper() and not depth and len(value) <= 512:
        parts = []
        for k, v in list(value.items()):
            t = _setting_text("K", v, module_name, depth + 1)
            if t is not None:
                parts.append(f"{k!r}:{t}")
        return "{" + ",".join(sorted(parts)) + "}"
    return None


def _code_digest(code):
    """A digest of a code object's bytecode and constants (nested code objects by their own
    digest: their repr holds an address, which differs from process to process)."""
    digest = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            text = _code_digest(const)
        elif isinstance(const, frozenset):   # `x in {...}`: its repr's order follows the hash seed
            text = repr(sorted(repr(c) for c in const))
        else:
            text = repr(const)
        digest.update(text.encode())
    return digest.hexdigest()[:16]


class Uncacheable(Exception):
    """A graph holds something graph_fingerprint cannot write down faithfully."""


def graph_fingerprint(graphs, layout, name, static_batch):
    """The bytes a whole compile of `graphs` over the state `layout` is a function of (with the
    code: jit.source_digest, and the target: both in the cache entry's identity). Nodes are
    numbered by their position in each graph's topological order (node ids differ from run to
    run), state slots by their byte offset (slot names carry a per-process uid), constants by
    their bytes' SHA-256. Raises Uncacheable for attributes of a type it does not know."""
    from ..ir.passes.pipeline import disabled_passes
    slots, size = layout
    offsets = {s.name: s.offset for s in slots}
    parts = ["kcompile-graphs-1", settings_digest(), repr(name), repr(static_batch), str(size),
             repr(sorted(disabled_passes())),
             repr(sorted((s.offset, tuple(s.shape), s.dtype, s.kind) for s in slots))]
    for entry, graph in graphs.items():
        parts.append(f"entry {entry!r}")
        _write_graph(graph, offsets, parts)
    return "\n".join(parts)


def _write_graph(graph, offsets, out, top=True):
    from ..ir.graph import Graph
    index = {}
    out.append(f"graph {graph.name!r} {len(graph.slots)}")
    if graph.slots:
        raise Uncacheable("a graph with its own slots")
    for node in graph.nodes():
        args = []
        for i in node.inputs:
            if i.id not in index:
                raise Uncacheable("an input outside the graph's order")
            args.append(index[i.id])
        attrs = dict(node.attrs)
        if top and node.op == "input" and isinstance(attrs.get("name"), str):
            # the code reads an entry's inputs by position; the manifest's names are this graph's
            # (_from_entry). The model's input names differ from model to model; loop bodies keep theirs.
            attrs["name"] = ("role", input_role(attrs["name"]))
        if node.op == "param":
            slot = attrs.get("slot")
            if slot not in offsets:
                raise Uncacheable(f"state slot {slot!r} is not in the pool")
            attrs["slot"] = ("offset", offsets[slot])
        index[node.id] = len(index)
        out.append(f"{node.op} {args} {_attr_text(attrs, offsets, Graph)} {node.dtype} "
                   f"{tuple('N' if d is _BATCH else int(d) for d in node.shape)}")
    for i in graph.inputs:
        out.append(f"input {index[i.id]}")
    for k, n in graph.outputs.items():
        out.append(f"output {k!r} {index[n.id]}")
    for k, n in graph.updates.items():
        if k not in offsets:
            raise Uncacheable(f"an update of {k!r}, not in the pool")
        out.append(f"update {offsets[k]} {index[n.id]}")


def _attr_text(value, offsets, graph_type):
    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, int):
        return f"i{int(value)}"
    if isinstance(value, float):
        return f"f{value.hex()}"
    if value is _BATCH:
        return "N"
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biuf":
            raise Uncacheable(f"a numpy scalar of dtype {value.dtype}")
        return f"np.{value.dtype}({value.item()!r})"
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise Uncacheable(f"an array of dtype {value.dtype}")
        data = np.ascontiguousarray(value)
        return f"array({data.dtype.str},{data.shape},{hashlib.sha256(data.tobytes()).hexdigest()})"
    if isinstance(value, (tuple, list)):
        inner = ",".join(_attr_text(v, offsets, graph_type) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        items = []
        for k in value:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise Uncacheable(f"an attribute key of type {type(k).__name__}")
            items.append((repr(k), _attr_text(value[k], offsets, graph_type)))
        return "{" + ",".join(f"{k}:{v}" for k, v in sorted(items)) + "}"
    if isinstance(value, graph_type):
        body = []
        _write_graph(value, offsets, body, top=False)
        return "<" + ";".join(body) + ">"
    raise Uncacheable(f"an attribute of type {type(value).__name__}")


def _prefers_gpu(target, device):
    """Whether jit_executable would try the GPU first for this target and device."""
    if target != "host":
        return False
    from .gpu_device import get_device
    return (device or get_device()) == "gpu"


def jit_executable(programs, pool, name="model", target="host", static_batch=None, device=None, entry_cache=None):
    """Compile `programs` (entry -> KernelProgram) into this process over `pool` (on the thread
    pool when it is available: jit_target), or onto the GPU (runtime/gpu_executable.py).

    device: "cpu", "gpu", or None for kcompile.config.get_device() (set_device, KCOMPILE_DEVICE,
    else the GPU when one is present). Only the host target has a GPU twin: an explicit CPU
    target always compiles for the CPU. A GPU asked for explicitly runs there or raises (no GPU,
    kernels the PTX path cannot lower); the automatic choice falls back to the CPU with a warning
    naming the kernels.
    """
    from .gpu_device import get_device, requested_device
    if target == "host" and (device or get_device()) == "gpu":
        entry_cache = None
        from ..codegen.nvptx import UnsupportedKernels
        from .gpu_device import _check
        explicit = device is not None or requested_device() is not None
        if device is not None:
            _check(device, f"jit_executable(device={device!r})")
        try:
            from .gpu_executable import GpuExecutable
            return GpuExecutable(programs, pool, name=name, static_batch=static_batch)
        except UnsupportedKernels as e:
            if explicit:
                raise
            import warnings
            warnings.warn(f"{e}\nModel '{name}' runs on the CPU instead.", RuntimeWarning, stacklevel=2)
    target = jit_target(target)
    with phase("lowering"):
        module, manifest = build_module(programs, pool.layout(), target, name, static_batch=static_batch,
                                        c_interface=False)
    if entry_cache is None:
        jit = JitModule(module, target)
        return NativeExecutable(manifest, jit.address, pool, owner=jit)
    capture = _jit._Capture()   # the object goes into the graph-keyed entry, not an IR-keyed one
    jit = JitModule(module, target, cache=capture)
    executable = NativeExecutable(manifest, jit.address, pool, owner=jit)
    if capture.payload is not None:
        entry_cache.store(_jit.pack_entry({"manifest": manifest.to_json()}, [capture.payload] + jit.library))
    return executable


def load_built(directory, name=None):
    """The library `kcompile build` wrote in `directory`, as an Executable with its own state
    (initialized by NAME_init_state, or from NAME.state when the weights were written to a file)."""
    directory = os.fspath(directory)
    if name is None:
        found = [f[:-len("_manifest.json")] for f in os.listdir(directory) if f.endswith("_manifest.json")]
        if len(found) != 1:
            raise ValueError(f"{directory!r} holds {len(found)} kcompile manifests ({found}); pass name=")
        name = found[0]
    manifest = Manifest.load(os.path.join(directory, f"{name}_manifest.json"))
    lib = ctypes.CDLL(os.path.join(os.path.abspath(directory), f"lib{name}.so"))
    pool = StatePool.from_layout(manifest.slots)
    if pool.buffer.size < manifest.state_size:
        raise ValueError(f"state layout of {name!r} is inconsistent with its size {manifest.state_size}")
    init = lib[manifest.abi["init_state"]]
    init.restype, init.argtypes = ctypes.c_int, [ctypes.c_void_p]
    status = init(_address(pool.buffer))
    if status == 4:   # KC_ERR_NO_WEIGHTS: the weights live beside the library
        path = os.path.join(directory, f"{name}.state")
        with open(path, "rb") as f:
            blob = f.read()
        if len(blob) != manifest.state_size:
            raise ValueError(f"{path}: {len(blob)} bytes, but the state of {name!r} has {manifest.state_size}")
        pool.buffer[:len(blob)] = np.frombuffer(blob, np.uint8)
    elif status != 0:
        raise RuntimeError(f"{name}_init_state failed with status {status}")
    executable = NativeExecutable(manifest, lambda symbol: ctypes.cast(lib[symbol], ctypes.c_void_p).value, pool,
                                  owner=None)
    executable.library = lib
    return executable


def _address(array):
    return array.__array_interface__["data"][0]


def _aligned_bytes(nbytes):
    """A zeroed, 64-byte-aligned uint8 array of nbytes (a workspace)."""
    raw = np.zeros(nbytes + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + nbytes]
