"""Sizes that depend on the run-time batch size, as data both Python and C evaluate.

A `Poly` is a polynomial in the batch size n with integer coefficients (Python ints: exact, never
wrapping). A `WorkspaceSize` is `base(n) + max(scratch_i(n))`: the planned buffers plus the largest
scratch area any one kernel needs (kernels run one after another, so they share it). The manifest
stores both as coefficient lists; `emit_size_function` writes the same formula into the module
as `int64_t NAME(int64_t batch)`, and `max_batch` bounds n so that no size passes `SIZE_LIMIT`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from llvmlite import ir

from .llvm_util import I64, i64

SIZE_LIMIT = 2 ** 46   # bytes; no buffer or workspace of a compiled entry may be larger (64 TiB)


class Poly:
    __slots__ = ("coeffs",)

    def __init__(self, coeffs=(0,)):
        coeffs = [int(c) for c in coeffs] or [0]
        while len(coeffs) > 1 and coeffs[-1] == 0:
            coeffs.pop()
        self.coeffs = tuple(coeffs)

    @classmethod
    def of(cls, value):
        """A Poly from an int, a Poly, or a loops.Mono (c * n**k)."""
        if isinstance(value, Poly):
            return value
        if hasattr(value, "k"):
            return cls([0] * value.k + [value.c])
        return cls([int(value)])

    def __add__(self, other):
        other = Poly.of(other)
        a, b = self.coeffs, other.coeffs
        return Poly([(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(max(len(a), len(b)))])

    __radd__ = __add__

    def __sub__(self, other):
        return self + Poly.of(other) * -1

    def __mul__(self, other):
        other = Poly.of(other)
        out = [0] * (len(self.coeffs) + len(other.coeffs) - 1)
        for i, x in enumerate(self.coeffs):
            for j, y in enumerate(other.coeffs):
                out[i + j] += x * y
        return Poly(out)

    __rmul__ = __mul__

    def __call__(self, n):
        return sum(c * n ** k for k, c in enumerate(self.coeffs))

    def __eq__(self, other):
        return isinstance(other, Poly) and self.coeffs == other.coeffs

    def __hash__(self):
        return hash(self.coeffs)

    def __repr__(self):
        return " + ".join(f"{c}*n^{k}" if k else str(c) for k, c in enumerate(self.coeffs) if c) or "0"

    def emit(self, builder, n):
        """The value at run-time batch n (an i64), by Horner's rule."""
        value = i64(self.coeffs[-1])
        for c in reversed(self.coeffs[:-1]):
            value = builder.add(builder.mul(value, n), i64(c))
        return value


@dataclass
class WorkspaceSize:
    base: Poly = field(default_factory=Poly)
    scratch: list = field(default_factory=list)   # Polys; the largest one is added to base

    def __call__(self, n):
        return self.base(n) + max([s(n) for s in self.scratch] or [0])

    def plus(self, extra):
        """This size with `extra` bytes (a Poly) added to every term."""
        return WorkspaceSize(self.base + extra, list(self.scratch))

    @staticmethod
    def largest(sizes):
        """A size at least as large as each of `sizes` (entries of one module share one workspace)."""
        terms = [s.base + t for s in sizes for t in (s.scratch or [Poly()])]
        return WorkspaceSize(Poly(), _undominated(terms))

    def to_json(self):
        return {"base": list(self.base.coeffs), "scratch": [list(s.coeffs) for s in self.scratch]}

    @classmethod
    def from_json(cls, data):
        return cls(Poly(data["base"]), [Poly(s) for s in data["scratch"]])

    def emit(self, builder, n):
        value = self.base.emit(builder, n)
        if self.scratch:
            top = self.scratch[0].emit(builder, n)
            for s in self.scratch[1:]:
                v = s.emit(builder, n)
                top = builder.select(builder.icmp_signed(">", v, top), v, top)
            value = builder.add(value, top)
        return value


def _undominated(polys):
    """Drop every polynomial another one bounds coefficient by coefficient (they never win the max)."""
    def dominates(a, b):
        width = max(len(a.coeffs), len(b.coeffs))
        pad = lambda p: p.coeffs + (0,) * (width - len(p.coeffs))  # noqa: E731
        return all(x >= y for x, y in zip(pad(a), pad(b)))
    unique = list(dict.fromkeys(polys))
    return [p for i, p in enumerate(unique)
            if not any(j != i and dominates(q, p) and (not dominates(p, q) or j < i) for j, q in enumerate(unique))]


def max_batch(sizes, limit=SIZE_LIMIT):
    """The largest batch n for which every size (callables of n, nondecreasing) stays <= limit."""
    def fits(n):
        return all(s(n) <= limit for s in sizes)
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while fits(hi) and hi < limit:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def emit_size_function(module, name, size, batch_limit):
    """int64_t name(int64_t batch): size(batch) bytes, or -1 when batch is outside [1, batch_limit]."""
    fn = ir.Function(module, ir.FunctionType(I64, [I64]), name)
    n = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ok = b.and_(b.icmp_signed(">=", n, i64(1)), b.icmp_signed("<=", n, i64(batch_limit)))
    with b.if_else(ok) as (then, otherwise):
        with then:
            good = size.emit(b, n)
            then_block = b.block
        with otherwise:
            other_block = b.block
    result = b.phi(I64)
    result.add_incoming(good, then_block)
    result.add_incoming(i64(-1), other_block)
    b.ret(result)
    return fn
