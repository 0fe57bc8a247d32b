"""Weights trained outside Python come back: a built library's state blob into a model.

The blob is the state buffer of a library `kcompile build` wrote (saving it from C is one
fwrite); the manifest says where each variable lives and lists the model's weights and optimizer
variables in the model's own order, so — as with `set_weights` — any model of the same
architecture takes them (for instance `load_model` of the file the library was built from).
"""
from __future__ import annotations

import numpy as np

from ..codegen.manifest import Manifest


def load_state(model, blob, manifest):
    """Assign the model's weights (and its optimizer's variables, when both have them) from
    `blob` (bytes or a uint8 array) laid out as `manifest` (a Manifest or its JSON file's path).

    Every value is checked before any is assigned: on error the model is left as it was."""
    if not isinstance(manifest, Manifest):
        manifest = Manifest.load(manifest)
    data = np.frombuffer(bytes(blob), np.uint8) if not isinstance(blob, np.ndarray) else blob.view(np.uint8).ravel()
    if data.size < manifest.state_size:
        raise ValueError(f"State blob of {data.size} bytes is smaller than the state of {manifest.name!r} "
                         f"({manifest.state_size} bytes)")
    groups = [("weights", list(model.weights))]
    optimizer_vars = list(getattr(getattr(model, "optimizer", None), "variables", None) or [])
    if optimizer_vars and manifest.variables.get("optimizer"):
        groups.append(("optimizer", optimizer_vars))
    assignments = []
    for group, variables in groups:
        names = manifest.variables.get(group, [])
        if len(names) != len(variables):
            raise ValueError(f"State of {manifest.name!r} holds {len(names)} {group} variables, but model "
                             f"'{model.name}' has {len(variables)}")
        for variable, slot_name in zip(variables, names):
            info = manifest.slot(slot_name)
            if tuple(info.shape) != tuple(variable.shape) or info.dtype != variable.dtype:
                raise ValueError(f"State of {manifest.name!r} holds {info.path} as {info.dtype}{list(info.shape)}, "
                                 f"but the model's variable {variable.path} is {variable.dtype}{list(variable.shape)}")
            raw = data[info.offset:info.offset + info.nbytes]
            assignments.append((variable, raw.view(info.dtype).reshape(info.shape).copy()))
    for variable, value in assignments:
        variable.assign(value)
    return model
