"""Loop nests over (possibly batch-sized) index spaces with strided accesses.

Every kernel body is a nest of counted loops over `dims`, touching memory through `Access`es
(a pointer plus one stride per dim and a base offset, all in elements). Sizes and strides are
`Mono`s, c * n**k with n the run-time batch size, so one plan covers every batch size.
Adjacent dims are collapsed whenever every access walks them contiguously, which turns most
nests into one or two loops whose inner one the LLVM vectorizer widens.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from ..ir.graph import BATCH
from .llvm_util import I64, for_range, i64


@dataclass(frozen=True)
class Mono:
    """c * n**k (k = 0 or 1): a size or stride that may scale with the batch size n."""
    c: int
    k: int = 0

    def __mul__(self, other):
        return Mono(self.c * other.c, self.k + other.k)

    def value(self, builder, n):
        if self.k == 0 or self.c == 0:
            return i64(self.c)
        v = n
        for _ in range(self.k - 1):
            v = builder.mul(v, n)
        return v if self.c == 1 else builder.mul(v, i64(self.c))


ONE = Mono(1)
ZERO = Mono(0)


def dim(d):
    return Mono(1, 1) if d is BATCH else Mono(int(d))


def prod(dims):
    out = ONE
    for d in dims:
        out = out * dim(d)
    return out


def contiguous_strides(shape):
    strides, acc = [], ONE
    for d in reversed(shape):
        strides.append(acc)
        acc = acc * dim(d)
    return list(reversed(strides))


def broadcast_strides(operand_shape, iter_shape, own=None):
    """Strides of a row-major operand (or one laid out with strides `own`) read under numpy
    broadcasting against `iter_shape`."""
    lead = len(iter_shape) - len(operand_shape)
    own = contiguous_strides(operand_shape) if own is None else own
    out = [ZERO] * lead
    for j, d in enumerate(operand_shape):
        out.append(ZERO if (d == 1 and iter_shape[lead + j] != 1) else own[j])
    return out


@dataclass
class Access:
    pointer: object               # ir.Value or None (an index-only access, e.g. the flat index)
    strides: list                 # Mono per dim
    base: Mono = ZERO


def collapse(dims, accesses, keep_last=False):
    """Merge adjacent dims that every access walks contiguously; returns (dims, accesses)."""
    dims = list(dims)
    strides = [list(a.strides) for a in accesses]
    j = len(dims) - 2
    stop = 0
    while j >= stop:
        if keep_last and j == len(dims) - 2:
            j -= 1
            continue
        inner = dims[j + 1]
        if all(s[j] == s[j + 1] * inner for s in strides):
            dims[j:j + 2] = [dims[j] * inner]
            for s in strides:
                s[j:j + 2] = [s[j + 1]]
        j -= 1
    return dims, [Access(a.pointer, s, a.base) for a, s in zip(accesses, strides)]


def emit_nest(builder, n, dims, accesses, body, outer_range=None, split=None):
    """Emit loops over `dims`; `body(offsets)` gets one i64 element offset per access.

    outer_range: optional (start, stop) i64 values replacing the outermost loop's bounds;
    split: optional (j, start, stop) replacing the bounds of dim j's loop (a thread's share).
    """
    if outer_range is not None:
        split = (0,) + tuple(outer_range)
    bounds = [d.value(builder, n) for d in dims]
    bases = [a.base.value(builder, n) for a in accesses]
    strides = [[s.value(builder, n) for s in a.strides] for a in accesses]

    def level(j, offsets):
        if j == len(dims):
            body(offsets)
            return
        lo, hi = (split[1:] if (split is not None and j == split[0]) else (i64(0), bounds[j]))
        with for_range(builder, lo, hi, name=f"d{j}") as idx:
            level(j + 1, [builder.add(o, builder.mul(idx, st[j])) if not _is_zero(st[j]) else o
                          for o, st in zip(offsets, strides)])
    level(0, bases)


def split_dim(dims, written):
    """The outermost dim whose index ranges write disjoint elements of every written access, or None.

    Splitting that dim's range among threads gives each written element to exactly one thread,
    which runs the serial loop order on it: the results cannot depend on the thread count.
    Dim j qualifies when each written access moves along it (stride s_j != 0) by more than the
    span the other dims cover, sum over i != j of (d_i - 1) * |s_i| (those sizes must then be
    constants; a batch-sized s_j = c * n with n >= 1 is at least |c|).
    """
    if not written:
        return None
    for j, d in enumerate(dims):
        if d.k == 0 and d.c < 2:
            continue
        ok = True
        for acc in written:
            s_j = acc.strides[j]
            if s_j.c == 0:
                ok = False
                break
            span = 0
            for i, (d_i, s_i) in enumerate(zip(dims, acc.strides)):
                if i == j or s_i.c == 0:
                    continue
                if d_i.k or s_i.k:
                    ok = False
                    break
                span += (d_i.c - 1) * abs(s_i.c)
            if not ok or abs(s_j.c) <= span:
                ok = False
                break
        if ok:
            return j
    return None


def _is_zero(v):
    return isinstance(v, ir.Constant) and v.type == I64 and v.constant == 0
