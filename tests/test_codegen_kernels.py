"""Codegen kernels on their own: polynomial math accuracy, the GEMM template on every edge size,
and the machine code (ymm FMA in dense kernels, no libm calls in vectorized math)."""
import ctypes

import numpy as np
from hypothesis import given, strategies as st
from llvmlite import ir

from kcompile.codegen import gemm, vecmath
from kcompile.codegen.jit import JitModule
from kcompile.codegen.llvm_util import F32, I32, I64, PTR, VOID, for_range, gep_f, i64

FUNCS = {
    "exp": (vecmath.emit_exp, np.exp, np.linspace(-87, 88, 20001)),
    "log": (vecmath.emit_log, np.log, np.concatenate([np.geomspace(1e-38, 3e38, 20001), [1e-42]])),
    "tanh": (vecmath.emit_tanh, np.tanh, np.linspace(-12, 12, 20001)),
    "sigmoid": (vecmath.emit_sigmoid, lambda x: 1 / (1 + np.exp(-x)), np.linspace(-30, 30, 20001)),
    "erf": (vecmath.emit_erf, None, np.linspace(-5, 5, 20001)),
    "expm1": (vecmath.emit_expm1, np.expm1, np.linspace(-5, 5, 20001)),
    "log1p": (vecmath.emit_log1p, np.log1p, np.linspace(-0.999, 10, 20001)),
    "softplus": (vecmath.emit_softplus, lambda x: np.logaddexp(0, x), np.linspace(-30, 30, 20001)),
}
TOLERANCE = {"exp": 3e-7, "log": 3e-7, "tanh": 3e-7, "sigmoid": 3e-7, "erf": 6e-7, "expm1": 5e-7,
             "log1p": 5e-7, "softplus": 5e-7}


def _unary_loop(name, emit):
    m = ir.Module()
    fn = ir.Function(m, ir.FunctionType(VOID, [I64, PTR, PTR]), name)
    n, x, y = fn.args
    x.add_attribute("noalias")
    y.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block())
    with for_range(b, 0, n) as i:
        b.store(emit(b, b.load(gep_f(b, x, i), typ=F32)), gep_f(b, y, i))
    b.ret_void()
    jit = JitModule(m)
    return jit, ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)(jit.address(name))


def _erf(x):
    import math
    return np.vectorize(math.erf)(x)


def test_math_accuracy_and_special_values():
    for name, (emit, ref, grid) in FUNCS.items():
        jit, f = _unary_loop(name, emit)
        x = grid.astype(np.float32)
        y = np.empty_like(x)
        f(x.size, x.ctypes.data, y.ctypes.data)
        want = (ref or _erf)(x.astype(np.float64))
        rel = np.abs(y - want) / np.maximum(np.abs(want), 1e-30)
        err = np.where(np.abs(want) > 1e-3, rel, np.abs(y - want))
        assert np.nanmax(err) < TOLERANCE[name], (name, float(np.nanmax(err)), x[np.nanargmax(err)])
        special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
        out = np.empty_like(special)
        f(special.size, special.ctypes.data, out.ctypes.data)
        with np.errstate(all="ignore"):
            expect = (ref or _erf)(special.astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expect), err_msg=name)
        finite = ~np.isnan(expect)
        np.testing.assert_allclose(out[finite], expect[finite], err_msg=name)
        if name == "exp":
            asm = jit.assembly
            # vectorized (256-bit, or 512-bit on AVX-512 hosts) and inlined
            assert ("ymm" in asm or "zmm" in asm) and "call" not in asm.split(f"{name}:")[-1].split(".Lfunc_end")[0]
        jit.close()


def _gemm_module(epilogue_add_one=False):
    m = ir.Module()

    def epilogue(b, r0, r1, extra):
        n_cols, c = extra
        with for_range(b, r0, r1, "er") as r:
            with for_range(b, 0, n_cols, "ec") as j:
                p = gep_f(b, c, b.add(b.mul(r, n_cols), j))
                b.store(b.fadd(b.load(p, typ=F32), ir.Constant(F32, 1.0)), p)
    gemm.define_gemm(m, "g", epilogue=epilogue if epilogue_add_one else None, extra_arg_types=[I64, PTR],
                     exported=True)
    jit = JitModule(m)
    sig = ctypes.CFUNCTYPE(None, *([ctypes.c_int64] * 3 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] * 2 +
                                  [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p,
                                   ctypes.c_int64, ctypes.c_void_p]))
    return jit, sig(jit.address("g"))


@given(m=st.integers(0, 70), n=st.integers(0, 70), k=st.integers(0, 40) | st.sampled_from([255, 256, 257, 600]),
       ta=st.booleans(), tb=st.booleans(), accumulate=st.booleans(), epi=st.booleans())
def test_gemm_every_edge_size(m, n, k, ta, tb, accumulate, epi):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    w = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    want = (a.T if ta else a).astype(np.float64) @ (w.T if tb else w).astype(np.float64)
    want = want + (c if accumulate else 0) + (1 if epi else 0)
    jit, f = _gemm_module(epi)
    scratch = np.zeros(gemm.scratch_floats(k, n), np.float32)
    a_rs, a_cs = (1, m) if ta else (k, 1)
    b_rs, b_cs = (1, k) if tb else (n, 1)
    f(m, n, k, a.ctypes.data, a_rs, a_cs, w.ctypes.data, b_rs, b_cs, c.ctypes.data, n, int(accumulate),
      scratch.ctypes.data, n, c.ctypes.data)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5 * (1 + k))
    asm = jit.assembly
    assert "vfmadd" in asm and "ymm" in asm     # the micro-kernel is AVX2 FMA on this host
    jit.close()
