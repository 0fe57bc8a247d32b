"""The GPU launch schedule as data, and the one walk over it that every runner shares.

A program's launches (nvptx.build_ptx_module) are `Launch`es — one grid each — and `ScanLaunch`es:
an RNN scan run as a host loop, each time step launching the body program's launches with the
step's rows as the body's inputs and output. `walk_launches` resolves every buffer address for a
batch size and calls `issue(launch, n, count, addresses)` per grid in order; the CUDA runtime,
the host emulation in the tests and the generated C host code (nvptx_host.py) follow this walk.

Workspace: a program needs `plan.workspace_bytes(n)` bytes of scratch; a scan's body gets its own
scratch after that (64-byte aligned), so `workspace_bytes(plan, launches, n)` is the total.
"""
from __future__ import annotations

from dataclasses import dataclass

from .sizes import Poly

ALIGN = 64


@dataclass(frozen=True)
class ScanLaunch:
    """A scan kernel: `steps` iterations of the body's launches (reversed order when `reverse`)."""
    step: int                  # position in program.schedule
    kernel: int                # index into program.kernels
    kind: str                  # "scan"
    symbol: str                # the scan kernel's name (its body symbols are SYMBOL_s_kJ)
    steps: int
    reverse: bool
    body: tuple                # the body program's launches (Launch / ScanLaunch)
    body_plan: object          # the body program's MemoryPlan
    operands: tuple            # Buffer of init, each xs, then each loop-invariant operand
    output: object             # Buffer of the (steps, N, R) result
    row_bytes: Poly            # bytes of one step's output row block (N, R)
    x_bytes: tuple             # Poly per xs: bytes of one step's block of it

    def describe(self):
        return {"step": self.step, "kernel": self.kernel, "kind": self.kind, "symbol": self.symbol,
                "steps": self.steps, "reverse": self.reverse, "body": [l.describe() for l in self.body]}


def _align(x):
    return -(-int(x) // ALIGN) * ALIGN


def workspace_bytes(plan, launches, n):
    """Scratch bytes of a program at batch n: its planned buffers, then the largest scan body's."""
    body = [workspace_bytes(l.body_plan, l.body, n) for l in launches if isinstance(l, ScanLaunch)]
    return _align(plan.workspace_bytes(n)) + max(body, default=0)


def flat_launches(launches):
    """Every grid Launch, scan bodies included (each once), in order."""
    for l in launches:
        if isinstance(l, ScanLaunch):
            yield from flat_launches(l.body)
        else:
            yield l


def walk_launches(launches, plan, n, inputs, outputs, state, workspace, issue, address):
    """Issue the grids of `launches` for batch n in order.

    inputs/outputs: addresses by position; state: slot -> address; workspace: the base of
    `workspace_bytes(plan, launches, n)` bytes; address(plan, buffer, n, inputs, outputs, state,
    workspace) resolves a Buffer (nvptx.buffer_address); issue(launch, n, count, addresses).
    Grids with no threads at this batch size are skipped.
    """
    for launch in launches:
        if isinstance(launch, ScanLaunch):
            m = len(launch.x_bytes)
            init, *rest = [address(plan, b, n, inputs, outputs, state, workspace) for b in launch.operands]
            xs, consts = rest[:m], rest[m:]
            out = address(plan, launch.output, n, inputs, outputs, state, workspace)
            row, xrows = launch.row_bytes(n), [x(n) for x in launch.x_bytes]
            body_ws = workspace + _align(plan.workspace_bytes(n))
            for i in range(launch.steps):
                t = launch.steps - 1 - i if launch.reverse else i
                before = t + 1 if launch.reverse else t - 1
                prev = init if i == 0 else out + before * row
                step_inputs = [prev] + [x + t * xr for x, xr in zip(xs, xrows)] + consts
                walk_launches(launch.body, launch.body_plan, n, step_inputs, [out + t * row], {}, body_ws, issue,
                              address)
            continue
        count = launch.count(n)
        if count <= 0:
            continue
        issue(launch, n, count, [address(plan, b, n, inputs, outputs, state, workspace) for b in launch.buffers])
