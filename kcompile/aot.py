"""Ahead of time: a Keras model as a C library that runs without Python (`kcompile build`).

`build(model, directory)` writes a self-contained folder:

  NAME.o              position-independent object; links alone: cc -I DIR main.c DIR/NAME.o -lm -lpthread
  libNAME.so          the same as a shared library (when a C compiler for the target is here)
  NAME.h, kcompile.h  the model's header and the shared ABI header (runtime/kcompile.h)
  NAME_manifest.json  entries, tensors, workspace sizes and the state layout (codegen/manifest.py)
  NAME.state          the initial state, when weights="file" instead of embedded
  example.c, Makefile a program that runs the model, built by `make`

The entries are the same programs the in-process JIT runs (one `build_module` for both), so a
built library computes what `predict`, `train_on_batch` and `evaluate` compute in Python.
`load_built(directory)` (runtime/native.py) loads one back as an Executable.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from .codegen import c_abi
from .codegen.jit import emit_object
from .codegen.module import build_module
from .codegen.target import get_target, host_target
from .ir.graph import Graph
from .ir.passes.pipeline import lower_to_kernels
from .models.compiled import CompiledModel
from .runtime.native import load_built

ENTRIES = ("predict", "train", "evaluate")
__all__ = ["build", "load_built", "ENTRIES"]


def build(model, directory, name=None, target="host", entries=None, weights="embedded", data_parallel=False):
    """Compile `model` into a C library in `directory`; returns its Manifest.

    entries: a subset of ("predict", "train", "evaluate"); default every entry the model has
    (train and evaluate need a model compiled with a loss, train an optimizer too).
    weights: "embedded" (NAME_init_state writes them) or "file" (NAME.state beside the library).
    data_parallel: the train step all-reduces its gradients through the function a C program sets
    with NAME_set_allreduce (runtime/kcompile.h), e.g. one calling MPI_Allreduce.
    """
    target = get_target(target)
    gpu = target.triple.startswith("nvptx")
    if target.executor != "serial" and not gpu:
        raise ValueError(f"kcompile build does not support the target {target.name!r}")
    if weights not in ("embedded", "file"):
        raise ValueError(f"weights must be 'embedded' or 'file', got {weights!r}")
    name = c_identifier(name or model.name)
    specs, spec, y_shapes = model._training_setup()
    from .layers.preprocessing.host_stage import host_stages
    stage = next((s for s in host_stages(model) or [] if s is not None), None)
    if stage is not None:
        raise ValueError(f"Model '{model.name}': {stage._host_label()} runs in Python before the compiled graph "
                         f"(strings and hashing have no place in it), so kcompile build cannot put it in a C "
                         f"library; build a model that takes that layer's output as its input")
    if any(d is None for _, shape, _ in specs for d in shape[1:]):
        raise ValueError(f"Model '{model.name}' has inputs of unknown size {[s for _, s, _ in specs]}: "
                         f"a built library needs every size but the batch")
    compiled = CompiledModel(model, specs, spec, communicator=_CALLER_REPLICAS if data_parallel else None)
    graphs = compiled.entry_graphs(y_shapes)
    wanted = list(entries) if entries else [e for e in ENTRIES if e in graphs]
    for entry in wanted:
        if entry not in ENTRIES:
            raise ValueError(f"Unknown entry {entry!r}: expected some of {list(ENTRIES)}")
        if entry not in graphs:
            need = "an optimizer, a loss and trainable weights" if entry == "train" else "a loss"
            raise ValueError(f"Entry '{entry}' needs a model compiled with {need}")
    if data_parallel and "train" not in wanted:
        raise ValueError("data_parallel=True needs the train entry (the all-reduce is in the train step)")
    if graphs["predict"].updates:
        raise ValueError(f"Model '{model.name}' changes its state when it predicts (stateful layers); "
                         f"kcompile build does not support stateful models yet")
    if "evaluate" in graphs:   # the C evaluate reads the state only: no metric accumulators
        g = graphs["evaluate"]
        graphs["evaluate"] = Graph(g.inputs, g.outputs, [], {}, name="evaluate")
    programs = {e: lower_to_kernels(graphs[e]) for e in wanted}
    layout = compiled.pool.layout()
    blob = compiled.pool.buffer[:layout[1]].tobytes()
    if gpu:
        return _build_gpu(model, compiled, programs, directory, name, target, blob, weights)
    module, manifest = build_module(programs, layout, target, name,
                                    initial_state=blob if weights == "embedded" else None,
                                    static_batch=compiled.fixed_batch())
    optimizer = getattr(model, "optimizer", None)
    manifest.variables = {"weights": [v.slot.name for v in model.weights],
                          "optimizer": [v.slot.name for v in getattr(optimizer, "variables", None) or []]}
    os.makedirs(directory, exist_ok=True)
    _write(directory, f"{name}.o", emit_object(module, target))
    _write(directory, f"{name}_manifest.json", manifest.dumps().encode())
    _write(directory, f"{name}.h", header_text(manifest).encode())
    _write(directory, "example.c", example_text(manifest).encode())
    _write(directory, "Makefile", makefile_text(manifest).encode())
    shutil.copyfile(c_abi.header_path(), os.path.join(directory, "kcompile.h"))
    if weights == "file":
        _write(directory, f"{name}.state", blob)
    if _can_link(target):
        _run([_cc(), "-shared", "-o", os.path.join(directory, f"lib{name}.so"),
              os.path.join(directory, f"{name}.o"), "-lm"])
    return manifest


def _build_gpu(model, compiled, programs, directory, name, target, blob, weights):
    """The nvptx branch of build(): NAME.ptx, the host library (codegen/nvptx_host.py) as NAME.o
    and libNAME.so, NAME.h (the CPU library's header), NAME_cuda.h, the manifest and the launch
    schedule. Entries take device pointers; the CUDA driver is loaded at run time (dlopen)."""
    from llvmlite import ir

    from .codegen.nvptx import build_ptx_module, compile_ptx
    from .codegen.nvptx_host import host_source
    module, launches = build_ptx_module(programs, target, name)   # UnsupportedKernels: every kernel it lacks
    ptx = compile_ptx(module, target)
    # the CPU library's manifest (entries, C names, batch limit: the same NAME.h), for this target
    _, manifest = build_module(programs, compiled.pool.layout(), "host", name, static_batch=compiled.fixed_batch())
    manifest.target = target.describe()
    manifest.abi.pop("workspace", None)      # the GPU's is NAME_workspace_size (nvptx_host.py)
    manifest.abi["device"] = "cuda"
    optimizer = getattr(model, "optimizer", None)
    manifest.variables = {"weights": [v.slot.name for v in model.weights],
                          "optimizer": [v.slot.name for v in getattr(optimizer, "variables", None) or []]}
    os.makedirs(directory, exist_ok=True)
    _write(directory, f"{name}.ptx", ptx.encode())
    data = ir.Module(name="kcompile_gpu_data")                    # the PTX and the state, linked in
    host = host_target()
    data.triple = host.triple
    for symbol, raw, align in ((f"{name}__ptx", ptx.encode() + b"\0", 16),
                               (f"{name}__initial_state", blob if weights == "embedded" else b"\0", 64)):
        ty = ir.ArrayType(ir.IntType(8), len(raw))
        g = ir.GlobalVariable(data, ty, symbol)
        g.initializer, g.global_constant, g.align = ir.Constant(ty, bytearray(raw)), True, align
        g.visibility = "hidden"
    _write(directory, f"{name}_data.o", emit_object(data, host))
    _write(directory, f"{name}_host.c", host_source(manifest, launches, {e: p.memory for e, p in programs.items()},
                                                    f"{name}__ptx", f"{name}__initial_state",
                                                    embedded=weights == "embedded").encode())
    _write(directory, f"{name}.h", header_text(manifest).encode())
    _write(directory, f"{name}_cuda.h", (f'/* {name}_cuda.h: the GPU library\'s additions to {name}.h. */\n'
                                         f'#include "{name}.h"\n#include "kcompile_cuda.h"\n'
                                         f"const char *{name}_last_error(void);\n").encode())
    _write(directory, f"{name}_manifest.json", manifest.dumps().encode())
    _write(directory, f"{name}_launches.json", json.dumps(
        {e: [l.describe() for l in ls] for e, ls in launches.items()}, indent=1).encode())
    for header in ("kcompile.h", "kcompile_cuda.h", "kc_cuda_host.h"):
        shutil.copyfile(c_abi.RUNTIME_DIR / header, os.path.join(directory, header))
    if weights == "file":
        _write(directory, f"{name}.state", blob)
    if _cc() is None:
        raise OSError(f"no C compiler (cc) to build the GPU host library of {name!r}; {name}_host.c is written")
    path = lambda f: os.path.join(directory, f)  # noqa: E731
    _run([_cc(), "-c", "-O2", "-fPIC", "-I", directory, "-o", path(f"{name}_host.o"), path(f"{name}_host.c")])
    _run([_cc(), "-r", "-o", path(f"{name}.o"), path(f"{name}_host.o"), path(f"{name}_data.o")])
    _run([_cc(), "-shared", "-o", path(f"lib{name}.so"), path(f"{name}.o"), "-ldl", "-lpthread"])
    return manifest


def c_identifier(name):
    """`name` as a C identifier (the prefix of every symbol)."""
    ident = re.sub(r"\W", "_", str(name))
    return ident if re.match(r"[A-Za-z_]", ident) else "m_" + ident


def _write(directory, filename, data):
    with open(os.path.join(directory, filename), "wb") as f:
        f.write(data)


def _cc():
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _can_link(target):
    """A shared library is linked with the system C compiler when it makes code for this machine."""
    return _cc() is not None and target.triple.split("-")[0] == host_target().triple.split("-")[0]


def _run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")


# ---------------------------------------------------------------------------- generated C text
class _CallerReplicas:
    """The replicas of a data-parallel C library: the calling program's (it sets the all-reduce)."""
    rank, size = 0, None


_CALLER_REPLICAS = _CallerReplicas()


def header_text(manifest):
    n = manifest.name
    guard = n.upper() + "_H"
    lines = [f"/* {n}.h: the model {n!r} compiled by kcompile for {manifest.target['name']} "
             f"({manifest.target['triple']}). */",
             f"#ifndef {guard}", f"#define {guard}", "", '#include "kcompile.h"', "",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
    predict = manifest.entries.get("predict")
    step = manifest.entries.get("train") or manifest.entries.get("evaluate")
    if predict is not None:
        lines += [f"#define {n}_NUM_INPUTS {len(predict.role('x'))}",
                  f"#define {n}_NUM_OUTPUTS {len(predict.outputs)}"]
    if step is not None:
        lines.append(f"#define {n}_NUM_TARGETS {len(step.role('y'))}")
    lines.append(f"#define {n}_MAX_BATCH INT64_C({manifest.max_batch})")
    if manifest.static_batch is not None:
        lines.append(f"#define {n}_FIXED_BATCH {manifest.static_batch}")
    lines.append("")
    for entry, table in (("predict", "inputs"), ("predict", "outputs")):
        if entry in manifest.entries:
            tensors = predict.role("x") if table == "inputs" else predict.outputs
            lines.append(f"/* {', '.join(_describe(t) for t in tensors)} */")
            lines.append(f"extern const kc_tensor_info {n}_{table}[];")
    if step is not None:
        lines.append(f"/* {', '.join(_describe(t) for t in step.role('y'))} */")
        lines.append(f"extern const kc_tensor_info {n}_targets[];")
    lines += ["", f"int64_t {n}_state_size(void);", f"int64_t {n}_workspace_size(int64_t batch);",
              f"int {n}_init_state(void *state);"]
    if "predict" in manifest.abi:
        lines.append(f"int {n}_predict(const void *state, int64_t batch, const void *const *inputs,\n"
                     f"        void *const *outputs, void *workspace);")
    if "train" in manifest.abi:
        lines.append(f"int {n}_train_step(void *state, int64_t batch, const void *const *x, const void *const *y,\n"
                     f"        const float *sample_weight, float *loss, void *workspace);")
    if "evaluate" in manifest.abi:
        lines.append(f"int {n}_evaluate(const void *state, int64_t batch, const void *const *x,\n"
                     f"        const void *const *y, float *loss, void *workspace);")
    if "set_allreduce" in manifest.abi:
        lines += [f"/* data-parallel train step: see kc_allreduce_fn in kcompile.h */",
                  f"int {n}_set_allreduce(kc_allreduce_fn fn, void *ctx);", f"int {n}_allreduce_status(void);"]
    lines += ["", "#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _describe(t):
    dims = ", ".join("batch" if d == -1 else str(d) for d in t.shape)
    return f"{t.name}: {t.dtype}[{dims}]"


def example_text(manifest):
    """A C program that initializes the state, predicts a batch and (if built) trains a few steps."""
    n = manifest.name
    lines = [f"/* example.c: run the kcompile-built model {n}. Build with `make`, run ./example. */",
             "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>", f'#include "{n}.h"', "",
             "static int64_t elements(const kc_tensor_info *t, int64_t batch) {",
             "    int64_t count = 1;",
             "    for (int i = 0; i < t->rank; i++) count *= t->dims[i] == -1 ? batch : t->dims[i];",
             "    return count;", "}", "",
             "static void *allocated[256];", "static int allocations;", "",
             "static void *buffer(int64_t bytes) {   /* zeroed, 64-byte aligned, rounded up as aligned_alloc wants */",
             "    size_t size = (size_t)((bytes + 63) / 64 * 64);",
             "    void *p = allocations < 256 ? aligned_alloc(64, size ? size : 64) : NULL;",
             "    if (p) memset(p, 0, size);",
             "    if (p) allocated[allocations++] = p;",
             "    return p;", "}", "",
             "static int check(int status, const char *what) {",
             '    if (status != KC_OK) fprintf(stderr, "%s: %s\\n", what, kc_status_string(status));',
             "    return status;", "}", "",
             "int main(void) {",
             "    const int64_t batch = 4;",
             f"    void *state = buffer({n}_state_size());",
             f"    void *workspace = buffer({n}_workspace_size(batch));",
             "    if (!state || !workspace) return 1;",
             f'    if (check({n}_init_state(state), "init_state")) return 1;']
    if "predict" in manifest.abi:
        lines += [f"    const void *inputs[{n}_NUM_INPUTS];", f"    void *outputs[{n}_NUM_OUTPUTS];",
                  f"    for (int i = 0; i < {n}_NUM_INPUTS; i++) {{",
                  f"        int64_t count = elements(&{n}_inputs[i], batch);",
                  "        void *data = buffer(4 * count);",
                  f"        if ({n}_inputs[i].dtype == KC_FLOAT32)",
                  "            for (int64_t j = 0; j < count; j++) ((float *)data)[j] = (float)(j % 7) / 7.0f;",
                  "        inputs[i] = data;", "    }",
                  f"    for (int i = 0; i < {n}_NUM_OUTPUTS; i++) outputs[i] = buffer(4 * elements(&{n}_outputs[i], batch));",
                  f'    if (check({n}_predict(state, batch, inputs, outputs, workspace), "predict")) return 1;',
                  f"    for (int i = 0; i < {n}_NUM_OUTPUTS; i++) {{",
                  f"        int64_t count = elements(&{n}_outputs[i], batch);",
                  f'        printf("%s:", {n}_outputs[i].name);',
                  "        for (int64_t j = 0; j < count && j < 8; j++)",
                  f"            {n}_outputs[i].dtype == KC_FLOAT32 ? printf(\" %g\", ((float *)outputs[i])[j])"
                  f" : printf(\" %d\", ((int *)outputs[i])[j]);",
                  '        printf(count > 8 ? " ...\\n" : "\\n");', "    }"]
        if "train" in manifest.abi:
            lines += [f"    const void *targets[{n}_NUM_TARGETS];",
                      f"    for (int i = 0; i < {n}_NUM_TARGETS; i++) {{",
                      f"        int64_t count = elements(&{n}_targets[i], batch);",
                      "        float *data = buffer(4 * count);",
                      "        for (int64_t j = 0; j < count; j++) data[j] = (float)(j % 2);",
                      "        targets[i] = data;", "    }",
                      "    for (int step = 0; step < 3; step++) {", "        float loss;",
                      f'        if (check({n}_train_step(state, batch, inputs, targets, NULL, &loss, workspace), '
                      f'"train_step")) return 1;',
                      '        printf("train step %d: loss %g\\n", step, loss);', "    }"]
    lines += ["    while (allocations) free(allocated[--allocations]);", '    printf("ok\\n");', "    return 0;", "}", ""]
    return "\n".join(lines)


def makefile_text(manifest):
    n = manifest.name
    return (f"# Builds the example against the kcompile-built model {n} (make; ./example).\n"
            f"CC ?= cc\nCFLAGS ?= -O2 -Wall\n\n"
            f"example: example.c {n}.o {n}.h kcompile.h\n"
            f"\t$(CC) $(CFLAGS) -I. -o example example.c {n}.o -lm -lpthread\n\n"
            f"clean:\n\trm -f example\n")
