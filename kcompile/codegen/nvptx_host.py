"""The host side of a GPU library (`kcompile build --target nvptx-sm_NN`): C source whose entries
have the CPU library's ABI (runtime/kcompile.h, codegen/c_abi.py) but take *device* pointers and
launch the model's PTX through the CUDA driver API.

`host_source(manifest, launches, plans, ptx_symbol, state_symbol)` returns the C text. It
includes runtime/kc_cuda_host.h (the driver loaded with dlopen("libcuda.so.1") at the first call,
so the library links and loads without CUDA) and defines, per entry, the launch schedule of
nvptx_schedule.py unrolled into C: each grid's count and grid size as polynomials in the batch,
its buffer addresses (inputs, outputs, state + slot offset, workspace + planned offset), and each
scan as a C loop over its time steps around its body's launches.

Pointers: state and workspace are device allocations (cuMemAlloc gives 256-byte alignment), the
`inputs`/`outputs`/`x`/`y` arrays are host arrays of device pointers, `sample_weight` and `loss`
are device pointers. Statuses are kcompile.h's, plus KC_ERR_NO_DEVICE and KC_ERR_DEVICE
(runtime/kc_cuda_host.h); NAME_last_error() says which driver call failed, on which kernel.
"""
from __future__ import annotations

from .c_abi import DTYPE_CODES, MAX_RANK, status_codes
from .nvptx_schedule import ScanLaunch, flat_launches


def _poly(p, var="n"):
    """A Poly as a C int64 expression in `var`."""
    terms = []
    for k, c in enumerate(p.coeffs):
        if c:
            terms.append(f"INT64_C({c})" + f" * {var}" * k)
    return "(" + (" + ".join(terms) or "INT64_C(0)") + ")"


def _plan_ws(plan, var="n"):
    return f"(INT64_C({plan.static_bytes + 64}) + INT64_C({plan.row_bytes}) * {var})"


class _Writer:
    def __init__(self, functions, state_offsets):
        self.functions, self.offsets = functions, state_offsets
        self.lines = []

    def emit(self, text, depth):
        self.lines.append("    " * (depth + 1) + text)

    def address(self, plan, buf, d):
        if buf.kind == "input":
            return f"ins{d}[{buf.index}]"
        if buf.kind == "output":
            return f"outs{d}[{buf.index}]"
        if buf.kind == "state":
            return f"(st + UINT64_C({self.offsets[buf.slot]}))"
        if buf.batched:
            return f"(ws{d} + UINT64_C({plan.static_bytes}) + (uint64_t)n * UINT64_C({buf.row_offset}))"
        return f"(ws{d} + UINT64_C({buf.static_offset}))"

    def launches(self, launches, plan, d, indent):
        for launch in launches:
            if isinstance(launch, ScanLaunch):
                self.scan(launch, plan, d, indent)
                continue
            if launch.tiles:
                m, c = (_poly(p) for p in launch.tiles)
                count = f"(({m} + 63) / 64) * (({c} + 63) / 64) * INT64_C({launch.block})"
            else:
                count = _poly(launch.elements)
            addresses = ", ".join(self.address(plan, b, d) for b in launch.buffers) or "0"
            self.emit(f"{{   /* {launch.kind} kernel {launch.kernel} */", indent)
            self.emit(f"int64_t count = {count};", indent + 1)
            self.emit(f"uint64_t a[] = {{{addresses}}};", indent + 1)
            self.emit(f"if (count > 0 && (status = kc_launch({self.functions[launch.symbol]}, n, count, "
                      f"{launch.block}, a, {len(launch.buffers)}))) return status;", indent + 1)
            self.emit("}", indent)

    def scan(self, launch, plan, d, indent):
        e = d + 1
        operands = [self.address(plan, b, d) for b in launch.operands]
        self.emit(f"{{   /* scan kernel {launch.kernel}: {launch.steps} steps */", indent)
        i = indent + 1
        self.emit(f"uint64_t out{e} = {self.address(plan, launch.output, d)};", i)
        self.emit(f"uint64_t row{e} = (uint64_t){_poly(launch.row_bytes)};", i)
        m = len(launch.x_bytes)
        for j, size in enumerate(launch.x_bytes):
            self.emit(f"uint64_t xrow{e}_{j} = (uint64_t){_poly(size)};", i)
        self.emit(f"uint64_t ws{e} = ws{d} + (uint64_t)((({_plan_ws(plan)}) + 63) / 64 * 64);", i)
        self.emit(f"for (int64_t i{e} = 0; i{e} < {launch.steps}; i{e}++) {{", i)
        t = f"({launch.steps - 1} - i{e})" if launch.reverse else f"i{e}"
        before = f"({t} + 1)" if launch.reverse else f"({t} - 1)"
        self.emit(f"int64_t t{e} = {t};", i + 1)
        xs = "".join(f", {operands[1 + j]} + (uint64_t)t{e} * xrow{e}_{j}" for j in range(m))
        self.emit(f"uint64_t ins{e}[] = {{i{e} == 0 ? {operands[0]} : out{e} + (uint64_t){before} * row{e}"
                  + xs + "".join(f", {o}" for o in operands[1 + m:]) + "};", i + 1)
        self.emit(f"uint64_t outs{e}[] = {{out{e} + (uint64_t)t{e} * row{e}}};", i + 1)
        self.emit(f"(void)ins{e}; (void)outs{e}; (void)ws{e};", i + 1)
        self.launches(launch.body, launch.body_plan, e, i + 1)
        self.emit("}", i)
        self.emit("}", indent)


def _ws_function(name, plan, launches):
    """C: int64_t NAME(int64_t n): workspace_bytes(plan, launches, n) (nvptx_schedule.py)."""
    out = []

    def expr(plan, launches, depth):
        bodies = [expr(l.body_plan, l.body, depth + 1) for l in launches if isinstance(l, ScanLaunch)]
        own = f"(({_plan_ws(plan)} + 63) / 64 * 64)"
        if not bodies:
            return own
        best = bodies[0]
        for other in bodies[1:]:
            best = f"kc_max64({best}, {other})"
        return f"({own} + {best})"
    out.append(f"static int64_t {name}(int64_t n) {{ return {expr(plan, launches, 0)}; }}")
    return out


def _tensor_table(symbol, tensors):
    rows = []
    for t in tensors:
        if len(t.shape) > MAX_RANK:
            raise ValueError(f"tensor {t.name!r} has rank {len(t.shape)}; the C ABI describes at most {MAX_RANK}")
        dims = ", ".join(str(int(x)) for x in list(t.shape) + [0] * (MAX_RANK - len(t.shape)))
        rows.append(f'    {{"{t.name}", {DTYPE_CODES[t.dtype]}, {len(t.shape)}, {{{dims}}}}},')
    return [f"const kc_tensor_info {symbol}[] = {{"] + (rows or ['    {0, 0, 0, {0}},']) + ["};"]


def host_source(manifest, launches, plans, ptx_symbol, state_symbol, embedded=True):
    """The C source of the GPU library (see the module docstring).

    launches: entry -> launches (nvptx.build_ptx_module); plans: entry -> MemoryPlan;
    ptx_symbol / state_symbol: the NUL-terminated PTX text and the initial state, linked in from
    an object of their own (aot.py); embedded=False: NAME_init_state reports KC_ERR_NO_WEIGHTS.
    """
    n = manifest.name
    codes = status_codes()
    symbols = list(dict.fromkeys(l.symbol for ls in launches.values() for l in flat_launches(ls)))
    functions = {s: i for i, s in enumerate(symbols)}
    offsets = {s.name: s.offset for s in manifest.slots}
    lines = [f"/* {n}_host.c: host code of the model {n!r} for {manifest.target['name']}, written by kcompile.",
             " * Launches the kernels of the PTX linked in beside it through the CUDA driver API. */",
             "#include <stdint.h>", "#include <stddef.h>", f'#include "{n}.h"',
             f"#define KC_MODEL_NAME \"{n}\"", f"#define KC_NUM_FUNCTIONS {max(len(symbols), 1)}",
             '#include "kc_cuda_host.h"', "",
             f"extern const char {ptx_symbol}[];", f"extern const unsigned char {state_symbol}[];",
             "static const char *const kc_function_names[KC_NUM_FUNCTIONS] = {"]
    lines += [f'    "{s}",' for s in symbols] or ['    "",']
    lines += ["};", "",
              f"const char *{n}_last_error(void) {{ return kc_error; }}", "",
              f"static int kc_ready(void) {{ return kc_init({ptx_symbol}, kc_function_names); }}", ""]
    predict = manifest.entries.get("predict")
    step = manifest.entries.get("train") or manifest.entries.get("evaluate")
    if predict is not None:
        lines += _tensor_table(f"{n}_inputs", predict.role("x")) + _tensor_table(f"{n}_outputs", predict.outputs)
    if step is not None:
        lines += _tensor_table(f"{n}_targets", step.role("y"))
    lines.append("")
    sizes = []
    for entry, ls in launches.items():
        lines += _ws_function(f"kc_ws_{entry}", plans[entry], ls)
        sizes.append(f"kc_ws_{entry}(batch)" + (" + (4 * batch + 63) / 64 * 64" if entry != "predict" else ""))
    total = sizes[0] if sizes else "INT64_C(64)"
    for other in sizes[1:]:
        total = f"kc_max64({total}, {other})"
    batch_ok = f"batch >= 1 && batch <= INT64_C({manifest.max_batch})"
    if manifest.static_batch is not None:
        batch_ok += f" && batch == {manifest.static_batch}"
    lines += [f"int64_t {n}_state_size(void) {{ return INT64_C({manifest.state_size}); }}",
              f"int64_t {n}_workspace_size(int64_t batch) {{ return ({batch_ok}) ? {total} : -1; }}", "",
              f"int {n}_init_state(void *state) {{",
              "    int status;",
              "    if (!state) return KC_ERR_NULL_POINTER;",
              "    if ((uintptr_t)state % 64) return KC_ERR_MISALIGNED;",
              "    if ((status = kc_ready())) return status;",
              (f"    return kc_copy_in((uint64_t)(uintptr_t)state, {state_symbol}, {manifest.state_size});" if embedded
               else f"    status = kc_zero((uint64_t)(uintptr_t)state, {manifest.state_size});\n"
                    f"    return status ? status : {codes['KC_ERR_NO_WEIGHTS'][0]};"),
              "}", ""]
    check_batch = f"    if (!({batch_ok.replace('batch', 'n')})) return KC_ERR_BAD_BATCH;"
    for entry, c_name in (("predict", "predict"), ("train", "train_step"), ("evaluate", "evaluate")):
        if entry not in manifest.abi or entry not in launches:
            continue
        info = manifest.entries[entry]
        w = _Writer(functions, offsets)
        w.emit("uint64_t st = (uint64_t)(uintptr_t)state;", 0)
        w.emit("(void)st;", 0)
        w.launches(launches[entry], plans[entry], 0, 0)
        body = w.lines
        if entry == "predict":
            lines += [f"int {n}_predict(const void *state, int64_t n, const void *const *inputs, "
                      "void *const *outputs, void *workspace) {",
                      "    int status;",
                      "    if (!state) return KC_ERR_NULL_POINTER;",
                      "    if ((uintptr_t)state % 64) return KC_ERR_MISALIGNED;",
                      "    if (!workspace) return KC_ERR_NULL_POINTER;",
                      "    if ((uintptr_t)workspace % 64) return KC_ERR_MISALIGNED;",
                      check_batch,
                      f"    uint64_t ins0[{max(len(info.inputs), 1)}], outs0[{max(len(info.outputs), 1)}];",
                      f"    if ((status = kc_pointers(inputs, {len(info.inputs)}, ins0))) return status;",
                      f"    if ((status = kc_pointers((const void *const *)outputs, {len(info.outputs)}, outs0))) "
                      "return status;",
                      "    uint64_t ws0 = (uint64_t)(uintptr_t)workspace;",
                      "    if ((status = kc_ready())) return status;"]
        else:
            weighted = entry == "train"
            sig = (f"int {n}_{c_name}({'' if weighted else 'const '}void *state, int64_t n, const void *const *x, "
                   "const void *const *y, " + ("const float *sample_weight, " if weighted else "")
                   + "float *loss, void *workspace) {")
            nx, ny = len(info.role("x")), len(info.role("y"))
            lines += [sig, "    int status;",
                      "    if (!state) return KC_ERR_NULL_POINTER;",
                      "    if ((uintptr_t)state % 64) return KC_ERR_MISALIGNED;",
                      "    if (!workspace) return KC_ERR_NULL_POINTER;",
                      "    if ((uintptr_t)workspace % 64) return KC_ERR_MISALIGNED;",
                      "    if (!loss) return KC_ERR_NULL_POINTER;",
                      "    if ((uintptr_t)loss % 4) return KC_ERR_MISALIGNED;",
                      check_batch,
                      f"    uint64_t xs[{max(nx, 1)}], ys[{max(ny, 1)}];",
                      f"    if ((status = kc_pointers(x, {nx}, xs))) return status;",
                      f"    if ((status = kc_pointers(y, {ny}, ys))) return status;"]
            if weighted:
                lines.append("    if ((uintptr_t)sample_weight % 4) return KC_ERR_MISALIGNED;")
            else:
                lines.append("    const float *sample_weight = NULL;")
            lines += ["    if ((status = kc_ready())) return status;",
                      "    uint64_t ones = (uint64_t)(uintptr_t)workspace;",
                      "    uint64_t ws0 = ones + (uint64_t)((4 * n + 63) / 64 * 64);",
                      "    if (!sample_weight && (status = kc_fill_ones(ones, n))) return status;",
                      "    uint64_t weights = sample_weight ? (uint64_t)(uintptr_t)sample_weight : ones;",
                      "    (void)weights;",
                      f"    uint64_t ins0[{max(len(info.inputs), 1)}];"]
            qx, qy = 0, 0
            for k, t in enumerate(info.inputs):
                if t.role == "sample_weight":
                    lines.append(f"    ins0[{k}] = weights;")
                elif t.role == "x":
                    lines.append(f"    ins0[{k}] = xs[{qx}];")
                    qx += 1
                else:
                    lines.append(f"    ins0[{k}] = ys[{qy}];")
                    qy += 1
            lines.append("    uint64_t outs0[1] = {(uint64_t)(uintptr_t)loss};")
        lines += body + ["    return kc_finish();", "}", ""]
    return "\n".join(lines)
