"""Layout rules shared by the graph passes and scan's `tidy`: a slice or pad of a layout op as a
simpler expression of the same values (a slice of a slice is one slice; a slice that only trims a
pad's zeros is a smaller pad; a slice of a concat is the operands it selects)."""
from __future__ import annotations

from . import builder as b
from .graph import BATCH


def simpler_slice(x, bounds):
    """slice(x, bounds) without the layout op `x` (a slice, pad or concat), or None."""
    if x.op == "slice":
        inner = x.attrs["bounds"]
        composed = tuple((lo0 + lo, hi0 if hi is None else lo0 + hi) for (lo0, hi0), (lo, hi) in zip(inner, bounds))
        return b.slice(x.inputs[0], composed)
    if x.op == "pad":
        return _slice_of_pad(x, bounds)
    if x.op == "concat":
        return _slice_of_concat(x, bounds)
    return None


def simplest_slice(x, bounds, keep=()):
    """simpler_slice repeated while its result is a slice of another layout op (a slice of a
    concat's slice...); nodes whose ids are in `keep` are not looked through. None: no rule."""
    out = simpler_slice(x, bounds)
    while out is not None and out.op == "slice" and out.inputs[0].id not in keep:
        again = simpler_slice(out.inputs[0], out.attrs["bounds"])
        if again is None:
            break
        out = again
    return out


def simpler_pad(x, pads):
    """pad(x, pads) as one pad when `x` is itself a pad, else None."""
    if x.op != "pad":
        return None
    return b.pad(x.inputs[0], tuple((a + c, d + e) for (a, d), (c, e) in zip(pads, x.attrs["pads"])))


def _slice_of_pad(x, bounds):
    """Per axis the slice lies within the padded input (a slice of it) or holds all of it (fewer
    zeros around it): pad(slice(input)); None when it cuts the input and the zeros both."""
    inner, pads = [], []
    for (lo, hi), (p_lo, _), d, full in zip(bounds, x.attrs["pads"], x.inputs[0].shape, x.shape):
        if d is BATCH:
            inner.append((lo, hi))
            pads.append((0, 0))
            continue
        hi = full if hi is None else hi
        if p_lo <= lo and hi <= p_lo + d:
            inner.append((lo - p_lo, hi - p_lo))
            pads.append((0, 0))
        elif lo <= p_lo and p_lo + d <= hi:
            inner.append((0, d))
            pads.append((p_lo - lo, hi - p_lo - d))
        else:
            return None
    return b.pad(b.slice(x.inputs[0], tuple(inner)), tuple(pads))


def _slice_of_concat(x, bounds):
    """A slice of a concat that lies within one operand -> a slice of it (or it); one that spans
    whole operands -> their concat; None otherwise."""
    axis = x.attrs["axis"]
    if not all((lo, hi) in ((0, None), (0, d)) for k, ((lo, hi), d) in enumerate(zip(bounds, x.shape)) if k != axis):
        return None
    lo, hi = bounds[axis]
    hi = x.shape[axis] if hi is None else hi
    start, whole = 0, []
    for piece in x.inputs:
        end = start + piece.shape[axis]
        if start <= lo and hi <= end:
            inner = tuple((lo - start, hi - start) if k == axis else bd for k, bd in enumerate(bounds))
            return b.slice(piece, inner)
        if lo <= start and end <= hi:
            whole.append(piece)
        elif start < hi and end > lo:
            return None                      # a piece cut in two
        start = end
    return b.concat(whole, axis) if whole else None
