"""Scalar code emitters for elementwise primitives, one entry per primitive.

Each emitter builds the value of one element from its operands' values; fused loops are a
composition of these, and LLVM's loop vectorizer widens the loop (the math functions are
polynomials from `vecmath`, so nothing here is a call). A test checks that every elementwise
primitive in the rule table has an emitter.
"""
from __future__ import annotations

import math

from llvmlite import ir

from ..ir.primitives import MIX_MULTIPLIERS
from . import vecmath
from .llvm_util import F32, FP_FLAGS, I32, intrinsic

ZERO = ir.Constant(F32, 0.0)
ONE = ir.Constant(F32, 1.0)


def _f(value):
    return ir.Constant(F32, float(value))


def _intr(ctx, name, *args):
    return ctx.builder.call(intrinsic(ctx.module, name, F32, [F32] * len(args)), list(args))


def _is_int(node):
    return node.dtype == "int32"


def _nan_max(b, x, y, pick_x):
    # NaN-propagating like numpy: a NaN in either operand gives NaN.
    r = b.select(pick_x, x, y)
    r = b.select(b.fcmp_unordered("uno", x, x), x, r)
    return b.select(b.fcmp_unordered("uno", y, y), y, r)


def _maximum(ctx, node, x, y):
    b = ctx.builder
    if _is_int(node):
        return b.select(b.icmp_signed(">", x, y), x, y)
    return _nan_max(b, x, y, b.fcmp_ordered(">", x, y))


def _minimum(ctx, node, x, y):
    b = ctx.builder
    if _is_int(node):
        return b.select(b.icmp_signed("<", x, y), x, y)
    return _nan_max(b, x, y, b.fcmp_ordered("<", x, y))


def _arith(float_op, int_op):
    def emit(ctx, node, x, y):
        b = ctx.builder
        if _is_int(node):
            return getattr(b, int_op)(x, y)
        return getattr(b, float_op)(x, y, flags=FP_FLAGS)
    return emit


def _compare(pred, unordered=False):
    def emit(ctx, node, x, y):
        b = ctx.builder
        if node.inputs[0].dtype == "int32":
            cond = b.icmp_signed(pred, x, y)
        elif unordered:
            cond = b.fcmp_unordered(pred, x, y)
        else:
            cond = b.fcmp_ordered(pred, x, y)
        return b.uitofp(cond, F32)
    return emit


def _sign(ctx, node, x):
    b = ctx.builder
    pos = b.select(b.fcmp_ordered(">", x, ZERO), ONE, x)
    return b.select(b.fcmp_ordered("<", x, ZERO), _f(-1.0), pos)


def _pow(ctx, node, x, y):
    """x**y as exp(y*log|x|), with numpy's sign for negative x and integral y."""
    b = ctx.builder
    mag = vecmath.emit_exp(b, b.fmul(y, vecmath.emit_log(b, _intr(ctx, "llvm.fabs.f32", x)), flags=FP_FLAGS))
    y_int = b.fcmp_ordered("==", _intr(ctx, "llvm.floor.f32", y), y)
    half = b.fmul(y, _f(0.5))
    y_odd = b.and_(y_int, b.fcmp_ordered("!=", _intr(ctx, "llvm.floor.f32", half), half))
    neg = b.fcmp_ordered("<", x, ZERO)
    signed = b.select(y_odd, b.fneg(mag), mag)
    result = b.select(neg, b.select(y_int, signed, _f(float("nan"))), mag)
    return b.select(b.fcmp_ordered("==", y, ZERO), ONE, result)


def _where(ctx, node, c, x, y):
    b = ctx.builder
    cond = b.icmp_signed("!=", c, ir.Constant(I32, 0)) if node.inputs[0].dtype == "int32" \
        else b.fcmp_unordered("!=", c, ZERO)
    return b.select(cond, x, y)


def _cast(ctx, node, x):
    b = ctx.builder
    src, dst = node.inputs[0].dtype, node.dtype
    if src == dst:
        return x
    return b.fptosi(x, I32) if dst == "int32" else b.sitofp(x, F32)


def _mix32(b, x):
    x = b.xor(x, b.lshr(x, ir.Constant(I32, 16)))
    x = b.mul(x, ir.Constant(I32, MIX_MULTIPLIERS[0]))
    x = b.xor(x, b.lshr(x, ir.Constant(I32, 15)))
    x = b.mul(x, ir.Constant(I32, MIX_MULTIPLIERS[1]))
    return b.xor(x, b.lshr(x, ir.Constant(I32, 16)))


def _random_uniform(ctx, node, step, row_offset=None):
    """Same hash as primitives.random_bits_reference: key = mix(step ^ mix(seed)), bits = mix(i ^ key),
    i shifted by row_offset rows when the node has that operand (a data-parallel replica's rows)."""
    b = ctx.builder
    seed_mix = _mix32(b, ir.Constant(I32, node.attrs["seed"] & 0xFFFFFFFF))
    key = _mix32(b, b.xor(step, seed_mix))
    index = b.trunc(ctx.flat_index, I32)
    if row_offset is not None:
        row = math.prod(int(d) for d in node.shape[1:]) & 0xFFFFFFFF
        index = b.add(index, b.mul(row_offset, ir.Constant(I32, row)))
    bits = _mix32(b, b.xor(index, key))
    return b.fmul(b.uitofp(b.lshr(bits, ir.Constant(I32, 8)), F32), _f(2.0 ** -24))


def _unary_vecmath(fn):
    return lambda ctx, node, x: fn(ctx.builder, x)


def _unary_intrinsic(name):
    return lambda ctx, node, x: _intr(ctx, name, x)


EMITTERS = {
    "copy": lambda ctx, node, x: x,
    "broadcast_to": lambda ctx, node, x: x,
    "neg": lambda ctx, node, x: ctx.builder.neg(x) if _is_int(node) else ctx.builder.fneg(x),
    "exp": _unary_vecmath(vecmath.emit_exp),
    "log": _unary_vecmath(vecmath.emit_log),
    "log1p": _unary_vecmath(vecmath.emit_log1p),
    "expm1": _unary_vecmath(vecmath.emit_expm1),
    "tanh": _unary_vecmath(vecmath.emit_tanh),
    "sigmoid": _unary_vecmath(vecmath.emit_sigmoid),
    "erf": _unary_vecmath(vecmath.emit_erf),
    "softplus": _unary_vecmath(vecmath.emit_softplus),
    "sin": _unary_vecmath(vecmath.emit_sin),
    "cos": _unary_vecmath(vecmath.emit_cos),
    "sqrt": _unary_intrinsic("llvm.sqrt.f32"),
    "abs": _unary_intrinsic("llvm.fabs.f32"),
    "floor": _unary_intrinsic("llvm.floor.f32"),
    "ceil": _unary_intrinsic("llvm.ceil.f32"),
    "round": _unary_intrinsic("llvm.rint.f32"),
    "sign": _sign,
    "add": _arith("fadd", "add"),
    "sub": _arith("fsub", "sub"),
    "mul": _arith("fmul", "mul"),
    "div": _arith("fdiv", "sdiv"),
    "maximum": _maximum,
    "minimum": _minimum,
    "pow": _pow,
    "greater": _compare(">"),
    "greater_equal": _compare(">="),
    "less": _compare("<"),
    "less_equal": _compare("<="),
    "equal": _compare("=="),
    "not_equal": _compare("!=", unordered=True),
    "where": _where,
    "cast": _cast,
    "random_uniform": _random_uniform,
}
