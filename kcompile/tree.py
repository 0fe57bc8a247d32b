"""Walking nested structures (lists, tuples, dicts) of tensors or arrays: one place for it."""
from __future__ import annotations


def flatten(x):
    """Leaves of a nested list/tuple/dict, in order."""
    if isinstance(x, (list, tuple)):
        return [y for v in x for y in flatten(v)]
    if isinstance(x, dict):
        return [y for v in x.values() for y in flatten(v)]
    return [x]


def map_structure(fn, x):
    """Apply fn to every leaf, keeping the list/tuple/dict structure."""
    if isinstance(x, list):
        return [map_structure(fn, v) for v in x]
    if isinstance(x, tuple):
        return tuple(map_structure(fn, v) for v in x)
    if isinstance(x, dict):
        return {k: map_structure(fn, v) for k, v in x.items()}
    return fn(x)
