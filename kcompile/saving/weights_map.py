"""Which array in a weights file belongs to which variable of a live model.

Legacy HDF5 (Keras 2, and Keras 3's `.h5`): one group per top-level layer, in `layer_names`
order, each holding that layer's weights in its own order (a nested model's group holds all of
its weights). Matching is by position among layers that have weights, or by name (`by_name`).

Keras 3 (`.weights.h5`, inside `.keras`): object paths. A container's layers are named by their
class in snake case, numbered in order when repeated ("dense", "dense_1"), not by layer name;
sublayers appear under the attribute that holds them ("layers/lstm/cell/vars",
"layers/bidirectional/forward_layer/cell/vars", "layers/time_distributed/layer/vars");
nested models under "layers/<name>/layers/...". The optimizer's variables are "optimizer/vars".
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import KerasFileError
from ..naming import to_snake_case


def _top_layers(model):
    from ..models.sequential import Sequential
    if isinstance(model, Sequential):
        return list(model.layers)
    return list(model._layers)


class _WeightGroup:
    """Variables Keras 3 keeps under a sublayer that kcompile's layer holds itself (a layer's
    `keras3_weight_groups()`: {attribute: [variables]}, e.g. MultiHeadAttention's `_query_dense`)."""

    def __init__(self, variables):
        self.variables = list(variables)


def _own(layer):
    if isinstance(layer, _WeightGroup):
        return layer.variables
    if callable(getattr(layer, "keras3_weight_groups", None)):
        return []              # its variables sit under its groups' paths
    created = [w for w in layer._own_weights if w in layer._created_trainable]
    return created + [w for w in layer._own_weights if w not in layer._created_trainable]


# ---------------------------------------------------------------- legacy layout

def _legacy_weights(layer):
    """A layer's weights in the legacy files' order: trainable, then non-trainable (for a nested
    model that differs from get_weights() when a sublayer is frozen)."""
    out, seen = [], set()
    for v in layer.trainable_weights + layer.non_trainable_weights:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def legacy_layer_weights(model):
    """[(layer name, [(weight name, array)])] for every top-level layer, Keras 2 style names."""
    return [(layer.name, [(f"{v.path}:0" if not v.path.endswith(":0") else v.path, v.numpy())
                          for v in _legacy_weights(layer)]) for layer in _top_layers(model)]


def assign_legacy(model, layer_weights, source, by_name=False, skip_mismatch=False):
    layers = [l for l in _top_layers(model) if l.weights]
    stored = [(name, [a for _, a in ws]) for name, ws in layer_weights if ws]
    pairs = []
    if by_name:
        by = {name: arrays for name, arrays in stored}
        for layer in layers:
            if layer.name in by:
                pairs += _layer_pairs(layer, by[layer.name], source, skip_mismatch)
        _assign_all(pairs)
        return
    if len(stored) != len(layers):
        names = {n for n, _ in stored}
        unstored = ", ".join(f"'{l.name}' ({type(l).__name__}, weights {[tuple(v.shape) for v in _legacy_weights(l)]})"
                             for l in layers if l.name not in names)
        raise KerasFileError(f"the file has weights for {len(stored)} layers ({[n for n, _ in stored]}) but the "
                             f"model has {len(layers)} layers with weights ({[l.name for l in layers]})"
                             + (f"; the file holds none for layer {unstored}" if unstored else ""), source)
    for layer, (_, arrays) in zip(layers, stored):
        pairs += _layer_pairs(layer, arrays, source, skip_mismatch)
    _assign_all(pairs)


def _layer_pairs(layer, arrays, source, skip_mismatch):
    """[(variable, value)] for one layer, checked and converted; [] when skipped."""
    variables = _legacy_weights(layer)
    problem = None
    if len(arrays) != len(variables):
        problem = f"layer '{layer.name}' expects {len(variables)} weights, but the file holds {len(arrays)}"
    else:
        for v, a in zip(variables, arrays):
            if tuple(np.shape(a)) != tuple(v.shape):
                problem = (f"layer '{layer.name}' weight '{v.name}' has shape {tuple(v.shape)}, but the file "
                           f"holds shape {tuple(np.shape(a))}")
                break
    if problem:
        if skip_mismatch:
            warnings.warn(f"Skipping loading weights for {problem}", stacklevel=3)
            return []
        raise KerasFileError(problem, source)
    return [(v, np.asarray(a, dtype=v.dtype)) for v, a in zip(variables, arrays)]


def _assign_all(pairs):
    """Assign only once every weight was checked and converted: a file that does not fit the
    model leaves it exactly as it was, rather than half loaded."""
    for v, value in pairs:
        v.assign(value)


# ---------------------------------------------------------------- Keras 3 object paths

def keras3_objects(model):
    """[(path, layer or model)] in Keras 3's naming ("layers/dense_1", "layers/lstm/cell"), the
    model itself at "" — the paths of `<path>/vars` in weight files and of `assets/<path>/`."""
    from ..models.model import Model
    out = [("", model)]

    def container(layers, prefix):
        counts = {}
        for layer in layers:
            base = "functional" if type(layer) is Model else to_snake_case(type(layer).__name__)
            n = counts.get(base, 0)
            counts[base] = n + 1
            visit(layer, f"{prefix}layers/{base if n == 0 else f'{base}_{n}'}")

    def visit(layer, path):
        out.append((path, layer))
        groups = getattr(layer, "keras3_weight_groups", None)
        if callable(groups):
            out.extend((f"{path}/{attr}", _WeightGroup(variables)) for attr, variables in groups().items())
        if isinstance(layer, Model):
            container(_top_layers(layer), f"{path}/")
            return
        for attr, value in layer.__dict__.items():
            if attr.startswith("_") or not hasattr(value, "_own_weights") or value not in layer._layers:
                continue
            visit(value, f"{path}/{attr}")
    container(_top_layers(model), "")
    return out


def keras3_paths(model):
    """{path: [Variable, ...]} in Keras 3's naming, for the model's layers (not the optimizer);
    a model's own group is empty (its layers' variables sit under its layers)."""
    from ..models.model import Model
    return {f"{path}/vars" if path else "vars": [] if isinstance(obj, Model) else _own(obj)
            for path, obj in keras3_objects(model)}


def keras3_tree(model):
    return {path: [v.numpy() for v in variables] for path, variables in keras3_paths(model).items()}


def _owner(model, path):
    """' (layer NAME, CLASS)' for an error message about the variables at `path`."""
    for p, obj in keras3_objects(model):
        if (f"{p}/vars" if p else "vars") == path:
            return f" (layer '{getattr(obj, 'name', '?')}', {type(obj).__name__})"
    return ""


def assign_keras3(model, tree, source, skip_mismatch=False):
    paths = keras3_paths(model)
    missing = [p for p, vs in paths.items() if vs and p not in tree.vars]
    if missing and not skip_mismatch:
        raise KerasFileError(f"the file has no weights for {missing[0]} (it holds {sorted(tree.vars)[:8]})", source)
    pairs = []
    for path, variables in paths.items():
        arrays = tree.vars.get(path)
        if arrays is None:
            continue
        if len(arrays) != len(variables) or any(tuple(np.shape(a)) != tuple(v.shape) for a, v in zip(arrays, variables)):
            problem = (f"{path}{_owner(model, path)}: the model has {[tuple(v.shape) for v in variables]}, the file "
                       f"{[tuple(np.shape(a)) for a in arrays]}")
            if skip_mismatch:
                warnings.warn(f"Skipping loading weights for {problem}", stacklevel=2)
                continue
            raise KerasFileError(f"weights do not match the model at {problem}", source)
        pairs += [(v, np.asarray(a, dtype=v.dtype)) for v, a in zip(variables, arrays)]
    _assign_all(pairs)
