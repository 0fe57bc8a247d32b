"""The ordered pass pipeline from a model's graph to a kernel program.

Each pass can be switched off by name (KCOMPILE_DISABLE_PASSES=cse,fusion) for debugging, and
with KCOMPILE_DUMP_IR=dir the graph after every pass and the final kernel list are written as
text files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..printer import format_graph
from ..scan import drop_unread_saves
from . import conv_grad, simplify
from .fusion import Kernel, fuse
from .memory import MemoryPlan, plan_memory

GRAPH_PASSES = [
    ("drop_unread_saves", drop_unread_saves),
    ("cse", simplify.cse),
    ("fold_constants", simplify.fold_constants),
    ("algebraic", simplify.algebraic),
    ("conv_input_grads", conv_grad.conv_input_grads),
    ("cse_after_algebraic", simplify.cse),
]


@dataclass(frozen=True)
class Step:
    """One launch of an entry's schedule: which kernel runs, and how it may be split."""
    kernel: int                   # index into KernelProgram.kernels
    kind: str                     # the kernel's kind (elementwise, reduce, matmul, layout, scan, ...)


@dataclass
class KernelProgram:
    """What codegen receives: the finished program of one entry, scan bodies lowered too.

    `schedule` is the order in which the kernels run (data: a serial list today; the thread-pool
    and GPU back ends read the same list as launches).
    """
    graph: object                 # the graph after passes (roots prepared for storage)
    kernels: list[Kernel]
    memory: MemoryPlan
    schedule: list[Step]

    def describe(self):
        lines = [f"# kernels of {self.graph.name}"]
        lines += [f"{i:3d}: {k.describe()}" for i, k in enumerate(self.kernels)]
        lines.append(f"# workspace: {self.memory.static_bytes} bytes + {self.memory.row_bytes} bytes per batch row")
        return "\n".join(lines) + "\n"


def disabled_passes():
    return {p.strip() for p in os.environ.get("KCOMPILE_DISABLE_PASSES", "").split(",") if p.strip()}


def optimize_graph(graph, dump_dir=None, dump_name=None):
    off = disabled_passes()
    dump = _dumper(dump_name or graph.name, dump_dir)
    dump("00_input", format_graph(graph))
    for i, (name, fn) in enumerate(GRAPH_PASSES, 1):
        if name.split("_after")[0] in off:
            continue
        graph = fn(graph)
        dump(f"{i:02d}_{name}", format_graph(graph))
    return graph


def lower_to_kernels(graph, dump_dir=None, dump_name=None):
    """`dump_name` names the dump files (a scan body's: its graph's name and kernel index)."""
    dump_name = dump_name or graph.name
    graph = optimize_graph(graph, dump_dir, dump_name)
    graph, kernels = fuse(graph, enabled="fusion" not in disabled_passes())
    for i, kernel in enumerate(kernels):
        if kernel.kind == "scan":   # the step body is a program of its own, lowered here, not in codegen
            kernel.body = lower_to_kernels(kernel.root.attrs["body"], dump_dir, f"{dump_name}.k{i}.scan_body")
    schedule = [Step(i, k.kind) for i, k in enumerate(kernels)]
    program = KernelProgram(graph, kernels, plan_memory(graph, kernels), schedule)
    _dumper(dump_name, dump_dir)("99_kernels", program.describe())
    return program


def _dumper(name, dump_dir):
    dump_dir = dump_dir or os.environ.get("KCOMPILE_DUMP_IR")
    if not dump_dir:
        return lambda stage, text: None
    os.makedirs(dump_dir, exist_ok=True)

    def dump(stage, text):
        with open(os.path.join(dump_dir, f"{name}.{stage}.txt"), "w") as f:
            f.write(text)
    return dump
