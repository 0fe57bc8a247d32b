"""The manifest: everything a caller needs to run a built module, as data (JSON for C users).

It names the entries and their symbols, each entry's inputs and outputs (name, role, dtype,
shape with -1 for the batch), the workspace size as a function of the batch, the kernel schedule,
and the state layout: every weight, optimizer slot and counter with its byte offset in the one
state buffer. Python's executables and the C header are both written from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..ir.graph import BATCH
from .sizes import WorkspaceSize

FORMAT = 1
ROLES = ("x", "y", "sample_weight")


@dataclass
class TensorInfo:
    name: str
    dtype: str
    shape: tuple          # -1 marks the batch dimension
    role: str = "x"       # x | y | sample_weight for inputs; "output" for outputs

    @classmethod
    def of(cls, name, node, role):
        return cls(name, node.dtype, tuple(-1 if d is BATCH else int(d) for d in node.shape), role)

    def row_elements(self):
        out = 1
        for d in self.shape[1:]:
            out *= d
        return out

    def to_json(self):
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "role": self.role}

    @classmethod
    def from_json(cls, d):
        return cls(d["name"], d["dtype"], tuple(d["shape"]), d["role"])


def input_role(name):
    """Graph inputs are named by the trace: target_i and sample_weight_i, the rest are model inputs."""
    if name.startswith("target_"):
        return "y"
    if name.startswith("sample_weight_"):
        return "sample_weight"
    return "x"


@dataclass
class EntryInfo:
    symbol: str                       # void symbol(i64 n, ptr inputs[], ptr outputs[], ptr state, ptr ws)
    inputs: list
    outputs: list
    workspace: WorkspaceSize
    writes_state: bool                # train steps, metric accumulation, stateful layers
    loop_symbol: str | None = None    # the whole-epoch loop of a scalar-output entry
    schedule: list = field(default_factory=list)   # [{"kernel": index, "kind": kind}] in run order

    def to_json(self):
        return {"symbol": self.symbol, "loop_symbol": self.loop_symbol, "writes_state": self.writes_state,
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs],
                "workspace": self.workspace.to_json(), "schedule": self.schedule}

    @classmethod
    def from_json(cls, d):
        return cls(d["symbol"], [TensorInfo.from_json(t) for t in d["inputs"]],
                   [TensorInfo.from_json(t) for t in d["outputs"]], WorkspaceSize.from_json(d["workspace"]),
                   d["writes_state"], d["loop_symbol"], d["schedule"])

    def role(self, role):
        return [t for t in self.inputs if t.role == role]

    @classmethod
    def of_graph(cls, graph, symbol="", workspace=None, schedule=()):
        """The entry computing `graph`: its io from the graph's nodes (a loop for scalar outputs)."""
        inputs = [TensorInfo.of(node.attrs["name"], node, input_role(node.attrs["name"])) for node in graph.inputs]
        outputs = [TensorInfo.of(key, node, "output") for key, node in graph.outputs.items()]
        scalar = all(node.shape == () for node in graph.outputs.values())
        return cls(symbol, inputs, outputs, workspace or WorkspaceSize(), writes_state=bool(graph.updates),
                   loop_symbol=symbol + "_loop" if scalar and symbol else None,
                   schedule=[{"kernel": s.kernel, "kind": s.kind} for s in schedule])


@dataclass
class SlotInfo:
    name: str
    offset: int
    shape: tuple
    dtype: str
    kind: str

    @property
    def path(self):
        """The variable's path (slot names are path#uid; the uid differs between processes)."""
        return self.name.split("#")[0]

    @property
    def nbytes(self):
        out = 4
        for d in self.shape:
            out *= d
        return out

    def to_json(self):
        return {"name": self.name, "offset": self.offset, "shape": list(self.shape), "dtype": self.dtype,
                "kind": self.kind}

    @classmethod
    def from_json(cls, d):
        return cls(d["name"], d["offset"], tuple(d["shape"]), d["dtype"], d["kind"])


@dataclass
class Manifest:
    name: str
    target: dict
    entries: dict                     # entry name (predict, train, evaluate) -> EntryInfo
    slots: list                       # SlotInfo, by offset
    state_size: int
    max_batch: int                    # the largest batch whose buffers stay within sizes.SIZE_LIMIT
    static_batch: int | None = None   # stateful layers fix the batch size
    abi: dict = field(default_factory=dict)   # C entry points: name -> symbol, and the workspace they need
    variables: dict = field(default_factory=dict)   # "weights"/"optimizer": slot names in the model's order

    def to_json(self):
        return {"format": FORMAT, "name": self.name, "target": self.target, "state_size": self.state_size,
                "max_batch": self.max_batch, "static_batch": self.static_batch,
                "entries": {k: e.to_json() for k, e in self.entries.items()},
                "state": [s.to_json() for s in self.slots], "abi": self.abi, "variables": self.variables}

    def dumps(self):
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, d):
        if d.get("format") != FORMAT:
            raise ValueError(f"Unsupported manifest format {d.get('format')!r} (this kcompile reads {FORMAT})")
        return cls(d["name"], d["target"], {k: EntryInfo.from_json(e) for k, e in d["entries"].items()},
                   [SlotInfo.from_json(s) for s in d["state"]], d["state_size"], d["max_batch"],
                   d["static_batch"], d.get("abi", {}), d.get("variables", {}))

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_json(json.load(f))

    def slot(self, name):
        for s in self.slots:
            if s.name == name:
                return s
        raise KeyError(name)
