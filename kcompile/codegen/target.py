"""Targets as data: what machine code is generated for, and how an entry's kernels are run.

A `Target` names a triple, a CPU and its features, the vector width the kernel templates may
assume, how the kernel sequence of an entry executes (serially; on the thread pool, "threads";
as GPU grid launches) and the relocation model. Every back end takes one: the in-process JIT uses
`host` with the executor "threads" when the pool is loaded (jit.jit_target), `kcompile build
--target NAME` any entry of `TARGETS` (serial: a built library links alone).
"""
from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import asdict, dataclass

import llvmlite.binding as llvm

_init_lock = threading.Lock()
_initialized = False


def ensure_llvm():
    """One-time initialization of every LLVM target (llvm.initialize() itself is deprecated)."""
    global _initialized
    with _init_lock:
        if not _initialized:
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
            _initialized = True


@dataclass(frozen=True)
class Target:
    name: str
    triple: str
    cpu: str
    features: str = ""
    vector_bits: int = 256       # widest float vector the kernels are tuned for
    executor: str = "serial"     # how an entry's kernel schedule runs: serial | threads | grid
    reloc: str = "pic"           # relocation model of emitted objects

    def machine(self, jit=False):
        """An LLVM TargetMachine for this target (JIT code uses the JIT code model)."""
        ensure_llvm()
        target = llvm.Target.from_triple(self.triple)
        return target.create_target_machine(
            cpu=self.cpu, features=self.features, opt=3,
            reloc="default" if jit else self.reloc, codemodel="jitdefault" if jit else "default")

    def describe(self):
        return asdict(self)


def host_target():
    """The machine this process runs on, with every feature it has."""
    ensure_llvm()
    features, bits = llvm.get_host_cpu_features().flatten(), _host_vector_bits()
    if bits >= 512:
        # LLVM's tuning for AVX-512 server cores vectorizes loops 256 bits wide (older Xeons lowered
        # their clock for 512-bit code); the GEMM tiles are 512-bit anyway, and 512-bit elementwise
        # loops measured 8-15% faster steps (the guide MLP's train step and batch-1000 predict)
        features += ",-prefer-256-bit"
    return Target("host", llvm.get_process_triple(), llvm.get_host_cpu_name(), features, vector_bits=bits)


def _host_vector_bits():
    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        return 512
    if features.get("avx") or features.get("avx2"):
        return 256
    return 128


TARGETS = {
    # baseline x86-64: SSE2 only, runs on every x86-64 machine
    "x86-64": Target("x86-64", "x86_64-unknown-linux-gnu", "x86-64", vector_bits=128),
    # x86-64-v3: AVX2 + FMA (Haswell, Zen and newer)
    "x86-64-v3": Target("x86-64-v3", "x86_64-unknown-linux-gnu", "x86-64-v3", vector_bits=256),
    "aarch64-linux-gnu": Target("aarch64-linux-gnu", "aarch64-unknown-linux-gnu", "generic", "+neon",
                                vector_bits=128),
    # NVIDIA GPUs through PTX (codegen/nvptx.py; sm_90 etc. via nvptx.nvptx_target(arch)): scalar
    # code per thread, the kernel schedule runs as grid launches
    "nvptx": Target("nvptx", "nvptx64-nvidia-cuda", "sm_80", vector_bits=32, executor="grid"),
}


def get_target(name="host"):
    """The target called `name` ('host' or a key of TARGETS); a Target passes through."""
    if isinstance(name, Target):
        return name
    if name == "host":
        return host_target()
    if name.startswith("nvptx-"):   # one compute capability: nvptx-sm_80, nvptx-sm_90, ...
        arch = name[len("nvptx-"):]
        if not re.fullmatch(r"sm_\d+a?", arch):
            raise ValueError(f"Unknown NVPTX architecture {arch!r}: expected sm_NN such as sm_80 or sm_90")
        return dataclasses.replace(TARGETS["nvptx"], name=name, cpu=arch)
    if name not in TARGETS:
        raise ValueError(f"Unknown target {name!r}: expected one of {['host'] + sorted(TARGETS)}")
    return TARGETS[name]


def runs_here(target):
    """True when code for `target` can execute in this process."""
    host = host_target()
    if target.name == "host":
        return True
    if target.triple.split("-")[0] != host.triple.split("-")[0]:
        return False
    needed = {"x86-64": set(), "x86-64-v3": {"avx2", "fma", "bmi2"}}.get(target.name, {"?"})
    have = {f[1:] for f in host.features.split(",") if f.startswith("+")}
    return needed <= have



