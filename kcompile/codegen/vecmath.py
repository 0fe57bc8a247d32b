"""Math functions as plain float IR (no calls), so loops using them auto-vectorize to AVX2.

All emitters take and return scalar float32 values; LLVM's loop vectorizer widens the loops
they sit in. Algorithms:
  exp    Cody-Waite reduction x = n ln2 + r (|r| <= ln2/2), Taylor degree 7 for e^r, 2^n by
         exponent bits applied in two halves so n = 128 does not overflow; clamps give 0 / inf.
  log    x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1), odd series to s^11.
  expm1  Taylor degree 10 for |x| < 0.5, exp(x) - 1 otherwise.
  log1p  log(u) * x / (u - 1) with u = 1 + x (exact-compensation trick), x where u == 1.
  tanh   x + x^3 P(x^2) for |x| < 0.625 (P fitted, degree 4), else sign(x) (1 - 2 / (e^{2|x|} + 1))
         with e^{2|x|} from the exp core below (2|x| capped at 18: the result rounds to 1 there).
  sigmoid 1 / (1 + e^{-x}), e^{-x} from the exp core with one 2^n scaling (inf past 88.7: 0).
  softplus max(x, 0) + log1p(exp(-|x|)).
  erf    Maclaurin series to x^13 for |x| < 0.5, Abramowitz-Stegun 7.1.26 beyond (|error| <= 1.5e-7).
  sin/cos x = n pi + r (cos: (n + 1/2) pi + r), three-part Cody-Waite pi so |r| <= pi/2, odd Taylor
         series to r^13, sign from the parity of n (tested without integer conversion, so inf/NaN
         give NaN rather than poison). Accurate for |x| up to ~1e5, which covers their uses here.
"""
from __future__ import annotations

import math

from llvmlite import ir

from .llvm_util import F32, I32, intrinsic

FLAGS = ("contract",)


def _c(v):
    return ir.Constant(F32, float(v))


def _poly(b, x, coeffs):
    """Horner: coeffs[0] + x*(coeffs[1] + x*(...))."""
    acc = _c(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = b.fadd(b.fmul(acc, x, flags=FLAGS), _c(c), flags=FLAGS)
    return acc


def _fabs(b, x):
    return b.call(intrinsic(b.module, "llvm.fabs.f32", F32, [F32]), [x])


def _rint(b, x):
    return b.call(intrinsic(b.module, "llvm.rint.f32", F32, [F32]), [x])


def _pow2i(b, n):
    """2**n for an i32 n in [-126, 127] as float bits."""
    return b.bitcast(b.shl(b.add(n, ir.Constant(I32, 127)), ir.Constant(I32, 23)), F32)


def _isnan(b, x):
    return b.fcmp_unordered("uno", x, x)


def emit_exp(b, x):
    hi, lo = 88.72283935546875, -87.33654022216797
    xc = b.select(b.fcmp_ordered(">", x, _c(hi)), _c(hi), x)
    xc = b.select(b.fcmp_ordered("<", xc, _c(lo)), _c(lo), xc)
    n = _rint(b, b.fmul(xc, _c(1.4426950408889634)))
    r = b.fsub(xc, b.fmul(n, _c(0.693359375)))
    r = b.fsub(r, b.fmul(n, _c(-2.12194440e-4)))
    p = _poly(b, r, [1.0, 1.0, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040])
    ni = b.fptosi(n, I32)
    n1 = b.ashr(ni, ir.Constant(I32, 1))
    n2 = b.sub(ni, n1)
    y = b.fmul(b.fmul(p, _pow2i(b, n1)), _pow2i(b, n2))
    y = b.select(b.fcmp_ordered(">", x, _c(hi)), _c(math.inf), y)
    y = b.select(b.fcmp_ordered("<", x, _c(lo)), _c(0.0), y)
    return b.select(_isnan(b, x), x, y)


def emit_log(b, x):
    tiny = b.fcmp_ordered("<", x, _c(1.1754943508222875e-38))
    xs = b.select(tiny, b.fmul(x, _c(8388608.0)), x)           # lift subnormals by 2^23
    bits = b.bitcast(xs, I32)
    e = b.sub(b.lshr(bits, ir.Constant(I32, 23)), ir.Constant(I32, 127))
    m = b.bitcast(b.or_(b.and_(bits, ir.Constant(I32, 0x007FFFFF)), ir.Constant(I32, 0x3F800000)), F32)
    big = b.fcmp_ordered(">", m, _c(1.4142135623730951))
    m = b.select(big, b.fmul(m, _c(0.5)), m)
    e = b.select(big, b.add(e, ir.Constant(I32, 1)), e)
    ef = b.sitofp(e, F32)
    ef = b.select(tiny, b.fsub(ef, _c(23.0)), ef)
    s = b.fdiv(b.fsub(m, _c(1.0)), b.fadd(m, _c(1.0)))
    s2 = b.fmul(s, s)
    series = _poly(b, s2, [2.0, 2 / 3, 2 / 5, 2 / 7, 2 / 9, 2 / 11])
    y = b.fadd(b.fmul(s, series, flags=FLAGS), b.fmul(ef, _c(0.6931471805599453)), flags=FLAGS)
    y = b.select(b.fcmp_ordered("==", x, _c(math.inf)), x, y)
    y = b.select(b.fcmp_ordered("==", x, _c(0.0)), _c(-math.inf), y)
    y = b.select(b.fcmp_ordered("<", x, _c(0.0)), _c(math.nan), y)
    return b.select(_isnan(b, x), x, y)


def emit_expm1(b, x):
    small = b.fcmp_ordered("<", _fabs(b, x), _c(0.5))
    coeffs = [0.0, 1.0] + [1.0 / math.factorial(k) for k in range(2, 11)]
    p = _poly(b, x, coeffs)
    big = b.fsub(emit_exp(b, x), _c(1.0))
    return b.select(small, p, big)


def emit_log1p(b, x):
    u = b.fadd(x, _c(1.0))
    d = b.fsub(u, _c(1.0))
    corrected = b.fdiv(b.fmul(emit_log(b, u), x), d)
    y = b.select(b.fcmp_ordered("==", d, _c(0.0)), x, corrected)
    y = b.select(b.fcmp_ordered("==", x, _c(math.inf)), x, y)
    return y


def _exp_clamped(b, x):
    """e^x for x in [EXP_LO, EXP_HI] (the caller clamps; NaN gives poison, which the caller's final
    select discards): emit_exp's reduction and polynomial with one 2^n scaling, so n = 128 (x near
    EXP_HI) gives inf — what sigmoid and tanh want there — in fewer instructions."""
    n = _rint(b, b.fmul(x, _c(1.4426950408889634)))
    r = b.fsub(x, b.fmul(n, _c(0.693359375)))
    r = b.fsub(r, b.fmul(n, _c(-2.12194440e-4)))
    p = _poly(b, r, [1.0, 1.0, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040])
    return b.fmul(p, _pow2i(b, b.fptosi(n, I32)))


EXP_HI, EXP_LO = 88.72283935546875, -87.33654022216797
TANH_SMALL = 0.625
# tanh(x) = x + x^3 P(x^2) for |x| < TANH_SMALL: P fitted by weighted least squares on Chebyshev
# nodes (relative error 5e-9 in exact arithmetic, 8e-8 evaluated in float32)
TANH_P = (-0.3333327920837056, 0.13331381354359817, -0.053735318849420836, 0.020626291823203358,
          -0.00569198566313238)


def emit_tanh(b, x):
    ax = _fabs(b, x)
    x2 = b.fmul(x, x)
    small = b.fadd(x, b.fmul(b.fmul(x, x2), _poly(b, x2, TANH_P)))
    e = _exp_clamped(b, b.select(b.fcmp_ordered(">", ax, _c(9.0)), _c(18.0), b.fmul(ax, _c(2.0))))
    big = b.fsub(_c(1.0), b.fdiv(_c(2.0), b.fadd(e, _c(1.0))))     # 1 - 2 / (e^{2|x|} + 1)
    big = b.select(b.fcmp_ordered("<", x, _c(0.0)), b.fneg(big), big)
    y = b.select(b.fcmp_ordered("<", ax, _c(TANH_SMALL)), small, big)
    return b.select(_isnan(b, x), x, y)


def emit_sigmoid(b, x):
    nx = b.fneg(x)
    nx = b.select(b.fcmp_ordered(">", nx, _c(EXP_HI)), _c(EXP_HI), nx)
    nx = b.select(b.fcmp_ordered("<", nx, _c(EXP_LO)), _c(EXP_LO), nx)
    y = b.fdiv(_c(1.0), b.fadd(_c(1.0), _exp_clamped(b, nx)))
    return b.select(_isnan(b, x), x, y)


def emit_softplus(b, x):
    pos = b.select(b.fcmp_ordered(">", x, _c(0.0)), x, _c(0.0))
    y = b.fadd(pos, emit_log1p(b, emit_exp(b, b.fneg(_fabs(b, x)))))
    return b.select(_isnan(b, x), x, y)


def emit_erf(b, x):
    ax = _fabs(b, x)
    t = b.fdiv(_c(1.0), b.fadd(_c(1.0), b.fmul(ax, _c(0.3275911))))
    p = _poly(b, t, [0.0, 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429])
    y = b.fsub(_c(1.0), b.fmul(p, emit_exp(b, b.fneg(b.fmul(ax, ax)))))
    y = b.select(b.fcmp_ordered("<", x, _c(0.0)), b.fneg(y), y)
    # near zero the Maclaurin series keeps the *relative* error small
    x2 = b.fmul(x, x)
    series = b.fmul(x, _poly(b, x2, [2 / math.sqrt(math.pi) * c for c in
                                     (1.0, -1 / 3, 1 / 10, -1 / 42, 1 / 216, -1 / 1320, 1 / 9360)]))
    y = b.select(b.fcmp_ordered("<", ax, _c(0.5)), series, y)
    return b.select(_isnan(b, x), x, y)


_PI_PARTS = (3.140625, 9.67502593994140625e-4, 1.509957990978376432e-7)   # pi = sum, first two exact


def _sin_reduced(b, x, n):
    """(-1)^n sin(x - n pi) for a float n holding an integer or half-integer grid point."""
    r = x
    for part in _PI_PARTS:
        r = b.fsub(r, b.fmul(n, _c(part)))
    r2 = b.fmul(r, r)
    s = b.fmul(r, _poly(b, r2, [1.0] + [(-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 7)]),
               flags=FLAGS)
    return s


def _odd(b, n):
    half = b.fmul(n, _c(0.5))
    return b.fcmp_ordered("!=", half, b.call(intrinsic(b.module, "llvm.floor.f32", F32, [F32]), [half]))


def emit_sin(b, x):
    n = _rint(b, b.fmul(x, _c(1 / math.pi)))
    s = _sin_reduced(b, x, n)
    return b.select(_odd(b, n), b.fneg(s), s)


def emit_cos(b, x):
    # cos x = (-1)^(n+1) sin(x - (n + 1/2) pi) with n = rint(x/pi - 1/2)
    n = _rint(b, b.fsub(b.fmul(x, _c(1 / math.pi)), _c(0.5)))
    s = _sin_reduced(b, x, b.fadd(n, _c(0.5)))
    return b.select(_odd(b, n), s, b.fneg(s))
