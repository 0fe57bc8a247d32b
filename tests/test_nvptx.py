"""The PTX path (codegen/nvptx.py, runtime/cuda.py): every supported primitive and some fused
graphs are emitted as PTX and assembled with ptxas for sm_80 and sm_90; the same kernels, built
for the host with a loop in place of the grid, run against the numpy reference interpreter (this
checks the index arithmetic and the launch data where no GPU is present; the tiled matmul's
emulation runs each block as phases split at its barriers, every phase a loop over the block's
threads, with shared memory and the threads' accumulators in host arrays); the guide MLP's
entries lower entirely; kernels the path does not lower yet are reported all at once by name;
GpuProgram and GpuExecutable run through a fake libcuda; and where a GPU is present the PTX runs
on it."""
import ctypes
import shutil
import subprocess

import llvmlite.binding as llvm
import numpy as np
import pytest
from hypothesis import Phase, given, settings, strategies as st

import kcompile as keras
from kcompile import layers
from kcompile.codegen.nvptx import (Launch, UnsupportedKernels, build_ptx_module, buffer_address, compile_ptx,
                                    emit_ptx, emit_ptx_programs, flat_launches, nvptx_target, unsupported_kernels,
                                    walk_launches, workspace_bytes)
from kcompile.codegen.target import TARGETS, get_target, host_target, runs_here
from kcompile.ir import builder as b
from kcompile.ir.graph import BATCH, Graph, concrete_shape
from kcompile.ir.interpreter import evaluate
from kcompile.ir.passes.pipeline import lower_to_kernels
from kcompile.ir.primitives import PRIMITIVES
from kcompile.models.compiled import CompiledModel
from kcompile.runtime.cuda import CudaError, GpuProgram, cuda_available

from primitive_cases import ALL_OPS, feed_shape, make_case, values

NOT_YET = set()   # ops the PTX path lacks (none: every primitive case lowers)
PTXAS = shutil.which("ptxas")
needs_ptxas = pytest.mark.skipif(PTXAS is None, reason="ptxas (CUDA toolkit) is not on PATH: cannot assemble PTX")
GPU, GPU_REASON = cuda_available()
_skip_without_gpu = pytest.mark.skipif(not GPU, reason=f"no GPU to launch kernels on: {GPU_REASON}")


def needs_gpu(test):
    """Marked `gpu` (pytest -m gpu selects them) and skipped with the driver's reason where there is no GPU."""
    return pytest.mark.gpu(_skip_without_gpu(test))


def assert_close(got, want, what):
    if want.dtype.kind == "i":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * max(1.0, float(np.nanmax(np.abs(want), initial=1))),
                               equal_nan=True, err_msg=what)


def ptxas(ptx, arch, tmp_path):
    src = tmp_path / f"k_{arch}.ptx"
    src.write_text(ptx)
    r = subprocess.run([PTXAS, f"-arch={arch}", str(src), "-o", str(tmp_path / f"k_{arch}.cubin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"ptxas -arch={arch} rejected the PTX:\n{r.stderr}"


# --- the host emulation of the grid (same kernel bodies, a loop over the thread index)

class HostGrid:
    """Run launches of programs built with build_ptx_module(emulate=True) through MCJIT."""

    def __init__(self, programs, name="model"):
        module, self.launches = build_ptx_module(programs, name=name, emulate=True)
        module.triple = llvm.get_process_triple()
        mod = llvm.parse_assembly(str(module))
        mod.verify()
        host = host_target()   # codegen at -O0: the emulation checks index arithmetic, not speed
        tm = llvm.Target.from_triple(host.triple).create_target_machine(
            cpu=host.cpu, features=host.features, opt=0, reloc="default", codemodel="jitdefault")
        self.engine = llvm.create_mcjit_compiler(mod, tm)
        self.engine.finalize_object()
        self.programs = programs

    def run(self, entry, n, inputs, state=None):
        """Outputs by name; `state` (slot -> array) is updated in place by the entry's kernels."""
        program = self.programs[entry]
        graph, plan = program.graph, program.memory
        ins = [np.ascontiguousarray(a, dtype=node.dtype) for a, node in zip(inputs, graph.inputs)]
        outs = [np.full(concrete_shape(o.shape, n), 7, o.dtype) for o in graph.outputs.values()]
        launches = self.launches[entry]
        # garbage: nothing may rely on zeroed memory
        ws = np.full(workspace_bytes(plan, launches, n) + 64, 0xAB, np.uint8)
        slots = {name: a.ctypes.data for name, a in (state or {}).items()}

        def issue(launch, n, count, addresses):
            assert launch.grid(n) * launch.block >= count
            fn = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 2, *[ctypes.c_void_p] * len(addresses))(
                self.engine.get_function_address(launch.symbol))
            fn(n, count, *addresses)
        walk_launches(launches, plan, n, [a.ctypes.data for a in ins], [a.ctypes.data for a in outs], slots,
                      ws.ctypes.data, issue, buffer_address)
        return dict(zip(graph.outputs, outs))


def _case_program(data, op):
    spec, build = make_case(data, op)
    inputs = [b.input(name, shape, index=i) for i, (name, shape) in enumerate(spec)]
    graph = Graph(inputs, {"y": build(*inputs)}, [])
    return spec, graph, lower_to_kernels(graph)


def test_nvptx_target():
    t = TARGETS["nvptx"]
    assert (t.triple, t.cpu, t.executor, t.vector_bits) == ("nvptx64-nvidia-cuda", "sm_80", "grid", 32)
    assert get_target("nvptx") is t and not runs_here(t)
    for arch in ("sm_80", "sm_90"):
        v = nvptx_target(arch)
        assert (v.name, v.cpu, v.triple, v.executor) == (f"nvptx-{arch}", arch, t.triple, "grid")
        assert v.machine() is not None                       # llvmlite has the NVPTX back end
    assert nvptx_target("nvptx-sm_90").cpu == "sm_90"
    with pytest.raises(ValueError, match="NVPTX architecture"):
        nvptx_target("gfx90a")
    with pytest.raises(ValueError, match="needs an NVPTX target"):
        emit_ptx(None, "x86-64")


@needs_ptxas
@settings(max_examples=3, phases=[Phase.explicit, Phase.reuse, Phase.generate])   # no shrinking: ~5 s an example
@given(data=st.data())
def test_every_supported_primitive_assembles_and_matches_reference(data, tmp_path_factory):
    """One PTX module of every primitive case, through ptxas for sm_80 and sm_90, and emulated."""
    tmp_path = tmp_path_factory.mktemp("ptx")
    programs, cases = {}, {}
    for op in ALL_OPS:
        spec, graph, program = _case_program(data, op)
        missing = unsupported_kernels(program)
        if missing:
            assert {u.op for u in missing} <= NOT_YET and op in NOT_YET, (op, missing)
            continue
        assert op not in NOT_YET
        programs[op], cases[op] = program, (spec, graph)
    covered = set(programs)
    elementwise = {name for name, p in PRIMITIVES.items() if p.fusion == "elementwise"} & set(ALL_OPS)
    assert elementwise <= covered
    assert {"reduce_sum", "reduce_max", "reduce_min", "argmax", "slice", "pad", "concat", "window",
            "matmul"} <= covered
    for arch in ("sm_80", "sm_90"):
        ptx, launches = emit_ptx_programs(programs, nvptx_target(arch), name="cases")
        assert f".target {arch}" in ptx
        assert all(f".entry {l.symbol}(" in ptx for ls in launches.values() for l in ls)
        ptxas(ptx, arch, tmp_path)
    grid = HostGrid(programs)
    batch = data.draw(st.sampled_from([1, 2, 3, 7]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    for op, (spec, graph) in cases.items():
        feeds = {name: values(rng, feed_shape(shape, batch), op) for name, shape in spec}
        want, _ = evaluate(graph, feeds, {}, batch=batch)
        got = grid.run(op, batch, [feeds[i.attrs["name"]] for i in graph.inputs])
        assert_close(got["y"], want["y"], op)


def _fused_graphs():
    """Fused elementwise chains with broadcasting, reductions with prologues, layout and argmax."""
    graphs = {}
    x = b.input("x", (BATCH, 3, 4))
    y = b.input("y", (4,), index=1)
    z = b.input("z", (3, 1), index=2)
    h = b.tanh(b.add(b.mul(x, y), z))                        # (N,3,4) * (4,) + (3,1)
    s = b.softmax(h, axis=-1)
    graphs["softmax"] = Graph([x, y, z], {"h": h, "s": s, "t": b.reduce_sum(b.mul(s, h), axis=None),
                                          "am": b.argmax(h, 2)}, [])
    x = b.input("x", (BATCH, 5, 6))
    w = b.input("w", (1, 6), index=1)
    e = b.exp(b.sub(x, w))
    mid = b.node("reduce_max", [e], {"axes": (0, 2), "keepdims": False})   # batch and last axis reduced
    mean = b.div(b.reduce_sum(e, axis=-1), b.batch_size())
    graphs["reduce"] = Graph([x, w], {"mid": mid, "mean": mean, "e": b.sigmoid(e),
                                      "tr": b.transpose(b.sqrt(e), (0, 2, 1)),
                                      "pad": b.pad(e, [(0, 0), (1, 0), (0, 2)])}, [])
    return graphs


@needs_ptxas
def test_fused_graphs_assemble_and_match_reference(tmp_path):
    graphs = _fused_graphs()
    programs = {k: lower_to_kernels(g) for k, g in graphs.items()}
    kinds = {p.kernels[s.kernel].kind for p in programs.values() for s in p.schedule}
    assert kinds == {"elementwise", "reduce", "layout"}
    assert any(len(k.members) > 1 for p in programs.values() for k in p.kernels if k.kind == "reduce")
    for arch in ("sm_80", "sm_90"):
        ptx, launches = emit_ptx_programs(programs, nvptx_target(arch))
        ptxas(ptx, arch, tmp_path)
    # launches are data: one per step (two for pad), in schedule order, 256-thread blocks
    for entry, program in programs.items():
        ls = launches[entry]
        assert [l.step for l in ls] == sorted(l.step for l in ls)
        assert {l.step for l in ls} == set(range(len(program.schedule)))
        assert all(isinstance(l, Launch) and l.block == 256 for l in ls)
        for l in ls:
            d = l.describe()
            assert d["symbol"] == l.symbol and len(d["buffers"]) == len(l.buffers)
    grid = HostGrid(programs)
    rng = np.random.default_rng(1)
    for batch in (1, 5, 33):
        for entry, graph in graphs.items():
            feeds = {i.attrs["name"]: rng.standard_normal(feed_shape(i.shape, batch)).astype(np.float32)
                     for i in graph.inputs}
            want, _ = evaluate(graph, feeds, {}, batch=batch)
            got = grid.run(entry, batch, [feeds[i.attrs["name"]] for i in graph.inputs])
            for key in want:
                assert_close(got[key], want[key], f"{entry}:{key} at batch {batch}")


def test_elementwise_launch_counts_scale_with_the_batch():
    x = b.input("x", (BATCH, 3, 4))
    program = lower_to_kernels(Graph([x], {"y": b.exp(x), "r": b.reduce_sum(x, axis=-1)}, []))
    _, launches = build_ptx_module({"f": program})
    counts = sorted((l.kind, l.count(10), l.grid(10)) for l in launches["f"])
    assert counts == [("elementwise", 120, 1), ("reduce", 30, 1)]
    assert [l.grid(1000) for l in launches["f"] if l.kind == "elementwise"] == [-(-12000 // 256)]


def _matmul_graphs():
    """Tiled matmuls: ragged and exact tiles (1, 17, 64, 65, 130), both transposes, fused epilogues."""
    graphs = {}
    for k, n, tb in ((1, 17, False), (17, 1, True), (64, 64, False), (65, 130, True), (130, 65, False)):
        x = b.input("x", (BATCH, k))
        w = b.input("w", (n, k) if tb else (k, n), index=1)
        bias = b.input("bias", (n,), index=2)
        y = b.matmul(x, w, transpose_b=tb)
        graphs[f"mm_{k}x{n}{'_tb' if tb else ''}"] = Graph([x, w, bias], {"y": y, "r": b.relu(b.add(y, bias))}, [])
    for k, n in ((17, 65), (130, 1)):                      # contract over the batch (weight gradients)
        x = b.input("x", (BATCH, k))
        g = b.input("g", (BATCH, n), index=1)
        graphs[f"ta_{k}x{n}"] = Graph([x, g], {"dw": b.mul(b.matmul(x, g, transpose_a=True), b.batch_size())}, [])
    x = b.input("x", (BATCH, 3, 17))                        # rows over (batch, 3)
    w = b.input("w", (17, 65), index=1)
    graphs["rows3"] = Graph([x, w], {"y": b.tanh(b.matmul(x, w))}, [])
    x = b.input("x", (17, 3), index=0)                      # both operands transposed (K fixed)
    w = b.input("w", (65, 17), index=1)
    graphs["ta_tb"] = Graph([x, w], {"y": b.matmul(x, w, transpose_a=True, transpose_b=True)}, [])
    return graphs


@needs_ptxas
def test_matmul_tiles_assemble_and_match_reference(tmp_path):
    graphs = _matmul_graphs()
    programs = {k: lower_to_kernels(g) for k, g in graphs.items()}
    assert all(any(p.kernels[s.kernel].kind == "matmul" for s in p.schedule) for p in programs.values())
    for arch in ("sm_80", "sm_90"):
        ptx, launches = emit_ptx_programs(programs, nvptx_target(arch), name="mm")
        assert ".shared" in ptx and "bar.sync" in ptx and "ld.shared" in ptx
        ptxas(ptx, arch, tmp_path)
    # one 256-thread block per 64 x 64 tile of C; count = grid * block (every thread meets the barriers)
    (mm,) = [l for l in launches["mm_65x130_tb"] if l.kind == "matmul"]
    assert mm.block == 256 and [list(t.coeffs) for t in mm.tiles] == [[0, 1], [130]]
    assert (mm.grid(1), mm.count(1), mm.grid(65), mm.grid(130)) == (3, 768, 6, 9)
    assert mm.describe()["tiles"] == [[0, 1], [130]]
    grid = HostGrid(programs)
    rng = np.random.default_rng(4)
    for batch in (1, 17, 64, 65, 130):
        for entry, graph in graphs.items():
            feeds = {i.attrs["name"]: rng.standard_normal(feed_shape(i.shape, batch)).astype(np.float32)
                     for i in graph.inputs}
            want, _ = evaluate(graph, feeds, {}, batch=batch)
            got = grid.run(entry, batch, [feeds[i.attrs["name"]] for i in graph.inputs])
            for key in want:
                assert_close(got[key], want[key], f"{entry}:{key} at batch {batch}")


def _guide_mlp(optimizer="rmsprop"):
    inputs = keras.Input(shape=(784,), name="digits")
    h = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    h = layers.Dense(64, activation="relu", name="dense_2")(h)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(h)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    specs, spec, y_shapes = model._training_setup()
    compiled = CompiledModel(model, specs, spec)
    return compiled, compiled.entry_graphs(y_shapes)


@needs_ptxas
def test_guide_mlp_lowers_entirely_and_matches_reference(tmp_path):
    compiled, graphs = _guide_mlp()
    programs = {e: lower_to_kernels(g) for e, g in graphs.items()}
    assert {e: unsupported_kernels(p, e) for e, p in programs.items()} == {e: [] for e in programs}
    predict = programs["predict"]
    kinds = [predict.kernels[s.kernel].kind for s in predict.schedule]
    assert kinds.count("matmul") == 3 and set(kinds) <= {"matmul", "elementwise", "reduce"}
    for arch in ("sm_80", "sm_90"):
        ptx, launches = emit_ptx_programs({"predict": predict}, nvptx_target(arch), name="mlp")
        ptxas(ptx, arch, tmp_path)
    state = compiled.pool.values()
    grid = HostGrid({"predict": predict})
    graph = graphs["predict"]
    rng = np.random.default_rng(5)
    for batch in (1, 65):
        x = rng.standard_normal((batch, 784)).astype(np.float32)
        want, _ = evaluate(graph, {"digits": x}, state, batch=batch)
        got = grid.run("predict", batch, [x], {k: v.copy() for k, v in state.items()})
        for key in want:
            assert_close(got[key], want[key], f"mlp predict:{key} at batch {batch}")
    # the train step (forward, backward and the update, all kernels on the grid) too; with SGD, as
    # RMSprop's first step is about lr * sign(gradient), which flips where a gradient sums to ~0 and
    # the summation order differs from numpy's
    compiled, graphs = _guide_mlp("sgd")
    state = compiled.pool.values()
    train = graphs["train"]
    grid = HostGrid({"train": lower_to_kernels(train)})
    batch = 65
    feeds = {"digits": rng.standard_normal((batch, 784)).astype(np.float32),
             "target_0": rng.integers(0, 10, batch).astype(np.float32),
             "sample_weight_0": rng.uniform(0.5, 1.5, batch).astype(np.float32)}
    want, updates = evaluate(train, feeds, state, batch=batch)
    slots = {k: v.copy() for k, v in state.items()}
    got = grid.run("train", batch, [feeds[i.attrs["name"]] for i in train.inputs], slots)
    assert_close(got["loss"], want["loss"], "mlp train loss")
    assert len(updates) == 10                                 # 6 weights, the iteration, seed, 2 metric sums
    for slot, value in updates.items():
        assert_close(slots[slot], np.asarray(value).reshape(slots[slot].shape), f"mlp train update {slot}")


def test_unsupported_kernels_are_reported_all_at_once_by_name(monkeypatch):
    # every kernel class lowers today: take two out of the table to check the report
    from kcompile.codegen import nvptx
    monkeypatch.delitem(nvptx.SUPPORTED, "gather_rows")
    monkeypatch.delitem(nvptx.SUPPORTED, "scatter_add_rows")
    t = b.input("t", (7, 5))
    i = b.input("i", (BATCH,), index=1)
    gathered = b.gather_rows(t, b.cast(i, "int32"))
    g = b.input("g", (BATCH, 5))
    first = Graph([t, i], {"y": b.exp(gathered)}, [])
    second = Graph([g, i], {"y": b.scatter_add_rows(g, b.cast(i, "int32"), 7)}, [])
    programs = {"first": lower_to_kernels(first), "second": lower_to_kernels(second)}
    with pytest.raises(UnsupportedKernels) as info:
        build_ptx_module(programs, name="rows")
    err = info.value
    assert isinstance(err, NotImplementedError)
    assert [(u.entry, u.op) for u in err.kernels] == [("first", "gather_rows"), ("second", "scatter_add_rows")]
    msg = str(err)
    assert "unsupported: gather_rows, scatter_add_rows" in msg
    assert "first kernel 1: gather_rows kernel of 'gather_rows'" in msg
    assert "(N, 5)" in msg and "matmul (float32)" in msg


def test_cuda_runtime_reports_unavailability_cleanly():
    ok, reason = cuda_available()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason
    if not ok:
        assert "libcuda" in reason or "GPU" in reason or "CUDA" in reason
        with pytest.raises((OSError, CudaError)):
            GpuProgram("", [], None)


def _run_on_the_gpu_and_compare(graphs, rng, batches):
    """Each graph's PTX run on device 0 at each batch size equals the interpreter."""
    from kcompile.runtime.cuda import device_arch
    arch = device_arch(0)
    target = nvptx_target(arch if arch in ("sm_80", "sm_90") else "sm_80")
    for entry, graph in graphs.items():
        program = lower_to_kernels(graph)
        ptx, launches = emit_ptx(program, target, name=entry)
        gpu = GpuProgram(ptx, launches, program)
        try:
            for batch in batches:
                feeds = {i.attrs["name"]: rng.standard_normal(feed_shape(i.shape, batch)).astype(np.float32)
                         for i in graph.inputs}
                want, _ = evaluate(graph, feeds, {}, batch=batch)
                outs, _ = gpu.run(batch, [feeds[i.attrs["name"]] for i in graph.inputs], synchronize_each=True)
                for key, got in zip(graph.outputs, outs):
                    assert_close(got, want[key], f"{entry}:{key} at batch {batch} on {arch}")
        finally:
            gpu.close()


@needs_gpu
def test_kernels_run_on_the_gpu():
    _run_on_the_gpu_and_compare(_fused_graphs(), np.random.default_rng(2), (1, 33, 1000))


@needs_gpu
def test_every_supported_primitive_runs_on_the_gpu():
    @settings(max_examples=3)
    @given(data=st.data())
    def check(data):
        for op in ALL_OPS:
            if op in NOT_YET:
                continue
            spec, graph, program = _case_program(data, op)
            if unsupported_kernels(program):
                continue
            ptx, launches = emit_ptx(program, "nvptx", name=op)
            gpu = GpuProgram(ptx, launches, program)
            try:
                batch = data.draw(st.sampled_from([1, 2, 3, 7, 300]))
                rng = np.random.default_rng(0)
                feeds = {name: values(rng, feed_shape(shape, batch), op) for name, shape in spec}
                want, _ = evaluate(graph, feeds, {}, batch=batch)
                (got,), _ = gpu.run(batch, [feeds[i.attrs["name"]] for i in graph.inputs])
                assert_close(got, want["y"], op)
            finally:
                gpu.close()
    check()


@needs_gpu
def test_matmuls_and_the_guide_mlp_run_on_the_gpu():
    from kcompile.runtime.gpu_executable import GpuExecutable
    rng = np.random.default_rng(7)
    _run_on_the_gpu_and_compare(_matmul_graphs(), rng, (1, 65, 1000))
    compiled, graphs = _guide_mlp()
    state = compiled.pool.values()
    with GpuExecutable({"predict": lower_to_kernels(graphs["predict"])}, compiled.pool) as exe:
        for batch in (1, 1000):
            x = rng.standard_normal((batch, 784)).astype(np.float32)
            want, _ = evaluate(graphs["predict"], {"digits": x}, state, batch=batch)
            assert_close(exe.run("predict", batch, [x])[0], want["y0"], f"mlp predict at batch {batch}")


def test_compile_ptx_accepts_a_prebuilt_module():
    x = b.input("x", (BATCH, 4))
    program = lower_to_kernels(Graph([x], {"y": b.relu(x)}, []))
    module, launches = build_ptx_module({"f": program}, "nvptx-sm_90", name="relu")
    ptx = compile_ptx(module, "sm_90")
    assert ".target sm_90" in ptx and f".visible .entry {launches['f'][0].symbol}(" in ptx
    assert "ctaid.x" in ptx and "ntid.x" in ptx and "tid.x" in ptx


# --- the ctypes binding against a host-only fake libcuda (no GPU needed): symbol names, argument
# types, kernelParams packing and GpuProgram's flow; its "kernels" are the host-emulated ones

FAKE_LIBCUDA = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define A8 uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t
typedef void (*kfn)(int64_t, int64_t, A8, A8, A8);
static struct { char name[128]; kfn fn; int nargs; } reg[4096]; static int nreg;
static int launches, live;
void fake_register(const char *name, void *fn, int nargs) {
    strncpy(reg[nreg].name, name, 127); reg[nreg].fn = (kfn)fn; reg[nreg++].nargs = nargs; }
int fake_launches(void) { return launches; }
int fake_live_allocations(void) { return live; }
int cuInit(unsigned f) { return f ? 1 : 0; }
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuDeviceGetCount(int *c) { *c = 1; return 0; }
int cuDeviceGet(int *d, int o) { *d = o; return o ? 101 : 0; }
int cuDeviceGetName(char *s, int n, int d) { strncpy(s, "Fake GPU", n); return 0; }
int cuDeviceGetAttribute(int *v, int a, int d) { *v = a == 75 ? 9 : 0; return 0; }
static int ctx;
int cuDevicePrimaryCtxRetain(void **c, int d) { *c = &ctx; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { return 0; }
int cuCtxSetCurrent(void *c) { return 0; }
int cuCtxSynchronize(void) { return 0; }
int cuModuleLoadDataEx(void **m, const char *img, unsigned n, int *opts, void **vals) {
    if (!strstr(img, ".entry")) { for (unsigned i = 0; i < n; i++) if (opts[i] == 5) strcpy((char *)vals[i], "fake: no .entry");
                                  return 218; }
    *m = strdup(img); return 0; }
int cuModuleUnload(void *m) { free(m); return 0; }
int cuModuleGetFunction(void **f, void *m, const char *name) {
    for (int i = 0; i < nreg; i++) if (!strcmp(reg[i].name, name) && strstr((char *)m, name)) { *f = &reg[i]; return 0; }
    return 500; }
int cuMemAlloc_v2(uint64_t *p, size_t n) { *p = (uint64_t)malloc(n); live++; return 0; }
int cuMemFree_v2(uint64_t p) { free((void *)p); live--; return 0; }
int cuMemcpyHtoD_v2(uint64_t d, const void *s, size_t n) { memcpy((void *)d, s, n); return 0; }
int cuMemcpyDtoH_v2(void *d, uint64_t s, size_t n) { memcpy(d, (void *)s, n); return 0; }
int cuMemsetD8_v2(uint64_t d, unsigned char c, size_t n) { memset((void *)d, c, n); return 0; }
int cuMemsetD32_v2(uint64_t d, unsigned v, size_t n) {
    for (size_t i = 0; i < n; i++) ((unsigned *)d)[i] = v;
    return 0; }
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned sh, void *st, void **p, void **extra) {
    typeof(reg[0]) *k = f; uint64_t a[26] = {0};
    if (gy != 1 || gz != 1 || by != 1 || bz != 1 || k->nargs > 26) return 1;
    for (int i = 0; i < k->nargs; i++) a[i] = *(uint64_t *)p[i];
    if ((uint64_t)gx * bx < a[1]) return 1;                      /* the grid must cover count threads */
    k->fn((int64_t)a[0], (int64_t)a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
          a[14], a[15], a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23], a[24], a[25]);
    launches++; return 0; }
int cuGetErrorName(int e, const char **s) {
    *s = e == 218 ? "CUDA_ERROR_INVALID_PTX" : e == 500 ? "CUDA_ERROR_NOT_FOUND" : "CUDA_ERROR_UNKNOWN"; return 0; }
int cuGetErrorString(int e, const char **s) { *s = "fake error"; return 0; }
"""


@pytest.fixture(scope="module")
def fake_driver(tmp_path_factory):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler for the fake libcuda")
    d = tmp_path_factory.mktemp("fakecuda")
    (d / "fake.c").write_text(FAKE_LIBCUDA)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(d / "libcuda.so.1"), str(d / "fake.c")], check=True)
    from kcompile.runtime.cuda import Driver
    drv = Driver(str(d / "libcuda.so.1"))
    drv.call("cuInit", 0)
    return drv


def test_runtime_against_a_fake_driver(fake_driver):
    from kcompile.runtime.cuda import Context
    lib = fake_driver.lib
    graphs = _fused_graphs()
    programs = {k: lower_to_kernels(g) for k, g in graphs.items()}
    host = HostGrid(programs)                               # the "device code" the fake driver calls
    for entry, ls in host.launches.items():
        for l in ls:
            lib.fake_register(l.symbol.encode(), ctypes.c_void_p(host.engine.get_function_address(l.symbol)),
                              2 + len(l.buffers))
    ctx = Context(0, fake_driver)
    rng = np.random.default_rng(3)
    try:
        ptx, all_launches = emit_ptx_programs(programs, "nvptx")
        for entry, graph in graphs.items():
            launches = all_launches[entry]
            assert [l.symbol for l in launches] == [l.symbol for l in host.launches[entry]]
            gpu = GpuProgram(ptx, launches, programs[entry], context=ctx)
            before = lib.fake_launches()
            for batch in (1, 6):
                feeds = {i.attrs["name"]: rng.standard_normal(feed_shape(i.shape, batch)).astype(np.float32)
                         for i in graph.inputs}
                want, _ = evaluate(graph, feeds, {}, batch=batch)
                outs, _ = gpu.run(batch, [feeds[i.attrs["name"]] for i in graph.inputs], synchronize_each=True)
                for key, got in zip(graph.outputs, outs):
                    assert_close(got, want[key], f"{entry}:{key} through the fake driver")
            assert lib.fake_launches() - before == 2 * len(launches)
            assert lib.fake_live_allocations() == 0            # run() frees every buffer it allocated
        with pytest.raises(CudaError, match=r"cuModuleLoadDataEx failed: CUDA_ERROR_INVALID_PTX .*\n.*no \.entry"):
            ctx.load_ptx("not ptx")
        module = ctx.load_ptx("// .entry other")
        with pytest.raises(CudaError, match=r"cuModuleGetFunction \(kernel 'missing_k0'\) failed: CUDA_ERROR_NOT_FOUND"):
            ctx.function(module, "missing_k0")
    finally:
        ctx.release()


def register_fake(lib, host):
    """Give the fake driver the host-emulated function of every grid of `host` (scan bodies too)."""
    for ls in host.launches.values():
        for l in flat_launches(ls):
            lib.fake_register(l.symbol.encode(), ctypes.c_void_p(host.engine.get_function_address(l.symbol)),
                              2 + len(l.buffers))


def _mlp_feeds(rng, batch):
    return {"digits": rng.standard_normal((batch, 784)).astype(np.float32),
            "target_0": rng.integers(0, 10, batch).astype(np.float32),
            "sample_weight_0": np.ones(batch, np.float32)}


def test_gpu_executable_against_a_fake_driver(fake_driver):
    """GpuExecutable through the fake libcuda: the guide MLP's predict, train and evaluate entries
    with the state resident on the device and mirrored into the pool, run_loop, resident mode."""
    from kcompile.runtime.cuda import Context
    from kcompile.runtime.gpu_executable import GpuExecutable
    from kcompile.runtime.executable import Executable
    lib = fake_driver.lib
    compiled, graphs = _guide_mlp()
    pool = compiled.pool
    programs = {e: lower_to_kernels(g) for e, g in graphs.items()}
    host = HostGrid(programs, name="mlpexe")                   # kept alive: the fake "device code"
    register_fake(lib, host)
    ctx = Context(0, fake_driver)
    rng = np.random.default_rng(6)
    try:
        baseline = lib.fake_live_allocations()
        exe = GpuExecutable(programs, pool, name="mlpexe", context=ctx)
        assert isinstance(exe, Executable) and exe.has("predict") and exe.has("train") and exe.has("evaluate")
        m = exe.manifest
        info = m.entries["predict"]
        assert m.target["name"] == "nvptx-sm_90"                 # the fake device is compute capability 9.0
        assert [(t.name, t.shape, t.role) for t in info.inputs] == [("digits", (-1, 784), "x")]
        assert [t.shape for t in info.outputs] == [(-1, 10)] and not info.writes_state
        assert info.symbol == "mlpexe__predict" and info.loop_symbol is None
        assert [s["kind"] for s in info.schedule].count("matmul") == 3
        assert m.entries["train"].writes_state
        assert (m.slots, m.state_size) == (sorted(pool.layout()[0], key=lambda s: s.offset), pool.layout()[1])
        assert m.max_batch > 1000
        assert lib.fake_live_allocations() == baseline + 1        # the state, copied once
        for batch in (1, 65):
            x = rng.standard_normal((batch, 784)).astype(np.float32)
            want, _ = evaluate(graphs["predict"], {"digits": x}, pool.values(), batch=batch)
            (got,) = exe.run("predict", batch, [x])
            assert_close(got, want["y0"], f"GpuExecutable predict at batch {batch}")
        arena = lib.fake_live_allocations()
        exe.run("predict", 3, [x[:3]])
        assert lib.fake_live_allocations() == arena               # buffers are reused, not reallocated
        # a train step on the device: the loss, and the pool mirrors every updated slot
        train = graphs["train"]
        for batch in (7, 32):
            feeds = _mlp_feeds(rng, batch)
            want, updates = evaluate(train, feeds, pool.values(), batch=batch)
            got = exe.run("train", batch, [feeds[i.attrs["name"]] for i in train.inputs])
            assert_close(got[0], want[next(iter(train.outputs))], f"train loss at batch {batch}")
            for slot, value in updates.items():
                assert_close(pool.view(slot), np.asarray(value).reshape(pool.view(slot).shape), f"update {slot}")
        # a host change (set_weights) reaches the device before the next call
        kernel = next(name for name in pool.slots if name.startswith("predictions/kernel"))
        pool.view(kernel)[...] *= -1
        want, _ = evaluate(graphs["predict"], {"digits": x[:3]}, pool.values(), batch=3)
        assert_close(exe.run("predict", 3, [x[:3]])[0], want["y0"], "after a host-side weight change")
        # run_loop: whole epoch on the device, one loss per step, state copied back once
        feeds = _mlp_feeds(rng, 50)
        arrays = [feeds[i.attrs["name"]] for i in train.inputs]
        state, losses = pool.values(), []
        for s in range(0, 50, 16):
            part = {k: v[s:s + 16] for k, v in feeds.items()}
            out, updates = evaluate(train, part, state, batch=len(part["digits"]))
            losses.append(float(np.asarray(out[next(iter(train.outputs))]).reshape(())))
            state.update({k: np.asarray(v).reshape(state[k].shape) for k, v in updates.items()})
        got = exe.run_loop("train", 16, arrays)
        assert got.shape == (4,)
        assert_close(got, np.array(losses, np.float32), "run_loop losses")
        for slot in updates:
            assert_close(pool.view(slot), state[slot], f"run_loop update {slot}")
        exe.close()
        exe.close()
        assert lib.fake_live_allocations() == baseline and not ctx.modules
        with pytest.raises(RuntimeError, match="after close"):
            exe.run("predict", 1, [x[:1]])
        # resident: the device keeps the state until asked
        res = GpuExecutable({"train": programs["train"]}, pool, name="mlpexe", context=ctx, exchange="resident")
        before = pool.values()
        feeds = _mlp_feeds(rng, 9)
        _, updates = evaluate(train, feeds, before, batch=9)
        res.run("train", 9, [feeds[i.attrs["name"]] for i in train.inputs])
        assert all(np.array_equal(pool.view(k), v) for k, v in before.items())
        res.sync_to_host()
        for slot, value in updates.items():
            assert_close(pool.view(slot), np.asarray(value).reshape(pool.view(slot).shape), f"synced {slot}")
        res.close()
        with pytest.raises(ValueError, match="exchange must be one of"):
            GpuExecutable(programs, pool, context=ctx, exchange="sometimes")
    finally:
        ctx.release()


def test_jit_executable_picks_the_device(fake_driver, monkeypatch):
    """runtime/native.jit_executable: the GPU (here the fake driver) by default when one is
    present, the CPU when asked; kernels the PTX path lacks: a warning and the CPU by default,
    an error when the GPU was asked for."""
    from kcompile.codegen import nvptx
    from kcompile.runtime import cuda, gpu_device
    from kcompile.runtime.gpu_executable import GpuExecutable
    from kcompile.runtime.native import NativeExecutable, jit_executable
    from kcompile.runtime.state import StatePool
    monkeypatch.setattr(cuda, "_driver", fake_driver)
    monkeypatch.setattr(gpu_device, "_status", (True, "device 0: Fake GPU"))
    monkeypatch.setattr(gpu_device, "_choice", None)
    monkeypatch.delenv("KCOMPILE_DEVICE", raising=False)
    x = b.input("x", (BATCH, 5))
    graph = Graph([x], {"y": b.tanh(b.mul(x, x))}, [])
    programs = {"predict": lower_to_kernels(graph)}
    host = HostGrid(programs)                       # symbols model__predict_kI, as jit_executable names them
    register_fake(fake_driver.lib, host)
    feed = np.linspace(-2, 2, 15, dtype=np.float32).reshape(3, 5)
    want = np.tanh(feed * feed)
    with jit_executable(programs, StatePool()) as exe:
        assert isinstance(exe, GpuExecutable)
        assert_close(exe.run("predict", 3, [feed])[0], want, "on the (fake) GPU")
    with jit_executable(programs, StatePool(), device="cpu") as exe:
        assert isinstance(exe, NativeExecutable)
    monkeypatch.setenv("KCOMPILE_DEVICE", "cpu")
    with jit_executable(programs, StatePool()) as exe:
        assert isinstance(exe, NativeExecutable)
    monkeypatch.delenv("KCOMPILE_DEVICE")
    monkeypatch.delitem(nvptx.SUPPORTED, "elementwise")
    with pytest.warns(RuntimeWarning, match="runs on the CPU instead"):
        exe = jit_executable(programs, StatePool())
    assert isinstance(exe, NativeExecutable)
    exe.close()
    monkeypatch.setenv("KCOMPILE_DEVICE", "gpu")
    with pytest.raises(UnsupportedKernels, match="tanh"):
        jit_executable(programs, StatePool())
